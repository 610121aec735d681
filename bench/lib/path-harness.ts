// The Worker bench/path-ab.ts and bench/path-profile.ts run: a tree's createApp with an origin `fetch`
// that answers a canned `<Response/>` at once (the headers a node:http origin sends) and an env whose
// ACCOUNT_GUARD stub answers a fixed verdict (no Durable Object), to record() and to recordBatch() (status
// callbacks held together share a call: without it, each such call would take the failure path). POST /load takes the pool of signed
// webhooks; GET /run?n= sends n of them through `app.fetch`, one after the other, and answers how many
// got a 200. PATH_AB_QUIET=1 makes console.log a no-op.

/** The harness Worker's module source for the tree at `tree` (bundled with esbuild by the caller). */
export function pathHarnessSource(tree: string): string {
  return `
import { createApp } from ${JSON.stringify(`${tree}/src/app.ts`)};
${process.env.PATH_AB_QUIET === "1" ? "console.log = () => {};" : ""}
const originFetch = async () => new Response("<Response/>", { status: 200, headers: { "content-type": "text/xml", "content-length": "11", date: new Date(0).toUTCString(), connection: "keep-alive", "keep-alive": "timeout=5" } });
const app = createApp({ fetch: originFetch });
const stub = {
  record: async () => ({ duplicate: false, blocked: false }),
  recordBatch: async (_sid, writes) => writes.map(() => ({ duplicate: false, blocked: false })),
};
let pool = [];
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/load") {
      pool = await request.json();
      return new Response("loaded");
    }
    const n = Number(url.searchParams.get("n"));
    const guardEnv = (env.guardEnv ??= { ...env.VARS, ACCOUNT_GUARD: { getByName: () => stub } });
    const pending = [];
    const ctx = { waitUntil: (p) => pending.push(p), passThroughOnException() {} };
    let ok = 0;
    for (let i = 0; i < n; i++) {
      const r = pool[i % pool.length];
      const response = await app.fetch(new Request(r.url, { method: "POST", headers: r.headers, body: r.body }), guardEnv, ctx);
      await response.arrayBuffer();
      if (response.status === 200) ok++;
    }
    await Promise.all(pending);
    return Response.json({ ok });
  },
};`;
}
