// The gate's refusals, shaped like Twilio's own REST errors so every SDK raises its usual exception
// (twilio-node `RestException`): `{code, message, more_info, status, details}`. Never `type`/`title`:
// with those twilio-node and twilio-python switch to their RFC 9457 exception (egress-notes.md).
// Codes: https://www.twilio.com/docs/errors/<code>.
import { GuardError } from "../http/errors.ts";

export type RefusalReason =
  | "credentials"
  | "rate-limited-auth"
  | "host-not-allowed"
  | "scope"
  | "country"
  | "per-prefix"
  | "per-destination"
  | "limit"
  | "breaker-open"
  | "upstream-unknown"
  | "gate-off"
  | "bad-send";

/** 20003: "Permission Denied / Authenticate" (credentials not accepted). */
export const CODE_AUTHENTICATE = 20003;
/** 20403: "403 Forbidden". */
export const CODE_FORBIDDEN = 20403;
/** 20404: "The requested resource was not found". */
export const CODE_NOT_FOUND = 20404;
/** 20409: "Conflict": the request may have taken effect; look before retrying. */
export const CODE_CONFLICT = 20409;
/** 20429: "Too Many Requests" (not processed, safe to retry later). */
export const CODE_TOO_MANY_REQUESTS = 20429;
/** 21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number". */
export const CODE_REGION_NOT_ENABLED = 21408;
/** 21602/21604-style input errors: 21604 "A 'To' phone number is required" / malformed send. */
export const CODE_BAD_SEND = 21604;

const STATUS_AND_CODE: Record<RefusalReason, [status: number, code: number]> = {
  credentials: [401, CODE_AUTHENTICATE],
  "rate-limited-auth": [429, CODE_TOO_MANY_REQUESTS],
  "host-not-allowed": [403, CODE_FORBIDDEN],
  scope: [403, CODE_FORBIDDEN],
  country: [400, CODE_REGION_NOT_ENABLED],
  "per-prefix": [429, CODE_TOO_MANY_REQUESTS],
  "per-destination": [429, CODE_TOO_MANY_REQUESTS],
  limit: [403, CODE_FORBIDDEN],
  "breaker-open": [403, CODE_FORBIDDEN],
  // Not 5xx: twilio-java retries any 5xx, POST included, and the send may have been made (egress-notes.md).
  "upstream-unknown": [409, CODE_CONFLICT],
  "gate-off": [404, CODE_NOT_FOUND],
  "bad-send": [400, CODE_BAD_SEND],
};

export function refusalStatus(reason: RefusalReason): { status: number; code: number } {
  const [status, code] = STATUS_AND_CODE[reason];
  return { status, code };
}

/** A Twilio-shaped refusal, answered by the one error funnel (src/http/errors.ts, format "twilio"). */
export function refusal(reason: RefusalReason, message: string, options: { retryAfterS?: number; details?: Record<string, unknown> } = {}): GuardError {
  const { status, code } = refusalStatus(reason);
  const headers: Record<string, string> = {};
  if (options.retryAfterS !== undefined) headers["retry-after"] = String(options.retryAfterS);
  if (status === 401) headers["www-authenticate"] = 'Basic realm="Twilio API"';
  return new GuardError(status, message, {
    reason: `egress-${reason}`,
    headers,
    format: "twilio",
    code,
    details: { reason, ...(options.details ?? {}) },
  });
}
