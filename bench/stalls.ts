// `node bench/stalls.ts [sends] [warm]`: where the egress gate's p99 tail comes from (docs/benchmarks.md,
// section 6, "The gate's own tail").
//
// Sends twilio-node's messages.create request with an egress key through the gate (bench/lib/egress-load.ts;
// STALLS_TARGET=bare: through the bare forwarding Worker, with the parent's credentials), `sends` after `warm`
// (default 3,000 after 1,000), 4 at a time in a closed loop, and records each send's start and end on the
// monotonic clock. A stall is a moment when every send in flight waits together: the slow sends (over
// STALL_FACTOR × the median and STALL_MIN_MS) are grouped by overlap, and each group is printed with what
// happened meanwhile:
//   - workerd's main thread and this process's (/proc/<pid>/schedstat): time on a CPU and time waiting for
//     one, so a stall of workerd's own work (it ran) is told apart from the machine's (it waited);
//   - workerd's own lines: V8's flags go to workerd (STALLS_V8_FLAGS, default --trace-gc-nvp: one JSON
//     line per GC, which also gives the GC accounting printed at the end: scavenges and major GCs per
//     1,000 sends, and per send the bytes allocated in the young generation, promoted, and gained by the
//     old generation and the embedder's (workerd's C++) heap, the garbage only a major GC frees);
//   - the account's Durable Object's SQLite files, polled every ~0.5 ms from a worker thread: the WAL's
//     size and its header's checkpoint sequence and salt (a change: the WAL was reset after a checkpoint),
//     and the database file's size and mtime (a checkpoint writes pages back into it);
//   - this process's event loop: gaps of its 1 ms timer (is the client or the stand-in stalled?);
//   - STALLS_PERF=1: `perf record` of workerd on the monotonic clock (STALLS_PERF_ARGS, default
//     "-F 4000 -g"); each stall's samples by leaf symbol and by their innermost frames.
//   - STALLS_HEAP=1 (what a scavenge did not collect) or STALLS_HEAP=all (every allocation): V8's sampling
//     heap profiler on the Worker's isolate over the measured sends, bytes per send by allocating function
//     (src/ through the bundle's source map). The inspector attached adds its own (formatLog).
//     STALLS_HEAP_UNDER=<regex> also prints what was allocated below frames matching it ("name file:line"),
//     e.g. '^(reserveSends?|settleSends|#reserveOne) ' for the Durable Object's side of a send.
// Output: a summary per stall, and STALLS_OUT (default /tmp/stalls.json) with every send, poll and line.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { startTwilioStandin } from "../dev/twilio-standin.ts";
import { startChild } from "./lib/child.ts";
import { EGRESS_VARS, egressSend, prepareEgressAccount } from "./lib/egress-load.ts";
import { sid } from "./lib/events.ts";
import { buildBundle, durableObjectFiles, startBareForwarder, startGuard } from "./lib/guard.ts";
import { summary } from "./lib/load.ts";
import { Inspector } from "./lib/profile.ts";

process.removeAllListeners("warning");
const SENDS = Number(process.argv[2] ?? 3000);
const WARM = Number(process.argv[3] ?? 1000);
const CONNECTIONS = Number(process.env.STALLS_CONNECTIONS ?? 4);
/** A send is slow when it took this many times the median, and at least STALL_MIN_MS. */
const STALL_FACTOR = 3;
const STALL_MIN_MS = 15;
const OUT = process.env.STALLS_OUT ?? "/tmp/stalls.json";
const PERF = process.env.STALLS_PERF === "1";
/** 1: what survived a scavenge; all: every allocation. */
const HEAP = process.env.STALLS_HEAP === "1" || process.env.STALLS_HEAP === "all";
const HEAP_ALL = process.env.STALLS_HEAP === "all";
const INSPECTOR_PORT = 9300 + (process.pid % 500);
/** V8 flags for workerd (Miniflare's MINIFLARE_WORKERD_V8_FLAGS): by default one JSON line per GC. */
const V8_FLAGS = process.env.STALLS_V8_FLAGS ?? "--trace-gc-nvp";
if (V8_FLAGS) process.env.MINIFLARE_WORKERD_V8_FLAGS = V8_FLAGS;

const PARENT = sid("AC");
const TOKEN = "bench-parent-token-not-a-secret";
const ADMIN_TOKEN = "bench-admin-token-not-a-secret";
const now = () => Number(process.hrtime.bigint()) / 1e6; // CLOCK_MONOTONIC, ms

