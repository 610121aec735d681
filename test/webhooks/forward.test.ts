// Relaying the origin's answer (src/webhooks/forward.ts): byte for byte within the cap, a 502 past it,
// whether the answer declares its length (read in one call) or streams without one (read chunk by chunk).
import { describe, expect, it } from "vitest";
import { GuardError } from "../../src/http/errors.ts";
import { forwardToOrigin, MAX_ORIGIN_ANSWER_BYTES, relayedHeaders } from "../../src/webhooks/forward.ts";

const ORIGIN = "https://origin.example.com";

function relay(answer: () => Response): Promise<Response> {
  const request = new Request("https://guard.example.com/webhooks/sms", { method: "POST", body: "a=1" });
  return forwardToOrigin(request, new Uint8Array(new TextEncoder().encode("a=1")), { originUrl: ORIGIN, guardHeaders: {}, fetch: async () => answer() });
}

/** A body of `total` bytes in `chunk`-byte pieces, without a Content-Length. */
function streamed(total: number, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(chunk, total - sent);
      sent += n;
      controller.enqueue(new Uint8Array(n).fill(0x41));
    },
  });
}

async function refusal(promise: Promise<Response>): Promise<{ status: number; reason: string }> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GuardError);
  return { status: (error as GuardError).status, reason: (error as GuardError).reason };
}

describe("forwardToOrigin's answer", () => {
  it("relays an answer that declares its length byte for byte, with its status and headers", async () => {
    const body = "<Response><Message>ünïcode</Message></Response>";
    const bytes = new TextEncoder().encode(body);
    const response = await relay(() => new Response(bytes, { status: 201, headers: { "content-type": "text/xml", "content-length": String(bytes.byteLength) } }));
    expect(response.status).toBe(201);
    expect(response.headers.get("content-type")).toBe("text/xml");
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(bytes);
  });

  it("drops the answer's hop-by-hop headers, whatever their case, and keeps repeated Set-Cookie values apart", async () => {
    const headers = new Headers({ "Content-Type": "text/xml", "Keep-Alive": "timeout=5", Connection: "keep-alive", Upgrade: "h2c", "X-App": "1" });
    headers.append("Set-Cookie", "a=1");
    headers.append("Set-Cookie", "b=2");
    const response = await relay(() => new Response("<Response/>", { headers }));
    expect([...new Set(response.headers.keys())].sort()).toEqual(["content-type", "set-cookie", "x-app"]);
    expect(response.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
  });

  it("drops the hop-by-hop headers of an answer without cookies, and keeps every other header and value", async () => {
    const headers = new Headers({ "Content-Type": "text/xml", "Keep-Alive": "timeout=5", Connection: "keep-alive", "Transfer-Encoding": "chunked", "X-App": "1", constructor: "c" });
    headers.append("__proto__", "p");
    headers.append("X-App", "2");
    headers.append("Vary", "Accept");
    const response = await relay(() => new Response("<Response/>", { headers }));
    expect([...response.headers].filter(([name]) => name !== "content-length")).toEqual([
      ["__proto__", "p"],
      ["constructor", "c"],
      ["content-type", "text/xml"],
      ["vary", "Accept"],
      ["x-app", "1, 2"],
    ]);
  });

  it("relays the same headers as pairs when the answer sets cookies as when it does not", () => {
    const plain = new Headers({ "content-type": "text/xml", connection: "close", "x-app": "1" });
    const withCookie = new Headers(plain);
    withCookie.append("set-cookie", "a=1");
    expect(Object.entries(relayedHeaders(plain))).toEqual([["content-type", "text/xml"], ["x-app", "1"]]);
    expect(relayedHeaders(withCookie)).toEqual([["content-type", "text/xml"], ["set-cookie", "a=1"], ["x-app", "1"]]);
  });

  it("relays a streamed answer without a Content-Length byte for byte", async () => {
    const response = await relay(() => new Response(streamed(100_000, 7_000), { headers: { "content-type": "text/xml" } }));
    const body = new Uint8Array(await response.arrayBuffer());
    expect(body.byteLength).toBe(100_000);
    expect(body.every((b) => b === 0x41)).toBe(true);
  });

  it("is a 502 when the declared length is over the cap, without reading the body", async () => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(1024));
      },
    });
    const answer = () => new Response(body, { headers: { "content-length": String(MAX_ORIGIN_ANSWER_BYTES + 1) } });
    expect(await refusal(relay(answer))).toEqual({ status: 502, reason: "origin-answer-too-large" });
    expect(pulled).toBeLessThanOrEqual(1);
  });

  it("is a 502 when a streamed answer without a Content-Length passes the cap", async () => {
    expect(await refusal(relay(() => new Response(streamed(MAX_ORIGIN_ANSWER_BYTES + 1))))).toEqual({ status: 502, reason: "origin-answer-too-large" });
  });

  it("counts an encoded answer's bytes as they arrive, not by its Content-Length, and stops at the cap", async () => {
    // Endless: read whole (as a declared length would be), it would never end.
    const answer = () => new Response(streamed(Number.POSITIVE_INFINITY), { headers: { "content-length": "10", "content-encoding": "gzip" } });
    expect(await refusal(relay(answer))).toEqual({ status: 502, reason: "origin-answer-too-large" });
  });
});
