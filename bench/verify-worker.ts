// A tiny Worker for the verification benchmark (bench/sections/verify.ts): it imports the guard's own
// src/verification/signature.ts and runs verifySignature over a fixed set of signed requests, as the
// webhook handler calls it (URL as the Worker sees it, parsed form pairs, raw body bytes, header value).
//   POST /load  {name, tokens, checks: [{url, params, body?, signature}]}   keeps a set in memory
//   GET  /run?name=…&n=…                                                  n checks, cycling the set
//   GET  /floor?name=…&n=…   n bare `await crypto.subtle.sign("HMAC", key, bytes)` of the set's first
//                            signed string: the runtime's own cost of the one HMAC a check needs
// Time is measured by the caller around /run (inside workerd, Date.now() does not advance while a
// request only computes, by design).
import { signedPayload, verifySignature, type SignatureCheck } from "../src/verification/signature.ts";

interface LoadedSet {
  tokens: string[];
  checks: SignatureCheck[];
}

const sets = new Map<string, LoadedSet>();
const encoder = new TextEncoder();

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/load") {
      const input = (await request.json()) as {
        name: string;
        tokens: string[];
        checks: Array<{ url: string; params: Array<[string, string]>; body?: string; signature: string }>;
      };
      sets.set(input.name, {
        tokens: input.tokens,
        checks: input.checks.map((c) => ({
          url: c.url,
          params: c.params,
          ...(c.body !== undefined ? { rawBody: encoder.encode(c.body) } : {}),
          signature: c.signature,
        })),
      });
      return new Response("loaded");
    }
    if (url.pathname === "/run") {
      const set = sets.get(url.searchParams.get("name") ?? "");
      if (!set) return new Response("no such set", { status: 404 });
      const n = Number(url.searchParams.get("n") ?? "1000");
      let ok = 0;
      for (let i = 0; i < n; i++) {
        const verdict = await verifySignature(set.tokens, set.checks[i % set.checks.length]!);
        if (verdict.ok) ok++;
      }
      return Response.json({ n, ok });
    }
    if (url.pathname === "/floor") {
      const set = sets.get(url.searchParams.get("name") ?? "");
      if (!set) return new Response("no such set", { status: 404 });
      const n = Number(url.searchParams.get("n") ?? "1000");
      const first = set.checks[0]!;
      const data = encoder.encode(first.rawBody === undefined ? signedPayload(first.url, first.params) : first.url);
      const key = await crypto.subtle.importKey("raw", encoder.encode(set.tokens[0]!), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
      let bytes = 0;
      for (let i = 0; i < n; i++) bytes += (await crypto.subtle.sign("HMAC", key, data)).byteLength;
      return Response.json({ n, ok: bytes === n * 20 ? n : 0 });
    }
    return new Response("not found", { status: 404 });
  },
};
