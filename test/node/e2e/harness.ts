// End-to-end harness: the real Worker (workerd, this repo's wrangler.toml, fresh local storage) beside
// three loopback `node:http` servers this file owns or starts:
//   - an origin app that records what reaches it and can be told to be down, slow or failing;
//   - an alert receiver (ALERT_WEBHOOK_URL) that records every alert POST;
//   - the Twilio REST stand-in (dev/twilio-standin.ts), which checks every REST call's shape.
// Requests to the Worker go over raw `node:http` (header names keep their case, bodies can be any
// bytes), and every answer is kept, so a test file can end by checking that no secret appeared in any
// answer, in any alert, or in the Worker's own log output.
//
// Requests are signed with the official `twilio` package (getExpectedTwilioSignature), never with
// src/verification/signature.ts: the guard is checked against Twilio's own scheme.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import zlib from "node:zlib";
import twilio from "twilio";
import { afterAll, beforeAll } from "vitest";
import { startGuard, type GuardLogLine, type StartedGuard } from "../../../dev/worker.ts";
import { startTwilioStandin, type TwilioStandin } from "../../../dev/twilio-standin.ts";
// Twilio's payloads and fresh SIDs: the same builders the workerd tests use (signing stays twilio-node's, below).
import { inboundCall, inboundSms, messageStatus, uniqueSid } from "../../support/twilio.ts";
export { inboundCall, inboundSms, messageStatus, uniqueSid };

// ---- Recognisable secrets ------------------------------------------------------------------------------

/** Upper-case letters only, so the same run id also fits a base32 TOTP secret. */
const RUN_ID = Array.from(randomBytes(10), (b) => String.fromCharCode(65 + (b % 26))).join("");

/**
 * Every secret the Worker is given. Each starts with SECRET so a leak is obvious in any output, and
 * carries a per-run id so it cannot match anything by accident. None may ever appear in an answer, an
 * alert or a log line.
 */
export const SECRETS = {
  authToken: `SECRET-auth-token-e2e-${RUN_ID}`,
  secondaryToken: `SECRET-secondary-token-e2e-${RUN_ID}`,
  basicPassword: `SECRET-basic-password-e2e-${RUN_ID}`,
  adminToken: `SECRET-admin-token-e2e-${RUN_ID}`,
  // RFC 4648 base32 (A–Z, 2–7): a valid TOTP secret that still reads as one.
  // 32 base32 letters (20 bytes): RFC 4226's 16-byte minimum, which /healthz and the admin API enforce.
  adminTotpSecret: `SECRETTOTPEXEXE${RUN_ID}TOTPKEY`,
  /** A Twilio Webhook SharedKey secret (TWILIO_WEBHOOK_SHARED_KEYS), for the corpus Workers. */
  sharedKeySecret: `SECRET-shared-key-e2e-${RUN_ID}`,
} as const;

/** Not a secret (RFC 7617 puts the user-id in the clear), but fixed so tests can build credentials. */
export const BASIC_USER = "twilio-e2e";

/** The parent account: AC + 32 lowercase hex, recognisable in logs. */
export const PARENT_SID = `AC${"e2e0".repeat(8)}`;

// ---- Small utilities -------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns without throwing, or rethrows its last error after `timeoutMs`. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(intervalMs);
    }
  }
}


export function sha256Hex(body: string | Buffer): string {
  return createHash("sha256").update(body).digest("hex");
}

/**
 * The spend windows are UTC-aligned; a ledger check that straddles UTC midnight would see its day
 * window reset. When the day ends within `marginMs`, wait it out (at most that long, rarely).
 */
export async function awayFromUtcMidnight(marginMs = 60_000): Promise<void> {
  const now = Date.now();
  const nextMidnight = Math.ceil(now / 86_400_000) * 86_400_000;
  if (nextMidnight - now < marginMs) await sleep(nextMidnight - now + 1_000);
}

// ---- Twilio payloads and signatures (the official `twilio` package) ----------------------------------------

export type Pairs = Array<[string, string]>;

