// `node bench/profile.ts [sms|status|hot] [requests]`: where workerd's CPU goes on one webhook path.
// Runs the real Worker (bench/lib/guard.ts) with workerd's inspector open, drives signed webhooks at
// it as fast as it answers (16 connections), and prints:
//   - workerd CPU time per request (all threads, from /proc), and the share the guard's isolate spends in
//     JavaScript (V8 CPU profile) against what Miniflare's outbound interceptor worker spends;
//   - the functions with the most self time, and the inclusive time of the guard's main steps,
//     mapped back to src/ through the bundle's source map.
// Writes the raw profile to bench/results/<scenario>.cpuprofile (open it in Chrome DevTools).
import { mkdirSync, writeFileSync } from "node:fs";
import { startTwilioStandin } from "../test/support/twilio-standin.ts";
import { startChild } from "./lib/child.ts";
import { inboundSms, messageStatus, sid, signedFormRequest } from "./lib/events.ts";
import { buildBundle, startGuard } from "./lib/guard.ts";
import { runLoad } from "./lib/load.ts";
import { Inspector, summarizeProfile, totalCpuMs, workerdPids } from "./lib/profile.ts";

const scenario = process.argv[2] ?? "sms";
const requests = Number(process.argv[3] ?? 4000);
const INSPECTOR_PORT = 9239;
const PARENT = sid("AC");
const TOKEN = "bench-parent-token-not-a-secret";

const standin = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN });
const origin = await startChild("origin-process.ts");
const sub = standin.addSubaccount();
const guard = await startGuard({
  vars: {
    TWILIO_ACCOUNT_SID: PARENT,
    ORIGIN_URL: origin.url,
    TWILIO_API_BASE: standin.url,
    GUARD_POLICY: JSON.stringify({ limits: [{ window: "month", events: 1e9 }] }),
  },
  secrets: { TWILIO_AUTH_TOKEN: TOKEN },
  inspectorPort: INSPECTOR_PORT,
});
try {
  const account = scenario === "hot" ? sub.sid : PARENT;
  const token = scenario === "hot" ? sub.authToken : TOKEN;
  const make = () =>
    scenario === "status"
      ? signedFormRequest(token, guard.url, "/webhooks/status", messageStatus(account))
      : signedFormRequest(token, guard.url, "/webhooks/sms", inboundSms(account));
  const warm = 1000;
  const pool = Array.from({ length: warm + requests }, make);
  await runLoad({ url: guard.url, pool: pool.slice(0, warm), connections: 16, amount: warm });

  const guardInspector = await Inspector.connect(INSPECTOR_PORT, "core:user:twilio-edge-guard");
  const outboundInspector = await Inspector.connect(INSPECTOR_PORT, "outbound:0");
  await guardInspector.startProfile();
  await outboundInspector.startProfile();
  const pids = workerdPids();
  const cpuBefore = totalCpuMs(pids);
  const result = await runLoad({ url: guard.url, pool: pool.slice(warm), connections: 16, amount: requests });
  const cpuAfter = totalCpuMs(pids);
  const guardProfile = await guardInspector.stopProfile();
  const outboundProfile = await outboundInspector.stopProfile();
  guardInspector.close();
  outboundInspector.close();

  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/${scenario}.cpuprofile`, import.meta.url), JSON.stringify(guardProfile));

  const g = summarizeProfile(guardProfile, buildBundle());
  const o = summarizeProfile(outboundProfile, null);
  const perReq = (ms: number) => ((ms / result.sent) * 1000).toFixed(0).padStart(6) + " µs/req";
  console.log(`scenario ${scenario}: ${result.sent} requests in ${result.elapsedMs.toFixed(0)} ms = ${((result.sent / result.elapsedMs) * 1000).toFixed(0)}/s, status ${JSON.stringify(result.status)}`);
  console.log(`workerd CPU (all its threads, /proc):          ${perReq(cpuAfter - cpuBefore)}`);
  console.log(`guard isolate, JavaScript (V8 profile):        ${perReq(g.totalMs - g.idleMs)}`);
  console.log(`Miniflare outbound interceptor, JavaScript:    ${perReq(o.totalMs - o.idleMs)}`);
  const show = (title: string, rows: typeof g.rows, key: "selfMs" | "totalMs", n: number) => {
    console.log(`\n${title}`);
    for (const r of rows
      .filter((r) => !["(idle)", "(root)"].includes(r.name))
      .sort((a, b) => b[key] - a[key])
      .slice(0, n)) {
      console.log(`  ${perReq(r[key])}  ${r.name.padEnd(34).slice(0, 34)} ${r.where}`);
    }
  };
  show("guard isolate: top self time", g.rows, "selfMs", 25);
  show("guard isolate: top inclusive time (src/ functions)", g.rows.filter((r) => r.where.startsWith("src/")), "totalMs", 25);
} finally {
  await guard.stop();
  await origin.stop();
  await standin.close();
}
