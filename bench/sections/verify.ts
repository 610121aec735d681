// 1. Verification cost: signature checks per second, the guard's verifySignature in workerd against
// twilio-node's validateRequest / validateRequestWithBody in Node, on the same signed requests.
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import twilio from "twilio";
import { unstable_readConfig } from "wrangler";
import { inTurn, median } from "../lib/stats.ts";
import { inboundSms, jsonEvent, messageStatus, paramsObject, sid, signForm, signJson, type Pairs } from "../lib/events.ts";

/** The URL Twilio would have been given for a deployed guard (no port: what Twilio signs). */
const BASE = "https://twilio-edge-guard.example.workers.dev";
const SET_SIZE = 64;
/**
 * Each side is measured `rounds` times for `measureMs`, alternating (workerd, Node, workerd's bare HMAC,
 * workerd, …). The machine's speed drifts by tens of percent from one second to the next, so the ratio
 * is taken within each round (the two sides measured back to back) and the median round's ratio kept.
 */
export const VERIFY_TIMING = { measureMs: 300, rounds: 7 };

export interface Check {
  url: string;
  params: Pairs;
  body?: string;
  signature: string;
}

export interface VerifyRow {
  name: string;
  workerdPerSec: number;
  nodePerSec: number;
  /** Bare crypto.subtle.sign HMAC-SHA1 calls per second in workerd on the same signed string. */
  workerdHmacPerSec: number;
  /** Median over rounds of workerdPerSec / nodePerSec measured in the same round. */
  ratio: number;
  /** The lowest and highest of those per-round ratios. */
  ratioRange: [number, number];
}

export function makeSets(token: string, account: string): Array<{ name: string; checks: Check[] }> {
  const sms: Check[] = [];
  const status: Check[] = [];
  const json: Check[] = [];
  for (let i = 0; i < SET_SIZE; i++) {
    const a = inboundSms(account);
    sms.push({ url: `${BASE}/webhooks/sms`, params: a, signature: signForm(token, `${BASE}/webhooks/sms`, a) });
    const b = messageStatus(account, sid("SM"), i % 2 ? "sent" : "delivered");
    status.push({ url: `${BASE}/webhooks/status`, params: b, signature: signForm(token, `${BASE}/webhooks/status`, b) });
    const body = jsonEvent(account);
    const signed = signJson(token, `${BASE}/webhooks/events`, body);
    json.push({ url: signed.url, params: [], body, signature: signed.signature });
  }
  return [
    { name: `inbound SMS, form ${Buffer.byteLength(new URLSearchParams(sms[0]!.params).toString())} B`, checks: sms },
    { name: `status callback, form ${Buffer.byteLength(new URLSearchParams(status[0]!.params).toString())} B`, checks: status },
    { name: `JSON body ${Buffer.byteLength(json[0]!.body!)} B + bodySHA256`, checks: json },
  ];
}

function nodeRate(token: string, checks: Check[], measureMs: number): () => number {
  // What an Express app has by the time twilio.webhook() runs: the parsed body object.
  const prepared = checks.map((c) => ({ ...c, object: paramsObject(c.params) }));
  const one = (c: (typeof prepared)[number]): boolean =>
    c.body !== undefined
      ? twilio.validateRequestWithBody(token, c.signature, c.url, c.body)
      : twilio.validateRequest(token, c.signature, c.url, c.object);
  const loop = (ms: number): number => {
    let n = 0;
    const start = performance.now();
    for (;;) {
      for (let k = 0; k < 256; k++) {
        if (!one(prepared[n % prepared.length]!)) throw new Error("twilio-node rejected a valid signature");
        n++;
      }
      const elapsed = performance.now() - start;
      if (elapsed >= ms) return (n / elapsed) * 1000;
    }
  };
  loop(300); // warm-up (JIT)
  return () => loop(measureMs);
}

async function workerdRate(baseUrl: string, name: string, route: "run" | "floor", measureMs: number): Promise<() => Promise<number>> {
  const run = async (n: number): Promise<number> => {
    const start = performance.now();
    const response = await fetch(`${baseUrl}/${route}?name=${encodeURIComponent(name)}&n=${n}`);
    const result = (await response.json()) as { n: number; ok: number };
    const elapsed = performance.now() - start;
    if (result.ok !== n) throw new Error(`${route}: ${n - result.ok} of ${n} checks failed`);
    return (n / elapsed) * 1000;
  };
  const estimate = await run(3000); // warm-up (JIT) and a first estimate
  const n = Math.max(3000, Math.round((estimate * measureMs) / 1000));
  return () => run(n);
}

export async function benchVerification(timing = VERIFY_TIMING): Promise<VerifyRow[]> {
  const token = "bench-verify-token-not-a-secret";
  const sets = makeSets(token, sid("AC"));
  const bundled = await build({
    entryPoints: [fileURLToPath(new URL("../verify-worker.ts", import.meta.url))],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    write: false,
  });
  const config = unstable_readConfig({ config: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) });
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: 0,
      cf: false,
      workers: [
        {
          name: "verify-bench",
          compatibilityDate: config.compatibility_date,
          compatibilityFlags: config.compatibility_flags,
          modules: [{ type: "ESModule", path: "verify-worker.js", contents: bundled.outputFiles[0]!.text }],
          unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
        },
      ],
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
  );
  try {
    await mf.ready;
    const url = (await mf.unsafeGetDirectURL("verify-bench")).href.replace(/\/$/, "");
    const rows: VerifyRow[] = [];
    for (const set of sets) {
      const loaded = await fetch(`${url}/load`, { method: "POST", body: JSON.stringify({ name: set.name, tokens: [token], checks: set.checks }) });
      if (!loaded.ok) throw new Error(`verify worker: ${loaded.status}`);
      const workerd = await workerdRate(url, set.name, "run", timing.measureMs);
      const node = nodeRate(token, set.checks, timing.measureMs);
      const floor = await workerdRate(url, set.name, "floor", timing.measureMs);
      const samples = { workerd: [] as number[], node: [] as number[], floor: [] as number[], ratio: [] as number[] };
      for (let round = 0; round < timing.rounds; round++) {
        const [w, n] = await inTurn(round, workerd, node);
        samples.workerd.push(w);
        samples.node.push(n);
        samples.ratio.push(w / n);
        samples.floor.push(await floor());
      }
      const sortedRatios = [...samples.ratio].sort((a, b) => a - b);
      rows.push({
        name: set.name,
        workerdPerSec: median(samples.workerd),
        nodePerSec: median(samples.node),
        workerdHmacPerSec: median(samples.floor),
        ratio: median(samples.ratio),
        ratioRange: [sortedRatios[0]!, sortedRatios.at(-1)!],
      });
    }
    return rows;
  } finally {
    await mf.dispose();
  }
}