/** The params object twilio-node signs: a repeated key becomes an array (as a Node body parser makes it). */
export function paramsObject(pairs: Pairs): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of pairs) {
    const prior = out[key];
    if (prior === undefined) out[key] = value;
    else out[key] = Array.isArray(prior) ? [...prior, value] : [prior, value];
  }
  return out;
}

/** X-Twilio-Signature for a POST form: the URL Twilio was configured with, plus the form parameters. */
export function signForm(token: string, url: string, pairs: Pairs): string {
  return twilio.getExpectedTwilioSignature(token, url, paramsObject(pairs));
}

/** X-Twilio-Signature for a GET (parameters in the query) or a JSON body (bodySHA256 in the query). */
export function signUrl(token: string, url: string): string {
  return twilio.getExpectedTwilioSignature(token, url, {});
}

/** application/x-www-form-urlencoded as a WHATWG serializer writes it (independent of src/verification/form.ts). */
export function formBody(pairs: Pairs): string {
  return new URLSearchParams(pairs).toString();
}




/** Not billable: a Gather's digits without a Sid. Verifies and forwards, and counts nothing. */
export function notBillable(accountSid: string): Pairs {
  return [
    ["AccountSid", accountSid],
    ["Digits", "1234"],
    ["From", "+14155550100"],
    ["To", "+15005550006"],
  ];
}

// ---- Raw HTTP client ------------------------------------------------------------------------------------------

/** What a corpus row builds: a request as bytes on the wire, header names exactly as written. */
export interface RequestIsh {
  method: string;
  /** The request-target: path and query as sent, e.g. "/webhooks/sms?x=1". */
  path: string;
  headers?: Array<[string, string]>;
  body?: string | Buffer;
  /** Send the body chunked (no Content-Length). Default: Content-Length is set. */
  chunked?: boolean;
}

export interface Answer {
  status: number;
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  rawHeaders: string[];
  body: string;
  ms: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function decode(buffer: Buffer, encoding: string | undefined): Buffer {
  switch ((encoding ?? "").toLowerCase()) {
    case "gzip":
      return zlib.gunzipSync(buffer);
    case "br":
      return zlib.brotliDecompressSync(buffer);
    case "deflate":
      return zlib.inflateSync(buffer);
    default:
      return buffer;
  }
}

export function rawRequest(baseUrl: string, req: RequestIsh, timeoutMs = 30_000): Promise<Answer> {
  const target = new URL(baseUrl);
  const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, "utf8");
  const headers: string[] = [];
  const names = new Set<string>();
  for (const [name, value] of req.headers ?? []) {
    headers.push(name, value);
    names.add(name.toLowerCase());
  }
  if (body !== undefined && !req.chunked && !names.has("content-length")) headers.push("Content-Length", String(body.length));
  if (!names.has("accept-encoding")) headers.push("Accept-Encoding", "identity");
  // With headers given as a raw list, node:http adds no Host of its own.
  if (!names.has("host")) headers.unshift("Host", target.host);
  const started = Date.now();
  return new Promise<Answer>((resolve, reject) => {
    const request = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.path,
        headers,
        timeout: timeoutMs,
        // Allow header values and targets a strict client would refuse: this is an adversarial corpus.
        insecureHTTPParser: true,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => {
          const flat: Record<string, string> = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(", ") : value;
          }
          let text: string;
          try {
            text = decode(Buffer.concat(chunks), flat["content-encoding"]).toString("utf8");
          } catch {
            text = Buffer.concat(chunks).toString("latin1");
          }
          resolve({ status: response.statusCode ?? 0, headers: flat, rawHeaders: response.rawHeaders, body: text, ms: Date.now() - started });
        });
      },
    );
    request.on("timeout", () => request.destroy(new Error(`no answer from the Worker within ${timeoutMs} ms`)));
    request.on("error", reject);
    if (req.chunked && body !== undefined) {
      // A few writes, so the Worker really sees a stream without a declared length.
      const step = Math.max(1, Math.ceil(body.length / 4));
      for (let i = 0; i < body.length; i += step) request.write(body.subarray(i, i + step));
      request.end();
    } else {
      request.end(body);
    }
  });
}

