// 2. The webhook path (the guard in front of a minimal origin vs the bare forwarding Worker, the
// runtime's floor; Express + twilio.webhook() beside them) and 5. many accounts (the same, with traffic
// spread over 10,000 subaccounts against 10; the first webhooks of never-seen subaccounts).
import type { Child } from "../lib/child.ts";
import { inboundSms, messageStatus, sid, signedFormRequest, type Pairs, type SignedRequest } from "../lib/events.ts";
import { startBareForwarder, type RunningGuard } from "../lib/guard.ts";
import { runLoad, summary } from "../lib/load.ts";
import { cpuMs } from "../lib/profile.ts";
import type { Account, World } from "../lib/world.ts";

export interface LoadShape {
  connections: number;
  /** autocannon overallRate, requests per second. */
  rate: number;
  /** Requests per target before measuring, excluded. */
  warm: number;
  /** Requests measured per target, split over ROUNDS alternating rounds. */
  measure: number;
}

/** Targets are measured in alternating rounds (A B A B …), so a noisy moment hits both sides alike. */
const ROUNDS = 2;

export interface PathResult {
  label: string;
  p50: number;
  p99: number;
  n: number;
  /** CPU time of the serving process (workerd, or Express's Node) per measured request, µs. */
  cpuUs: number;
}

interface Target {
  label: string;
  url: string;
  make: (i: number) => SignedRequest;
  /** The process that should see every request, and how to read its count. */
  counter: { child: Child; field: "requests" };
  /** The process that serves the request (its CPU time is charged to the target). */
  pid: number;
  /** The bare forwarder sends requests to the origin without the guard's X-Guard-Verified. */
  unverifiedExpected?: boolean;
}

async function count(child: Child): Promise<{ requests: number; duplicates?: number; unverified?: number }> {
  return child.ask({ type: "stats" });
}

/** Runs targets in alternating rounds at the same shape; checks every answer and every arrival. */
async function measureTargets(targets: Target[], shape: LoadShape): Promise<PathResult[]> {
  const samples = new Map<string, number[]>(targets.map((t) => [t.label, []]));
  const cpu = new Map<string, number>(targets.map((t) => [t.label, 0]));
  const pools = new Map(targets.map((t) => [t.label, Array.from({ length: shape.warm + shape.measure }, (_, i) => t.make(i))]));
  const used = new Map(targets.map((t) => [t.label, 0]));
  const take = (label: string, n: number) => {
    const from = used.get(label)!;
    used.set(label, from + n);
    return pools.get(label)!.slice(from, from + n);
  };
  const run = async (target: Target, n: number, measured: boolean) => {
    const before = await count(target.counter.child);
    const cpuBefore = cpuMs(target.pid);
    const result = await runLoad({ url: target.url, pool: take(target.label, n), connections: shape.connections, overallRate: shape.rate, amount: n });
    const cpuAfter = cpuMs(target.pid);
    const after = await count(target.counter.child);
    const ok = result.status["200"] ?? 0;
    if (ok !== n || result.errors !== 0) throw new Error(`${target.label}: ${JSON.stringify(result.status)}, ${result.errors} errors, of ${n}`);
    if (after.requests - before.requests !== n) throw new Error(`${target.label}: ${after.requests - before.requests} of ${n} reached the app`);
    if ((after.duplicates ?? 0) !== (before.duplicates ?? 0)) throw new Error(`${target.label}: the guard saw duplicates in distinct events`);
    if (!target.unverifiedExpected && (after.unverified ?? 0) !== (before.unverified ?? 0)) throw new Error(`${target.label}: requests reached the origin unverified`);
    if (measured) {
      samples.get(target.label)!.push(...result.latenciesMs);
      cpu.set(target.label, cpu.get(target.label)! + (cpuAfter - cpuBefore));
    }
  };
  for (const target of targets) await run(target, shape.warm, false);
  const perRound = Math.floor(shape.measure / ROUNDS);
  for (let round = 0; round < ROUNDS; round++) for (const target of targets) await run(target, perRound, true);
  return targets.map((t) => {
    const s = summary(samples.get(t.label)!);
    return { label: t.label, ...s, cpuUs: (cpu.get(t.label)! / s.n) * 1000 };
  });
}

