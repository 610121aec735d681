// 3. Hot account: one subaccount under a burst as fast as the machine answers; events per second, and
//    the ledger counts exactly what was sent (no loss, no double count).
// 4. Trip latency: from sending the event that crosses a limit to the suspension reaching the Twilio
//    stand-in, over many subaccounts.
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { inboundSms, signedFormRequest, type SignedRequest } from "../lib/events.ts";
import type { RunningGuard } from "../lib/guard.ts";
import { percentile, runLoad } from "../lib/load.ts";
import { ADMIN_TOKEN, type Account, type World } from "../lib/world.ts";

/** Policy of the hot-account guard: exactly `events` inbound events a month may pass. */
export function eventsPolicy(events: number): string {
  return JSON.stringify({ limits: [{ window: "month", events }], action: "suspend" });
}

/** The spend windows are UTC-aligned: a count that straddles the turn of the month would reset. */
export async function awayFromMonthEnd(marginMs: number): Promise<void> {
  const now = new Date();
  const next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  if (next - now.getTime() < marginMs) await new Promise((r) => setTimeout(r, next - now.getTime() + 1000));
}

async function send(baseUrl: string, signed: SignedRequest): Promise<{ status: number; breaker: string | null; body: string }> {
  const response = await fetch(baseUrl + signed.path, { method: "POST", headers: signed.headers, body: signed.body });
  return { status: response.status, breaker: response.headers.get("x-guard-breaker"), body: await response.text() };
}

