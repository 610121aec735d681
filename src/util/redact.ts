// The one redactor: every log line (observability/log.ts), every REST error detail (twilio/errors.ts) and the
// webhook tool's output pass secret values through here before anyone can read them.

export const REDACTED = "[redacted]";

/**
 * `text` with every occurrence of each secret replaced by REDACTED. Longer secrets go first, so a secret
 * that contains another (a token and its prefix) is removed whole, not left half visible. Empty values
 * are skipped (they would match between every character).
 */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  const longestFirst = secrets.filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  for (const secret of longestFirst) out = out.split(secret).join(REDACTED);
  return out;
}
