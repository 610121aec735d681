// Twilio REST failures as one error type. Twilio answers failed calls with a JSON body
// `{code, message, more_info, status}` (https://www.twilio.com/docs/usage/twilios-response); we keep the
// code and more_info for logs and decide retryability from the HTTP status and Twilio's code. Web-standard APIs only.

import { redactSecrets } from "../util/redact.ts";

export type RestPurpose =
  | "suspend"
  | "reactivate"
  | "fetch-account"
  | "list-accounts"
  | "list-calls"
  | "end-call"
  | "list-triggers"
  | "create-trigger"
  | "delete-trigger"
  | "usage-today"
  | "alert-sms"
  | "fetch-price";

/** An HTTP status, or how the call failed before one arrived. */
export type RestStatus = number | "timeout" | "network";

// A Twilio error message is echoed into logs; cap it so a proxy's HTML error page cannot flood a log line.
const MAX_ERROR_MESSAGE_CHARS = 200;

/** Twilio's "Too Many Requests" (https://www.twilio.com/docs/errors/20429), whatever the HTTP status says. */
export const TWILIO_TOO_MANY_REQUESTS = 20429;

/**
 * The one retry classifier for Twilio REST failures (the outbox runner, the directory, the client's
 * `retryable` all ask it). Retry what may succeed unchanged later: 5xx; 429 or Twilio code 20429 (the
 * documented answer is to back off and retry); 408 (the request timed out before the server acted,
 * RFC 9110 §15.5.9); our own timeout; a network error. Fail: other 4xx (bad credentials, 21477 "cannot
 * suspend the parent", unknown account…), which repeating won't fix, and anything else.
 */
export function classifyRestFailure(status: RestStatus, twilioCode?: number): "retry" | "failed" {
  if (status === "timeout" || status === "network") return "retry";
  if (twilioCode === TWILIO_TOO_MANY_REQUESTS) return "retry";
  if (status === 429 || status === 408) return "retry";
  if (status >= 500 && status <= 599) return "retry";
  return "failed";
}

export interface TwilioRestErrorInit {
  purpose: RestPurpose;
  status: RestStatus;
  code?: number | undefined;
  moreInfo?: string | undefined;
  /** Twilio's `message`, the HTTP status text, or a description of the local failure. Already redacted. */
  detail?: string | undefined;
  cause?: unknown;
}

export class TwilioRestError extends Error {
  override readonly name = "TwilioRestError";
  readonly purpose: RestPurpose;
  readonly status: RestStatus;
  readonly code?: number;
  readonly moreInfo?: string;
  readonly retryable: boolean;
  /** A 2xx answer that could not be read: the effect may or may not have happened (callers that need it confirmed retry). */
  readonly unconfirmed: boolean;

  constructor(init: TwilioRestErrorInit) {
    const code = init.code === undefined ? "" : ` (${init.code})`;
    const detail = init.detail ? ` ${init.detail}` : "";
    super(`Twilio REST ${init.purpose} failed: ${init.status}${code}${detail}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.purpose = init.purpose;
    this.status = init.status;
    if (init.code !== undefined) this.code = init.code;
    if (init.moreInfo !== undefined) this.moreInfo = init.moreInfo;
    this.retryable = classifyRestFailure(init.status, init.code) === "retry";
    // A 2xx whose body could not be read: Twilio may well have acted, but nothing confirms it.
    this.unconfirmed = typeof init.status === "number" && init.status >= 200 && init.status <= 299;
  }
}

/**
 * Removes every occurrence of the given secrets from text and caps its length. Used on anything that
 * came back from the network before it goes into an error message (a misbehaving proxy could echo
 * request headers back).
 */
export function redactedDetail(text: string, secrets: readonly string[]): string {
  const out = redactSecrets(text, secrets).replace(/[\r\n\t]+/g, " ").trim();
  return out.length > MAX_ERROR_MESSAGE_CHARS ? `${out.slice(0, MAX_ERROR_MESSAGE_CHARS)}…` : out;
}

interface TwilioErrorBody {
  code?: number;
  message?: string;
  moreInfo?: string;
}

/** Reads `{code, message, more_info}` from a Twilio error body; anything else yields an empty result. */
export function parseTwilioErrorBody(text: string): TwilioErrorBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {};
  }
  if (typeof parsed !== "object" || parsed === null) return {};
  const body = parsed as Record<string, unknown>;
  const out: TwilioErrorBody = {};
  if (typeof body.code === "number" && Number.isInteger(body.code)) out.code = body.code;
  if (typeof body.message === "string") out.message = body.message;
  if (typeof body.more_info === "string") out.moreInfo = body.more_info;
  return out;
}

/** Builds the error for a non-2xx answer from its status and body text. */
export function errorFromResponse(
  purpose: RestPurpose,
  status: number,
  statusText: string,
  bodyText: string,
  secrets: readonly string[],
): TwilioRestError {
  const body = parseTwilioErrorBody(bodyText);
  const detail = redactedDetail(body.message ?? statusText, secrets);
  return new TwilioRestError({
    purpose,
    status,
    code: body.code,
    moreInfo: body.moreInfo === undefined ? undefined : redactedDetail(body.moreInfo, secrets),
    detail: detail.length > 0 ? detail : undefined,
  });
}
