// `node bench/path-profile.ts [sms|status] [requests]`: a V8 CPU profile of the Worker-side webhook
// path alone, in the harness bench/path-ab.ts uses (this tree's createApp in one workerd, an origin
// `fetch` answering a canned `<Response/>` at once, an ACCOUNT_GUARD stub answering a fixed verdict, n
// signed webhooks through `app.fetch` per request). What path-ab.ts says costs more or less, this says
// where: the functions with the most self time and the src/ functions with the most inclusive time, as
// shares of the isolate's busy samples, mapped back to src/ through the bundle's source map.
// PATH_AB_QUIET=1 makes console.log a no-op, as in path-ab.ts. PATH_PROFILE_HEAP=1 takes V8's sampling
// heap profile instead (every object, young garbage included, one sample per 2 KB): bytes allocated per
// request by the nearest src/ function on the stack and the function that allocated.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { SourceMap } from "node:module";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_readConfig } from "wrangler";
import { inboundSms, messageStatus, sid, signedFormRequest } from "./lib/events.ts";
import { Inspector, cpuMs, summarizeProfile, workerdPids } from "./lib/profile.ts";
import { pathHarnessSource } from "./lib/path-harness.ts";

process.removeAllListeners("warning");
const path = process.argv[2] ?? "sms";
const requests = Number(process.argv[3] ?? 20_000);
const INSPECTOR_PORT = 9241;
const PARENT = sid("AC");
const TOKEN = "bench-parent-token-not-a-secret";
const BASE = "http://guard.example";
const tree = fileURLToPath(new URL("../", import.meta.url));

const config = unstable_readConfig({ config: join(tree, "wrangler.toml") });
const vars: Record<string, string> = {};
for (const [name, value] of Object.entries(config.vars ?? {})) vars[name] = typeof value === "string" ? value : JSON.stringify(value);
Object.assign(vars, { TWILIO_ACCOUNT_SID: PARENT, TWILIO_AUTH_TOKEN: TOKEN, ORIGIN_URL: "http://origin.example" });

const route = path === "status" ? "/webhooks/status" : "/webhooks/sms";
const pool = Array.from({ length: 500 }, () => {
  const signed = signedFormRequest(TOKEN, BASE, route, path === "status" ? messageStatus(PARENT) : inboundSms(PARENT));
  return { url: BASE + route, body: signed.body, headers: { ...signed.headers, "content-length": String(Buffer.byteLength(signed.body)) } };
});

