// tools/guard.ts against the real Worker (workerd, dev/worker.ts) and the Twilio stand-in, run
// as operators run it: `node tools/guard.ts …` with the token in the environment, the code as --code or
// typed at a terminal prompt (a pseudo-terminal from util-linux `script`).
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { base32Decode } from "../../src/admin/base32.ts";
import { generateSecretBase32, importTotpKey, totpAt } from "../../src/admin/totp.ts";
import { startGuard, type StartedGuard } from "../../dev/worker.ts";
import { startTwilioStandin, type TwilioStandin } from "../../dev/twilio-standin.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PARENT_SID = `AC${"c11c11c1".repeat(4)}`;
const PARENT_TOKEN = `parent-token-${randomBytes(8).toString("hex")}`;
const ADMIN_TOKEN = `admin-token-${randomBytes(12).toString("hex")}`;
const TOTP_SECRET = generateSecretBase32();

let standin: TwilioStandin;
let guard: StartedGuard;
let plain: StartedGuard;
let tty: StartedGuard;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string | undefined> = {}, url = guard.url): Promise<Run> {
  const childEnv: Record<string, string | undefined> = { ...process.env, GUARD_URL: url, GUARD_ADMIN_TOKEN: ADMIN_TOKEN, ...env };
  delete childEnv.ADMIN_TOKEN;
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  return new Promise((resolve) => {
    execFile(process.execPath, ["tools/guard.ts", ...args], { cwd: ROOT, env: childEnv }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

/**
 * A code no earlier call to that guard consumed (a code is accepted once, each guard keeps its own last
 * step): the current step's, then the next one's. Each guard is asked for two codes at most, so this
 * never runs out, whatever the clock says.
 */
const lastStep = new Map<string, number>();
async function freshCode(target: StartedGuard): Promise<string> {
  const current = Math.floor(Date.now() / 30_000);
  const step = Math.max((lastStep.get(target.url) ?? current - 1) + 1, current);
  if (step > current + 1) throw new Error("more than two codes asked of one guard within a step");
  lastStep.set(target.url, step);
  return totpAt(await importTotpKey(base32Decode(TOTP_SECRET)), step * 30);
}

async function state(sid: string, target = guard): Promise<string> {
  const response = await fetch(`${target.url}/admin/accounts/${sid}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return ((await response.json()) as { account: { breaker: { state: string } } }).account.breaker.state;
}

describe("npm run guard", () => {
  beforeAll(async () => {
    standin = await startTwilioStandin({ parentSid: PARENT_SID, parentToken: PARENT_TOKEN });
    const vars = { TWILIO_ACCOUNT_SID: PARENT_SID, TWILIO_API_BASE: standin.url, RECONCILE_INTERVAL_S: "0" };
    [guard, tty, plain] = await Promise.all([
      startGuard({ vars, secrets: { TWILIO_AUTH_TOKEN: PARENT_TOKEN, ADMIN_TOKEN, ADMIN_TOTP_SECRET: TOTP_SECRET } }),
      startGuard({ vars, secrets: { TWILIO_AUTH_TOKEN: PARENT_TOKEN, ADMIN_TOKEN, ADMIN_TOTP_SECRET: TOTP_SECRET } }),
      startGuard({ vars, secrets: { TWILIO_AUTH_TOKEN: PARENT_TOKEN, ADMIN_TOKEN } }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([guard?.stop(), tty?.stop(), plain?.stop()]);
    await standin?.close();
  });

  it("trips and resets an account with --code, and lists it, as a table and as JSON", { timeout: 30_000 }, async () => {
    const sub = standin.addSubaccount();
    const trip = await run(["trip", sub.sid, "--code", await freshCode(guard), "--reason", "cli test"]);
    expect(trip, trip.stderr).toMatchObject({ code: 0 });
    expect(trip.stdout).toContain(`${sub.sid}: breaker opened`);
    expect(await state(sub.sid)).toBe("open");

    const table = await run(["accounts", "--filter", "open"]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^ACCOUNT\s+STATE\s+SPEND TODAY/);
    expect(table.stdout).toMatch(new RegExp(`${sub.sid}\\s+open/`));
    const json = JSON.parse((await run(["accounts", "--json"])).stdout) as { accounts: Array<{ sid: string; breaker: { state: string } }> };
    expect(json.accounts.find((a) => a.sid === sub.sid)?.breaker.state).toBe("open");

    const reset = await run(["reset", sub.sid, "--code", await freshCode(guard), "--json"]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(JSON.parse(reset.stdout)).toMatchObject({ reactivation: "done", changed: true, account: { breaker: { state: "closed" } } });
    const again = await run(["reset", sub.sid], {}, plain.url);
    expect(again.stdout).toContain("already closed; nothing changed");
  });

  it("asks for the code on a terminal when none is given", { timeout: 30_000 }, async () => {
    expect(existsSync("/usr/bin/script"), "util-linux `script` provides the pseudo-terminal").toBe(true);
    const sub = standin.addSubaccount();
    const code = await freshCode(tty);
    const command = `${JSON.stringify(process.execPath)} tools/guard.ts trip ${sub.sid}`;
    const child = spawn("script", ["-qfec", command, "/dev/null"], { cwd: ROOT, env: { ...process.env, GUARD_URL: tty.url, GUARD_ADMIN_TOKEN: ADMIN_TOKEN } });
    let output = "";
    let typed = false;
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (!typed && output.includes("TOTP code for trip")) {
        typed = true;
        child.stdin.write(`${code}\r`);
      }
    });
    const exit = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(output).toContain(`TOTP code for trip ${sub.sid}:`);
    expect(output).toContain(`${sub.sid}: breaker opened`);
    expect(exit).toBe(0);
    expect(await state(sub.sid, tty)).toBe("open");
  });

  it("refuses to guess: without a terminal and without --code a mutation is a usage error, and nothing changes", async () => {
    const sub = standin.addSubaccount();
    const result = await run(["trip", sub.sid]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("pass --code");
    const listed = (await fetch(`${guard.url}/admin/accounts/${sub.sid}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status;
    expect(listed).toBe(404);
  });

  it("exits 1 with the guard's reason on a wrong token or code, never printing the token", async () => {
    const wrongToken = await run(["accounts"], { GUARD_ADMIN_TOKEN: "not-the-token" });
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toContain("token-invalid");
    const sub = standin.addSubaccount();
    const wrongCode = await run(["trip", sub.sid, "--code", "000000"]);
    expect(wrongCode.code).toBe(1);
    expect(wrongCode.stderr).toMatch(/totp-(invalid|reused)/);
    for (const r of [wrongToken, wrongCode]) expect(r.stdout + r.stderr).not.toContain(ADMIN_TOKEN);
  });

  it("exits 2 on usage errors: no token, a bad SID, an unknown command, a malformed code", async () => {
    const cases: Array<[string[], Record<string, string | undefined>, RegExp]> = [
      [["accounts"], { GUARD_ADMIN_TOKEN: undefined }, /GUARD_ADMIN_TOKEN/],
      [["trip", "AC123"], {}, /Account SID/],
      [["suspend-everything"], {}, /unknown command/],
      [["trip", `AC${"a".repeat(32)}`, "--code", "12"], {}, /6 digits/],
    ];
    for (const [args, env, message] of cases) {
      const result = await run(args, env);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    expect((await run(["--help"])).stdout).toContain("npm run guard -- accounts");
  });
});
