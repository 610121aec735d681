// `node bench/profile.ts [sms|status|hot|egress] [requests]`: where workerd's CPU goes on one path.
// Runs the real Worker (bench/lib/guard.ts) with workerd's inspector open, drives signed webhooks at
// it as fast as it answers (16 connections), and prints (`egress`: twilio-node's messages.create
// request with an egress key to the REST egress gate, forwarded to the Twilio stand-in; 4 connections):
//   - workerd CPU time per request (all threads, from /proc; the profiler itself slows workerd);
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
import { buildBundle, startGuard } from "./lib/guard.ts";
import { runLoad } from "./lib/load.ts";
import { EGRESS_VARS, egressSend, prepareEgressAccount } from "./lib/egress-load.ts";
import { Inspector, summarizeProfile, totalCpuMs, workerdPids } from "./lib/profile.ts";

const scenario = process.argv[2] ?? "sms";
const requests = Number(process.argv[3] ?? 4000);
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
  console.log(`workerd CPU (all its threads, /proc):          ${perReq(cpuAfter - cpuBefore)}`);
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
  console.log(`\nprofile: ${profilePath}`);
} finally {
  await guard.stop();
  await origin.stop();
  await standin.close();
}
