// Twilio request signatures (X-Twilio-Signature), computed and checked with WebCrypto only. Pure: no
// Env, no Worker types; the same file runs in workerd and in Node 22 (tools/webhook.ts).
//
// Twilio's scheme (https://www.twilio.com/docs/usage/webhooks/webhooks-security): take the full URL
// Twilio was configured with (query included), append every POST parameter sorted by name as
// name+value with no separators, HMAC-SHA1 the UTF-8 bytes with the auth token, base64 the digest.
// JSON bodies are not signed as parameters: the URL carries bodySHA256=<hex SHA-256 of the body>.
import { timingSafeEqualBytes, timingSafeEqualString } from "../util/constant-time.ts";
import { fromBase64, toBase64, toHex, utf8 } from "../util/encoding.ts";
import type { FormPairs } from "./form.ts";
import { candidateUrls } from "./url-candidates.ts";

export type { FormPairs } from "./form.ts";

/** Twilio signs with HMAC-SHA1 keyed by the auth token (webhooks-security docs). */
const SIGNATURE_HMAC = { name: "HMAC", hash: "SHA-1" } as const;
/** An HMAC-SHA1 digest is 20 bytes; a header that does not decode to that can be rejected unhashed. */
const SIGNATURE_BYTES = 20;
/** Query parameter Twilio adds to JSON-body webhooks: hex SHA-256 of the raw body (webhooks-security docs). */
const BODY_HASH_PARAM = "bodySHA256";
/** Imported CryptoKeys kept per token; a few tokens (primary, secondary, subaccounts) is normal. */
const KEY_CACHE_LIMIT = 256;

export interface SignatureCheck {
  /** request.url exactly as the Worker sees it. */
  url: string;
  /** PUBLIC_URL: replaces scheme/host/port and prefixes its path to the request's. */
  publicUrl?: string;
  /** When set, URLs with "user:password@" userinfo are tried as well as without. */
  basicAuth?: { user: string; password: string };
  /** POST form parameters; [] for GET and for JSON bodies. */
  params: FormPairs;
  /** The body bytes, needed when the URL carries bodySHA256. */
  rawBody?: Uint8Array;
  /** X-Twilio-Signature header value. */
  signature: string | null;
}

export type SignatureVerdict =
  | { ok: true; tokenIndex: number }
  | { ok: false; reason: "missing-signature" | "bad-signature" | "body-hash-mismatch" };

const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(token: string): Promise<CryptoKey> {
  const cached = keyCache.get(token);
  if (cached) return cached;
  if (token === "") throw new Error("an empty auth token cannot sign or verify");
  const key = crypto.subtle.importKey("raw", utf8(token), SIGNATURE_HMAC, false, ["sign"]);
  key.catch(() => keyCache.delete(token));
  if (keyCache.size >= KEY_CACHE_LIMIT) {
    const oldest = keyCache.keys().next();
    if (!oldest.done) keyCache.delete(oldest.value);
  }
  keyCache.set(token, key);
  return key;
}

async function hmac(token: string, data: string): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(token), utf8(data)));
}

/**
 * The parameter part of the signed string: keys sorted by UTF-16 code units (JS default sort), each
 * distinct value of a repeated key once, values sorted, then key+value concatenated. This is
 * twilio-node's getExpectedTwilioSignature (Object.keys(params).sort(), Array.from(new Set(v)).sort()).
 */
function paramsSuffix(params: FormPairs): string {
  const byKey = new Map<string, string[]>();
  for (const [key, value] of params) {
    const values = byKey.get(key);
    if (values) values.push(value);
    else byKey.set(key, [value]);
  }
  let out = "";
  for (const key of [...byKey.keys()].sort()) {
    const values = byKey.get(key)!;
    for (const value of values.length === 1 ? values : [...new Set(values)].sort()) out += key + value;
  }
  return out;
}

/** The exact string Twilio HMACs: the URL, then the sorted parameters as key+value. */
export function signedPayload(url: string, params: FormPairs): string {
  return url + paramsSuffix(params);
}

/** Base64 HMAC-SHA1 of signedPayload(url, params): what Twilio puts in X-Twilio-Signature. */
export async function computeSignature(token: string, url: string, params: FormPairs): Promise<string> {
  return toBase64(await hmac(token, signedPayload(url, params)));
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  // WebCrypto wants an ArrayBuffer-backed view; copy only if the bytes sit in a SharedArrayBuffer.
  const view = bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
  return toHex(await crypto.subtle.digest("SHA-256", view));
}

/** The first bodySHA256 query value (as twilio-node reads it: URLSearchParams.get), or null. */
function bodyHashParam(url: string): string | null {
  const start = url.indexOf("?");
  if (start === -1) return null;
  const end = url.indexOf("#", start);
  return new URLSearchParams(url.slice(start + 1, end === -1 ? undefined : end)).get(BODY_HASH_PARAM);
}

/**
 * Checks X-Twilio-Signature against each token and each URL form Twilio may have signed (see
 * url-candidates.ts). Cheapest first: primary token on the URL as seen, and stop at the first match.
 * With bodySHA256 in the URL, the URL is signed with no parameters and the body must hash to it.
 */
export async function verifySignature(tokens: readonly string[], check: SignatureCheck): Promise<SignatureVerdict> {
  if (check.signature === null || check.signature === "") return { ok: false, reason: "missing-signature" };
  const provided = fromBase64(check.signature);
  if (provided === null || provided.length !== SIGNATURE_BYTES) return { ok: false, reason: "bad-signature" };

  const bodyHash = bodyHashParam(check.url);
  const suffix = bodyHash === null ? paramsSuffix(check.params) : "";
  let tokenIndex = -1;
  search: for (const url of candidateUrls(check)) {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === "") continue;
      if (timingSafeEqualBytes(await hmac(token, url + suffix), provided)) {
        tokenIndex = i;
        break search;
      }
    }
  }
  if (tokenIndex === -1) return { ok: false, reason: "bad-signature" };

  if (bodyHash !== null) {
    if (check.rawBody === undefined) return { ok: false, reason: "body-hash-mismatch" };
    if (!timingSafeEqualString(await sha256Hex(check.rawBody), bodyHash)) {
      return { ok: false, reason: "body-hash-mismatch" };
    }
  }
  return { ok: true, tokenIndex };
}
