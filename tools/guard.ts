// Operator CLI for the admin API, in the spirit of twilio-cli; run straight from source by Node 22:
//   npm run guard -- accounts [--sort spend|state|activity|sid] [--filter all|open|warned] [--search TEXT] [--limit N] [--json]
//   npm run guard -- trip <AccountSid> [--reason TEXT] [--code 123456] [--json]
//   npm run guard -- reset <AccountSid> [--code 123456] [--json]
// The guard's URL comes from GUARD_URL (default http://127.0.0.1:8787, `npm start`), the bearer token
// from GUARD_ADMIN_TOKEN or ADMIN_TOKEN (never an argument: arguments end up in shell history and in
// process lists). When the guard asks for a second factor, the TOTP code is --code, or asked for on the
// terminal. Exit status: 0 done, 1 the guard refused or failed, 2 usage error.
import { createInterface } from "node:readline/promises";
import { parseArgs } from "node:util";
import { ACCOUNT_SID } from "../src/twilio/sids.ts";

const DEFAULT_URL = "http://127.0.0.1:8787";

const USAGE = `Usage:
  npm run guard -- accounts [--sort spend|state|activity|sid] [--filter all|open|warned] [--search TEXT] [--limit N] [--json]
  npm run guard -- trip <AccountSid> [--reason TEXT] [--code CODE] [--json]
  npm run guard -- reset <AccountSid> [--code CODE] [--json]

Environment: GUARD_URL (default ${DEFAULT_URL}), GUARD_ADMIN_TOKEN or ADMIN_TOKEN (the admin bearer token).
With ADMIN_TOTP_SECRET set on the guard, trip and reset need a TOTP code: --code, or typed when asked.
Exit status: 0 done, 1 refused or failed, 2 usage error.`;

class UsageError extends Error {}

interface Answer {
  status: number;
  data: Record<string, unknown> | null;
}

async function call(base: string, token: string, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data: Record<string, unknown> | null = null;
  try {
    data = (await response.json()) as Record<string, unknown>;
  } catch {
    data = null;
  }
  return { status: response.status, data };
}

function refusal(answer: Answer): string {
  const message = typeof answer.data?.message === "string" ? answer.data.message : `HTTP ${answer.status}`;
  return answer.data?.error ? `${message} (${String(answer.data.error)})` : message;
}

async function askCode(label: string): Promise<string> {
  if (!process.stdin.isTTY) throw new UsageError(`${label} needs a TOTP code: pass --code (no terminal to ask on)`);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(`TOTP code for ${label}: `)).trim();
  } finally {
    rl.close();
  }
}

function usd(v: unknown): string {
  return `$${Number(v ?? 0).toFixed(2)}`;
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + " ".repeat(width - text.length);
}

type Row = { sid: string; friendlyName: string | null; breaker: { state: string; suspension: string } | null; spendTodayUsd: number; eventsToday: number; warned: boolean; lastActivityAt: number | null };

function accountsTable(rows: Row[], total: number): string {
  const lines = [`${pad("ACCOUNT", 34)}  ${pad("STATE", 16)}  ${pad("SPEND TODAY", 11)}  ${pad("EVENTS", 7)}  LAST ACTIVITY (UTC)`];
  for (const r of rows) {
    const state = r.breaker === null ? "unknown" : r.breaker.state === "open" ? `open/${r.breaker.suspension}` : r.warned ? "closed (warned)" : "closed";
    const last = r.lastActivityAt ? new Date(r.lastActivityAt).toISOString().replace("T", " ").slice(0, 19) : "-";
    lines.push(`${pad(r.sid, 34)}  ${pad(state, 16)}  ${pad(usd(r.spendTodayUsd), 11)}  ${pad(String(r.eventsToday), 7)}  ${last}${r.friendlyName ? `  ${r.friendlyName}` : ""}`);
  }
  lines.push(`${rows.length} of ${total} accounts`);
  return lines.join("\n");
}

async function mutate(base: string, token: string, path: string, label: string, code: string | undefined, body?: unknown): Promise<Answer> {
  let answer = await call(base, token, "POST", path, code ? { "x-guard-totp": code } : {}, body);
  if (answer.status === 403 && answer.data?.error === "totp-required" && code === undefined) {
    const typed = await askCode(label);
    answer = await call(base, token, "POST", path, { "x-guard-totp": typed }, body);
  }
  return answer;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: "boolean", default: false },
        code: { type: "string" },
        reason: { type: "string" },
        sort: { type: "string", default: "spend" },
        filter: { type: "string", default: "all" },
        search: { type: "string" },
        limit: { type: "string", default: "100" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [command, sid, ...extra] = positionals;
  if (command === undefined) throw new UsageError("no command given");
  const token = (process.env.GUARD_ADMIN_TOKEN ?? process.env.ADMIN_TOKEN ?? "").trim();
  if (token === "") throw new UsageError("set GUARD_ADMIN_TOKEN (or ADMIN_TOKEN) to the admin bearer token");
  const base = (process.env.GUARD_URL ?? DEFAULT_URL).replace(/\/+$/, "");
  if (values.code !== undefined && !/^[0-9]{6}$/.test(values.code)) throw new UsageError("--code must be 6 digits");

  if (command === "accounts") {
    if (sid !== undefined) throw new UsageError("accounts takes no account");
    const query = new URLSearchParams({ sort: values.sort!, filter: values.filter!, limit: values.limit! });
    if (values.search) query.set("q", values.search);
    const answer = await call(base, token, "GET", `/admin/accounts?${query}`);
    if (answer.status !== 200) return fail(refusal(answer));
    const data = answer.data as { accounts: Row[]; total: number };
    console.log(values.json ? JSON.stringify(data, null, 2) : accountsTable(data.accounts, data.total));
    return 0;
  }
  if (command === "trip" || command === "reset") {
    if (sid === undefined || !ACCOUNT_SID.test(sid)) throw new UsageError(`${command} needs an Account SID (AC followed by 32 lowercase hex characters)`);
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`);
    const body = command === "trip" && values.reason ? { reason: values.reason } : undefined;
    const answer = await mutate(base, token, `/admin/accounts/${sid}/${command}`, `${command} ${sid}`, values.code, body);
    if (answer.status !== 200) return fail(refusal(answer));
    const data = answer.data as { account: { breaker: { state: string; suspension: string } }; tripped?: boolean; reactivation?: string; changed?: boolean };
    if (values.json) console.log(JSON.stringify(data, null, 2));
    else if (command === "trip") console.log(data.tripped ? `${sid}: breaker opened (suspension ${data.account.breaker.suspension})` : `${sid}: the breaker was already open; nothing changed`);
    else console.log(data.changed === false ? `${sid}: the breaker was already closed; nothing changed` : `${sid}: breaker closed; reactivation ${data.reactivation}`);
    return 0;
  }
  throw new UsageError(`unknown command: ${command}`);
}

function fail(message: string): number {
  console.error(`guard: ${message}`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`guard: ${error.message}`);
      console.error("Run `npm run guard -- --help` for usage.");
      process.exitCode = 2;
    } else {
      // A network error names the URL, never the token.
      console.error(`guard: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 1;
    }
  },
);
