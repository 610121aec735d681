// The one redactor: every log line (observability/log.ts), every REST error detail (twilio/errors.ts) and the
// webhook tool's output pass secret values through here before anyone can read them.

export const REDACTED = "[redacted]";

/**
 * `text` with every occurrence of each secret replaced by REDACTED. Longer secrets go first, so a secret
 * that contains another (a token and its prefix) is removed whole, not left half visible. Empty values
 * are skipped (they would match between every character).
 */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  return redactOrdered(text, redactionOrder(secrets));
}

/** The secrets as `redactOrdered` takes them: empty values dropped, longest first (see redactSecrets). */
export function redactionOrder(secrets: readonly string[]): string[] {
  return secrets.filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
}

/**
 * redactSecrets with the secrets already in `redactionOrder` (a logger orders its secrets once, not per
 * line). A secret that does not occur leaves the text as it is, without the split's array and the join's
 * string.
 */
export function redactOrdered(text: string, ordered: readonly string[]): string {
  let out = text;
  for (const secret of ordered) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}
