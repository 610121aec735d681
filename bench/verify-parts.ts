// `node bench/verify-parts.ts [sms|status|json]`: where one signature check's time goes in workerd.
// One Worker runs, in the same isolate and interleaved over 9 rounds (order reversed every other round),
// the whole check (`verifySignature`) and its parts on section 1's request set: WebCrypto's HMAC verify
// of the already-encoded signed string, the same with its UTF-8 encoding, building the sorted parameter
// string (+ URL, + encoding), and decoding the header. Prints the median µs of each.
import { fileURLToPath } from "node:url";
import { sid } from "./lib/events.ts";
import { startScriptWorker } from "./lib/script-worker.ts";
import { median } from "./lib/stats.ts";
import { makeSets } from "./sections/verify.ts";

const which = ["sms", "status", "json"].indexOf(process.argv[2] ?? "sms");
if (which === -1) {
  console.error("usage: node bench/verify-parts.ts [sms|status|json]");
  process.exit(2);
}
const PARTS = ["verifySignature (the whole check)", "HMAC verify, string already encoded", "HMAC verify + UTF-8 encoding", "sort + concatenate the parameters", "… + URL + UTF-8 encoding", "decode the header (strict base64)"];
const ROUNDS = 9;
const CHECKS_PER_RUN = 20_000;
const signature = JSON.stringify(fileURLToPath(new URL("../src/verification/signature.ts", import.meta.url)));
const encoding = JSON.stringify(fileURLToPath(new URL("../src/util/encoding.ts", import.meta.url)));
const source = `
import { signedPayload, verifySignature } from ${signature};
import { fromBase64 } from ${encoding};
const encoder = new TextEncoder();
const scratch = new Uint8Array(1 << 16);
let set, key;
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/load") {
      const input = await request.json();
      key = await crypto.subtle.importKey("raw", encoder.encode(input.tokens[0]), { name: "HMAC", hash: "SHA-1" }, false, ["verify"]);
      set = input.checks.map((c) => {
        const check = { url: c.url, params: c.params, signature: c.signature, ...(c.body === undefined ? {} : { rawBody: encoder.encode(c.body) }) };
        // What the HMAC covers: URL + sorted parameters (a JSON body's URL alone), flattened once here.
        const signed = signedPayload(c.url, c.params).split("").join("");
        return { check, tokens: input.tokens, signed, encoded: encoder.encode(signed), provided: fromBase64(c.signature) };
      });
      return new Response("loaded");
    }
    const part = Number(url.searchParams.get("part"));
    const n = Number(url.searchParams.get("n"));
    let sink = 0;
    for (let i = 0; i < n; i++) {
      const s = set[i % set.length];
      switch (part) {
        case 0: sink += (await verifySignature(s.tokens, s.check)).ok ? 1 : 0; break;
        case 1: sink += (await crypto.subtle.verify("HMAC", key, s.provided, s.encoded)) ? 1 : 0; break;
        case 2: sink += (await crypto.subtle.verify("HMAC", key, s.provided, scratch.subarray(0, encoder.encodeInto(s.signed, scratch).written))) ? 1 : 0; break;
        case 3: sink += signedPayload("", s.check.params).length; break;
        case 4: sink += encoder.encodeInto(signedPayload(s.check.url, s.check.params), scratch).written; break;
        case 5: sink += fromBase64(s.check.signature).length; break;
      }
    }
    return Response.json({ sink });
  },
};`;
const worker = await startScriptWorker("verify-parts", source);
try {
  const url = worker.url;
  const token = "bench-verify-token-not-a-secret";
  const set = makeSets(token, sid("AC"))[which]!;
  await fetch(`${url}load`, { method: "POST", body: JSON.stringify({ tokens: [token], checks: set.checks }) });
  const time = async (part: number): Promise<number> => {
    const started = performance.now();
    await (await fetch(`${url}run?part=${part}&n=${CHECKS_PER_RUN}`)).json();
    return ((performance.now() - started) * 1000) / CHECKS_PER_RUN;
  };
  const samples = PARTS.map(() => [] as number[]);
  for (let part = 0; part < PARTS.length; part++) await time(part); // warm-up (JIT)
  for (let round = 0; round < ROUNDS; round++) {
    const order = PARTS.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const part of order) samples[part]!.push(await time(part));
  }
  console.log(`${set.name}: median of ${ROUNDS} interleaved rounds, µs per check`);
  PARTS.forEach((name, i) => console.log(`  ${median(samples[i]!).toFixed(2).padStart(6)}  ${name}`));
} finally {
  await worker.stop();
}
