// Admin authentication, the pure part: bearer token check, TOTP check, the rate limiter's arithmetic and
// the token fingerprint the audit trail records. Web-standard APIs only (crypto.subtle), no Env, no
// Worker types; the state these decisions need (failure counts, the last accepted TOTP step) lives in
// the AdminGate Durable Object (gate.ts), and routes.ts wires the two together.
//
// The rules (CONTRACT.md, "Admin API"):
//   - every /admin/* API call carries `Authorization: Bearer <ADMIN_TOKEN>`; 401 otherwise;
//   - with ADMIN_TOTP_SECRET set, every mutating call (PUT/POST) also carries `X-Guard-TOTP` (RFC 6238,
//     30 s steps, ±1 step) and a code is accepted once: any step ≤ the last accepted one is refused; 403;
//   - or `X-Guard-Elevation` from POST /admin/elevate: one fresh code buys ELEVATION_TTL_MS of mutating
//     calls, for the bearer token it was issued to only (an HMAC over a digest of that token);
//   - failed guesses (wrong token, wrong or reused code, forged elevation) are counted per client
//     address (CF-Connecting-IP) and UTC minute: after ADMIN_FAILURES_PER_MINUTE of them, that address
//     answers 429 until the minute ends. Other addresses, and so a correct token elsewhere, are never
//     locked out by them. A missing code or an expired elevation is no guess and is not counted.
import { ConfigError } from "../http/errors.ts";
import { timingSafeEqualBytes } from "../util/constant-time.ts";
import { fromBase64, toBase64, toHex, utf8 } from "../util/encoding.ts";
import { base32Decode } from "./base32.ts";
import { importTotpKey, TOTP_MIN_SECRET_BYTES, verifyTotp } from "./totp.ts";

/** Five wrong guesses a minute is plenty for a human mistyping; a guesser gets 7 200 tries a day at most. */
export const ADMIN_FAILURES_PER_MINUTE = 5;
/**
 * At most this many client addresses get their own failure count per minute (bounded storage). Past it,
 * new addresses share one count (OVERFLOW_CLIENT): a flood from many addresses is still limited, and an
 * address that has not failed is never refused because of them.
 */
export const MAX_CLIENTS_PER_MINUTE = 10_000;
/** The shared count of the addresses beyond MAX_CLIENTS_PER_MINUTE. */
export const OVERFLOW_CLIENT = "*";
/** Where the request came from when CF-Connecting-IP is absent (local `wrangler dev`, tests). */
export const UNKNOWN_CLIENT = "unknown";
/** An elevation lasts ten minutes (CONTRACT.md), like sudo's default timestamp timeout of 5-15 min. */
export const ELEVATION_TTL_MS = 10 * 60_000;
/** The header carrying an elevation token from POST /admin/elevate. */
export const ELEVATION_HEADER = "x-guard-elevation";
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

/**
 * The client address failures are counted under: CF-Connecting-IP (set by Cloudflare, not by the client),
 * an IPv6 address reduced to its /64 (one subscriber gets a whole /64, RFC 6177), or UNKNOWN_CLIENT.
 */
export function clientAddress(headers: Headers): string {
  const raw = (headers.get("cf-connecting-ip") ?? "").trim().toLowerCase();
  if (raw === "" || raw.length > 45) return UNKNOWN_CLIENT;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(raw)) return raw;
  if (!/^[0-9a-f:.]+$/.test(raw) || !raw.includes(":")) return UNKNOWN_CLIENT;
  const [head = "", tail] = raw.split("::", 2) as [string, string | undefined];
  const front = head === "" ? [] : head.split(":");
  const back = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? front : [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill("0"), ...back];
  if (groups.length < 4) return UNKNOWN_CLIENT;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

// ---------------------------------------------------------------- elevation tokens

/** Token layout: `ge1.<expiry, base-10 ms>.<nonce, base64url>.<HMAC-SHA256, base64url>`. */
const ELEVATION_PREFIX = "ge1";
const ELEVATION_NONCE_BYTES = 16;
/** Longer than any token we issue: anything longer is refused before any work. */
const ELEVATION_MAX_CHARS = 160;

function base64url(bytes: Uint8Array): string {
  return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const padded = text.replace(/-/g, "+").replace(/_/g, "/");
  return fromBase64(padded + "=".repeat((4 - (padded.length % 4)) % 4));
}

const elevationKeys = new Map<string, Promise<CryptoKey>>();

/**
 * The HMAC key elevation tokens are signed with, derived from ADMIN_TOTP_SECRET (never from the bearer
 * token: holding the token alone must not be enough to mint one). Rotating the secret ends every elevation.
 */
function elevationKey(totpSecretBase32: string): Promise<CryptoKey> {
  let key = elevationKeys.get(totpSecretBase32);
  if (key === undefined) {
    key = sha256(`elevation-key:${totpSecretBase32.replace(/[\s=]/g, "").toUpperCase()}`).then((material) =>
      crypto.subtle.importKey("raw", material as Uint8Array<ArrayBuffer>, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
    );
    elevationKeys.set(totpSecretBase32, key);
  }
  return key;
}

async function elevationMac(totpSecretBase32: string, bearer: string, expiresAtMs: number, nonce: string): Promise<Uint8Array> {
  const boundTo = toHex(await sha256(`elevation-bearer:${bearer}`));
  const message = utf8(`${ELEVATION_PREFIX}.${expiresAtMs}.${nonce}.${boundTo}`);
  return new Uint8Array(await crypto.subtle.sign("HMAC", await elevationKey(totpSecretBase32), message));
}

export interface Elevation {
  token: string;
  expiresAtMs: number;
}

/** A new elevation token for `bearer`, good until nowMs + ELEVATION_TTL_MS. */
export async function issueElevation(totpSecretBase32: string, bearer: string, nowMs: number): Promise<Elevation> {
  const expiresAtMs = nowMs + ELEVATION_TTL_MS;
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(ELEVATION_NONCE_BYTES)));
  const mac = base64url(await elevationMac(totpSecretBase32, bearer, expiresAtMs, nonce));
  return { token: `${ELEVATION_PREFIX}.${expiresAtMs}.${nonce}.${mac}`, expiresAtMs };
}

export type ElevationCheck = { status: "ok"; expiresAtMs: number } | { status: "invalid" } | { status: "expired" };

/**
 * Checks an X-Guard-Elevation value: issued by this guard (same ADMIN_TOTP_SECRET), for this bearer
 * token, and not expired. `expired` only for a token that is genuine but old (not a guess).
 */
export async function checkElevation(totpSecretBase32: string, bearer: string, token: string, nowMs: number): Promise<ElevationCheck> {
  if (token.length > ELEVATION_MAX_CHARS) return { status: "invalid" };
  const parts = token.split(".");
  if (parts.length !== 4 || parts[0] !== ELEVATION_PREFIX || !/^[0-9]{1,16}$/.test(parts[1]!)) return { status: "invalid" };
  const expiresAtMs = Number(parts[1]);
  const presented = fromBase64url(parts[3]!);
  if (presented === null) return { status: "invalid" };
  const expected = await elevationMac(totpSecretBase32, bearer, expiresAtMs, parts[2]!);
  if (!timingSafeEqualBytes(presented, expected)) return { status: "invalid" };
  // A genuine token never lasts longer than the TTL; one that claims to is not ours to honour.
  if (expiresAtMs > nowMs + ELEVATION_TTL_MS) return { status: "invalid" };
  if (nowMs >= expiresAtMs) return { status: "expired" };
  return { status: "ok", expiresAtMs };
}