function formRequest(account: Account, baseUrl: string, path: string, pairs: Pairs): SignedRequest {
  return signedFormRequest(account.token, baseUrl, path, pairs);
}

/** A guard under test, and where its Durable Object storage lives (tmpfs, or a disk directory). */
export interface GuardOnStorage {
  storage: string;
  guard: RunningGuard;
}

export interface WebhookPathResult {
  /** Per guard (in the order given): its inbound SMS and status callback. */
  guards: Array<{ storage: string; sms: PathResult; status: PathResult }>;
  /** The runtime's floor: a bare Worker that only forwards the same requests to the same origin. */
  bare: { sms: PathResult; status: PathResult };
  /** Users' alternative (informational): Express validating with twilio.webhook(). */
  express: { sms: PathResult; status: PathResult };
}

/**
 * Goals 1 and 2 of the webhook path: each guard (one per storage), the bare forwarding Worker and
 * Express, inbound SMS and status callbacks, all measured in the same alternating rounds.
 */
export async function benchWebhookPath(world: World, guards: readonly GuardOnStorage[], shape: LoadShape): Promise<WebhookPathResult> {
  const parent = world.parent;
  const viaGuard = { child: world.origin, field: "requests" as const };
  const viaExpress = { child: world.express, field: "requests" as const };
  const sms = (url: string, path: string) => () => formRequest(parent, url, path, inboundSms(parent.sid));
  const status = (url: string, path: string) => () => formRequest(parent, url, path, messageStatus(parent.sid, sid("SM"), "sent"));
  const floor = await startBareForwarder(world.origin.url);
  try {
    const targets: Target[] = [];
    for (const { storage, guard } of guards) {
      targets.push({ label: `guard sms ${storage}`, url: guard.url, make: sms(guard.url, "/webhooks/sms"), counter: viaGuard, pid: guard.pid });
      targets.push({ label: `guard status ${storage}`, url: guard.url, make: status(guard.url, "/webhooks/status"), counter: viaGuard, pid: guard.pid });
    }
    targets.push(
      { label: "bare sms", url: floor.url, make: sms(floor.url, "/webhooks/sms"), counter: viaGuard, pid: floor.pid, unverifiedExpected: true },
      { label: "bare status", url: floor.url, make: status(floor.url, "/webhooks/status"), counter: viaGuard, pid: floor.pid, unverifiedExpected: true },
      { label: "express sms", url: world.express.url, make: sms(world.express.url, "/sms"), counter: viaExpress, pid: world.express.pid },
      { label: "express status", url: world.express.url, make: status(world.express.url, "/status"), counter: viaExpress, pid: world.express.pid },
    );
    const results = await measureTargets(targets, shape);
    const at = (label: string) => results.find((r) => r.label === label)!;
    return {
      guards: guards.map(({ storage }) => ({ storage, sms: at(`guard sms ${storage}`), status: at(`guard status ${storage}`) })),
      bare: { sms: at("bare sms"), status: at("bare status") },
      express: { sms: at("express sms"), status: at("express status") },
    };
  } finally {
    await floor.stop();
  }
}

/**
 * The same inbound SMS on one connection: each request waits for nobody else's, so the latency is the
 * path's own (guard: HTTP in, verify, Durable Object, origin hop; the bare Worker: HTTP in, origin
 * hop), without the queueing behind other requests' CPU time that `connections` > 1 adds on this one
 * machine.
 */
export async function benchOneConnection(world: World, guard: RunningGuard, shape: LoadShape) {
  const parent = world.parent;
  const viaOrigin = { child: world.origin, field: "requests" as const };
  const floor = await startBareForwarder(world.origin.url);
  try {
    const [guardSms, bareSms] = await measureTargets(
      [
        { label: "guard sms, 1 connection", url: guard.url, make: () => formRequest(parent, guard.url, "/webhooks/sms", inboundSms(parent.sid)), counter: viaOrigin, pid: guard.pid },
        { label: "bare sms, 1 connection", url: floor.url, make: () => formRequest(parent, floor.url, "/webhooks/sms", inboundSms(parent.sid)), counter: viaOrigin, pid: floor.pid, unverifiedExpected: true },
      ],
      shape,
    );
    return { guardSms: guardSms!, bareSms: bareSms! };
  } finally {
    await floor.stop();
  }
}

