// `npm run bench`: the guard's benchmarks, on loopback, with the real Worker in workerd. See
// docs/benchmarks.md for what each number means and how it is measured.
//
//   npm run bench                        everything (a few minutes on 2 cores), prints the final table
//   npm run bench -- --only=verify,trip  sections: harness, verify, latency, many, hot, trip, egress
//   npm run bench -- --write-docs        also writes the table and machine into docs/benchmarks.md
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { benchHarness } from "./sections/harness.ts";
import { benchWebhookPath, benchOneConnection, benchColdSubaccounts, benchManyAccounts, type GuardOnStorage, type LoadShape, type PathResult } from "./sections/latency.ts";
import { awayFromMonthEnd, benchHotAccount, benchHotDurableObject, benchTripLatency, driverSource, eventsPolicy } from "./sections/breaker.ts";
import { benchVerification, VERIFY_TIMING } from "./sections/verify.ts";
import { benchEgress, type EgressResult } from "./sections/egress.ts";
import { formatTable, type Row } from "./lib/table.ts";
import { buildBundle, DISK_STATE_DIR, STATE_DIR, workerdVersion } from "./lib/guard.ts";
import { createWorld } from "./lib/world.ts";

// node:sqlite (used to prepare the directory's state) prints an ExperimentalWarning; nothing else is muted.
process.removeAllListeners("warning");
process.on("warning", (warning) => {
  if (warning.name !== "ExperimentalWarning") console.warn(warning);
});

const args = process.argv.slice(2);
/** How a storage directory is named in the table: tmpfs or disk, and the path. */
function storageName(dir: string): string {
  return `${dir.startsWith("/dev/shm") ? "tmpfs" : "disk"} (${dir})`;
}
const only = args.find((a) => a.startsWith("--only="))?.slice("--only=".length).split(",") ?? ["harness", "verify", "latency", "many", "hot", "trip", "egress"];
const writeDocs = args.includes("--write-docs");

/**
 * `--quick`: every section with sizes far too small to measure anything, for the test suite's smoke test
 * of the benchmark itself (test/node/bench.test.ts): it proves `npm run bench` still runs end to end and
 * its exactness checks hold. Its figures mean nothing and it never writes docs/benchmarks.md.
 */
const quick = args.includes("--quick");
if (quick && writeDocs) throw new Error("--quick figures are not measurements: not writing docs/benchmarks.md");
/** The shared load shape for (2) and (5): same generator, concurrency and rate on every side. */
const LATENCY: LoadShape = quick ? { connections: 2, rate: 100, warm: 20, measure: 100 } : { connections: 4, rate: 200, warm: 200, measure: 1600 };
/** The informational no-queueing row of (2): one connection, the same rate. */
const ONE_CONNECTION: LoadShape = quick ? { connections: 1, rate: 100, warm: 10, measure: 50 } : { connections: 1, rate: 200, warm: 100, measure: 800 };
const MANY_ACCOUNTS = quick ? 100 : 10_000;
const COLD_ACCOUNTS = quick ? 10 : 100;
const TRIP_ACCOUNTS = quick ? 5 : 50;
/** Both hot accounts (the Durable Object driven directly, and through the Worker) get warm + burst events. */
const HOT = quick ? { warm: 50, burst: 300, connections: 8 } : { warm: 500, burst: 6_000, connections: 32 };
const VERIFY = quick ? { measureMs: 30, rounds: 1 } : VERIFY_TIMING;
const HARNESS_REQUESTS = quick ? 20 : 300;
/**
 * Issue 15's goals for the webhook path, each a ratio to the bare forwarding Worker (the runtime's floor)
 * measured in the same run: inbound SMS p99 and workerd CPU per request ≤ 1.5×, status callbacks ≤ 1.2×
 * on both, 10,000 accounts vs 10 p99 ≤ 1.2×, and every never-seen subaccount's first webhook answered 200.
 * The egress gate's (section 6) and the breaker's (3, 4) are their own.
 */