const logs: Array<{ t: number; message: string }> = [];
const standin = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN });
const origin = await startChild("origin-process.ts");
const TARGET = process.env.STALLS_TARGET ?? "gate";
if (TARGET !== "gate" && TARGET !== "bare") throw new Error("STALLS_TARGET: gate or bare");
const onLog = (_level: string, message: string) => {
  if (!message.startsWith("{")) logs.push({ t: now(), message: message.slice(0, 4000) });
};
const guard = TARGET === "bare" ? null : await startGuard({
  vars: { TWILIO_ACCOUNT_SID: PARENT, ORIGIN_URL: origin.url, TWILIO_API_BASE: standin.url, GUARD_POLICY: JSON.stringify({ limits: [{ window: "month", usd: 1e9 }] }), ...EGRESS_VARS },
  secrets: { TWILIO_AUTH_TOKEN: TOKEN, ADMIN_TOKEN },
  ...(HEAP ? { inspectorPort: INSPECTOR_PORT } : {}),
  onLog,
});
// The bare Worker forwards what it gets: its sends carry the parent's own credentials (as in section 6).
const bare = guard === null ? await startBareForwarder(standin.url, "^\\/twilio\\/[^\\/]+", { onLog, ...(HEAP ? { inspectorPort: INSPECTOR_PORT } : {}) }) : null;
const target = { url: (guard ?? bare)!.url, pid: (guard ?? bare)!.pid };
const sender = guard ? standin.addSubaccount().sid : PARENT;
const key = guard ? await prepareEgressAccount(guard.url, ADMIN_TOKEN, sender) : TOKEN;

interface Send {
  i: number;
  start: number;
  end: number;
  status: number;
}
async function run(n: number, record: Send[] | null, offset: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (next < n) {
        const i = next++;
        const req = egressSend(sender, key, offset + i);
        const start = now();
        const response = await fetch(target.url + req.path, { method: "POST", headers: req.headers, body: req.body });
        await response.arrayBuffer();
        record?.push({ i, start, end: now(), status: response.status });
      }
    }),
  );
}

// The account's SQLite file (the egress sender's AccountGuard; the directory has its own class).
await run(WARM, null, 0);
const files = guard ? durableObjectFiles(guard.persist, "AccountGuard") : [];
if (guard && files.length !== 1) throw new Error(`expected one AccountGuard database, found ${files.join(", ")}`);
const db = files[0] ?? null;

// Poller thread: the WAL's size and header, the database's size and mtime, each time one changes.
const poller = new Worker(
  `const { parentPort, workerData } = require("node:worker_threads");
   const fs = require("node:fs");
   const { db, pids } = workerData;
   const sched = [];
   const readSched = (pid) => { try { const [cpu, delay] = fs.readFileSync("/proc/" + pid + "/schedstat", "utf8").split(" "); return [Number(cpu) / 1e6, Number(delay) / 1e6]; } catch { return [NaN, NaN]; } };
   const header = Buffer.alloc(32);
   const sleeper = new Int32Array(new SharedArrayBuffer(4));
   const samples = [];
   let last = "";
   let stop = false;
   parentPort.on("message", () => { stop = true; });
   const tick = () => {
     for (let k = 0; k < 50 && !stop; k++) {
       sched.push([Number(process.hrtime.bigint()) / 1e6, ...pids.flatMap(readSched)]);
       if (db !== null) {
       let walSize = -1, ckpt = -1, salt = -1;
       try {
         const fd = fs.openSync(db + "-wal", "r");
         walSize = fs.fstatSync(fd).size;
         if (fs.readSync(fd, header, 0, 32, 0) === 32) { ckpt = header.readUInt32BE(12); salt = header.readUInt32BE(16); }
         fs.closeSync(fd);
       } catch {}
       const d = fs.statSync(db, { bigint: true });
       const key = walSize + "/" + ckpt + "/" + salt + "/" + d.size + "/" + d.mtimeNs;
       if (key !== last) {
         last = key;
         samples.push({ t: Number(process.hrtime.bigint()) / 1e6, walSize, ckpt, salt, dbSize: Number(d.size), dbMtime: Number(d.mtimeNs / 1000n) / 1000 });
       }
       }
       Atomics.wait(sleeper, 0, 0, 0.5);
     }
     if (stop) parentPort.postMessage({ samples, sched }); else setImmediate(tick);
   };
   tick();`,
  { eval: true, workerData: { db, pids: [target.pid, process.pid] } },
);

