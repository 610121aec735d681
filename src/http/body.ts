// The one capped body reader: every route that reads a request body reads it through here, so no path
// buffers more than its cap, with or without a Content-Length (a chunked body has none).

/** A Content-Length the runtime frames the body by (digits only; 15 keep it an exact Number). */
const DECIMAL = /^\d{1,15}$/;

/**
 * The body bytes, refused with `tooLarge()` past `maxBytes`: on the declared Content-Length before
 * anything is read, and while streaming (the stream is cancelled at the first byte over the cap, so
 * memory stays bounded whatever the client sends).
 */
export async function readCappedBody(request: Request, maxBytes: number, tooLarge: () => Error): Promise<Uint8Array<ArrayBuffer>> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge();
  if (!request.body) return new Uint8Array(0);
  if (declared !== null && DECIMAL.test(declared)) {
    // A body sent with a Content-Length is framed by it (HTTP/1.1 and the runtime that parses it): no
    // more than the declared bytes, checked above, can arrive, so it is read in one call; the length is
    // checked again for a request built in code whose header and body disagree.
    const body = new Uint8Array(await request.arrayBuffer());
    if (body.byteLength > maxBytes) throw tooLarge();
    return body;
  }
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
