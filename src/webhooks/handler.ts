// ANY /webhooks/*: verify, record, breaker check, forward to origin, relay its answer (CONTRACT.md).
// Order matters: everything that can refuse a request runs before anything is counted or forwarded.
import type { Config } from "../config/config.ts";
import { ConfigError, GuardError } from "../http/errors.ts";
import type { Logger } from "../observability/log.ts";
import { classifyWebhook, mixesEventKinds, type BillableEvent } from "../ledger/classify.ts";
import type { LedgerPort } from "../ledger/port.ts";
import type { RequestTrace } from "../observability/trace.ts";
import { authenticateWebhook, type TokenResolver } from "./authenticate.ts";
import { forwardToOrigin } from "./forward.ts";
import { parseWebhook, readBody } from "./read.ts";
import { RecentKeys } from "./recent.ts";
import { blockedAnswer } from "./twiml.ts";
import { reservationOfStatusPath } from "../egress/gate.ts";

export interface WebhookDeps {
  config: Config;
  logger: Logger;
  resolveTokens: TokenResolver;
  ledger: LedgerPort;
  waitUntil: (promise: Promise<unknown>) => void;
  originTimeoutMs?: number;
  fetch?: typeof fetch;
}

const ALLOWED_METHODS = "GET, POST";
/** Status callbacks are recorded off the response path; this many recent keys per isolate mark retries. */
const RECENT_STATUS_KEYS = 4096;
const recentStatusKeys = new RecentKeys(RECENT_STATUS_KEYS);

function withoutReportedPrice(event: BillableEvent): BillableEvent {
  if (event.reportedPriceUsd === undefined) return event;
  const { reportedPriceUsd: _ignored, ...rest } = event;
  return rest;
}

function isInbound(event: BillableEvent): boolean {
  return event.kind === "inbound-message" || event.kind === "inbound-call";
}