/** Reads the month's event count from the admin API when it exists (GET /admin/accounts/:sid). */
async function adminEventCount(guard: RunningGuard, accountSid: string): Promise<number | null> {
  const response = await fetch(`${guard.url}/admin/accounts/${accountSid}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  if (response.status !== 200) return null;
  type Windows = { windows?: Array<{ window: string; events: number }> };
  const body = (await response.json().catch(() => null)) as (Windows & { account?: Windows }) | null;
  const month = (body?.account?.windows ?? body?.windows)?.find((w) => w.window === "month");
  return month === undefined ? null : month.events;
}

export interface HotResult {
  sent: number;
  eventsPerSec: number;
  connections: number;
  elapsedMs: number;
  countCheck: string;
  exact: boolean;
}

export async function benchHotAccount(world: World, guard: RunningGuard, warm: number, burst: number, connections: number): Promise<HotResult> {
  const hot = world.hot;
  const total = warm + burst;
  const suspended = () => world.standin.requests.some((r) => r.purpose === "suspend" && r.path.includes(hot.sid));
  let breakerAnswers = 0;
  const onResponse = (_status: number, headers: Record<string, string | string[]>) => {
    if (headers["x-guard-breaker"] !== undefined) breakerAnswers++;
  };
  const pool = Array.from({ length: total }, () => signedFormRequest(hot.token, guard.url, "/webhooks/sms", inboundSms(hot.sid)));
  const originBefore = (await world.origin.ask<{ requests: number; duplicates: number }>({ type: "stats" }));
  const warmed = await runLoad({ url: guard.url, pool: pool.slice(0, warm), connections, amount: warm, onResponse });
  const result = await runLoad({ url: guard.url, pool: pool.slice(warm), connections, amount: burst, onResponse });
  const originAfter = await world.origin.ask<{ requests: number; duplicates: number }>({ type: "stats" });
  const ok = (warmed.status["200"] ?? 0) + (result.status["200"] ?? 0);
  const reached = originAfter.requests - originBefore.requests;
  const problems: string[] = [];
  if (ok !== total || warmed.errors + result.errors !== 0) problems.push(`answers ${JSON.stringify(result.status)} with ${result.errors} errors`);
  if (breakerAnswers !== 0) problems.push(`${breakerAnswers} of ${total} blocked before the limit (double count)`);
  if (reached !== total) problems.push(`${reached} of ${total} reached the origin`);
  if (originAfter.duplicates !== originBefore.duplicates) problems.push("distinct events marked duplicate");
  if (suspended()) problems.push("suspended before the limit");

  const viaAdmin = await adminEventCount(guard, hot.sid);
  if (viaAdmin !== null && viaAdmin !== total) problems.push(`admin API counts ${viaAdmin}, sent ${total}`);
  // The limit is exactly `total` events: one more must trip (none lost), and be suspended at Twilio.
  const extra = await send(guard.url, signedFormRequest(hot.token, guard.url, "/webhooks/sms", inboundSms(hot.sid)));
  if (extra.breaker !== "open") problems.push(`event ${total + 1} was not blocked (events lost)`);
  const deadline = Date.now() + 10_000;
  while (!suspended() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (!suspended()) problems.push("no suspension reached the stand-in");

  const how = viaAdmin !== null ? `admin API month count = ${viaAdmin}; ` : "";
  return {
    sent: total,
    eventsPerSec: (burst / result.elapsedMs) * 1000,
    connections,
    elapsedMs: result.elapsedMs,
    exact: problems.length === 0,
    countCheck:
      problems.length === 0
        ? `${how}limit ${total} events: all ${total} passed (${reached} at the origin, 0 blocked), event ${total + 1} blocked and the subaccount suspended`
        : problems.join("; "),
  };
}

/** bench/do-driver.ts, bundled for workerd. */
export async function driverSource(): Promise<string> {
  const bundled = await build({
    entryPoints: [fileURLToPath(new URL("../do-driver.ts", import.meta.url))],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    write: false,
  });
  return bundled.outputFiles[0]!.text;
}

/**
 * The account's Durable Object alone: `total` record() calls from a Worker in the same workerd
 * (bench/do-driver.ts), `concurrency` in flight, first `warm` of them as warm-up. Same exactness check
 * as through the Worker: the policy allows exactly `total` events, so none may be blocked and one more
 * must trip and suspend.
 */
export async function benchHotDurableObject(world: World, guard: RunningGuard, warm: number, burst: number, concurrency: number): Promise<HotResult> {
  if (guard.driverUrl === null) throw new Error("the guard was started without the DO driver");
  const account = world.hotDirect;
  const prefix = randomBytes(8).toString("hex");
  const drive = async (n: number, lanes: number, tag: string) => {
    const response = await fetch(`${guard.driverUrl}/drive`, { method: "POST", body: JSON.stringify({ sid: account.sid, n, concurrency: lanes, prefix: prefix + tag }) });
    if (!response.ok) throw new Error(`do-driver: ${response.status} ${await response.text()}`);
    return (await response.json()) as { n: number; blocked: number; duplicates: number };
  };
  const warmed = await drive(warm, concurrency, "0");
  const startedAt = performance.now();
  const result = await drive(burst, concurrency, "1");
  const elapsedMs = performance.now() - startedAt;
  const total = warm + burst;
  const problems: string[] = [];
  if (warmed.blocked + result.blocked !== 0) problems.push(`${warmed.blocked + result.blocked} of ${total} blocked before the limit (double count)`);
  if (warmed.duplicates + result.duplicates !== 0) problems.push("distinct events counted as duplicates");
  const suspended = () => world.standin.requests.some((r) => r.purpose === "suspend" && r.path.includes(account.sid));
  if (suspended()) problems.push("suspended before the limit");
  const extra = await drive(1, 1, "2");
  if (extra.blocked !== 1) problems.push(`event ${total + 1} was not blocked (events lost)`);
  const deadline = Date.now() + 10_000;
  while (!suspended() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (!suspended()) problems.push("no suspension reached the stand-in");
  return {
    sent: total,
    eventsPerSec: (burst / elapsedMs) * 1000,
    connections: concurrency,
    elapsedMs,
    exact: problems.length === 0,
    countCheck: problems.length === 0 ? `limit ${total} events: all ${total} passed, event ${total + 1} blocked and the subaccount suspended` : problems.join("; "),
  };
}

export interface TripResult {
  trips: number;
  p50: number;
  p99: number;
  max: number;
  /** The tripping request's own answer (blocked at the edge), for comparison. */
  answerP50: number;
  answerP99: number;
}

export async function benchTripLatency(world: World, guard: RunningGuard, accounts: Account[]): Promise<TripResult> {
  const latencies: number[] = [];
  const answers: number[] = [];
  for (const account of accounts) {
    const first = await send(guard.url, signedFormRequest(account.token, guard.url, "/webhooks/sms", inboundSms(account.sid)));
    if (first.status !== 200 || first.breaker !== null) throw new Error(`trip: first event answered ${first.status} ${first.body}`);
    const path = `/2010-04-01/Accounts/${account.sid}.json`;
    const arrived = new Promise<number>((resolve) => {
      world.onStandinRequest = (recorded, at) => {
        if (recorded.purpose === "suspend" && recorded.path === path) resolve(at);
      };
    });
    const tripping = signedFormRequest(account.token, guard.url, "/webhooks/sms", inboundSms(account.sid));
    const sentAt = performance.now();
    const answer = await send(guard.url, tripping);
    const answeredAt = performance.now();
    if (answer.breaker !== "open") throw new Error(`trip: second event not blocked: ${answer.status} ${answer.body}`);
    const timeout = new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`trip: no suspension of ${account.sid} within 10 s`)), 10_000));
    const at = await Promise.race([arrived, timeout]);
    world.onStandinRequest = null;
    latencies.push(at - sentAt);
    answers.push(answeredAt - sentAt);
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  const sortedAnswers = [...answers].sort((a, b) => a - b);
  return {
    trips: latencies.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1]!,
    answerP50: percentile(sortedAnswers, 50),
    answerP99: percentile(sortedAnswers, 99),
  };
}
