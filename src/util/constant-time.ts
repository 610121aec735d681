// Constant-time comparison for every secret we check (signatures, Basic credentials, bearer tokens,
// TOTP codes): the time taken depends on the lengths only, never on where the inputs first differ.

export function timingSafeEqualBytes(a: Uint8Array, b: Uint8Array): boolean {
  // Compare against the longer length so a short guess costs as much as a full one.
  const length = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  for (let i = 0; i < length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** Compares UTF-16 code units (so two strings are equal here exactly when `===` says so). */
export function timingSafeEqualString(a: string, b: string): boolean {
  const length = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  // charCodeAt past the end is NaN, and NaN ^ x is x: the shorter string compares as zeros.
  for (let i = 0; i < length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
