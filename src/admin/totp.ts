// RFC 6238 TOTP over RFC 4226 HOTP (HMAC-SHA1), for the admin API's second factor and tools/totp.ts.
// Pure: the time comes in as an argument and only web-standard APIs are used (crypto.subtle,
// crypto.getRandomValues), so the same file runs in workerd and in Node 22.
import { base32Decode, base32Encode } from "./base32.ts";
import { timingSafeEqualString } from "../util/constant-time.ts";

/** RFC 6238 §4.1/§5.2: 30 s is the recommended time step and what authenticator apps assume. */
export const TOTP_STEP_S = 30;
/** RFC 4226 §5.3: 6 digits is the minimum and the authenticator-app default. */
export const TOTP_DIGITS = 6;
/** RFC 6238 §5.2: accept one step either side for clock drift and typing time, no more. */
export const TOTP_WINDOW_STEPS = 1;
/** RFC 4226 §4 R6: the shared secret MUST be at least 128 bits (160 recommended); for config checks. */
export const TOTP_MIN_SECRET_BYTES = 16;
/** RFC 4226 §4 R6 recommends 160 bits, which is also HMAC-SHA1's output size. */
const DEFAULT_SECRET_BYTES = 20;
/** HMAC-SHA1's block size (RFC 2104): a longer key is hashed first, so more bytes add nothing. */
const MAX_SECRET_BYTES = 64;
/** RFC 4226 §5.3: implementations extract 6 digits at least, possibly 7 or 8. */
const MIN_DIGITS = 6;
const MAX_DIGITS = 8;
/** A wider window weakens the code (each step is another guess per attempt); cap what callers can ask for. */
const MAX_WINDOW_STEPS = 10;

/** Imports a raw shared secret as a non-extractable HMAC-SHA1 signing key; callers may cache it. */
export async function importTotpKey(secret: Uint8Array): Promise<CryptoKey> {
  if (secret.length === 0) throw new Error("TOTP secret is empty");
  // Copy so the key never aliases a caller's (possibly shared or resizable) buffer.
  return crypto.subtle.importKey("raw", new Uint8Array(secret), { name: "HMAC", hash: "SHA-1" }, false, [
    "sign",
  ]);
}

function checkDigits(digits: number): void {
  if (!Number.isInteger(digits) || digits < MIN_DIGITS || digits > MAX_DIGITS) {
    throw new RangeError(`TOTP digits must be an integer from ${MIN_DIGITS} to ${MAX_DIGITS}`);
  }
}

/**
 * RFC 4226 HOTP: HMAC-SHA1 over the counter as 8 bytes big-endian, dynamic truncation, modulo
 * 10^digits, zero-padded. The counter must be a safe integer in 0 … 2^53 − 1 (every counter a JS number
 * can hold exactly; TOTP counters stay below 2^36 for any 64-bit Unix time).
 */
export async function hotp(key: CryptoKey, counter: number, digits: number = TOTP_DIGITS): Promise<string> {
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new RangeError("HOTP counter must be an integer from 0 to 2^53 - 1");
  }
  checkDigits(digits);
  const message = new Uint8Array(8);
  const view = new DataView(message.buffer);
  view.setUint32(0, Math.floor(counter / 2 ** 32));
  view.setUint32(4, counter >>> 0);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
  // RFC 4226 §5.4 dynamic truncation: the low nibble of the last byte picks 4 bytes; drop the sign bit.
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary =
    ((mac[offset]! & 0x7f) << 24) | (mac[offset + 1]! << 16) | (mac[offset + 2]! << 8) | mac[offset + 3]!;
  return (binary % 10 ** digits).toString().padStart(digits, "0");
}

function stepAt(unixSeconds: number): number {
  if (!Number.isFinite(unixSeconds) || unixSeconds < 0) {
    throw new RangeError("TOTP time must be a finite, non-negative number of Unix seconds");
  }
  return Math.floor(unixSeconds / TOTP_STEP_S);
}