// The benchmark process's own event loop: gaps between 1 ms timer ticks.
const loopGaps: Array<{ t: number; gapMs: number }> = [];
let lastTick = now();
const ticker = setInterval(() => {
  const t = now();
  if (t - lastTick > 8) loopGaps.push({ t, gapMs: t - lastTick });
  lastTick = t;
}, 1);

const perfData = "/tmp/stalls.perf.data";
let perfProcess: ReturnType<typeof spawn> | null = null;
if (PERF) {
  const args = (process.env.STALLS_PERF_ARGS ?? "-F 4000 -g").split(" ");
  perfProcess = spawn("/usr/bin/perf", ["record", "-k", "CLOCK_MONOTONIC", ...args, "-p", String(target.pid), "-o", perfData], { stdio: ["ignore", "ignore", "pipe"] });
  await new Promise((r) => setTimeout(r, 1000));
}

let inspector: Inspector | null = null;
if (HEAP) {
  inspector = await Inspector.connect(INSPECTOR_PORT, guard ? "core:user:twilio-edge-guard" : "core:user:bare-forwarder");
  await inspector.send("HeapProfiler.enable");
  await inspector.send("HeapProfiler.collectGarbage");
  await inspector.send("HeapProfiler.startSampling", { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: HEAP_ALL });
}
const sends: Send[] = [];
const measureStart = now();
await run(SENDS, sends, WARM);
const measureEnd = now();
interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  selfSize: number;
  id: number;
  children: HeapNode[];
}
type HeapProfile = { head: HeapNode; samples: Array<{ size: number; nodeId: number }> };
let heapProfile = null as HeapProfile | null;
if (inspector) {
  await inspector.send("HeapProfiler.collectGarbage");
  heapProfile = (await inspector.send<{ profile: HeapProfile }>("HeapProfiler.stopSampling")).profile;
  inspector.close();
}
clearInterval(ticker);
if (perfProcess) {
  perfProcess.kill("SIGINT");
  await new Promise((r) => perfProcess!.once("exit", r));
}
poller.postMessage("stop");
const polled = await new Promise<{ samples: Array<{ t: number; walSize: number; ckpt: number; salt: number; dbSize: number; dbMtime: number }>; sched: number[][] }>((r) => poller.once("message", r));
const files$ = polled.samples;
/** workerd's and this process's main thread: on-CPU ms and ms waiting for a CPU (/proc/<pid>/schedstat), between two instants. */
const schedBetween = (from: number, to: number) => {
  const a = polled.sched.find((x) => x[0]! >= from);
  const b = polled.sched.findLast((x) => x[0]! <= to);
  if (!a || !b || b[0]! <= a[0]!) return null;
  return { workerdCpu: b[1]! - a[1]!, workerdWait: b[2]! - a[2]!, benchCpu: b[3]! - a[3]!, benchWait: b[4]! - a[4]!, span: b[0]! - a[0]! };
};
await poller.terminate();
const logLinesDuring = logs.filter((l) => l.t >= measureStart);
/** The gate's reservation calls and the sends they carried (src/egress/reservation-batches.ts), as the isolate has flushed them (every 5 s at most). */
const reserveCalls = guard
  ? await fetch(`${guard.url}/admin/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then(async (r) => {
      const text = await r.text();
      const sum = (name: string) => [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "gm"))].reduce((n, m) => n + Number(m[1]), 0);
      return { calls: sum("guard_egress_reserve_calls_total"), sends: sum("guard_egress_reserve_call_sends_total") };
    })
  : null;
await guard?.stop();
await bare?.stop();
await origin.stop();
await standin.close();

// ---- analysis
const bad = sends.filter((s) => s.status !== 201);
const lat = sends.map((s) => s.end - s.start);
const { p50, p99 } = summary(lat);
console.log(`${sends.length} sends, ${CONNECTIONS} connections, ${((sends.length / (measureEnd - measureStart)) * 1000).toFixed(0)}/s; p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${Math.max(...lat).toFixed(1)} ms; non-201: ${bad.length}`);
const threshold = Math.max(STALL_FACTOR * p50, STALL_MIN_MS);
const slow = sends.filter((s) => s.end - s.start > threshold).sort((a, b) => a.start - b.start);
// Group slow sends whose [start, end] overlap; a stall is the common part of a group (all were in flight).
const groups: Send[][] = [];
for (const s of slow) {
  const g = groups.at(-1);
  if (g && s.start < Math.min(...g.map((x) => x.end))) g.push(s);
  else groups.push([s]);
}
console.log(`${slow.length} sends over ${threshold.toFixed(1)} ms, in ${groups.length} groups; sends slower than p99: ${lat.filter((l) => l > p99).length}`);
const stalls = groups.map((g) => ({ from: Math.max(...g.map((s) => s.start)), to: Math.min(...g.map((s) => s.end)), sends: g }));

let perfSamples: Array<{ t: number; tid: number; comm: string; frames: string[] }> = [];
if (PERF && existsSync(perfData)) {
  const script = execFileSync("/usr/bin/perf", ["script", "-i", perfData, "-F", "comm,tid,time,ip,sym", "--ns"], { maxBuffer: 1 << 30, stdio: ["ignore", "pipe", "ignore"] }).toString();
  let current: (typeof perfSamples)[number] | null = null;
  for (const line of script.split("\n")) {
    const head = /^\s*(\S.*?)\s+(\d+)\s+(\d+\.\d+):\s*$/.exec(line) ?? /^\s*(\S.*?)\s+(\d+)\s+(\d+\.\d+):\s+\S+\s+(.*)$/.exec(line);
    if (head && !/^\s+[0-9a-f]+\s/.test(line)) {
      current = { comm: head[1]!, tid: Number(head[2]), t: Number(head[3]) * 1000, frames: head[4] ? [head[4]] : [] };
      perfSamples.push(current);
    } else if (current && line.trim()) {
      const frame = /^\s*[0-9a-f]+\s+(.*)$/.exec(line);
      if (frame) current.frames.push(frame[1]!.replace(/\+0x[0-9a-f]+/, "").replace(/\s+\(.*\)$/, ""));
    }
  }
}

const top = (samples: typeof perfSamples, depth: number, n: number) => {
  const counts = new Map<string, number>();
  for (const s of samples) {
    const name = s.frames.slice(0, depth).join(" < ") || "?";
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, n);
};
const rel = (t: number) => `${(t - measureStart).toFixed(1)}`;
for (const st of stalls) {
  const order = [...st.sends].map((s) => s.i).sort((a, b) => a - b);
  console.log(`\nstall at +${rel(st.from)}..+${rel(st.to)} ms (common ${(st.to - st.from).toFixed(1)} ms): ${st.sends.length} sends #${order.join(",")} took ${st.sends.map((s) => (s.end - s.start).toFixed(1)).join(", ")} ms`);
  const near = (t: number) => t >= st.from - 30 && t <= st.to + 5;
  const sc = schedBetween(st.from, st.to);
  if (sc) console.log(`  over ${sc.span.toFixed(1)} ms of it: workerd's thread ran ${sc.workerdCpu.toFixed(1)} ms, waited for a CPU ${sc.workerdWait.toFixed(1)} ms; this process's main thread ran ${sc.benchCpu.toFixed(1)} ms, waited ${sc.benchWait.toFixed(1)} ms`);
  const before = files$.filter((f) => f.t < st.from - 30).at(-1);
  const during = files$.filter((f) => near(f.t));
  if (before) console.log(`  files before: wal ${before.walSize} B ckpt ${before.ckpt} salt ${before.salt}, db ${before.dbSize} B`);
  for (const f of during) console.log(`  files +${rel(f.t)}: wal ${f.walSize} B ckpt ${f.ckpt} salt ${f.salt}, db ${f.dbSize} B mtime ${f.dbMtime}`);
  for (const l of logLinesDuring.filter((l) => near(l.t))) console.log(`  workerd +${rel(l.t)}: ${l.message}`);
  for (const g of loopGaps.filter((g) => near(g.t))) console.log(`  bench process loop gap ${g.gapMs.toFixed(1)} ms ending +${rel(g.t)}`);
  if (perfSamples.length) {
    const inside = perfSamples.filter((s) => s.t >= st.from && s.t <= st.to);
    const byThread = new Map<string, number>();
    for (const s of inside) byThread.set(`${s.comm}/${s.tid}`, (byThread.get(`${s.comm}/${s.tid}`) ?? 0) + 1);
    console.log(`  perf: ${inside.length} samples (${[...byThread].map(([k, v]) => `${k} ${v}`).join(", ")})`);
    for (const [name, count] of top(inside, 1, 8)) console.log(`    ${count}  ${name}`);
    for (const [name, count] of top(inside, 6, 4)) console.log(`    ${count}  ${name}`);
  }
}
if (heapProfile) {
  const map = new SourceMap(JSON.parse(readFileSync(join(buildBundle(), "index.js.map"), "utf8")));
  const where = (f: HeapNode["callFrame"]) => {
    if (f.url.endsWith("index.js")) {
      const e = map.findEntry(f.lineNumber, f.columnNumber) as { originalSource?: string; originalLine?: number };
      if (e.originalSource) return `${e.originalSource.replace(/^.*?\/(src|node_modules)\//, "$1/")}:${(e.originalLine ?? 0) + 1}`;
    }
    return f.url ? `${f.url.split("/").pop()}:${f.lineNumber + 1}` : "";
  };
  const self = new Map<string, number>();
  const stacks = new Map<string, number>();
  // STALLS_HEAP_UNDER=<regex>: also the allocations below a frame matching it (e.g. the Durable Object's side of a send).
  const under = process.env.STALLS_HEAP_UNDER ? new RegExp(process.env.STALLS_HEAP_UNDER) : null;
  const selfUnder = new Map<string, number>();
  let total = 0;
  let totalUnder = 0;
  const walk = (n: HeapNode, path: string[]) => {
    const name = `${n.callFrame.functionName || "(anonymous)"} ${where(n.callFrame)}`;
    const here = [...path, name];
    if (n.selfSize > 0) {
      total += n.selfSize;
      self.set(name, (self.get(name) ?? 0) + n.selfSize);
      const stack = here.slice(-5).reverse().join(" < ");
      stacks.set(stack, (stacks.get(stack) ?? 0) + n.selfSize);
      if (under !== null && here.some((f) => under.test(f))) {
        totalUnder += n.selfSize;
        selfUnder.set(name, (selfUnder.get(name) ?? 0) + n.selfSize);
      }
    }
    for (const c of n.children) walk(c, here);
  };
  walk(heapProfile.head, []);
  console.log(`\nheap: bytes allocated during the sends${HEAP_ALL ? "" : " that a scavenge did not collect"} (sampled): ${(total / 1024).toFixed(0)} KiB, ${(total / sends.length).toFixed(0)} B per send; by allocating function:`);
  for (const [name, bytes] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${(bytes / sends.length).toFixed(0).padStart(6)} B/send  ${name}`);
  console.log("by stack (innermost first):");
  for (const [name, bytes] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${(bytes / sends.length).toFixed(0).padStart(6)} B/send  ${name}`);
  if (under !== null) {
    console.log(`below frames matching ${under}: ${(totalUnder / sends.length).toFixed(0)} B per send; by allocating function:`);
    for (const [name, bytes] of [...selfUnder].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${(bytes / sends.length).toFixed(0).padStart(6)} B/send  ${name}`);
  }
}
// GC accounting from --trace-gc-nvp: the isolate with the most GCs (the Worker's; Miniflare's own is small).
interface Gc { t: number; isolate: string; gc: string; pause: number; allocated?: number; promoted?: number; start_old_gen_consumed_size: number; end_old_gen_consumed_size: number; start_global_consumed_size: number; end_global_consumed_size: number; reason: string }
const gcs: Gc[] = logLinesDuring
  .filter((l) => l.message.includes("GC: {"))
  .map((l) => ({ t: l.t, isolate: /0x[0-9a-f]+/.exec(l.message)?.[0] ?? "?", ...(JSON.parse(l.message.slice(l.message.indexOf("{"))) as Omit<Gc, "t" | "isolate">) }));
if (gcs.length > 0) {
  const perIsolate = new Map<string, number>();
  for (const g of gcs) perIsolate.set(g.isolate, (perIsolate.get(g.isolate) ?? 0) + 1);
  const main = [...perIsolate].sort((a, b) => b[1] - a[1])[0]![0];
  const mine = gcs.filter((g) => g.isolate === main);
  const scavenges = mine.filter((g) => g.gc === "s");
  const majors = mine.filter((g) => g.gc !== "s");
  // Between consecutive GCs: what the old generation and the embedder's (C++) heap gained. Only the gains
  // count (a major GC's drop is what it collected).
  let oldGain = 0;
  let embedderGain = 0;
  for (let k = 1; k < mine.length; k++) {
    const [a, b] = [mine[k - 1]!, mine[k]!];
    oldGain += Math.max(0, b.start_old_gen_consumed_size - a.end_old_gen_consumed_size) + Math.max(0, b.end_old_gen_consumed_size - b.start_old_gen_consumed_size);
    embedderGain += Math.max(0, b.start_global_consumed_size - b.start_old_gen_consumed_size - (a.end_global_consumed_size - a.end_old_gen_consumed_size));
  }
  const spanSends = sends.filter((x) => x.end > mine[0]!.t && x.end <= mine.at(-1)!.t).length || sends.length;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const per = (bytes: number) => `${(bytes / spanSends).toFixed(0)} B`;
  if (reserveCalls !== null && reserveCalls.calls > 0) console.log(`\nreservation calls (warm-up included, as flushed): ${reserveCalls.calls} carrying ${reserveCalls.sends} sends, ${(reserveCalls.sends / reserveCalls.calls).toFixed(2)} per call`);
  console.log(`\nGC of the Worker's isolate during the ${sends.length} sends: ${scavenges.length} scavenges (${((scavenges.length / sends.length) * 1000).toFixed(1)} per 1,000 sends, pauses ${sum(scavenges.map((g) => g.pause)).toFixed(0)} ms in all, median ${scavenges.length ? summary(scavenges.map((g) => g.pause)).p50.toFixed(1) : "-"}, max ${Math.max(0, ...scavenges.map((g) => g.pause)).toFixed(1)} ms), ${majors.length} major (${majors.map((g) => `${g.pause.toFixed(0)} ms`).join(", ")})`);
  console.log(`  per send: allocated in the young generation ${per(sum(scavenges.map((g) => g.allocated ?? 0)))}, promoted ${per(sum(scavenges.map((g) => g.promoted ?? 0)))}, old generation gained ${per(oldGain)}, embedder (C++) heap gained ${per(embedderGain)} (over the ${spanSends} sends between the first and last GC)`);
}
const classified = stalls.map((st) => ({ st, sc: schedBetween(st.from, st.to) })).filter((x) => x.sc !== null && x.sc.span > 10);
const busy = classified.filter((x) => x.sc!.workerdCpu > 0.6 * x.sc!.span);
console.log(`\nstalls in which workerd's thread ran > 60 % of the time (its own work): ${busy.length} of ${classified.length}${busy.length ? ": at +" + busy.map((x) => `${rel(x.st.from)} (${x.sc!.workerdCpu.toFixed(0)} of ${x.sc!.span.toFixed(0)} ms)`).join(", +") : ""}`);
const total = schedBetween(measureStart, measureEnd);
if (total) console.log(`whole measured run ${total.span.toFixed(0)} ms: workerd's thread ran ${total.workerdCpu.toFixed(0)} ms (${((total.workerdCpu / sends.length) * 1000).toFixed(0)} µs per send), waited for a CPU ${total.workerdWait.toFixed(0)} ms; this process ran ${total.benchCpu.toFixed(0)} ms, waited ${total.benchWait.toFixed(0)} ms`);
const checkpoints = files$.filter((f, k) => k > 0 && (f.ckpt !== files$[k - 1]!.ckpt || f.salt !== files$[k - 1]!.salt));
console.log(`\nWAL resets (checkpoint sequence or salt changed) during the measured sends: ${checkpoints.length}${checkpoints.length ? ": at +" + checkpoints.map((c) => rel(c.t)).join(", +") + " ms" : ""}`);
const dbWrites = files$.filter((f, k) => k > 0 && f.dbMtime !== files$[k - 1]!.dbMtime);
console.log(`database file written (mtime changed): ${dbWrites.length}${dbWrites.length ? ": at +" + dbWrites.slice(0, 40).map((c) => rel(c.t)).join(", +") + " ms" : ""}`);
console.log(`largest WAL: ${Math.max(...files$.map((f) => f.walSize))} B; workerd lines during the sends: ${logLinesDuring.length}; bench loop gaps > 8 ms: ${loopGaps.length}`);
writeFileSync(OUT, JSON.stringify({ measureStart, sends, files: files$, logs: logLinesDuring, loopGaps, stalls: stalls.map((s) => ({ from: s.from, to: s.to, sends: s.sends.map((x) => x.i) })), heapProfile }));
console.log(`details: ${OUT}`);
process.exit(0);