export async function benchManyAccounts(world: World, guard: RunningGuard, shape: LoadShape, warmConnections: number) {
  const many = world.many;
  const few = many.slice(0, 10);
  // Warm every cache a long-running deployment would have warm: each account's token in the isolate's
  // TokenCache (one GuardDirectory call per account) and each account's AccountGuard Durable Object
  // (created, SQLite schema, registered with the directory). One inbound SMS per account.
  const warmPool = many.map((a) => formRequest(a, guard.url, "/webhooks/sms", inboundSms(a.sid)));
  const before = (await count(world.origin)).requests;
  const warm = await runLoad({ url: guard.url, pool: warmPool, connections: warmConnections, amount: warmPool.length });
  const warmMs = warm.elapsedMs;
  const reached = (await count(world.origin)).requests - before;
  if ((warm.status["200"] ?? 0) !== many.length || reached !== many.length) {
    throw new Error(`warming ${many.length} accounts: ${JSON.stringify(warm.status)}, ${reached} reached the origin`);
  }
  // Creating 10,000 Durable Objects leaves workerd busy for a while afterwards (its own housekeeping
  // and GC); the measurement starts once it is idle again (< 5% of a core over a second), as a
  // long-running deployment would be.
  const settleStarted = performance.now();
  for (let i = 0; i < 30; i++) {
    const before = cpuMs(guard.pid);
    await new Promise((r) => setTimeout(r, 1000));
    if (cpuMs(guard.pid) - before < 50) break;
  }
  const settleMs = performance.now() - settleStarted;
  // Requests go round-robin over the accounts from a random start, so the 10,000-account runs touch
  // each account at most once per run: every event finds its Durable Object as idle as it gets.
  const offset = Math.floor(Math.random() * many.length);
  const pick = (accounts: Account[], i: number) => accounts[(offset + i) % accounts.length]!;
  const viaGuard = { child: world.origin, field: "requests" as const };
  const viaExpress = { child: world.express, field: "requests" as const };
  const results = await measureTargets(
    [
      { label: "guard 10", url: guard.url, make: (i) => { const a = pick(few, i); return formRequest(a, guard.url, "/webhooks/sms", inboundSms(a.sid)); }, counter: viaGuard, pid: guard.pid },
      { label: "guard 10k", url: guard.url, make: (i) => { const a = pick(many, i); return formRequest(a, guard.url, "/webhooks/sms", inboundSms(a.sid)); }, counter: viaGuard, pid: guard.pid },
      { label: "express 10k", url: world.express.url, make: (i) => { const a = pick(many, i + shape.warm + shape.measure); return formRequest(a, world.express.url, "/sms", inboundSms(a.sid)); }, counter: viaExpress, pid: world.express.pid },
    ],
    shape,
  );
  return { warmMs, settleMs, warmAccounts: many.length, guard10: results[0]!, guard10k: results[1]!, express10k: results[2]! };
}

/**
 * First webhooks of subaccounts the guard has never seen, in a burst: GuardDirectory learns them from
 * one account listing at Twilio (at most one a minute, LISTING_MIN_INTERVAL_MS); `lookups` counts listings.
 */
export async function benchColdSubaccounts(world: World, n: number, stateDir?: string) {
  const fresh = world.addUnknownSubaccounts(n);
  const guard = await world.startGuard({ GUARD_POLICY: JSON.stringify({ limits: [{ window: "month", usd: 1_000_000_000 }] }) }, stateDir !== undefined ? { stateDir } : {});
  try {
    const lookupsBefore = world.standin.requests.filter((r) => r.purpose === "list-accounts").length;
    const pool = fresh.map((a) => formRequest(a, guard.url, "/webhooks/sms", inboundSms(a.sid)));
    const result = await runLoad({ url: guard.url, pool, connections: 8, amount: pool.length });
    const lookups = world.standin.requests.filter((r) => r.purpose === "list-accounts").length - lookupsBefore;
    return { n, ok: result.status["200"] ?? 0, unavailable: result.status["503"] ?? 0, status: result.status, lookups };
  } finally {
    await guard.stop();
  }
}
