// `node bench/path-ab.ts <treeA> <treeB> [sms|status] [rounds]`: one tree's Worker-side webhook path
// against another's, in one workerd, without the network. Both trees' src/app.ts are bundled into one
// Worker per tree (each in its own workerd, run at the same time), each app created with an origin `fetch` that answers a canned `<Response/>` at once (the
// headers a node:http origin sends) and an env whose ACCOUNT_GUARD stub answers a fixed verdict (no
// Durable Object). A timed request runs n signed webhooks through `app.fetch` (router, config, body
// read, parse, verification, classification, the ledger port's glue, forward and relay, the log line,
// metrics, rejections) one after the other; both trees run each round at the same time and the
// per-round ratio is kept, so the machine's drift hits both alike. Time is workerd's CPU time (/proc), not the wall clock,
// which other work on the machine stretches. What it leaves out is what both sides share with the
// bare forwarding Worker: the HTTP request in, the real `fetch` to the origin, the answer out.
// Prints the median µs per request of each tree and the median per-round ratio B/A (< 1: B is cheaper).
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_readConfig } from "wrangler";
import { inboundSms, messageStatus, sid, signedFormRequest } from "./lib/events.ts";
import { cpuMs, workerdPids } from "./lib/profile.ts";
import { median } from "./lib/stats.ts";
import { pathHarnessSource } from "./lib/path-harness.ts";

process.removeAllListeners("warning");
const [treeA, treeB] = [process.argv[2], process.argv[3]].map((t) => (t === undefined ? undefined : resolve(t)));
if (treeA === undefined || treeB === undefined) {
  console.error("usage: node bench/path-ab.ts <treeA> <treeB> [sms|status] [rounds]");
  process.exit(2);
}
const path = process.argv[4] ?? "sms";
const rounds = Number(process.argv[5] ?? 15);
/** Requests per timed run: enough CPU time (≥ 0.3 s) that /proc's 10 ms ticks are noise. */
const PER_RUN = Number(process.env.PATH_AB_N ?? 1500);
const PARENT = sid("AC");
const TOKEN = "bench-parent-token-not-a-secret";
const BASE = "http://guard.example";

const sourceOf = pathHarnessSource;

const config = unstable_readConfig({ config: fileURLToPath(new URL("../wrangler.toml", import.meta.url)) });
const vars: Record<string, string> = {};
for (const [name, value] of Object.entries(config.vars ?? {})) vars[name] = typeof value === "string" ? value : JSON.stringify(value);
Object.assign(vars, { TWILIO_ACCOUNT_SID: PARENT, TWILIO_AUTH_TOKEN: TOKEN, ORIGIN_URL: "http://origin.example" });
let logLines = 0;

/** One tree's app in its own workerd; `run(n)` is workerd's CPU µs per request over n webhooks. */
async function startTree(tree: string, name: string) {
  const bundled = await build({ stdin: { contents: sourceOf(tree), resolveDir: process.cwd(), loader: "js" }, bundle: true, format: "esm", platform: "neutral", target: "es2022", write: false, external: ["cloudflare:*", "node:*"], mainFields: ["module", "main"] });
  const pidsBefore = new Set(workerdPids());
  const mf = new Miniflare({
    ...convertV4MiniflareOptions({
      // As bench/lib/guard.ts: the Worker's console lines are structured logs, counted, not printed.
      handleStructuredLogs() {
        logLines++;
      },
      workers: [
        {
          name,
          compatibilityDate: config.compatibility_date,
          compatibilityFlags: config.compatibility_flags,
          modules: [{ type: "ESModule", path: `${name}.js`, contents: bundled.outputFiles[0]!.text }],
          bindings: { VARS: vars },
          unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
        },
      ],
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
    logRequests: false,
  } as ConstructorParameters<typeof Miniflare>[0]);
  await mf.ready;
  const pid = workerdPids().find((p) => !pidsBefore.has(p)) ?? -1;
  const url = (await mf.unsafeGetDirectURL(name)).href;
  await fetch(`${url}load`, { method: "POST", body: JSON.stringify(pool) });
  return {
    stop: () => mf.dispose(),
    async run(n: number): Promise<number> {
      const started = cpuMs(pid);
      const { ok } = (await (await fetch(`${url}run?n=${n}`)).json()) as { ok: number };
      if (ok !== n) throw new Error(`${tree}: ${n - ok} of ${n} webhooks not answered 200`);
      return ((cpuMs(pid) - started) * 1000) / n;
    },
  };
}

const route = path === "status" ? "/webhooks/status" : "/webhooks/sms";
const pool = Array.from({ length: 500 }, () => {
  const signed = signedFormRequest(TOKEN, BASE, route, path === "status" ? messageStatus(PARENT) : inboundSms(PARENT));
  return { url: BASE + route, body: signed.body, headers: { ...signed.headers, "content-length": String(Buffer.byteLength(signed.body)) } };
});
const A = await startTree(treeA, "path-a");
const B = await startTree(treeB, "path-b");
try {
  // Both at once, so that whatever else the machine runs at that moment slows both alike.
  const both = () => Promise.all([A.run(PER_RUN), B.run(PER_RUN)]);
  for (let i = 0; i < 2; i++) await both(); // warm-up (JIT)
  const a: number[] = [];
  const b: number[] = [];
  const ratio: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const [x, y] = await both();
    a.push(x);
    b.push(y);
    ratio.push(y / x);
  }
  const sorted = [...ratio].sort((p, q) => p - q);
  console.log(`${path}: A ${median(a).toFixed(1)} µs/request, B ${median(b).toFixed(1)} µs/request; B/A per round: median ${median(ratio).toFixed(3)} (range ${sorted[0]!.toFixed(2)}–${sorted.at(-1)!.toFixed(2)}, ${rounds} rounds; ${logLines} log lines)`);
  console.log(`  rounds A: ${a.map((x) => x.toFixed(0)).join(", ")} µs; B: ${b.map((x) => x.toFixed(0)).join(", ")} µs`);
} finally {
  await A.stop();
  await B.stop();
}
process.exit(0);
