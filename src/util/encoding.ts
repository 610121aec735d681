// Byte/text encodings shared by the verification, TOTP and REST code. Pure; no Worker types.

const encoder = new TextEncoder();

export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text) as Uint8Array<ArrayBuffer>;
}

export function toBase64(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let binary = "";
  for (let i = 0; i < view.length; i++) binary += String.fromCharCode(view[i]!);
  return btoa(binary);
}

/** Char codes of the lowercase hex digits. */
const HEX_CODES = Array.from("0123456789abcdef", (digit) => digit.charCodeAt(0));
/** Bytes per fromCharCode call: its arguments go on the stack, so a long input is done in pieces. */
const HEX_CHUNK_BYTES = 4096;

/**
 * Lowercase hex. The digits' char codes go into one array and become the string in one call: no string
 * piece per byte (a 32-byte digest made 64 concatenations, ~0.7 KB of garbage, on every egress send).
 */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let hex = "";
  for (let start = 0; start < view.length; start += HEX_CHUNK_BYTES) {
    const end = Math.min(start + HEX_CHUNK_BYTES, view.length);
    const codes = new Uint16Array((end - start) * 2);
    for (let i = start; i < end; i++) {
      codes[2 * (i - start)] = HEX_CODES[view[i]! >> 4]!;
      codes[2 * (i - start) + 1] = HEX_CODES[view[i]! & 0x0f]!;
    }
    hex += String.fromCharCode.apply(null, codes as unknown as number[]);
  }
  return hex;
}

/** Canonical base64 shape (RFC 4648 §4): whole quanta, "=" only as the final padding. */
const BASE64_SHAPE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * Strict base64 decode: only the canonical encoding of some bytes is accepted (padding present, no
 * whitespace, unused trailing bits zero: RFC 4648 §3.5), so two different strings never decode to the
 * same bytes. Returns null for anything else.
 */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> | null {
  if (!BASE64_SHAPE.test(text)) return null;
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  if (padding > 0) {
    // The last data character carries 4 (after "==") or 2 (after "=") bits that encode nothing.
    const last = BASE64_ALPHABET.indexOf(text[text.length - padding - 1]!);
    if ((last & (padding === 2 ? 0x0f : 0x03)) !== 0) return null;
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