// ---- The origin app ----------------------------------------------------------------------------------------------

export interface OriginHit {
  method: string;
  /** Request-target as received: path and query. */
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  at: number;
}

export type OriginBehaviour =
  | { kind: "answer"; status: number; body: string; contentType: string }
  /** Waits this long before answering (the guard gives up after 10 s). */
  | { kind: "slow"; delayMs: number }
  /** Resets the connection as soon as the request arrived. */
  | { kind: "reset" }
  /** Answers 200 with every request header it received, as JSON: shows what the guard passed on. */
  | { kind: "reflect" };

export const ORIGIN_TWIML = "<Response><Message>ok</Message></Response>";

export interface OriginApp {
  url: string;
  hits: OriginHit[];
  /** Requests whose path starts with `pathPrefix` (as the origin sees it) get this behaviour. */
  when(pathPrefix: string, behaviour: OriginBehaviour): void;
  /** Stops listening: connections are refused until up(). */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startOrigin(): Promise<OriginApp> {
  const hits: OriginHit[] = [];
  const rules: Array<{ prefix: string; behaviour: OriginBehaviour }> = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const path = req.url ?? "/";
      hits.push({ method: req.method ?? "", path, headers: req.headers, body: Buffer.concat(chunks), at: Date.now() });
      const rule = [...rules].reverse().find((r) => path.startsWith(r.prefix));
      const behaviour: OriginBehaviour = rule?.behaviour ?? { kind: "answer", status: 200, body: ORIGIN_TWIML, contentType: "text/xml" };
      if (behaviour.kind === "reset") {
        req.socket.destroy();
        return;
      }
      const answer = () => {
        if (!res.destroyed) res.writeHead(200, { "content-type": "text/xml" }).end(ORIGIN_TWIML);
      };
      if (behaviour.kind === "reflect") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") }));
        return;
      }
      if (behaviour.kind === "slow") {
        const timer = setTimeout(() => {
          timers.delete(timer);
          answer();
        }, behaviour.delayMs);
        timers.add(timer);
        return;
      }
      res.writeHead(behaviour.status, { "content-type": behaviour.contentType }).end(behaviour.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  let listening = true;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    when(prefix, behaviour) {
      rules.push({ prefix, behaviour });
    },
    async down() {
      if (!listening) return;
      listening = false;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
    async up() {
      if (listening) return;
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => {
          server.off("error", reject);
          resolve();
        });
      });
      listening = true;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      if (!listening) return;
      listening = false;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

// ---- The alert receiver (ALERT_WEBHOOK_URL) ------------------------------------------------------------------------

export interface AlertPost {
  at: number;
  /** What the receiver answered: 200, or an injected failure status. */
  status: number;
  raw: string;
  json: { text?: string; account?: string; level?: string; message?: string } | null;
}

export interface AlertReceiver {
  url: string;
  /** Every POST received, delivered or refused. */
  posts: AlertPost[];
  /** The next `times` POSTs whose JSON `match` accepts (default: any) are answered with `status` instead of 200. */
  failNext(times: number, status?: number, match?: (json: AlertPost["json"]) => boolean): void;
  close(): Promise<void>;
}

export async function startAlertReceiver(): Promise<AlertReceiver> {
  const posts: AlertPost[] = [];
  const failures: Array<{ remaining: number; status: number; match: (json: AlertPost["json"]) => boolean }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      let json: AlertPost["json"] = null;
      try {
        json = JSON.parse(raw) as AlertPost["json"];
      } catch {
        json = null;
      }
      let status = 200;
      const failure = failures.find((f) => f.remaining > 0 && f.match(json));
      if (failure) {
        failure.remaining--;
        status = failure.status;
      }
      if (req.method === "POST") posts.push({ at: Date.now(), status, raw, json });
      res.writeHead(status, { "content-type": "text/plain" }).end(status === 200 ? "ok" : "alert receiver failing");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`,
    posts,
    failNext(times, status = 500, match = () => true) {
      failures.push({ remaining: times, status, match });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---- One end-to-end environment ---------------------------------------------------------------------------------

export interface Account {
  sid: string;
  token: string;
}

export interface E2E {
  /** The Worker's base URL, e.g. http://127.0.0.1:41234 (what Twilio was "configured" with). */
  base: string;
  guard: StartedGuard;
  origin: OriginApp;
  alerts: AlertReceiver;
  standin: TwilioStandin;
  parent: Account;
  /** Every answer the Worker gave through `send`, for the leak check. */
  answers: Answer[];
  send(req: RequestIsh, timeoutMs?: number): Promise<Answer>;
  /** A new subaccount the stand-in knows under the parent. */
  subaccount(): Account;
  /** A signed POST form webhook to `path` (default /webhooks/sms). */
  signedForm(account: Account, pairs: Pairs, options?: { path?: string; headers?: Array<[string, string]> }): RequestIsh;
  /** Successful POST Status=suspended calls the stand-in answered for this account. */
  suspensions(sid: string): number;
  /** Every suspend attempt the Worker made for this account (failed, hung, dropped and successful). */
  suspendAttempts(sid: string): number;
  /** Alert POSTs delivered (answered 200) about this account at this level ("trip", "warn", …). */
  alertsFor(sid: string, level?: string): AlertPost[];
  /** Origin hits that came from requests whose User-Agent ends in `e2e-case/<caseId>` (a header the guard forwards). */
  originHitsFor(caseId: string): OriginHit[];
  /** Every secret value that must never appear in an answer, an alert or a log line. */
  secretValues(): string[];
  /** Where a secret appeared: empty when nothing leaked. */
  leaks(): string[];
  logs(): GuardLogLine[];
  /** The account's view through the admin API (GET /admin/accounts/:sid); not kept in `answers`. */
  account(sid: string): Promise<AccountView>;
  stop(): Promise<void>;
}

/** The part of the admin API's account view (docs/admin-api.md, "The snapshot") the e2e tests read. */
export interface AccountView {
  windows: Array<{ window: string; events: number }>;
  /** Newest first. */
  history: Array<{ at: number; tripId: string | null; kind: string; outcome: string; detail: string }>;
}

export interface E2EOptions {
  vars?: Record<string, string>;
  secrets?: Record<string, string>;
}

/** The contract's settings for a loopback run; `options` override or add to them. */
/**
 * Subaccounts created before the Worker starts: the guard learns subaccounts from one account listing,
 * at most once a minute (src/accounts/directory.ts), so `subaccount()` hands these out and a test never
 * waits for the next listing. Past the pool, a new subaccount is known only after that minute.
 */
const SUBACCOUNT_POOL = 24;

/**
 * One stand for the calling test file: started before its tests (two minutes away from UTC midnight,
 * so a day window holds still), handed to `use`, and stopped after them.
 */
export function e2eForFile(options: E2EOptions, use: (e2e: E2E) => void): void {
  let started: E2E | undefined;
  beforeAll(async () => {
    await awayFromUtcMidnight(120_000);
    started = await startE2E(options);
    use(started);
  }, 60_000);
  afterAll(async () => {
    await started?.stop();
  });
}

export async function startE2E(options: E2EOptions = {}): Promise<E2E> {
  const standin = await startTwilioStandin({ parentSid: PARENT_SID, parentToken: SECRETS.authToken });
  const pool = Array.from({ length: SUBACCOUNT_POOL }, () => standin.addSubaccount());
  const origin = await startOrigin();
  const alerts = await startAlertReceiver();
  let guard: StartedGuard;
  try {
    guard = await startGuard({
      vars: {
        TWILIO_ACCOUNT_SID: PARENT_SID,
        TWILIO_API_BASE: standin.url,
        ORIGIN_URL: origin.url,
        ALERT_WEBHOOK_URL: alerts.url,
        RECONCILE_INTERVAL_S: "0",
        ...options.vars,
      },
      secrets: {
        TWILIO_AUTH_TOKEN: SECRETS.authToken,
        TWILIO_AUTH_TOKEN_SECONDARY: SECRETS.secondaryToken,
        ADMIN_TOKEN: SECRETS.adminToken,
        ADMIN_TOTP_SECRET: SECRETS.adminTotpSecret,
        ...options.secrets,
      },
    });
  } catch (error) {
    await Promise.all([standin.close(), origin.close(), alerts.close()]);
    throw error;
  }
  const base = guard.url;
  const answers: Answer[] = [];
  const parent = { sid: PARENT_SID, token: SECRETS.authToken };

  const secretValues = () => {
    // BASIC_AUTH_USER is not a secret (RFC 7617 sends it in the clear); every other secret setting is.
    const given = Object.entries(options.secrets ?? {}).filter(([name]) => name !== "BASIC_AUTH_USER").map(([, value]) => value);
    const values: string[] = [...Object.values(SECRETS), ...given];
    // The parent's credentials as they travel to Twilio (HTTP Basic), and every subaccount's token.
    values.push(Buffer.from(`${PARENT_SID}:${SECRETS.authToken}`).toString("base64"));
    values.push(Buffer.from(`${BASIC_USER}:${SECRETS.basicPassword}`).toString("base64"));
    for (const account of standin.accounts.values()) values.push(account.authToken);
    return [...new Set(values.filter((v) => v.length >= 8))];
  };

  const e2e: E2E = {
    base,
    guard,
    origin,
    alerts,
    standin,
    parent,
    answers,
    async send(req, timeoutMs) {
      const answer = await rawRequest(base, req, timeoutMs);
      answers.push(answer);
      return answer;
    },
    subaccount() {
      const { sid, authToken } = pool.shift() ?? standin.addSubaccount();
      return { sid, token: authToken };
    },
    signedForm(account, pairs, opts = {}) {
      const path = opts.path ?? "/webhooks/sms";
      return {
        method: "POST",
        path,
        headers: [
          ["Content-Type", "application/x-www-form-urlencoded"],
          ["X-Twilio-Signature", signForm(account.token, base + path, pairs)],
          ...(opts.headers ?? []),
        ],
        body: formBody(pairs),
      };
    },
    suspensions(sid) {
      return standin.requests.filter((r) => r.purpose === "suspend" && r.path.endsWith(`/Accounts/${sid}.json`) && r.status === 200 && !r.injected).length;
    },
    suspendAttempts(sid) {
      return standin.requests.filter((r) => r.purpose === "suspend" && r.path.endsWith(`/Accounts/${sid}.json`)).length;
    },
    alertsFor(sid, level) {
      return alerts.posts.filter((p) => p.status === 200 && p.json?.account === sid && (level === undefined || p.json?.level === level));
    },
    originHitsFor(caseId) {
      return origin.hits.filter((h) => String(h.headers["user-agent"] ?? "").endsWith(` e2e-case/${caseId}`));
    },
    secretValues,
    leaks() {
      const found: string[] = [];
      const secrets = secretValues();
      const scan = (where: string, text: string) => {
        for (const secret of secrets) if (text.includes(secret)) found.push(`${where}: contains ${secret.slice(0, 18)}…`);
      };
      answers.forEach((a, i) => {
        scan(`answer #${i} (${a.status}) body`, a.body);
        scan(`answer #${i} (${a.status}) headers`, a.rawHeaders.join("\n"));
      });
      alerts.posts.forEach((p, i) => scan(`alert #${i}`, p.raw));
      guard.logs.forEach((l, i) => scan(`log line #${i} (${l.level})`, l.message));
      return found;
    },
    logs: () => guard.logs,
    async account(sid) {
      const answer = await rawRequest(base, { method: "GET", path: `/admin/accounts/${sid}`, headers: [["Authorization", `Bearer ${SECRETS.adminToken}`]] });
      if (answer.status !== 200) throw new Error(`GET /admin/accounts/${sid}: ${answer.status} ${answer.body.slice(0, 200)}`);
      return (JSON.parse(answer.body) as { account: AccountView }).account;
    },
    async stop() {
      await guard.stop().catch(() => {});
      await Promise.all([standin.close(), origin.close(), alerts.close()]);
    },
  };
  return e2e;
}