const bundleDir = mkdtempSync(join(tmpdir(), "path-profile-"));
await build({
  stdin: { contents: pathHarnessSource(tree), resolveDir: process.cwd(), loader: "js", sourcefile: "harness.js" },
  bundle: true, format: "esm", platform: "neutral", target: "es2022", outfile: join(bundleDir, "index.js"), sourcemap: "external",
  external: ["cloudflare:*", "node:*"], mainFields: ["module", "main"],
});
const pidsBefore = new Set(workerdPids());
const mf = new Miniflare({
  ...convertV4MiniflareOptions({
    handleStructuredLogs() {},
    workers: [{
      name: "path-profile",
      compatibilityDate: config.compatibility_date,
      compatibilityFlags: config.compatibility_flags,
      modules: [{ type: "ESModule", path: "index.js", contents: readFileSync(join(bundleDir, "index.js"), "utf8") }],
      bindings: { VARS: vars },
      unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
    }],
  } as Parameters<typeof convertV4MiniflareOptions>[0]),
  inspectorPort: INSPECTOR_PORT,
  logRequests: false,
} as ConstructorParameters<typeof Miniflare>[0]);
try {
  await mf.ready;
  const pid = workerdPids().find((p) => !pidsBefore.has(p)) ?? -1;
  const url = (await mf.unsafeGetDirectURL("path-profile")).href;
  await fetch(`${url}load`, { method: "POST", body: JSON.stringify(pool) });
  const run = async (n: number) => {
    const { ok } = (await (await fetch(`${url}run?n=${n}`)).json()) as { ok: number };
    if (ok !== n) throw new Error(`${n - ok} of ${n} webhooks not answered 200`);
  };
  for (let i = 0; i < 3; i++) await run(2000); // warm-up (JIT)
  const inspector = await Inspector.connect(INSPECTOR_PORT, "core:user:path-profile");
  if (process.env.PATH_PROFILE_HEAP === "1") {
    await inspector.send("HeapProfiler.enable");
    await inspector.send("HeapProfiler.startSampling", { samplingInterval: 2048, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    for (let done = 0; done < requests; done += 2000) await run(Math.min(2000, requests - done));
    const { profile } = await inspector.send<{ profile: { head: HeapNode } }>("HeapProfiler.stopSampling");
    inspector.close();
    printHeap(profile.head, requests, bundleDir);
    process.exit(0);
  }
  await inspector.startProfile(100);
  const before = cpuMs(pid);
  for (let done = 0; done < requests; done += 2000) await run(Math.min(2000, requests - done));
  const cpuPerRequest = ((cpuMs(pid) - before) * 1000) / requests;
  const profile = await inspector.stopProfile();
  inspector.close();
  const profilePath = join(tmpdir(), `path-${path}.cpuprofile`);
  writeFileSync(profilePath, JSON.stringify(profile));
  const g = summarizeProfile(profile, bundleDir);
  const busy = g.totalMs - g.idleMs;
  const us = (ms: number) => `${((ms / busy) * cpuPerRequest).toFixed(1).padStart(6)} µs`;
  console.log(`${path}: workerd CPU while profiling ${cpuPerRequest.toFixed(0)} µs per request (${requests}); busy samples ${busy.toFixed(0)} ms, of which JS and GC ${((g.jsMs / busy) * 100).toFixed(1)} %`);
  const show = (title: string, rows: typeof g.rows, key: "selfMs" | "totalMs", n: number) => {
    console.log(`\n${title} (µs per request at the profiled CPU)`);
    for (const r of rows.filter((r) => !["(idle)", "(root)"].includes(r.name)).sort((a, b) => b[key] - a[key]).slice(0, n)) {
      console.log(`  ${us(r[key])}  ${r.name.padEnd(34).slice(0, 34)} ${r.where}`);
    }
  };
  show("top self time", g.rows, "selfMs", 40);
  show("top inclusive time, src/ functions", g.rows.filter((r) => r.where.startsWith("src/")), "totalMs", 40);
  console.log(`\nprofile: ${profilePath}`);
} finally {
  await mf.dispose();
}
process.exit(0);

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/** Bytes allocated per request, by the nearest src/ function on the stack and the function that allocated. */
function printHeap(head: HeapNode, n: number, dir: string): void {
  const map = new SourceMap(JSON.parse(readFileSync(join(dir, "index.js.map"), "utf8")));
  const where = (f: HeapNode["callFrame"]) => {
    if (!f.url.endsWith("index.js")) return f.url.split("/").pop() ?? "";
    const entry = map.findEntry(f.lineNumber, f.columnNumber) as { originalSource?: string; originalLine?: number };
    return entry.originalSource ? `${relative(tree, fileURLToPath(new URL(entry.originalSource, `file://${dir}/`)))}:${(entry.originalLine ?? 0) + 1}` : "";
  };
  const rows = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapNode, nearest: string) => {
    const at = where(node.callFrame);
    const name = `${node.callFrame.functionName || "(anonymous)"} ${at}`;
    const src = at.startsWith("src/") ? name : nearest;
    if (node.selfSize > 0) {
      total += node.selfSize;
      const key = src === name ? src : `${src} ← ${name}`;
      rows.set(key, (rows.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, src);
  };
  walk(head, "(no src/ frame)");
  console.log(`${path}: ${(total / n).toFixed(0)} bytes allocated per request (${n} requests)\n`);
  for (const [name, bytes] of [...rows].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`  ${(bytes / n).toFixed(0).padStart(6)} B  ${name}`);
}
