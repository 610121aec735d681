// The one capped body reader (src/http/body.ts): the bytes as sent up to the cap, refused past it on the
// declared length or while streaming, and the stream cancelled at the first byte over.
import { describe, expect, it } from "vitest";
import { readCappedBody } from "../../src/http/body.ts";

class TooLarge extends Error {}
const tooLarge = () => new TooLarge("too large");

function streamOf(chunks: Uint8Array[]): { stream: ReadableStream<Uint8Array>; pulls: () => number; cancelled: () => boolean } {
  let pulls = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks[pulls++];
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, pulls: () => pulls, cancelled: () => cancelled };
}

const post = (body: BodyInit | null, headers: Record<string, string> = {}) =>
  new Request("https://guard.example.com/x", { method: "POST", body, headers });

describe("readCappedBody", () => {
  it("returns the bytes exactly as sent, up to and including the cap", async () => {
    const bytes = new Uint8Array([0, 1, 2, 255, 10]);
    expect(await readCappedBody(post(bytes), 5, tooLarge)).toEqual(bytes);
  });

  it("returns no bytes for a request without a body", async () => {
    expect((await readCappedBody(new Request("https://guard.example.com/x"), 5, tooLarge)).byteLength).toBe(0);
  });

  it("refuses on the declared content-length before reading", async () => {
    await expect(readCappedBody(post("123456"), 5, tooLarge)).rejects.toBeInstanceOf(TooLarge);
  });

  it("reads a body with a content-length as sent", async () => {
    const bytes = new Uint8Array(1000).map((_, i) => i % 251);
    const request = post(bytes, { "content-length": "1000" });
    expect(await readCappedBody(request, 1000, tooLarge)).toEqual(bytes);
  });

  it("refuses a body longer than the content-length it declares once it passes the cap", async () => {
    const source = streamOf(Array.from({ length: 5 }, () => new Uint8Array(4)));
    await expect(readCappedBody(post(source.stream, { "content-length": "4" }), 10, tooLarge)).rejects.toBeInstanceOf(TooLarge);
  });

  it("refuses a streamed body without a content-length at the first chunk over the cap and cancels the stream", async () => {
    const chunk = new Uint8Array(4);
    const source = streamOf(Array.from({ length: 100 }, () => chunk));
    const request = post(source.stream);
    expect(request.headers.get("content-length")).toBeNull();
    await expect(readCappedBody(request, 10, tooLarge)).rejects.toBeInstanceOf(TooLarge);
    expect(source.pulls()).toBeLessThan(10);
    expect(source.cancelled()).toBe(true);
  });
});
