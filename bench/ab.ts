// `node bench/ab.ts <treeA> <treeB> [sms|status|do|egress] [rounds] [per-round]`: what a change to src/ does to the guard's cost.
// A tree is a directory with wrangler.toml and src/ (e.g. `git archive HEAD src wrangler.toml | tar -x
// -C /tmp/a`, then patch a copy). Both guards run at once, each in its own workerd, behind the same
// origin; rounds alternate A B, B A, A B, … (3000 signed webhooks each by default, 16 connections, as
// fast as answered), so a noisy moment hits both. Prints, per tree, the median over rounds of the
// workerd CPU time per request (from /proc) and of the requests per second, and the median over rounds
// of B's CPU per request divided by A's in the same round: on a shared machine whose speed drifts by
// tens of percent from one minute to the next, that paired ratio is the figure to read. `do` drives one account's AccountGuard
// directly instead (bench/do-driver.ts, 32 record() calls in flight): the Durable Object alone.
// `egress` sends twilio-node's messages.create request with an egress key through the REST egress gate
// to the Twilio stand-in (bench/lib/egress-load.ts; 4 connections, as section 6) and also prints the
// median over rounds of each round's p50 / p99 latency. `many` is section 5's traffic (bench/lib/many-ab.ts):
// each event on an evicted AccountGuard of its own subaccount, against the same count over 10 accounts.
// Tree A may be `bare`: the bare forwarding Worker (startBareForwarder, the runtime's floor of sections 2
// and 6) instead of a guard, for `sms`/`status`.
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { driverSource } from "./sections/breaker.ts";
import { startTwilioStandin } from "../dev/twilio-standin.ts";
import { startChild } from "./lib/child.ts";
import { inboundSms, messageStatus, sid, signedFormRequest } from "./lib/events.ts";
import { startBareForwarder, startGuard, type RunningGuard } from "./lib/guard.ts";
import { runLoad, summary } from "./lib/load.ts";
import { cpuMs } from "./lib/profile.ts";
import { median } from "./lib/stats.ts";
import { EGRESS_VARS, egressSend, prepareEgressAccount } from "./lib/egress-load.ts";
import { manyAb } from "./lib/many-ab.ts";

process.removeAllListeners("warning");
const BARE = "bare";
const [treeA, treeB] = [process.argv[2], process.argv[3]].map((t) => (t === undefined || t === BARE ? t : resolve(t)));
if (treeA === undefined || treeB === undefined) {
  console.error("usage: node bench/ab.ts <treeA|bare> <treeB> [sms|status|do|egress|many] [rounds]");
  process.exit(2);
}
const path = process.argv[4] ?? "sms";
const rounds = Number(process.argv[5] ?? 5);
const PER_ROUND = Number(process.argv[6] ?? (path === "many" ? 500 : 3000));
const PARALLEL = process.env.AB_PARALLEL === "1";
if (treeA === BARE && path !== "sms" && path !== "status") throw new Error("bare: only for sms and status");
if (path === "many") {
  await manyAb([treeA, treeB], rounds, PER_ROUND, PARALLEL);
  process.exit(0);
}
const PARENT = sid("AC");
const TOKEN = "bench-parent-token-not-a-secret";
const ADMIN_TOKEN = "bench-admin-token-not-a-secret";
const egress = path === "egress";

