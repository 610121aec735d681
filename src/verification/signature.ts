// Twilio request signatures (X-Twilio-Signature), computed and checked with WebCrypto only. Pure: no
// Env, no Worker types; the same file runs in workerd and in Node 22 (tools/webhook.ts).
//
// Twilio's scheme (https://www.twilio.com/docs/usage/webhooks/webhooks-security): take the full URL
// Twilio was configured with (query included), append every POST parameter sorted by name as
// name+value with no separators, HMAC-SHA1 the UTF-8 bytes with the auth token, base64 the digest.
// JSON bodies are not signed as parameters: the URL carries bodySHA256=<hex SHA-256 of the body>.
import { timingSafeEqualString } from "../util/constant-time.ts";
import { fromBase64, toBase64, toHex, utf8 } from "../util/encoding.ts";
import type { FormPairs } from "./form.ts";
import { candidateUrls } from "./url-candidates.ts";

export type { FormPairs } from "./form.ts";

/**
 * Twilio signs with HMAC-SHA1 keyed by the auth token (webhooks-security docs), or, when a Webhook
 * Rule names a SharedKey, with that key's secret and the Setting's algorithm, HMAC_SHA256 (Twilio's
 * webhook-shared-keys docs: "only the hash changes", the signed string is the same).
 */
export type SignatureAlgorithm = "HMAC_SHA1" | "HMAC_SHA256";
const HMAC_PARAMS = {
  HMAC_SHA1: { name: "HMAC", hash: "SHA-1" },
  HMAC_SHA256: { name: "HMAC", hash: "SHA-256" },
} as const;
/** Digest sizes (SHA-1: 20 bytes, SHA-256: 32); a header that does not decode to that is rejected unhashed. */
const SIGNATURE_BYTES = { HMAC_SHA1: 20, HMAC_SHA256: 32 } as const;
/** Query parameter Twilio adds to JSON-body webhooks: hex SHA-256 of the raw body (webhooks-security docs). */
const BODY_HASH_PARAM = "bodySHA256";
/**
 * Imported CryptoKeys kept per token. As many as the isolate's TokenCache holds accounts
 * (src/accounts/token-cache.ts), so a multi-tenant guard with thousands of active subaccounts does not
 * re-import a key per webhook; a key and its token string are a few hundred bytes.
 */
export const KEY_CACHE_LIMIT = 10_000;

export interface SignatureCheck {
  /** request.url exactly as the Worker sees it. */
  url: string;
  /** PUBLIC_URL (one base, or several): replaces scheme/host/port and prefixes its path to the request's. */
  publicUrl?: string | readonly string[];
  /** When set, URLs with "user:password@" userinfo are tried as well as without. */
  basicAuth?: { user: string; password: string };
  /** POST form parameters; [] for GET and for JSON bodies. */
  params: FormPairs;
  /** The body bytes, needed when the URL carries bodySHA256. */
  rawBody?: Uint8Array;
  /** X-Twilio-Signature header value. */
  signature: string | null;
  /** HMAC_SHA1 (auth tokens, the default) or HMAC_SHA256 (SharedKeys). */
  algorithm?: SignatureAlgorithm;
}

export type SignatureVerdict =
  | { ok: true; tokenIndex: number }
  | { ok: false; reason: "missing-signature" | "bad-signature" | "body-hash-mismatch" };

/**
 * Imported keys per token. An entry is the import's promise until it settles, then the CryptoKey
 * itself, so a cached key costs no extra await on the hot path (each await is a microtask turn, and
 * in workerd a turn costs about as much as a small HMAC: docs/benchmarks.md).
 */
const keyCaches = {
  HMAC_SHA1: new Map<string, CryptoKey | Promise<CryptoKey>>(),
  HMAC_SHA256: new Map<string, CryptoKey | Promise<CryptoKey>>(),
};

function hmacKey(token: string, algorithm: SignatureAlgorithm = "HMAC_SHA1"): CryptoKey | Promise<CryptoKey> {
  const keyCache = keyCaches[algorithm];
  const cached = keyCache.get(token);
  if (cached) return cached;
  if (token === "") throw new Error("an empty auth token cannot sign or verify");
  const key = crypto.subtle.importKey("raw", utf8(token), HMAC_PARAMS[algorithm], false, ["sign", "verify"]);
  key.then(
    (imported) => {
      if (keyCache.get(token) === key) keyCache.set(token, imported);
    },
    () => {
      if (keyCache.get(token) === key) keyCache.delete(token);
    },
  );
  if (keyCache.size >= KEY_CACHE_LIMIT) {
    const oldest = keyCache.keys().next();
    if (!oldest.done) keyCache.delete(oldest.value);
  }
  keyCache.set(token, key);
  return key;
}

/**
 * UTF-8 bytes of the signed string, written into one reused buffer: WebCrypto copies its input when
 * sign() or verify() is called (WebCrypto spec, "get a copy of the buffer source"), so the buffer is free
 * again as soon as the call returns, before its promise settles. Saves an allocation per HMAC.
 */
let scratch = new Uint8Array(4096);
const encoder = new TextEncoder();

function encodeToScratch(text: string): Uint8Array<ArrayBuffer> {
  // A UTF-16 code unit takes at most 3 UTF-8 bytes.
  if (text.length * 3 > scratch.length) scratch = new Uint8Array(Math.max(text.length * 3, scratch.length * 2));
  const { written } = encoder.encodeInto(text, scratch);
  return scratch.subarray(0, written);
}

/**
 * Whether `signature` is the HMAC-SHA1 of `data`. WebCrypto's verify compares in constant time
 * (WebCrypto spec, HMAC verify; workerd and Node use CRYPTO_memcmp / timingSafeEqual), and returns a
 * boolean instead of a digest buffer to compare.
 */
