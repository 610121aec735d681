// `node bench/profile.ts [sms|status|hot|egress] [requests]`: where workerd's CPU goes on one path.
// Runs the real Worker (bench/lib/guard.ts) with workerd's inspector open, drives signed webhooks at
// it as fast as it answers (16 connections), and prints (`egress`: twilio-node's messages.create
// request with an egress key to the REST egress gate, forwarded to the Twilio stand-in; 4 connections;
// its stages are the gate's, and its floor is section 6's bare Worker, not measured here):
//   - workerd CPU time per request (all threads, from /proc) without the profiler, and the same for the
//     bare forwarding Worker (startBareForwarder: the runtime's floor) on the same requests, alternating;
//   - the guard isolate's CPU per request by stage of the webhook path (stageBreakdown: read, parse,
//     verify, tokens, ledger RPC, the Durable Object's record(), forward, log, metrics, rejections), from
//     a V8 CPU profile mapped to src/ (the profiler's own overhead is in these figures);
//   - from a V8 CPU profile of the guard's isolate: the functions with the most self time and the
//     inclusive time of the guard's main steps, as shares of the profile's busy samples, mapped back to
//     src/ through the bundle's source map. (workerd runs every isolate on one thread and each isolate's
//     profiler also samples while the others run, so absolute times per request are not comparable
//     across isolates; the shares within the guard's isolate are.)
// Writes the raw profile to $TMPDIR/guard-<scenario>.cpuprofile (open it in Chrome DevTools).
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTwilioStandin } from "../dev/twilio-standin.ts";
import { startChild } from "./lib/child.ts";
import { inboundSms, messageStatus, sid, signedFormRequest } from "./lib/events.ts";
import { buildBundle, startBareForwarder, startGuard } from "./lib/guard.ts";
import { runLoad } from "./lib/load.ts";
import { EGRESS_VARS, egressSend, prepareEgressAccount } from "./lib/egress-load.ts";
import { cpuMs, Inspector, stageBreakdown, summarizeProfile, totalCpuMs, workerdPids } from "./lib/profile.ts";
import { median } from "./lib/stats.ts";

const scenario = process.argv[2] ?? "sms";
const requests = Number(process.argv[3] ?? 4000);
/** Unprofiled rounds per side (guard, bare forwarder, alternating) for the CPU per request. */
const CPU_ROUNDS = 3;
const INSPECTOR_PORT = 9239;
const PARENT = sid("AC");
const TOKEN = "bench-parent-token-not-a-secret";
const ADMIN_TOKEN = "bench-admin-token-not-a-secret";
const egress = scenario === "egress";

