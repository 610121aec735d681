// `node bench/verify-ab.ts <treeA> <treeB> [rounds]`: the verifier of one tree against another's, in the
// same workerd, on section 1's request sets. Both trees' src/verification/signature.ts are bundled into
// one Worker; each round times n checks with A and n with B back to back (alternating who goes first)
// and the per-round ratio A/B is kept, so the machine's drift hits both alike. Prints, per set, the
// median µs per check of each tree and the median per-round ratio (> 1: B is faster).
//   e.g. git worktree add /tmp/before <commit>; node bench/verify-ab.ts /tmp/before .
import { resolve } from "node:path";
import { makeSets } from "./sections/verify.ts";
import { sid } from "./lib/events.ts";
import { startScriptWorker } from "./lib/script-worker.ts";
import { inTurn, median } from "./lib/stats.ts";

const [treeA, treeB] = [process.argv[2], process.argv[3]].map((t) => (t === undefined ? undefined : resolve(t)));
if (treeA === undefined || treeB === undefined) {
  console.error("usage: node bench/verify-ab.ts <treeA> <treeB> [rounds]");
  process.exit(2);
}
const rounds = Number(process.argv[4] ?? 15);
/** Checks per timed request: long enough (~0.1 s) that the request's own overhead is noise. */
const CHECKS_PER_RUN = 20_000;

const signatureModule = (tree: string) => JSON.stringify(`${tree}/src/verification/signature.ts`);
const source = `
import { verifySignature as verifyA } from ${signatureModule(treeA)};
import { verifySignature as verifyB } from ${signatureModule(treeB)};
const encoder = new TextEncoder();
const sets = new Map();
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/load") {
      const set = await request.json();
      sets.set(set.name, { tokens: set.tokens, checks: set.checks.map((c) => ({ url: c.url, params: c.params, signature: c.signature, ...(c.body === undefined ? {} : { rawBody: encoder.encode(c.body) }) })) });
      return new Response("loaded");
    }
    const set = sets.get(url.searchParams.get("name"));
    const verify = url.searchParams.get("tree") === "A" ? verifyA : verifyB;
    const n = Number(url.searchParams.get("n"));
    let ok = 0;
    for (let i = 0; i < n; i++) if ((await verify(set.tokens, set.checks[i % set.checks.length])).ok) ok++;
    return Response.json({ ok });
  },
};`;
const worker = await startScriptWorker("verify-ab", source);
try {
  const url = worker.url;
  const token = "bench-verify-token-not-a-secret";
  for (const set of makeSets(token, sid("AC"))) {
    await fetch(`${url}load`, { method: "POST", body: JSON.stringify({ name: set.name, tokens: [token], checks: set.checks }) });
    const time = async (tree: "A" | "B"): Promise<number> => {
      const started = performance.now();
      const { ok } = (await (await fetch(`${url}run?name=${encodeURIComponent(set.name)}&tree=${tree}&n=${CHECKS_PER_RUN}`)).json()) as { ok: number };
      if (ok !== CHECKS_PER_RUN) throw new Error(`tree ${tree} rejected ${CHECKS_PER_RUN - ok} valid checks of ${set.name}`);
      return ((performance.now() - started) * 1000) / CHECKS_PER_RUN;
    };
    await time("A"); // warm-up (JIT)
    await time("B");
    const a: number[] = [];
    const b: number[] = [];
    const ratio: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const [x, y] = await inTurn(round, () => time("A"), () => time("B"));
      a.push(x);
      b.push(y);
      ratio.push(x / y);
    }
    const sorted = [...ratio].sort((p, q) => p - q);
    console.log(`${set.name}: A ${median(a).toFixed(2)} µs/check, B ${median(b).toFixed(2)} µs/check; A/B per round: median ${median(ratio).toFixed(2)} (range ${sorted[0]!.toFixed(2)}–${sorted.at(-1)!.toFixed(2)}, ${rounds} rounds)`);
  }
} finally {
  await worker.stop();
}