const GOALS = { smsRatio: 1.5, statusRatio: 1.2, manySpread: 1.2, p99Ratio: 1.5, hotPerSec: 1000, tripP99Ms: 50, egressAddedP99Ms: 5 };
/** Section 6: twilio clients sending at once through the gate (and the bare Worker), warm-up, measured sends. */
const EGRESS = quick ? { concurrency: 2, warm: 10, measure: 40 } : { concurrency: 4, warm: 100, measure: 1200 };
/** The informational row of section 6: one client, one send after the other (no send waits for another's CPU time). */
const EGRESS_ONE = quick ? { concurrency: 1, warm: 5, measure: 20 } : { concurrency: 1, warm: 50, measure: 600 };
const NO_TRIP_POLICY = JSON.stringify({ limits: [{ window: "month", usd: 1_000_000_000 }] });

const started = performance.now();
const ms = (v: number) => `${v.toFixed(1)} ms`;
const perSec = (v: number) => `${Math.round(v).toLocaleString("en-US")}/s`;
const verdict = (pass: boolean) => (pass ? "PASS" : "MISS");
const log = (line: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}`);

const rows: Row[] = [];
const details: string[] = [];

function versionOf(pkg: string): string {
  const require = createRequire(import.meta.url);
  return (require(`${pkg}/package.json`) as { version: string }).version;
}

const machine = {
  nproc: cpus().length,
  cpu: cpus()[0]?.model.trim() ?? "unknown",
  node: process.version,
  workerd: workerdVersion(),
  wrangler: versionOf("wrangler"),
  miniflare: versionOf("miniflare"),
  twilio: versionOf("twilio"),
  express: versionOf("express"),
  autocannon: versionOf("autocannon"),
};
log(`machine: ${machine.nproc} × ${machine.cpu}; Node ${machine.node}; ${machine.workerd}`);
buildBundle();
log("bundle built (wrangler deploy --dry-run)");

if (only.includes("verify")) {
  const results = await benchVerification(VERIFY);
  const us = (perSec: number) => `${(1e6 / perSec).toFixed(1)} µs`;
  for (const r of results) {
    rows.push({
      section: "1 verification",
      what: r.name,
      measured: `${us(r.workerdPerSec)} per check in workerd vs twilio-node ${us(r.nodePerSec)} in Node (workerd/Node time ${(1 / r.ratio).toFixed(2)}×, median of ${VERIFY.rounds} paired rounds, range ${(1 / r.ratioRange[1]).toFixed(2)}–${(1 / r.ratioRange[0]).toFixed(2)}×); bare WebCrypto HMAC ${us(r.workerdHmacPerSec)}`,
      goal: "(informational: µs per check)",
      result: "",
    });
    log(`verify ${r.name}: workerd ${us(r.workerdPerSec)}, node ${us(r.nodePerSec)}, workerd HMAC alone ${us(r.workerdHmacPerSec)}`);
  }
}

const needWorld = only.some((s) => ["harness", "latency", "hot", "trip", "many", "egress"].includes(s));
if (needWorld) {
  const world = await createWorld({ manyAccounts: only.includes("many") ? MANY_ACCOUNTS : 10, tripAccounts: TRIP_ACCOUNTS });
  log(`stand-in with ${world.standin.accounts.size} accounts, directory seeded with ${world.prepared.seededTokens} tokens (${ms(world.prepared.ms)}); Durable Object storage in ${STATE_DIR}`);
  try {
    if (only.includes("harness")) {
      const r = await benchHarness(world, NO_TRIP_POLICY, HARNESS_REQUESTS);
      rows.push({ section: "0 harness", what: "one signed SMS at a time: dev/worker.ts (wrangler dev proxy + Miniflare entry) vs direct socket", measured: `p50 ${ms(r.harnessP50)} vs ${ms(r.directP50)}`, goal: "(why 1–5 use the direct socket)", result: "" });
      log(`harness: p50 via dev/worker.ts ${ms(r.harnessP50)}, direct ${ms(r.directP50)}`);
    }
    const us = (v: number) => `${Math.round(v).toLocaleString("en-US")} µs`;
    const side = (r: PathResult) => `p50 ${ms(r.p50)} p99 ${ms(r.p99)} (workerd CPU ${us(r.cpuUs)}/req)`;
    const expressSide = (r: PathResult) => `p50 ${ms(r.p50)} p99 ${ms(r.p99)} (CPU ${us(r.cpuUs)}/req)`;
    /** Where each guard's Durable Object storage lives: tmpfs, and a disk directory (fsync per commit). */
    const storages: Array<{ storage: string; stateDir: string }> = [{ storage: storageName(STATE_DIR), stateDir: STATE_DIR }];
    if (DISK_STATE_DIR !== STATE_DIR) storages.push({ storage: storageName(DISK_STATE_DIR), stateDir: DISK_STATE_DIR });
    if (only.includes("latency")) {
      const guards: GuardOnStorage[] = [];
      try {
        for (const { storage, stateDir } of storages) guards.push({ storage, guard: await world.startGuard({ GUARD_POLICY: NO_TRIP_POLICY }, { stateDir }) });
        const r = await benchWebhookPath(world, guards, LATENCY);
        for (const g of r.guards) {
          for (const [path, goal, guardSide, bareSide] of [
            ["inbound SMS (the DO's verdict is on the path)", GOALS.smsRatio, g.sms, r.bare.sms],
            ["status callback (DO write via waitUntil)", GOALS.statusRatio, g.status, r.bare.status],
          ] as const) {
            const p99Ratio = guardSide.p99 / bareSide.p99;
            const cpuRatio = guardSide.cpuUs / bareSide.cpuUs;
            rows.push({
              section: "2 webhook path",
              what: `${path}, Durable Object storage on ${g.storage}: guard vs the bare forwarding Worker`,
              measured: `guard ${side(guardSide)} / bare ${side(bareSide)}; p99 ratio ${p99Ratio.toFixed(2)}, CPU ratio ${cpuRatio.toFixed(2)}`,
              goal: `p99 and CPU ratios ≤ ${goal}`,
              result: verdict(p99Ratio <= goal && cpuRatio <= goal),
            });
            log(`webhook path ${path} (${g.storage}): guard ${side(guardSide)}; bare ${side(bareSide)}`);
          }
        }
        for (const [path, guardSide, expressSide_] of [
          ["inbound SMS", r.guards[0]!.sms, r.express.sms],
          ["status callback", r.guards[0]!.status, r.express.status],
        ] as const) {
          rows.push({
            section: "2 webhook path",
            what: `${path}: Express validating with twilio.webhook() (what users would do instead)`,
            measured: `Express ${expressSide(expressSide_)}; guard (${r.guards[0]!.storage}) p99 ratio to it ${(guardSide.p99 / expressSide_.p99).toFixed(2)}`,
            goal: "(informational)",
            result: "",
          });
        }
        const one = await benchOneConnection(world, guards[0]!.guard, ONE_CONNECTION);
        rows.push({ section: "2 webhook path", what: "inbound SMS on one connection (no request waits for another's CPU time)", measured: `guard ${side(one.guardSms)} / bare ${side(one.bareSms)}; p99 ratio ${(one.guardSms.p99 / one.bareSms.p99).toFixed(2)}`, goal: "(informational)", result: "" });
        log(`webhook path sms, one connection: guard ${side(one.guardSms)}; bare ${side(one.bareSms)}`);
        for (const { guard } of guards) if (guard.errors.length > 0) details.push(`Worker errors during the webhook-path runs: ${guard.errors.slice(0, 3).join(" | ")}`);
      } finally {
        for (const { guard } of guards) await guard.stop();
      }
    }
    if (only.includes("many")) {
      const guard = await world.startGuard({ GUARD_POLICY: NO_TRIP_POLICY });
      try {
        const r = await benchManyAccounts(world, guard, LATENCY, 16);
        const spread = r.guard10k.p99 / r.guard10.p99;
        const n = r.warmAccounts.toLocaleString("en-US");
        rows.push({ section: "5 many accounts", what: `guard: inbound SMS spread over ${n} subaccounts vs over 10 (same process, same load; storage on ${storageName(STATE_DIR)})`, measured: `${n}: ${side(r.guard10k)} / 10: ${side(r.guard10)}; p99 ratio ${spread.toFixed(2)}`, goal: `p99 ratio ≤ ${GOALS.manySpread}`, result: verdict(spread <= GOALS.manySpread) });
        rows.push({ section: "5 many accounts", what: `Express validating the same ${n}-account traffic`, measured: `Express ${expressSide(r.express10k)}; guard p99 ratio to it ${(r.guard10k.p99 / r.express10k.p99).toFixed(2)}`, goal: "(informational)", result: "" });
        details.push(
          `Many accounts: before measuring, every cache a long-running deployment has warm was warmed with one inbound SMS per subaccount (${n} requests, 16 connections, ${ms(r.warmMs)}, i.e. ${perSec((r.warmAccounts / r.warmMs) * 1000)} new accounts: token fetched from GuardDirectory into the isolate's TokenCache, AccountGuard created); then ${ms(r.settleMs)} until workerd was idle. The GuardDirectory itself was seeded with the tokens (see docs).`,
        );
        log(`many: warm ${ms(r.warmMs)}, settle ${ms(r.settleMs)}; guard10 p99 ${ms(r.guard10.p99)}, guard10k p99 ${ms(r.guard10k.p99)}, express10k p99 ${ms(r.express10k.p99)}`);
        if (guard.errors.length > 0) details.push(`Worker errors during the many-accounts runs: ${guard.errors.slice(0, 3).join(" | ")}`);
      } finally {
        await guard.stop();
      }
      // The cold start runs for a parent with a few known subaccounts: the directory's listing reads at
      // most MAX_LIST_PAGES pages of 1,000 (src/twilio/rest.ts), fewer than the 10,000 of `world`.
      const coldWorld = await createWorld({ manyAccounts: 10, tripAccounts: 0 });
      try {
        for (const { storage, stateDir } of storages) {
          const c = await benchColdSubaccounts(coldWorld, COLD_ACCOUNTS, stateDir);
          rows.push({
            section: "5 many accounts",
            what: `cold start: first webhooks of ${c.n} subaccounts the guard has never seen, 8 at a time (storage on ${storage})`,
            measured: `${c.ok} answered 200, ${c.unavailable} answered 503${c.ok + c.unavailable < c.n ? `, others ${JSON.stringify(c.status)}` : ""}; ${c.lookups} account-list request${c.lookups === 1 ? "" : "s"} (the directory's subaccount listing) reached Twilio`,
            goal: `all ${c.n} answered 200`,
            result: verdict(c.ok === c.n),
          });
          log(`cold (${storage}): ${JSON.stringify(c.status)}, ${c.lookups} listings`);
        }
      } finally {
        await coldWorld.close();
      }
    }
    if (only.includes("hot")) {
      await awayFromMonthEnd(120_000);
      const policy = { GUARD_POLICY: eventsPolicy(HOT.warm + HOT.burst) };
      const driver = await driverSource();
      const guard = await world.startGuard(policy, { driver });
      const burst = HOT.burst.toLocaleString("en-US");
      try {
        const d = await benchHotDurableObject(world, guard, HOT.warm, HOT.burst, HOT.connections);
        rows.push({ section: "3 hot account", what: `the account's Durable Object: ${burst} record() calls from a Worker in the same workerd, ${d.connections} in flight`, measured: `${perSec(d.eventsPerSec)} (${ms(d.elapsedMs)})`, goal: "≥ 1,000/s", result: verdict(d.eventsPerSec >= GOALS.hotPerSec) });
        rows.push({ section: "3 hot account", what: "its ledger count = events sent", measured: d.countCheck, goal: "exact", result: verdict(d.exact) });
        log(`hot DO: ${perSec(d.eventsPerSec)}; ${d.countCheck}`);
        const r = await benchHotAccount(world, guard, HOT.warm, HOT.burst, HOT.connections);
        rows.push({ section: "3 hot account", what: `through the whole Worker (HTTP, verify, DO, origin): ${burst} signed SMS, ${r.connections} connections, no rate limit`, measured: `${perSec(r.eventsPerSec)} (${ms(r.elapsedMs)})`, goal: "(informational: one workerd thread runs the Worker, the DO and the outbound hop here)", result: "" });
        rows.push({ section: "3 hot account", what: "its ledger count = events sent", measured: r.countCheck, goal: "exact", result: verdict(r.exact) });
        log(`hot via Worker: ${perSec(r.eventsPerSec)}; ${r.countCheck}`);
      } finally {
        await guard.stop();
      }
      if (DISK_STATE_DIR !== STATE_DIR) {
        const onDisk = await world.startGuard(policy, { driver, stateDir: DISK_STATE_DIR });
        try {
          world.standin.requests.splice(0); // the same subaccount is driven again in a fresh state
          const d = await benchHotDurableObject(world, onDisk, HOT.warm, HOT.burst, HOT.connections);
          rows.push({ section: "3 hot account", what: `the same Durable Object run, its SQLite on disk (${DISK_STATE_DIR}: fsync per commit)`, measured: `${perSec(d.eventsPerSec)}; ${d.exact ? "count exact" : d.countCheck}`, goal: "(informational)", result: "" });
          log(`hot DO on disk: ${perSec(d.eventsPerSec)}`);
        } finally {
          await onDisk.stop();
        }
      }
    }
    if (only.includes("trip")) {
      await awayFromMonthEnd(60_000);
      const guard = await world.startGuard({ GUARD_POLICY: eventsPolicy(1) });
      try {
        const r = await benchTripLatency(world, guard, world.trip);
        rows.push({ section: "4 trip latency", what: `${r.trips} subaccounts with events: 1; sending the 2nd event → suspension request at the Twilio stand-in`, measured: `p50 ${ms(r.p50)} p99 ${ms(r.p99)} (max ${ms(r.max)}); the blocked answer itself p50 ${ms(r.answerP50)} p99 ${ms(r.answerP99)}`, goal: "p99 ≤ 50 ms", result: verdict(r.p99 <= GOALS.tripP99Ms) });
        log(`trip: p50 ${ms(r.p50)} p99 ${ms(r.p99)} max ${ms(r.max)}`);
      } finally {
        await guard.stop();
      }
    }
    if (only.includes("egress")) {
      const egressVars = { GUARD_POLICY: NO_TRIP_POLICY, EGRESS_MODE: "enforce", RECONCILE_INTERVAL_S: "0" };
      const us = (v: number) => `${Math.round(v).toLocaleString("en-US")} µs`;
      const sides = (r: EgressResult) =>
        `gate p50 ${ms(r.gate.p50)} p99 ${ms(r.gate.p99)} (workerd CPU ${us(r.gate.cpuUs)}/send) / bare p50 ${ms(r.bare.p50)} p99 ${ms(r.bare.p99)} (CPU ${us(r.bare.cpuUs)}/send) (n=${r.gate.n} each); p99 ratio ${(r.gate.p99 / r.bare.p99).toFixed(2)}, +${ms(r.gate.p99 - r.bare.p99)} at p99`;
      const guard = await world.startGuard(egressVars);
      try {
        const r = await benchEgress(world, guard, EGRESS);
        const ratio = r.gate.p99 / r.bare.p99;
        const added = r.gate.p99 - r.bare.p99;
        const pass = ratio <= GOALS.p99Ratio && added <= GOALS.egressAddedP99Ms;
        rows.push({
          section: "6 egress gate",
          what: `twilio client messages.create() with an egress key, ${EGRESS.concurrency} at a time: gate vs a bare Worker forwarding /twilio/* to the same stand-in`,
          measured: sides(r),
          goal: "p99 ratio ≤ 1.5 and ≤ 5 ms added",
          result: verdict(pass),
        });
        const exact = r.arrived === r.sent && r.counted === r.sent / 2;
        rows.push({ section: "6 egress gate", what: "every send reached the stand-in once; the ledger counted each gate send once", measured: `${r.arrived}/${r.sent} arrived, ${r.counted}/${r.sent / 2} counted`, goal: "exact", result: verdict(exact) });
        log(`egress: gate p50 ${ms(r.gate.p50)} p99 ${ms(r.gate.p99)} (${us(r.gate.cpuUs)}); bare p50 ${ms(r.bare.p50)} p99 ${ms(r.bare.p99)} (${us(r.bare.cpuUs)}); ${r.arrived}/${r.sent} arrived, ${r.counted} counted`);
        const one = await benchEgress(world, guard, EGRESS_ONE);
        rows.push({
          section: "6 egress gate",
          what: "the same, one client sending one message after the other",
          measured: `${sides(one)}, +${ms(one.gate.p50 - one.bare.p50)} at p50`,
          goal: "(informational)",
          result: "",
        });
        log(`egress one client: gate p50 ${ms(one.gate.p50)} p99 ${ms(one.gate.p99)}; bare p50 ${ms(one.bare.p50)} p99 ${ms(one.bare.p99)}`);
      } finally {
        await guard.stop();
      }
      if (DISK_STATE_DIR !== STATE_DIR) {
        const onDisk = await world.startGuard(egressVars, { stateDir: DISK_STATE_DIR });
        try {
          const d = await benchEgress(world, onDisk, EGRESS);
          const exact = d.arrived === d.sent && d.counted === d.sent / 2;
          rows.push({ section: "6 egress gate", what: `the goal row again, the gate's Durable Object storage on disk (${DISK_STATE_DIR}: fsync per commit)`, measured: `${sides(d)}; ${exact ? "counts exact" : `${d.arrived}/${d.sent} arrived, ${d.counted}/${d.sent / 2} counted`}`, goal: "(informational)", result: "" });
          log(`egress on disk: gate p50 ${ms(d.gate.p50)} p99 ${ms(d.gate.p99)} (${us(d.gate.cpuUs)}); bare p50 ${ms(d.bare.p50)} p99 ${ms(d.bare.p99)}`);
        } finally {
          await onDisk.stop();
        }
      }
    }
    if (world.standin.violations.length > 0) details.push(`Twilio stand-in shape violations: ${world.standin.violations.slice(0, 5).join(" | ")}`);
  } finally {
    await world.close();
  }
}