function checkHmac(key: CryptoKey, signature: Uint8Array<ArrayBuffer>, data: string): Promise<boolean> {
  return crypto.subtle.verify("HMAC", key, signature, encodeToScratch(data));
}

/** The HMAC digest of `data` keyed by `token`. */
async function hmac(token: string, data: string, algorithm: SignatureAlgorithm = "HMAC_SHA1"): Promise<ArrayBuffer> {
  return crypto.subtle.sign("HMAC", await hmacKey(token, algorithm), encodeToScratch(data));
}

/**
 * Twilio's order for the signed parameters: by name, then by value, comparing UTF-16 code units (the
 * JS default sort, which twilio-node uses). Pairs before `b`.
 */
function pairBefore(a: readonly [string, string], b: readonly [string, string]): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}

/** Above this many pairs, Array.prototype.sort; below, an insertion sort (no comparator callbacks). */
const INSERTION_SORT_MAX = 64;

function sortedPairs(params: FormPairs): Array<readonly [string, string]> {
  const sorted = params.slice();
  if (sorted.length > INSERTION_SORT_MAX) {
    return sorted.sort((a, b) => (pairBefore(a, b) ? -1 : pairBefore(b, a) ? 1 : 0));
  }
  for (let i = 1; i < sorted.length; i++) {
    const pair = sorted[i]!;
    let j = i - 1;
    while (j >= 0 && pairBefore(pair, sorted[j]!)) {
      sorted[j + 1] = sorted[j]!;
      j--;
    }
    sorted[j + 1] = pair;
  }
  return sorted;
}

/**
 * The parameter part of the signed string: keys sorted by UTF-16 code units (JS default sort), each
 * distinct value of a repeated key once, values sorted, then key+value concatenated. This is
 * twilio-node's getExpectedTwilioSignature (Object.keys(params).sort(), Array.from(new Set(v)).sort()):
 * sorting the pairs by key, then value, and dropping repeats of a pair gives the same string.
 */
function paramsSuffix(params: FormPairs): string {
  if (params.length === 0) return "";
  const sorted = sortedPairs(params);
  let out = "";
  let previous: readonly [string, string] | undefined;
  for (const pair of sorted) {
    if (previous === undefined || previous[0] !== pair[0] || previous[1] !== pair[1]) out += pair[0] + pair[1];
    previous = pair;
  }
  return out;
}

/** The exact string Twilio HMACs: the URL, then the sorted parameters as key+value. */
export function signedPayload(url: string, params: FormPairs): string {
  return url + paramsSuffix(params);
}

/** Base64 HMAC of signedPayload(url, params): what Twilio puts in X-Twilio-Signature (SHA-1 unless told). */
export async function computeSignature(token: string, url: string, params: FormPairs, algorithm: SignatureAlgorithm = "HMAC_SHA1"): Promise<string> {
  return toBase64(await hmac(token, signedPayload(url, params), algorithm));
}

function sha256(bytes: Uint8Array): Promise<ArrayBuffer> {
  // WebCrypto wants an ArrayBuffer-backed view; copy only if the bytes sit in a SharedArrayBuffer.
  return crypto.subtle.digest("SHA-256", bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes));
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return toHex(await sha256(bytes));
}

/** The first bodySHA256 query value (as twilio-node reads it: URLSearchParams.get), or null. */
function bodyHashParam(url: string): string | null {
  const start = url.indexOf("?");
  if (start === -1) return null;
  const end = url.indexOf("#", start);
  const query = url.slice(start + 1, end === -1 ? undefined : end);
  if (query.includes("%") || query.includes("+")) return new URLSearchParams(query).get(BODY_HASH_PARAM);
  // Nothing to decode ('%' and '+' are URLSearchParams' only escapes): its first match, found by hand.
  if (!query.includes(BODY_HASH_PARAM)) return null;
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    if ((eq === -1 ? pair : pair.slice(0, eq)) === BODY_HASH_PARAM) return eq === -1 ? "" : pair.slice(eq + 1);
  }
  return null;
}

/**
 * Checks X-Twilio-Signature against each token and each URL form Twilio may have signed (see
 * url-candidates.ts). Cheapest first: primary token on the URL as seen, and stop at the first match.
 * With bodySHA256 in the URL, the URL is signed with no parameters and the body must hash to it.
 */
export async function verifySignature(tokens: readonly string[], check: SignatureCheck): Promise<SignatureVerdict> {
  if (check.signature === null || check.signature === "") return { ok: false, reason: "missing-signature" };
  const algorithm = check.algorithm ?? "HMAC_SHA1";
  const provided = fromBase64(check.signature);
  if (provided === null || provided.length !== SIGNATURE_BYTES[algorithm]) return { ok: false, reason: "bad-signature" };

  const bodyHash = bodyHashParam(check.url);
  const suffix = bodyHash === null ? paramsSuffix(check.params) : "";
  let tokenIndex = -1;
  search: for (const url of candidateUrls(check)) {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === "") continue;
      // One await per HMAC: a key already imported is used as it is.
      const key = hmacKey(token, algorithm);
      if (await checkHmac(key instanceof CryptoKey ? key : await key, provided, url + suffix)) {
        tokenIndex = i;
        break search;
      }
    }
  }
  if (tokenIndex === -1) return { ok: false, reason: "bad-signature" };

  if (bodyHash !== null) {
    if (check.rawBody === undefined) return { ok: false, reason: "body-hash-mismatch" };
    if (!timingSafeEqualString(toHex(await sha256(check.rawBody)), bodyHash)) {
      return { ok: false, reason: "body-hash-mismatch" };
    }
  }
  return { ok: true, tokenIndex };
}
