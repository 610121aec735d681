// Forwarding a verified webhook to the origin app and relaying its answer. Method, query and body bytes
// are kept. Request headers are not signed, so only an allowlist reaches the origin (FORWARDED_HEADERS,
// documented in docs/webhook-trust.md): what Twilio sends and an app reads. Everything else a caller
// could set to steer the origin or a framework in front of it (Forwarded, X-Forwarded-*, X-Real-IP,
// X-Original-URL, X-HTTP-Method-Override, x-middleware-subrequest, Cookie, Authorization, X-Guard-*)
// is dropped, as are headers named in Connection (RFC 9110 §7.6.1). X-Forwarded-For is the edge's own
// CF-Connecting-IP.
import { GuardError } from "../http/errors.ts";

/**
 * Twilio waits 15 s for a webhook answer (https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides):
 * we give the origin 10 s, so that our 502 reaches Twilio in time for it to use the number's Fallback URL.
 */
export const ORIGIN_TIMEOUT_MS = 10_000;
/** TwiML answers are small (Twilio caps a TwiML document at 64 KB); a larger answer is an origin fault. */
export const MAX_ORIGIN_ANSWER_BYTES = 1024 * 1024;

/** RFC 9110 §7.6.1 hop-by-hop headers, plus those the runtime sets itself for the new connection. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
]);

/**
 * Request headers forwarded to the origin: the content headers the body needs, and what Twilio sends
 * with a webhook (https://www.twilio.com/docs/usage/webhooks/webhooks-overview: X-Twilio-Signature,
 * I-Twilio-Idempotency-Token, X-Home-Region, X-Twilio-Webhooks-Signature-Settings, its User-Agent).
 * The origin may re-verify the signature itself. Authorization is never forwarded: the guard consumed
 * the Basic credentials, and in signature mode Twilio sends none.
 */
export const FORWARDED_HEADERS: ReadonlySet<string> = new Set([
  "accept",
  "accept-charset",
  "content-type",
  "user-agent",
  "x-twilio-signature",
  "x-twilio-webhooks-signature-settings",
  "i-twilio-idempotency-token",
  "x-home-region",
]);
/** An unsigned header's value forwarded at most this long: Twilio's own values are far shorter. */
export const MAX_FORWARDED_HEADER_BYTES = 1024;

export interface ForwardOptions {
  originUrl: string;
  /** Headers to add (X-Guard-Verified, X-Guard-Account, …). */
  guardHeaders: Record<string, string>;
  /** request.url parsed, when the caller has it. */
  requestUrl?: URL;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** `/webhooks/x/y?q` → `ORIGIN_URL/x/y?q`. */
export function originTarget(originUrl: string, requestUrl: URL): string {
  const rest = requestUrl.pathname.replace(/^\/webhooks(?=\/|$)/, "");
  return `${originUrl}${rest}${requestUrl.search}`;
}

/** Header names listed in Connection (RFC 9110 §7.6.1): meant for this hop only. */
function connectionNamed(connection: string): Set<string> {
  const named = new Set<string>();
  for (const token of connection.split(",")) {
    const name = token.trim().toLowerCase();
    if (name !== "") named.add(name);
  }
  return named;
}

/**
 * The headers sent to the origin, as a plain record the runtime turns into Headers in one call (cheaper
 * than a Headers built with an append per name). The incoming headers are walked once: a Headers
 * iterator yields lower-case names, each once, with repeated values joined, as `get` would.
 */
export function forwardHeaders(incoming: Headers, options: ForwardOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  let connection: string | null = null;
  let client: string | null = null;
  for (const [name, value] of incoming) {
    if (name === "connection") connection = value;
    else if (name === "cf-connecting-ip") client = value;
    else if (FORWARDED_HEADERS.has(name) && value.length <= MAX_FORWARDED_HEADER_BYTES) headers[name] = value;
  }
  if (connection !== null) for (const name of connectionNamed(connection)) delete headers[name];
  if (client !== null && client.length <= 64) headers["x-forwarded-for"] = client;
  for (const name in options.guardHeaders) headers[name.toLowerCase()] = options.guardHeaders[name]!;
  return headers;
}

/**
 * The answer's end-to-end headers, made into Headers by the runtime in one call: a record (the
 * cheapest for the runtime to take), or pairs when the answer sets cookies (each Set-Cookie kept apart,
 * which a record cannot hold). A Headers iterator yields lower-case names, each once with repeated
 * values joined, except Set-Cookie, one entry per value.
 */
export function relayedHeaders(answer: Headers): Record<string, string> | Array<[string, string]> {
  // No prototype: a header named __proto__ is an entry like any other.
  const record: Record<string, string> = Object.create(null);
  for (const [name, value] of answer) {
    if (name === "set-cookie") return relayedPairs(answer);
    if (!HOP_BY_HOP.has(name)) record[name] = value;
  }
  return record;
}

function relayedPairs(answer: Headers): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of answer) if (!HOP_BY_HOP.has(name)) pairs.push([name, value]);
  return pairs;
}