const totalS = (performance.now() - started) / 1000;
const table = formatTable(rows);
const machineLine = `${machine.nproc} × ${machine.cpu}, Node ${machine.node}, ${machine.workerd} (wrangler ${machine.wrangler}, miniflare ${machine.miniflare}), twilio ${machine.twilio}, express ${machine.express}, autocannon ${machine.autocannon}`;
console.log(`\n${table}\n`);
for (const d of details) console.log(d);
console.log(`machine: ${machineLine}`);
console.log(`total: ${totalS.toFixed(0)} s${quick ? " (--quick: a smoke test, the figures mean nothing)" : ""}`);

if (writeDocs) {
  const docs = fileURLToPath(new URL("../docs/benchmarks.md", import.meta.url));
  const text = readFileSync(docs, "utf8");
  const block = [
    "<!-- bench:results:start -->",
    `Run of ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, \`npm run bench\` (${totalS.toFixed(0)} s).`,
    "",
    `Machine: ${machineLine}.`,
    "",
    table,
    "",
    ...details.map((d) => `${d}\n`),
    "<!-- bench:results:end -->",
  ].join("\n");
  const updated = text.replace(/<!-- bench:results:start -->[\s\S]*<!-- bench:results:end -->/, block);
  if (updated === text && !text.includes(block)) throw new Error("docs/benchmarks.md has no bench:results markers");
  writeFileSync(docs, updated);
  console.log("docs/benchmarks.md updated");
}
// Everything started here has been stopped; don't wait for idle keep-alive timers of the HTTP clients.
process.exit(0);
