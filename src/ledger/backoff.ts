// Retrying Twilio REST calls and alert deliveries from the Durable Object's alarm. A Durable Object's
// alarm is retried by the runtime only up to six times when it throws
// (https://developers.cloudflare.com/durable-objects/api/alarms/), so we never throw from it: every
// failed attempt schedules its own next alarm, with exponential backoff and full jitter
// (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).

/** The first retry comes about a second later: most 5xx and 429s clear that fast. */
export const RETRY_BASE_MS = 1_000;
/** Never wait more than five minutes between attempts: a trip must stick within minutes, not hours. */
export const RETRY_CAP_MS = 5 * 60_000;
/** Even with full jitter, wait at least this long, so a hot failure never spins the alarm. */
export const RETRY_MIN_MS = 250;

/** Delay before attempt `attempt + 1`, after `attempt` failures (attempt ≥ 1); `random` in [0, 1). */
export function retryDelayMs(attempt: number, random: number): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** exponent);
  return Math.max(RETRY_MIN_MS, Math.floor(random * ceiling));
}

/** Twilio's "Too Many Requests" (https://www.twilio.com/docs/errors/20429). */
const TWILIO_TOO_MANY_REQUESTS = 20429;

/** Retry what may succeed later (5xx, 429/20429, timeouts, network); other 4xx will not, so they fail. */
export function classifyRestFailure(status: number | "timeout" | "network", twilioCode?: number): "retry" | "failed" {
  if (status === "timeout" || status === "network") return "retry";
  if (status === 429 || twilioCode === TWILIO_TOO_MANY_REQUESTS) return "retry";
  if (status >= 500) return "retry";
  return "failed";
}