/** RFC 6238 TOTP: HOTP with counter floor(unixSeconds / 30) (T0 = 0). */
export async function totpAt(key: CryptoKey, unixSeconds: number, digits: number = TOTP_DIGITS): Promise<string> {
  return hotp(key, stepAt(unixSeconds), digits);
}

/** Which time step the code matched, so the caller can refuse reuse (reject any step <= the last accepted). */
export interface TotpMatch {
  step: number;
}

/**
 * Checks a submitted code against the steps within ±window of unixSeconds. The code must be exactly
 * `digits` ASCII digits (no trimming). Every candidate is computed and compared in constant time, with
 * no early exit on a match. If several steps match (a 1-in-10^digits coincidence), the highest step is
 * returned so that "reject any step <= the last accepted" also covers the others.
 */
export async function verifyTotp(
  key: CryptoKey,
  code: string,
  unixSeconds: number,
  opts: { window?: number; digits?: number } = {},
): Promise<TotpMatch | null> {
  const window = opts.window ?? TOTP_WINDOW_STEPS;
  const digits = opts.digits ?? TOTP_DIGITS;
  if (!Number.isInteger(window) || window < 0 || window > MAX_WINDOW_STEPS) {
    throw new RangeError(`TOTP window must be an integer from 0 to ${MAX_WINDOW_STEPS}`);
  }
  checkDigits(digits);
  const current = stepAt(unixSeconds);
  // The format is not secret (the submitter knows it), so a malformed code may return early.
  if (typeof code !== "string" || code.length !== digits || !/^[0-9]+$/.test(code)) return null;

  const steps: number[] = [];
  for (let step = current - window; step <= current + window; step++) {
    if (step >= 0) steps.push(step);
  }
  const candidates = await Promise.all(steps.map((step) => hotp(key, step, digits)));
  let matched = -1;
  for (let i = 0; i < steps.length; i++) {
    const equal = timingSafeEqualString(candidates[i]!, code);
    // Steps ascend, so the last match is the highest; no break, every candidate is compared.
    matched = equal ? steps[i]! : matched;
  }
  return matched < 0 ? null : { step: matched };
}

/**
 * The otpauth:// key URI authenticator apps enrol from (Google Authenticator "Key Uri Format"):
 * otpauth://totp/Issuer:account?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30.
 * The secret is normalised (upper case, no spaces or padding) and must be valid base32; neither issuer
 * nor account may contain ':' (the label separator) and neither may be empty.
 */
export function otpauthUri(opts: { secretBase32: string; issuer: string; account: string }): string {
  const { issuer, account } = opts;
  if (issuer.length === 0 || account.length === 0) throw new Error("otpauth URI: issuer and account must not be empty");
  if (issuer.includes(":") || account.includes(":")) {
    throw new Error("otpauth URI: issuer and account must not contain ':' (it separates them in the label)");
  }
  if (base32Decode(opts.secretBase32).length === 0) throw new Error("otpauth URI: secret is empty");
  const secret = opts.secretBase32.replace(/[\s=]/g, "").toUpperCase();
  // encodeURIComponent writes spaces as %20, which the key-uri format requires ('+' is wrong there).
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  const query =
    `secret=${secret}&issuer=${encodeURIComponent(issuer)}` +
    `&algorithm=SHA1&digits=${TOTP_DIGITS}&period=${TOTP_STEP_S}`;
  return `otpauth://totp/${label}?${query}`;
}

/** A fresh random secret as unpadded base32 (authenticator apps expect no '='); 20 bytes by default. */
export function generateSecretBase32(bytes: number = DEFAULT_SECRET_BYTES): string {
  if (!Number.isInteger(bytes) || bytes < TOTP_MIN_SECRET_BYTES || bytes > MAX_SECRET_BYTES) {
    throw new RangeError(`TOTP secret size must be an integer from ${TOTP_MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} bytes`);
  }
  const secret = crypto.getRandomValues(new Uint8Array(bytes));
  return base32Encode(secret).replace(/=+$/, "");
}
