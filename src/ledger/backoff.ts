// Retrying Twilio REST calls and alert deliveries from the Durable Object's alarm. The runtime retries a
// throwing alarm by itself only up to six times, with its own backoff
// (https://developers.cloudflare.com/durable-objects/api/alarms/), which is too few and not ours to
// shape: so the alarm never throws, and every failed attempt schedules its own next alarm with
// exponential backoff and full jitter (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
// Pure: randomness comes in as a number in [0, 1).

/** The first retry comes about a second later: most 5xx and 429s clear that fast. */
export const RETRY_BASE_MS = 1_000;
/** Never wait more than five minutes between attempts: a trip must stick within minutes, not hours. */
export const RETRY_CAP_MS = 5 * 60_000;
/** Even with full jitter, wait at least this long, so a hot failure never spins the alarm. */
export const RETRY_MIN_MS = 250;
/** 2^19 s > RETRY_CAP_MS already: larger exponents change nothing and could overflow. */
const MAX_EXPONENT = 20;

/** A backoff's shape: the first ceiling and the largest one (defaults: RETRY_BASE_MS, RETRY_CAP_MS). */
export interface Backoff {
  baseMs: number;
  capMs: number;
}

/**
 * Delay before the next attempt after `attempt` failed attempts (attempt ≥ 1; anything else counts as 1):
 * uniform in [RETRY_MIN_MS, min(cap, base · 2^(attempt-1))). `random` is clamped to [0, 1).
 */
export function retryDelayMs(attempt: number, random: number, backoff: Backoff = { baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS }): number {
  const n = Number.isFinite(attempt) ? Math.floor(attempt) : 1;
  const exponent = Math.min(Math.max(n - 1, 0), MAX_EXPONENT);
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** exponent);
  const r = Number.isFinite(random) ? Math.min(Math.max(random, 0), 1 - Number.EPSILON) : 0;
  return Math.max(RETRY_MIN_MS, Math.floor(r * ceiling));
}