const standin = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN });
const origin = await startChild("origin-process.ts");
const vars = { TWILIO_ACCOUNT_SID: PARENT, ORIGIN_URL: origin.url, TWILIO_API_BASE: standin.url, GUARD_POLICY: JSON.stringify({ limits: [{ window: "month", usd: 1e9 }] }), ...(egress ? EGRESS_VARS : {}) };
const driver = path === "do" ? await driverSource() : undefined;
const guards: Array<{ tree: string; guard: RunningGuard; cpu: number[]; rate: number[]; p50: number[]; p99: number[]; sender: string; key: string; sends: number }> = [];
for (const tree of [treeA, treeB]) {
  if (tree === BARE) {
    const bare = await startBareForwarder(origin.url);
    const guard: RunningGuard = { ...bare, driverUrl: null, persist: "", logLines: 0, errors: [] };
    guards.push({ tree, guard, cpu: [], rate: [], p50: [], p99: [], sender: PARENT, key: "", sends: 0 });
    continue;
  }
  const guard = await startGuard({ vars, secrets: { TWILIO_AUTH_TOKEN: TOKEN, ...(egress ? { ADMIN_TOKEN } : {}) }, workerRoot: tree, ...(driver ? { driver } : {}) });
  const sender = egress ? standin.addSubaccount().sid : PARENT;
  const key = egress ? await prepareEgressAccount(guard.url, ADMIN_TOKEN, sender) : "";
  guards.push({ tree, guard, cpu: [], rate: [], p50: [], p99: [], sender, key, sends: 0 });
}
const connections = egress ? 4 : 16;
const expected = egress ? "201" : "200";
const driven = sid("AC");
/** n record() calls on one account through bench/do-driver.ts; returns the elapsed ms. */
async function drive(g: RunningGuard, n: number): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${g.driverUrl}/drive`, { method: "POST", body: JSON.stringify({ sid: driven, n, concurrency: 32, prefix: randomBytes(8).toString("hex") }) });
  if (!response.ok) throw new Error(`do-driver: ${response.status} ${await response.text()}`);
  return performance.now() - started;
}
const nextSend = (entry: (typeof guards)[number]) => egressSend(entry.sender, entry.key, entry.sends++);
const make = (g: RunningGuard) =>
  egress
    ? nextSend(guards.find((x) => x.guard === g)!)
    : path === "status"
    ? signedFormRequest(TOKEN, g.url, "/webhooks/status", messageStatus(PARENT))
    : signedFormRequest(TOKEN, g.url, "/webhooks/sms", inboundSms(PARENT));
try {
  for (const g of guards) {
    if (path === "do") await drive(g.guard, 1000);
    else {
      const warm = Array.from({ length: 1000 }, () => make(g.guard));
      await runLoad({ url: g.guard.url, pool: warm, connections, amount: warm.length });
    }
  }
  const measure = async (g: (typeof guards)[0], connections: number) => {
    const before = cpuMs(g.guard.pid);
    let elapsedMs: number;
    if (path === "do") elapsedMs = await drive(g.guard, PER_ROUND);
    else {
      const pool = Array.from({ length: PER_ROUND }, () => make(g.guard));
      const result = await runLoad({ url: g.guard.url, pool, connections, amount: PER_ROUND });
      if ((result.status[expected] ?? 0) !== PER_ROUND) throw new Error(`${g.tree}: ${JSON.stringify(result.status)}`);
      const latency = summary(result.latenciesMs);
      g.p50.push(latency.p50);
      g.p99.push(latency.p99);
      elapsedMs = result.elapsedMs;
    }
    const after = cpuMs(g.guard.pid);
    g.cpu.push(((after - before) / PER_ROUND) * 1000);
    g.rate.push((PER_ROUND / elapsedMs) * 1000);
  };
  for (let round = 0; round < rounds; round++) {
    // AB_PARALLEL=1: both trees loaded at the same time (8 connections each), so that whatever else the
    // machine runs at that moment slows both alike; otherwise one after the other, A B then B A.
    if (PARALLEL) await Promise.all(guards.map((g) => measure(g, Math.max(1, connections / 2))));
    else for (const g of round % 2 === 0 ? guards : [...guards].reverse()) await measure(g, connections);
  }
  for (const g of guards) {
    console.log(`${g.tree}: ${path}: workerd CPU ${median(g.cpu).toFixed(0)} µs per ${path === "do" ? "event" : "request"}, ${median(g.rate).toFixed(0)}/s (rounds: ${g.cpu.map((c) => c.toFixed(0)).join(", ")} µs)`);
    if (egress) console.log(`${g.tree}: ${path}: latency median of rounds p50 ${median(g.p50).toFixed(2)} ms, p99 ${median(g.p99).toFixed(2)} ms`);
  }
  const [a, b] = guards as [(typeof guards)[0], (typeof guards)[0]];
  const ratios = a.cpu.map((cpu, i) => b.cpu[i]! / cpu);
  console.log(`B/A CPU per ${path === "do" ? "event" : "request"}, paired by round: median ${median(ratios).toFixed(3)} (rounds: ${ratios.map((r) => r.toFixed(2)).join(", ")})`);
} finally {
  for (const g of guards) await g.guard.stop();
  await origin.stop();
  await standin.close();
}
process.exit(0);
