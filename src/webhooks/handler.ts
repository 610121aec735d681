// ANY /webhooks/*: verify, record, breaker check, forward to origin, relay its answer (CONTRACT.md).
// Order matters: everything that can refuse a request runs before anything is counted or forwarded.
import type { Config } from "../config/config.ts";
import { ConfigError, GuardError } from "../http/errors.ts";
import type { Logger } from "../http/log.ts";
import { classifyWebhook, type BillableEvent } from "../ledger/classify.ts";
import { authenticateWebhook, type TokenResolver } from "./authenticate.ts";
import { forwardToOrigin } from "./forward.ts";
import { parseWebhook, readBody } from "./read.ts";
import { RecentKeys } from "./recent.ts";
import { blockedAnswer } from "./twiml.ts";

export interface RecordVerdict {
  /** The same event (Sid and status, or Twilio's idempotency token) was recorded before: not counted again. */
  duplicate: boolean;
  /** The account's breaker is open and blocks at the edge: answer with safe TwiML, do not call the origin. */
  blocked: boolean;
}

/** The spend ledger as the webhook path sees it: one call per event, to the account's Durable Object. */
export interface LedgerPort {
  record(event: BillableEvent, idempotencyToken: string | null): Promise<RecordVerdict>;
  /** Records a status callback at least once (the answer does not wait): retried durably if the write fails. */
  recordStatus(event: BillableEvent, idempotencyToken: string | null): Promise<void>;
}

export interface WebhookDeps {
  config: Config;
  logger: Logger;
  resolveTokens: TokenResolver;
  ledger: LedgerPort;
  waitUntil: (promise: Promise<unknown>) => void;
  originTimeoutMs?: number;
  fetch?: typeof fetch;
}

/** What the handler learned, for the request's log line and metrics. */
export interface WebhookTrace {
  account?: string | null;
  verdict?: string;
  breaker?: "open";
  duplicate?: boolean;
  eventKind?: string;
  /** The request was sent on to the origin (whatever the origin then answered). */
  forwarded?: boolean;
}

const ALLOWED_METHODS = "GET, POST";
/** Status callbacks are recorded off the response path; this many recent keys per isolate mark retries. */
const RECENT_STATUS_KEYS = 4096;
const recentStatusKeys = new RecentKeys(RECENT_STATUS_KEYS);

function isInbound(event: BillableEvent): boolean {
  return event.kind === "inbound-message" || event.kind === "inbound-call";
}

export async function handleWebhook(request: Request, deps: WebhookDeps, trace: WebhookTrace): Promise<Response> {
  if (request.method !== "GET" && request.method !== "POST") {
    throw new GuardError(405, "method not allowed: Twilio webhooks are GET or POST", {
      reason: "method-not-allowed",
      headers: { allow: ALLOWED_METHODS },
    });
  }
  const { config } = deps;
  if (config.originUrl === null) throw new ConfigError("ORIGIN_URL", "is required for forwarding");

  const enforce = config.mode === "enforce";
  const guardHeaders: Record<string, string> = {};
  const rawBody = request.method === "GET" ? new Uint8Array(0) : await readBody(request);
  let webhook;
  try {
    webhook = parseWebhook(request, rawBody);
  } catch (error) {
    // A malformed body cannot be verified: refused in enforce mode; in report-only mode it is forwarded
    // marked, like every other failed check. An oversized body is refused in both: it bounds our memory.
    if (enforce || !(error instanceof GuardError) || error.status !== 400) throw error;
    trace.verdict = error.reason;
    deps.logger.warn("webhook-unverified", { reason: error.reason, mode: config.mode });
    guardHeaders["x-guard-verdict"] = error.reason;
    return forwardToOrigin(request, rawBody, forwardOptions(deps, guardHeaders, trace));
  }

  const outcome = await authenticateWebhook(webhook, request.headers, config, deps.resolveTokens);
  trace.account = outcome.accountSid;
  if (!outcome.ok) {
    trace.verdict = outcome.error.reason;
    if (enforce) throw outcome.error;
    deps.logger.warn("webhook-unverified", { reason: outcome.error.reason, mode: config.mode, account: outcome.accountSid });
    guardHeaders["x-guard-verdict"] = outcome.error.reason;
    guardHeaders["x-guard-account"] = outcome.accountSid ?? "";
    return forwardToOrigin(request, rawBody, forwardOptions(deps, guardHeaders, trace));
  }
  trace.verdict = `verified-${outcome.via}`;
  guardHeaders["x-guard-verified"] = outcome.via;
  guardHeaders["x-guard-account"] = outcome.accountSid;

  const classified = classifyWebhook(webhook.fields);
  if (classified.kind !== "not-billable") {
    const event = classified;
    trace.eventKind = event.kind;
    const idempotencyToken = request.headers.get("i-twilio-idempotency-token");
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
        deps.ledger.recordStatus(event, idempotencyToken).catch((error: unknown) => {
          deps.logger.error("ledger-write-lost", error, { account: event.accountSid, event: event.kind });
        }),
      );
      const seenEvent = recentStatusKeys.seen(event.dedupeKey);
      const seenToken = idempotencyToken !== null && recentStatusKeys.seen(`idem:${idempotencyToken}`);
      if (seenEvent || seenToken) {
        trace.duplicate = true;
        guardHeaders["x-guard-duplicate"] = "1";
      }
    }
  }
  return forwardToOrigin(request, rawBody, forwardOptions(deps, guardHeaders, trace));
}

function forwardOptions(deps: WebhookDeps, guardHeaders: Record<string, string>, trace: WebhookTrace) {
  trace.forwarded = true;
  return {
    originUrl: deps.config.originUrl!,
    guardHeaders,
    dropAuthorization: deps.config.webhookAuth !== "signature",
    ...(deps.originTimeoutMs !== undefined ? { timeoutMs: deps.originTimeoutMs } : {}),
    ...(deps.fetch !== undefined ? { fetch: deps.fetch } : {}),
  };
}