// ---- Waiting on the guard's own state, never on the wall clock ---------------------------------------------------

/** The outcomes after which the outbox sends nothing more for an effect (src/breaker/outbox.ts). */
const FINAL_OUTCOMES = new Set(["done", "failed", "fenced"]);
/** What a trip with action "suspend" owes: the suspension, then ending live calls, and the trip alert. */
export const TRIP_EFFECTS = ["suspend", "end-calls", "alert-webhook"] as const;

/**
 * Waits until the guard's history shows a final outcome for each of `kinds` of the account's latest trip
 * (the outbox has nothing more of them to send), so a test can count what reached Twilio and the alert
 * receiver without sleeping "long enough" for a duplicate to show. Polls the admin API; throws after
 * `timeoutMs`. Entries of other trips, and warnings (no trip), are not considered.
 */
export async function effectsSettled(e2e: E2E, sid: string, kinds: readonly string[] = TRIP_EFFECTS, timeoutMs = 25_000): Promise<AccountView> {
  return eventually(async () => {
    const view = await e2e.account(sid);
    const tripId = view.history.find((h) => h.kind === "trip" && h.outcome === "open")?.tripId;
    if (tripId === undefined || tripId === null) throw new Error(`no trip in the history of ${sid}`);
    const latest = new Map<string, string>();
    for (const h of view.history) if (h.tripId === tripId && !latest.has(h.kind)) latest.set(h.kind, h.outcome);
    const unsettled = kinds.filter((k) => !FINAL_OUTCOMES.has(latest.get(k) ?? "absent"));
    if (unsettled.length > 0) throw new Error(`effects not settled for ${sid}: ${unsettled.map((k) => `${k}=${latest.get(k) ?? "absent"}`).join(", ")}`);
    return view;
  }, timeoutMs, 100);
}