function badGateway(reason: string): GuardError {
  return new GuardError(502, "origin unavailable", { reason });
}

/**
 * The answer's declared length when the body is delivered exactly as declared (no Content-Encoding:
 * fetch would decode it into more bytes than declared), else null.
 */
function declaredLength(response: Response): number | null {
  const declared = response.headers.get("content-length");
  if (declared === null || !/^\d{1,15}$/.test(declared)) return null;
  const encoding = response.headers.get("content-encoding");
  if (encoding !== null && encoding.trim().toLowerCase() !== "identity") return null;
  return Number(declared);
}

async function readAnswer(response: Response, signal: AbortSignal, deadline: Promise<never>): Promise<ArrayBuffer> {
  if (response.body === null) return new ArrayBuffer(0);
  const declared = declaredLength(response);
  if (declared !== null) {
    // The runtime frames the body by its Content-Length: one read of at most that many bytes.
    if (declared > MAX_ORIGIN_ANSWER_BYTES) {
      await response.body.cancel().catch(() => {});
      throw badGateway("origin-answer-too-large");
    }
    const answer = await Promise.race([response.arrayBuffer(), deadline]);
    if (signal.aborted) throw badGateway("origin-timeout");
    if (answer.byteLength > MAX_ORIGIN_ANSWER_BYTES) throw badGateway("origin-answer-too-large");
    return answer;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const onAbort = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", onAbort);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (signal.aborted) throw badGateway("origin-timeout");
      if (done) break;
      total += value.byteLength;
      if (total > MAX_ORIGIN_ANSWER_BYTES) throw badGateway("origin-answer-too-large");
      chunks.push(value);
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out.buffer;
}

/**
 * Sends the request on and returns the origin's answer (status, content-type and other end-to-end
 * headers, body). Connection failure, a timeout before the whole answer arrived, or an oversized answer
 * is a 502.
 */
export async function forwardToOrigin(request: Request, body: Uint8Array<ArrayBuffer>, options: ForwardOptions): Promise<Response> {
  const target = originTarget(options.originUrl, options.requestUrl ?? new URL(request.url));
  const controller = new AbortController();
  // Raced against the deadline as well as aborted by it: the answer is due in time even if the
  // connection ignores the abort. The timer rejects the deadline itself (no abort listener to register).
  let expire!: (error: Error) => void;
  const deadline = new Promise<never>((_, reject) => {
    expire = reject;
  });
  const timer = setTimeout(() => {
    controller.abort();
    expire(new Error("origin timeout"));
  }, options.timeoutMs ?? ORIGIN_TIMEOUT_MS);
  const doFetch = options.fetch ?? fetch;
  try {
    let response: Response;
    try {
      response = await Promise.race([
        doFetch(target, {
          method: request.method,
          headers: forwardHeaders(request.headers, options),
          ...(request.method === "GET" || request.method === "HEAD" ? {} : { body }),
          redirect: "manual",
          signal: controller.signal,
        }),
        deadline,
      ]);
    } catch {
      throw badGateway(controller.signal.aborted ? "origin-timeout" : "origin-unreachable");
    }
    let answer: ArrayBuffer;
    try {
      answer = await readAnswer(response, controller.signal, deadline);
    } catch (error) {
      if (error instanceof GuardError) throw error;
      throw badGateway(controller.signal.aborted ? "origin-timeout" : "origin-unreachable");
    }
    return new Response(response.status === 204 || response.status === 304 ? null : answer, {
      status: response.status,
      headers: relayedHeaders(response.headers),
    });
  } finally {
    clearTimeout(timer);
  }
}