const standin = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN });
const origin = await startChild("origin-process.ts");
const sub = standin.addSubaccount();
const guard = await startGuard({
  vars: {
    TWILIO_ACCOUNT_SID: PARENT,
    ORIGIN_URL: origin.url,
    TWILIO_API_BASE: standin.url,
    GUARD_POLICY: JSON.stringify({ limits: [{ window: "month", events: 1e9 }] }),
    ...(egress ? EGRESS_VARS : {}),
  },
  secrets: { TWILIO_AUTH_TOKEN: TOKEN, ...(egress ? { ADMIN_TOKEN } : {}) },
  inspectorPort: INSPECTOR_PORT,
});
try {
  const account = scenario === "hot" ? sub.sid : PARENT;
  const token = scenario === "hot" ? sub.authToken : TOKEN;
  const key = egress ? await prepareEgressAccount(guard.url, ADMIN_TOKEN, sub.sid) : "";
  let sends = 0;
  const make = () =>
    egress
      ? egressSend(sub.sid, key, sends++)
      : scenario === "status"
      ? signedFormRequest(token, guard.url, "/webhooks/status", messageStatus(account))
      : signedFormRequest(token, guard.url, "/webhooks/sms", inboundSms(account));
  const warm = 1000;
  const pool = Array.from({ length: warm + requests }, make);
  const connections = egress ? 4 : 16;
  await runLoad({ url: guard.url, pool: pool.slice(0, warm), connections, amount: warm });

  // CPU per request without the profiler: the guard and the bare forwarding Worker, alternating.
  const bare = egress ? null : await startBareForwarder(origin.url);
  const cpu = { guard: [] as number[], bare: [] as number[] };
  if (bare !== null) try {
    const bareMake = () =>
      scenario === "status"
        ? signedFormRequest(token, bare.url, "/webhooks/status", messageStatus(account))
        : signedFormRequest(token, bare.url, "/webhooks/sms", inboundSms(account));
    const bareWarm = Array.from({ length: warm }, bareMake);
    await runLoad({ url: bare.url, pool: bareWarm, connections: 16, amount: warm });
    for (let round = 0; round < CPU_ROUNDS; round++) {
      for (const [side, url, mk, pid] of [["guard", guard.url, make, guard.pid], ["bare", bare.url, bareMake, bare.pid]] as const) {
        const roundPool = Array.from({ length: requests }, mk);
        const before = cpuMs(pid);
        const r = await runLoad({ url, pool: roundPool, connections: 16, amount: requests });
        if ((r.status["200"] ?? 0) !== requests) throw new Error(`${side}: ${JSON.stringify(r.status)}`);
        cpu[side].push(((cpuMs(pid) - before) / requests) * 1000);
      }
    }
  } finally {
    await bare.stop();
  }

  const guardInspector = await Inspector.connect(INSPECTOR_PORT, "core:user:twilio-edge-guard");
  await guardInspector.startProfile();
  const pids = workerdPids();
  const cpuBefore = totalCpuMs(pids);
  const result = await runLoad({ url: guard.url, pool: pool.slice(warm), connections, amount: requests });
  const cpuAfter = totalCpuMs(pids);
  const guardProfile = await guardInspector.stopProfile();
  guardInspector.close();

  const profilePath = join(tmpdir(), `guard-${scenario}.cpuprofile`);
  writeFileSync(profilePath, JSON.stringify(guardProfile));

  const g = summarizeProfile(guardProfile, buildBundle());
  const perReq = (ms: number) => ((ms / result.sent) * 1000).toFixed(0).padStart(6) + " µs/req";
  const busyMs = g.totalMs - g.idleMs;
  const share = (ms: number) => ((ms / busyMs) * 100).toFixed(1).padStart(5) + " %";
  console.log(`scenario ${scenario}: ${result.sent} requests in ${result.elapsedMs.toFixed(0)} ms = ${((result.sent / result.elapsedMs) * 1000).toFixed(0)}/s, status ${JSON.stringify(result.status)}`);
  const rounds = (v: number[]) => `median ${median(v).toFixed(0)} µs/req (rounds ${v.map((x) => x.toFixed(0)).join(", ")})`;
  if (!egress) console.log(`workerd CPU, no profiler (/proc): guard ${rounds(cpu.guard)}; bare forwarding Worker ${rounds(cpu.bare)}; ratio ${(median(cpu.guard) / median(cpu.bare)).toFixed(2)}`);
  console.log(`workerd CPU while profiling (all its threads, /proc): ${perReq(cpuAfter - cpuBefore)}`);
  if (egress) {
    // The gate's stages: inclusive shares of the busy samples (approximate: an await splits a function's
    // time over separate stacks, and native work is charged to its JavaScript caller), in µs per send
    // at the workerd CPU per request measured above.
    const cpuPerReq = ((cpuAfter - cpuBefore) / result.sent) * 1000;
    const incl = (name: string, file: string) => g.rows.filter((r) => r.name === name && r.where.startsWith(file)).reduce((sum, r) => sum + r.totalMs, 0) / busyMs;
    const handle = incl("handleEgress", "src/egress/gate.ts");
    const app = incl("fetch", "src/app.ts");
    const doReserve = incl("reserveSend", "src/breaker/account-guard.ts");
    const doSettle = incl("settleSends", "src/breaker/account-guard.ts");
    const parts: Array<[string, number]> = [
      ["credentials: Basic parse, egress key's SHA-256", incl("presentedCredentials", "src/egress/credentials.ts") + incl("hashEgressKey", "src/egress/keys.ts")],
      ["body read", incl("readBody", "src/webhooks/read.ts")],
      ["sendFacts: segments, country", incl("sendFacts", "src/egress/send.ts")],
      ["reservation call, Worker side", incl("reserve", "src/egress/gate.ts")],
      ["upstream fetch and its answer", incl("fetchWithin", "src/egress/gate.ts")],
      ["settlement, Worker side", incl("settle", "src/egress/gate.ts")],
    ];
    const stages: Array<[string, number]> = [
      ["app.ts fetch: router, request log line, metrics (and the gate's synchronous start)", app],
      ["  of which the request log line", incl("request", "src/observability/log.ts")],
      ...parts,
      ["the rest of handleEgress", handle - parts.reduce((sum, [, v]) => sum + v, 0)],
      ["Durable Object: reserveSend (with the settlements it carries)", doReserve],
      ["  of which carried settlements", Math.max(0, incl("#settleCarried", "src/breaker/account-guard.ts"))],
      ["Durable Object: settleSends (what no reservation carried)", doSettle],
      ["not in the guard's JavaScript: (program), GC", 1 - app - handle - doReserve - doSettle],
    ];
    console.log("\negress gate stages (share of busy samples, µs per send)");
    for (const [what, v] of stages) console.log(`  ${(v * 100).toFixed(1).padStart(5)} %  ${(v * cpuPerReq).toFixed(0).padStart(5)} µs  ${what}`);
  }
  if (!egress) {
    const stages = stageBreakdown(guardProfile, buildBundle(), result.sent);
    let stageSum = 0;
    for (const us of stages.values()) stageSum += us;
    // The profile's samples are wall time of the busy thread, stretched by the profiler and by whatever
    // else the machine runs; their shares are what it tells. Scaled to the unprofiled CPU per request,
    // they estimate each stage's µs (what the guard costs beyond its isolate's JavaScript, such as the
    // SQLite commit and the sockets, is in its "native" and the runtime's shares).
    const scale = median(cpu.guard) / stageSum;
    console.log(`\nguard isolate by stage: share of the profile's busy samples, and µs per request scaled to the unprofiled ${median(cpu.guard).toFixed(0)} µs`);
    for (const [stage, us] of stages) console.log(`  ${((us / stageSum) * 100).toFixed(1).padStart(5)} %  ${(us * scale).toFixed(0).padStart(5)} µs  ${stage}`);
    console.log(`  (profile: ${stageSum.toFixed(0)} µs of busy samples per request)`);
  }
  console.log(`guard isolate's busy samples in its own functions and GC: ${share(g.jsMs)} (the rest: "(program)", i.e. native work)`);
  const show = (title: string, rows: typeof g.rows, key: "selfMs" | "totalMs", n: number) => {
    console.log(`\n${title}`);
    for (const r of rows
      .filter((r) => !["(idle)", "(root)"].includes(r.name))
      .sort((a, b) => b[key] - a[key])
      .slice(0, n)) {
      console.log(`  ${share(r[key])}  ${r.name.padEnd(34).slice(0, 34)} ${r.where}`);
    }
  };
  show("guard isolate: top self time (share of busy samples)", g.rows, "selfMs", 25);
  show("guard isolate: top inclusive time, src/ functions (share of busy samples)", g.rows.filter((r) => r.where.startsWith("src/")), "totalMs", 25);
  console.log(`\nprofile: ${profilePath}`);
} finally {
  await guard.stop();
  await origin.stop();
  await standin.close();
}