/** Waits until the account's day window holds `events` events (work done after the answer has landed). */
export async function dayEventsReach(e2e: E2E, sid: string, events: number, timeoutMs = 10_000): Promise<void> {
  await eventually(async () => {
    const day = (await e2e.account(sid)).windows.find((w) => w.window === "day");
    if ((day?.events ?? 0) < events) throw new Error(`day window of ${sid} holds ${day?.events ?? 0} events, waiting for ${events}`);
  }, timeoutMs);
}

// ---- Ledger checks through the front door -------------------------------------------------------------------------

/**
 * Proves, without any admin API, that exactly `alreadyCounted` events are on `account`'s ledger under a
 * policy of `limit` events per window: `limit - alreadyCounted` fresh inbound messages all pass, and the
 * next one is blocked (the breaker trips exactly at the limit). Trips the account.
 */
export async function expectLedgerAt(
  e2e: E2E,
  account: Account,
  limit: number,
  alreadyCounted: number,
  options: { path?: string; headers?: Array<[string, string]> } = {},
): Promise<{ passed: number; blockedAt: number | null; problems: string[] }> {
  const problems: string[] = [];
  let passed = 0;
  let blockedAt: number | null = null;
  const remaining = limit - alreadyCounted;
  if (remaining < 0) problems.push(`expected ${alreadyCounted} counted, more than the limit ${limit}`);
  for (let i = 0; i <= Math.max(remaining, 0); i++) {
    const answer = await e2e.send(e2e.signedForm(account, inboundSms(account.sid), { path: options.path ?? "/webhooks/ledger-check", headers: options.headers ?? [] }));
    const blocked = answer.headers["x-guard-breaker"] === "open";
    if (answer.status !== 200) problems.push(`ledger check event ${i + 1}: status ${answer.status} ${answer.body.trim()}`);
    if (blocked) {
      blockedAt = i + 1;
      break;
    }
    passed++;
  }
  if (blockedAt !== remaining + 1) {
    problems.push(
      blockedAt === null
        ? `the breaker did not trip after ${remaining + 1} fresh events: fewer than ${alreadyCounted} were counted before`
        : `the breaker tripped at fresh event ${blockedAt}, not ${remaining + 1}: ${limit - blockedAt + 1} events were on the ledger, expected ${alreadyCounted}`,
    );
  }
  return { passed, blockedAt, problems };
}
