// `node bench/ab.ts <treeA> <treeB> many [rounds] [per-round]`: section 5's traffic (inbound SMS spread
// over many subaccounts, each account's event landing on an AccountGuard instance that was evicted since
// its last event) against two trees at once, each in its own workerd, from the same prepared directory.
//
// Both guards are warmed as section 5 warms its guard (one inbound SMS per subaccount: its token in the
// isolate's TokenCache, its AccountGuard created and registered), then left idle until workerd is idle
// and at least EVICTED_AFTER_MS have passed, so that every measured event finds its Durable Object evicted.
// Each round sends `per-round` events to each tree (both at once with AB_PARALLEL=1, else A B, B A, …),
// every account at most once over the whole run, then the same number spread over only 10 accounts (warm
// instances): the paired ratios of B's CPU per request to A's, per kind of traffic, are the figures to
// read; each tree's spread/10 CPU ratio is printed beside them.
import { inboundSms, signedFormRequest } from "./events.ts";
import type { RunningGuard } from "./guard.ts";
import { runLoad, summary } from "./load.ts";
import { cpuMs } from "./profile.ts";
import { median } from "./stats.ts";
import { createWorld, type Account } from "./world.ts";

/** Longer than the 10 s after which an idle Durable Object is evicted (workerd, and production's hibernation). */
const EVICTED_AFTER_MS = 15_000;
const TEN = 10;
const NO_TRIP_POLICY = JSON.stringify({ limits: [{ window: "month", usd: 1_000_000_000 }] });

interface Side {
  tree: string;
  guard: RunningGuard;
  spread: number[];
  few: number[];
  p99: number[];
}

export async function manyAb(trees: readonly [string, string], rounds: number, perRound: number, parallel: boolean): Promise<void> {
  const accounts = rounds * perRound;
  const world = await createWorld({ manyAccounts: accounts, tripAccounts: 0 });
  const sides: Side[] = [];
  try {
    for (const tree of trees) sides.push({ tree, guard: await world.startGuard({ GUARD_POLICY: NO_TRIP_POLICY }, { workerRoot: tree }), spread: [], few: [], p99: [] });
    console.log(`many: ${accounts} subaccounts; workerd pids ${sides.map((s) => `${s.tree} ${s.guard.pid}`).join(", ")}`);
    const sms = (g: RunningGuard, a: Account) => signedFormRequest(a.token, g.url, "/webhooks/sms", inboundSms(a.sid));
    const connections = parallel ? 8 : 16;
    const started = performance.now();
    await Promise.all(
      sides.map(async (s) => {
        const pool = world.many.map((a) => sms(s.guard, a));
        const r = await runLoad({ url: s.guard.url, pool, connections: 8, amount: pool.length });
        if ((r.status["200"] ?? 0) !== pool.length) throw new Error(`${s.tree}: warming: ${JSON.stringify(r.status)}; errors logged: ${s.guard.errors.slice(0, 3).join(" | ")}`);
      }),
    );
    const warmed = performance.now();
    console.log(`many: warmed in ${((warmed - started) / 1000).toFixed(1)} s`);
    for (let i = 0; i < 60; i++) {
      const before = sides.map((s) => cpuMs(s.guard.pid));
      await new Promise((r) => setTimeout(r, 1000));
      const busy = sides.some((s, j) => cpuMs(s.guard.pid) - before[j]! >= 50);
      if (!busy && performance.now() - warmed >= EVICTED_AFTER_MS) break;
    }
    const measure = async (s: Side, pool: ReturnType<typeof sms>[], into: number[]) => {
      const before = cpuMs(s.guard.pid);
      const r = await runLoad({ url: s.guard.url, pool, connections, amount: pool.length });
      if ((r.status["200"] ?? 0) !== pool.length) throw new Error(`${s.tree}: ${JSON.stringify(r.status)}`);
      into.push(((cpuMs(s.guard.pid) - before) / pool.length) * 1000);
      return summary(r.latenciesMs).p99;
    };
    for (let round = 0; round < rounds; round++) {
      const spreadAccounts = world.many.slice(round * perRound, (round + 1) * perRound);
      const fewAccounts = world.many.slice(0, TEN);
      const order = parallel || round % 2 === 0 ? sides : [...sides].reverse();
      const run = async (s: Side) => {
        s.p99.push(await measure(s, spreadAccounts.map((a) => sms(s.guard, a)), s.spread));
        await measure(s, Array.from({ length: perRound }, (_, i) => sms(s.guard, fewAccounts[i % TEN]!)), s.few);
      };
      if (parallel) await Promise.all(order.map(run));
      else for (const s of order) await run(s);
    }
    for (const s of sides) {
      const ratio = s.spread.map((c, i) => c / s.few[i]!);
      console.log(
        `${s.tree}: many: workerd CPU ${median(s.spread).toFixed(0)} µs per request spread over ${accounts} accounts (rounds: ${s.spread.map((c) => c.toFixed(0)).join(", ")}), ` +
          `${median(s.few).toFixed(0)} over ${TEN} (rounds: ${s.few.map((c) => c.toFixed(0)).join(", ")}); spread/${TEN} ${median(ratio).toFixed(2)}; spread p99 median ${median(s.p99).toFixed(1)} ms`,
      );
    }
    const [a, b] = sides as [Side, Side];
    const paired = (x: number[], y: number[]) => x.map((v, i) => y[i]! / v);
    const show = (r: number[]) => `median ${median(r).toFixed(3)} (rounds: ${r.map((v) => v.toFixed(2)).join(", ")})`;
    console.log(`B/A CPU per request spread over ${accounts} accounts, paired by round: ${show(paired(a.spread, b.spread))}`);
    console.log(`B/A CPU per request over ${TEN} accounts, paired by round: ${show(paired(a.few, b.few))}`);
  } finally {
    for (const s of sides) await s.guard.stop();
    await world.close();
  }
}
