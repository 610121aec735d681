// Admin authentication, the pure part: bearer token check, TOTP check, the rate limiter's arithmetic and
// the token fingerprint the audit trail records. Web-standard APIs only (crypto.subtle), no Env, no
// Worker types; the state these decisions need (failure counts, the last accepted TOTP step) lives in
// the AdminGate Durable Object (gate.ts), and routes.ts wires the two together.
//
// The rules (CONTRACT.md, "Admin API"):
//   - every /admin/* API call carries `Authorization: Bearer <ADMIN_TOKEN>`; 401 otherwise;
//   - with ADMIN_TOTP_SECRET set, every mutating call (PUT/POST) also carries `X-Guard-TOTP` (RFC 6238,
//     30 s steps, ±1 step) and a code is accepted once: any step ≤ the last accepted one is refused; 403;
//   - failed attempts (token or code) are counted per UTC minute for the whole guard: after
//     ADMIN_FAILURES_PER_MINUTE of them, every admin call answers 429 until the minute ends.
import { ConfigError } from "../http/errors.ts";
import { timingSafeEqualBytes } from "../util/constant-time.ts";
import { toHex, utf8 } from "../util/encoding.ts";
import { base32Decode } from "./base32.ts";
import { importTotpKey, TOTP_MIN_SECRET_BYTES, verifyTotp } from "./totp.ts";

/** Five wrong guesses a minute is plenty for a human mistyping; a guesser gets 7 200 tries a day at most. */
export const ADMIN_FAILURES_PER_MINUTE = 5;
/** The lockout lasts until the end of the UTC minute the failures were counted in. */
export const RATE_LIMIT_WINDOW_MS = 60_000;
/** The header carrying the operator's current TOTP code. */
export const TOTP_HEADER = "x-guard-totp";
/** 12 hex digits (48 bits) tell operators' tokens apart in the audit trail without revealing them. */
export const TOKEN_FINGERPRINT_HEX_CHARS = 12;
/** RFC 6750 §3: the challenge a 401 from a bearer-token API carries. */
export const BEARER_CHALLENGE = 'Bearer realm="twilio-edge-guard admin"';

/**
 * The token of an `Authorization: Bearer <token>` header, or null. RFC 7235 §2.1: the scheme is
 * case-insensitive; RFC 6750 §2.1: one token after one or more spaces.
 */
export function bearerToken(header: string | null): string | null {
  if (header === null) return null;
  const match = /^bearer +(\S+) *$/i.exec(header);
  return match ? match[1]! : null;
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(text)));
}

/**
 * Constant-time token check. Both sides are hashed first, so neither the position of the first
 * difference nor the expected token's length shows in the timing.
 */
export async function tokenMatches(presented: string | null, expected: string): Promise<boolean> {
  if (presented === null || expected.length === 0) return false;
  const [a, b] = await Promise.all([sha256(presented), sha256(expected)]);
  return timingSafeEqualBytes(a, b);
}

/** What the audit trail records for "which token": the first 12 hex of SHA-256(token), never the token. */
export async function tokenFingerprint(token: string): Promise<string> {
  return toHex(await sha256(token)).slice(0, TOKEN_FINGERPRINT_HEX_CHARS);
}

/**
 * The key under which the last accepted TOTP step is kept: a hash of the secret, so rotating
 * ADMIN_TOTP_SECRET starts a fresh sequence and the gate never stores the secret itself.
 */
export async function totpSecretId(secretBase32: string): Promise<string> {
  return toHex(await sha256(`totp-secret:${secretBase32.replace(/[\s=]/g, "").toUpperCase()}`)).slice(0, 32);
}

const totpKeys = new Map<string, Promise<CryptoKey>>();

/**
 * The HMAC key for ADMIN_TOTP_SECRET, imported once per isolate. A secret that is not base32 or is
 * shorter than RFC 4226's 128-bit minimum is a ConfigError (500 naming the setting).
 */
export function totpKeyFor(secretBase32: string): Promise<CryptoKey> {
  let key = totpKeys.get(secretBase32);
  if (key === undefined) {
    let bytes: Uint8Array;
    try {
      bytes = base32Decode(secretBase32);
    } catch {
      throw new ConfigError("ADMIN_TOTP_SECRET", "must be base32 (RFC 4648)");
    }
    if (bytes.length < TOTP_MIN_SECRET_BYTES) {
      throw new ConfigError("ADMIN_TOTP_SECRET", `must decode to at least ${TOTP_MIN_SECRET_BYTES} bytes (RFC 4226 §4)`);
    }
    key = importTotpKey(bytes);
    totpKeys.set(secretBase32, key);
  }
  return key;
}

export type TotpCheck = { status: "missing" } | { status: "invalid" } | { status: "match"; step: number };

/** Checks the X-Guard-TOTP value against the steps around nowMs (±1). Reuse is the gate's to judge. */
export async function checkTotp(key: CryptoKey, code: string | null, nowMs: number): Promise<TotpCheck> {
  if (code === null || code.trim() === "") return { status: "missing" };
  const match = await verifyTotp(key, code.trim(), nowMs / 1000);
  return match === null ? { status: "invalid" } : { status: "match", step: match.step };
}

/** The UTC minute a failure is counted in. */
export function minuteOf(nowMs: number): number {
  return Math.floor(nowMs / RATE_LIMIT_WINDOW_MS);
}

/** Whole seconds until the current UTC minute ends (at least 1), for Retry-After (RFC 9110 §10.2.3). */
export function retryAfterSeconds(nowMs: number): number {
  const end = (minuteOf(nowMs) + 1) * RATE_LIMIT_WINDOW_MS;
  return Math.max(1, Math.ceil((end - nowMs) / 1000));
}

export type RateLimit = { limited: false } | { limited: true; retryAfterS: number };

/** Given the failures already counted in nowMs's minute: is every admin call refused right now? */
export function rateLimit(failuresThisMinute: number, nowMs: number): RateLimit {
  return failuresThisMinute >= ADMIN_FAILURES_PER_MINUTE ? { limited: true, retryAfterS: retryAfterSeconds(nowMs) } : { limited: false };
}