/** `url`: request.url parsed (the caller's, when it has one). */
export async function handleWebhook(request: Request, deps: WebhookDeps, trace: RequestTrace, url = new URL(request.url)): Promise<Response> {
  if (request.method !== "GET" && request.method !== "POST") {
    throw new GuardError(405, "method not allowed: Twilio webhooks are GET or POST", {
      reason: "method-not-allowed",
      headers: { allow: ALLOWED_METHODS },
    });
  }
  const { config } = deps;
  // A status callback the egress gate added (the app asked for none) is recorded and answered here, never
  // forwarded: it needs no ORIGIN_URL, and a failed check on it is refused whatever GUARD_MODE says.
  const guardReservation = reservationOfStatusPath(url.pathname);
  if (config.originUrl === null && guardReservation === null) throw new ConfigError("ORIGIN_URL", "is required for forwarding");

  const enforce = config.mode === "enforce" || guardReservation !== null;
  const guardHeaders: Record<string, string> = {};
  const rawBody = request.method === "GET" ? new Uint8Array(0) : await readBody(request);
  let webhook;
  try {
    webhook = parseWebhook(request, rawBody, url);
  } catch (error) {
    // A malformed body cannot be verified: refused in enforce mode; in report-only mode it is forwarded
    // marked, like every other failed check. An oversized body is refused in both: it bounds our memory.
    if (enforce || !(error instanceof GuardError) || error.status !== 400) throw error;
    trace.verdict = error.reason;
    deps.logger.warn("webhook-unverified", { reason: error.reason, mode: config.mode });
    guardHeaders["x-guard-verdict"] = error.reason;
    return forwardToOrigin(request, rawBody, forwardOptions(deps, guardHeaders, trace, url));
  }

  const outcome = await authenticateWebhook(webhook, request.headers, config, deps.resolveTokens);
  trace.account = outcome.accountSid;
  if (!outcome.ok) {
    trace.verdict = outcome.error.reason;
    if (enforce) throw outcome.error;
    deps.logger.warn("webhook-unverified", { reason: outcome.error.reason, mode: config.mode, account: outcome.accountSid });
    guardHeaders["x-guard-verdict"] = outcome.error.reason;
    guardHeaders["x-guard-account"] = outcome.accountSid ?? "";
    return forwardToOrigin(request, rawBody, forwardOptions(deps, guardHeaders, trace, url));
  }
  trace.verdict = `verified-${outcome.via}`;
  guardHeaders["x-guard-verified"] = outcome.via;
  guardHeaders["x-guard-account"] = outcome.accountSid;

  // After the signature (an unsigned request is refused as such) and before anything is counted or
  // forwarded: a request Twilio never sends, whose extra parts a genuine signature does not pin down
  // (webhooks/read.ts twilioShaped), or one mixing a message's parameters with a call's (a Body
  // re-split under the same signature). Refused in enforce mode; in report-only mode forwarded
  // marked, like every failed check, and never counted.
  const unsigned =
    webhook.notTwilioShaped ??
    (mixesEventKinds(webhook.fields)
      ? new GuardError(400, "parameters of both a message and a call: not a Twilio webhook", { reason: "mixed-event-parameters" })
      : null);
  if (unsigned !== null) {
    trace.verdict = unsigned.reason;
    if (enforce) throw unsigned;
    deps.logger.warn("webhook-unverified", { reason: unsigned.reason, mode: config.mode, account: outcome.accountSid });
    delete guardHeaders["x-guard-verified"];
    guardHeaders["x-guard-verdict"] = unsigned.reason;
    return forwardToOrigin(request, rawBody, forwardOptions(deps, guardHeaders, trace, url));
  }
  const classified = classifyWebhook(webhook.fields);
  if (classified.kind !== "not-billable") {
    // Basic credentials are shared by every account's webhooks, so they vouch for no account's
    // figures: in basic mode a payload's Price is ignored and the policy's estimate counts instead
    // (docs/webhook-trust.md). A signature is the account's own, and its Price is Twilio's.
    const event = outcome.via === "basic" ? withoutReportedPrice(classified) : classified;
    trace.eventKind = event.kind;
    // Twilio's I-Twilio-Idempotency-Token header is not signed: anyone replaying a signed event can
    // set it, so it neither decides de-duplication nor is stored (the ledger keys events on their
    // signed Sid and status).
    const idempotencyToken = null;
    if (isInbound(event)) {
      // The verdict decides the answer: the one Durable Object call on this path.
      const verdict = await deps.ledger.record(event, idempotencyToken);
      trace.duplicate = verdict.duplicate;
      if (verdict.duplicate) guardHeaders["x-guard-duplicate"] = "1";
      if (verdict.blocked) {
        trace.breaker = "open";
        return blockedAnswer(event.kind === "inbound-call" ? "call" : "message");
      }
    } else {
      // Status callbacks are forwarded whatever the breaker says; their bookkeeping runs after the answer.
      // Exact de-duplication happens in the ledger; the header is what this isolate has seen.
      deps.waitUntil(
        deps.ledger.recordStatus(event, idempotencyToken, guardReservation ?? undefined).catch((error: unknown) => {
          deps.logger.error("ledger-write-lost", error, { account: event.accountSid, event: event.kind });
        }),
      );
      const seenEvent = recentStatusKeys.seen(event.dedupeKey);
      if (seenEvent) {
        trace.duplicate = true;
        guardHeaders["x-guard-duplicate"] = "1";
      }
    }
  }
  if (guardReservation !== null) return new Response(null, { status: 204 });
  return forwardToOrigin(request, rawBody, forwardOptions(deps, guardHeaders, trace, url));
}

function forwardOptions(deps: WebhookDeps, guardHeaders: Record<string, string>, trace: RequestTrace, requestUrl: URL) {
  trace.forwarded = true;
  return {
    originUrl: deps.config.originUrl!,
    requestUrl,
    guardHeaders,
    ...(deps.originTimeoutMs !== undefined ? { timeoutMs: deps.originTimeoutMs } : {}),
    ...(deps.fetch !== undefined ? { fetch: deps.fetch } : {}),
  };
}
