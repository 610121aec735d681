// The one capped body reader: every route that reads a request body reads it through here, so no path
// buffers more than its cap, with or without a Content-Length (a chunked body has none).

/**
 * The body bytes, refused with `tooLarge()` past `maxBytes`: on the declared Content-Length before
 * anything is read, and while streaming (the stream is cancelled at the first byte over the cap, so
 * memory stays bounded whatever the client sends).
 */
export async function readCappedBody(request: Request, maxBytes: number, tooLarge: () => Error): Promise<Uint8Array<ArrayBuffer>> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge();
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}
