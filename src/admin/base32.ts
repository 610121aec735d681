// RFC 4648 §6 base32, the encoding authenticator apps use for TOTP secrets. Pure; no Worker types.
// The input is usually a secret, so no error message ever quotes it (positions only).

// RFC 4648 §6, Table 3: the 32-character alphabet, value = index.
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// ASCII code -> 5-bit value, or -1. Lower case is accepted because apps and people type secrets both ways.
const DECODE_TABLE: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) {
    const upper = ALPHABET.charCodeAt(i);
    table[upper] = i;
    table[ALPHABET.charAt(i).toLowerCase().charCodeAt(0)] = i;
  }
  return table;
})();

const PAD = 0x3d; // '='

// Secrets are shown grouped ("jbsw y3dp ...") and get copied with line breaks, so whitespace is ignored.
function isIgnorableSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

/**
 * Decodes RFC 4648 base32: case-insensitive, ignores spaces/tabs/line breaks and '=' padding (which may
 * only trail the data). Throws an Error naming the position, never the text, on any other character or
 * on a length that cannot come from whole bytes (a truncated secret). Leftover pad bits are ignored.
 */
export function base32Decode(text: string): Uint8Array<ArrayBuffer> {
  const values: number[] = [];
  let sawPadding = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === PAD) {
      sawPadding = true;
      continue;
    }
    if (isIgnorableSpace(code)) continue;
    const value = code < 128 ? DECODE_TABLE[code]! : -1;
    if (value < 0) {
      throw new Error(
        `base32: invalid character at position ${i + 1} (expected A-Z, 2-7, spaces or trailing '=' padding)`,
      );
    }
    if (sawPadding) throw new Error(`base32: data after '=' padding at position ${i + 1}`);
    values.push(value);
  }

  // 8 characters carry 5 bytes; a final group of 1, 3 or 6 characters cannot end on a byte boundary
  // (RFC 4648 §6 lists the only valid partial groups: 2, 4, 5 and 7 characters).
  const partial = values.length % 8;
  if (partial === 1 || partial === 3 || partial === 6) {
    throw new Error("base32: invalid length (not a whole number of bytes; is the text truncated?)");
  }

  const out = new Uint8Array(Math.floor((values.length * 5) / 8));
  let buffer = 0;
  let bits = 0;
  let o = 0;
  for (const value of values) {
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (buffer >>> bits) & 0xff;
      buffer &= (1 << bits) - 1;
    }
  }
  return out;
}

/** Encodes RFC 4648 base32: upper case, '=' padded to a multiple of 8 characters (RFC 4648 §6). */
export function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (let i = 0; i < bytes.length; i++) {
    buffer = (buffer << 8) | bytes[i]!;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >>> bits) & 31];
      buffer &= (1 << bits) - 1;
    }
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += "=";
  return out;
}
