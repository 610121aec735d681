// POST /usage-trigger: Twilio calls this when a Usage Trigger fires (https://www.twilio.com/docs/usage/api/usage-trigger).
// Verified with X-Twilio-Signature and the token of the payload's AccountSid in every WEBHOOK_AUTH mode
// (Twilio always signs its callbacks; shared Basic credentials cannot vouch for one account, so in
// basic and both modes they are required on top of the signature); trips that account with reason
// `usage-trigger` and Twilio's CurrentValue. Twilio retries a trigger callback on 5xx (up to three
// times), so the trip is idempotent per firing, keyed on signed fields only (the body's
// IdempotencyToken, else UsageTriggerSid + DateFired; never the unsigned I-Twilio-Idempotency-Token
// header). A firing is remembered 48 h (AccountGuard's trigger_firings); a DateFired older than
// TRIGGER_MAX_AGE_MS (or in the future) is refused, so no replay outlives what is remembered.
import type { Config } from "../config/config.ts";
import { GuardError } from "../http/errors.ts";
import type { Logger } from "../observability/log.ts";
import { authenticateWebhook, type TokenResolver } from "./authenticate.ts";
import type { RequestTrace } from "../observability/trace.ts";
import { parseWebhook, readBody } from "./read.ts";
import type { UsageTriggerFiring } from "../breaker/account-guard.ts";
import { USAGE_TRIGGER_SID } from "../twilio/sids.ts";

export interface UsageTriggerDeps {
  config: Config;
  logger: Logger;
  resolveTokens: TokenResolver;
  guard: (sid: string) => { usageTrigger(firing: UsageTriggerFiring, atMs: number): Promise<{ tripped: boolean; duplicate: boolean }> };
  now: () => number;
}

/** Twilio's trigger callbacks carry these as decimals, e.g. "50.00"; anything else is malformed. */
const DECIMAL = /^-?[0-9]+(\.[0-9]+)?$/;
/**
 * A firing is accepted this long after its DateFired: Twilio evaluates triggers about once a minute
 * and retries a failed callback within minutes, so a day is ample; it stays well inside the 48 h a
 * firing is remembered (AccountGuard SEEN_RETENTION_MS), so any accepted replay is still a duplicate.
 */
export const TRIGGER_MAX_AGE_MS = 24 * 3_600_000;
/** Clock skew allowed for a DateFired slightly ahead of ours. */
export const TRIGGER_MAX_SKEW_MS = 5 * 60_000;
/** Twilio's IdempotencyToken values are short; a longer one is not Twilio's, and is never stored. */
const MAX_IDEMPOTENCY_TOKEN = 256;

function badTrigger(reason: string, message: string): GuardError {
  return new GuardError(400, message, { reason });
}

export async function handleUsageTrigger(request: Request, deps: UsageTriggerDeps, trace: RequestTrace): Promise<Response> {
  if (request.method !== "POST") {
    throw new GuardError(405, "method not allowed: usage trigger callbacks are POST", {
      reason: "method-not-allowed",
      headers: { allow: "POST" },
    });
  }
  const webhook = parseWebhook(request, await readBody(request));
  // Unlike /webhooks/*, nothing is forwarded here, so report-only mode has nothing to let through:
  // an unverified trigger never trips an account, in either mode.
  // The signature is required whatever WEBHOOK_AUTH says: "basic" becomes "both" here.
  const config = deps.config.webhookAuth === "basic" ? { ...deps.config, webhookAuth: "both" as const } : deps.config;
  const outcome = await authenticateWebhook(webhook, request.headers, config, deps.resolveTokens);
  trace.account = outcome.accountSid;
  if (!outcome.ok) {
    trace.verdict = outcome.error.reason;
    throw outcome.error;
  }
  trace.verdict = `verified-${outcome.via}`;
  if (webhook.notTwilioShaped !== null) throw webhook.notTwilioShaped;
  const fields = webhook.fields;
  if (webhook.claimedAccountSid === null) {
    throw new GuardError(400, "usage trigger without AccountSid", { reason: "trigger-without-account" });
  }
  const currentValue = fields.get("CurrentValue") ?? "";
  const triggerValue = fields.get("TriggerValue") ?? "";
  if ((currentValue !== "" && !DECIMAL.test(currentValue)) || (triggerValue !== "" && !DECIMAL.test(triggerValue))) {
    throw new GuardError(400, "usage trigger with malformed CurrentValue or TriggerValue", { reason: "trigger-bad-value" });
  }
  const usageTriggerSid = fields.get("UsageTriggerSid") ?? "";
  if (!USAGE_TRIGGER_SID.test(usageTriggerSid)) throw badTrigger("trigger-bad-sid", "usage trigger without a valid UsageTriggerSid");
  const dateFired = fields.get("DateFired") ?? "";
  const firedAt = Date.parse(dateFired);
  if (dateFired === "" || Number.isNaN(firedAt)) throw badTrigger("trigger-bad-date", "usage trigger without a valid DateFired");
  const now = deps.now();
  if (firedAt < now - TRIGGER_MAX_AGE_MS || firedAt > now + TRIGGER_MAX_SKEW_MS) {
    throw badTrigger("trigger-stale", "usage trigger fired too long ago (or in the future): a replay");
  }
  const bodyToken = fields.get("IdempotencyToken");
  if (bodyToken !== undefined && (bodyToken === "" || bodyToken.length > MAX_IDEMPOTENCY_TOKEN)) {
    throw badTrigger("trigger-bad-idempotency-token", "usage trigger with a malformed IdempotencyToken");
  }
  const firing: UsageTriggerFiring = {
    accountSid: outcome.accountSid,
    // Signed fields only: the body's token, else the trigger and the instant it fired.
    idempotencyToken: bodyToken ?? `trigger:${usageTriggerSid}:${new Date(firedAt).toISOString()}`,
    usageTriggerSid,
    usageCategory: fields.get("UsageCategory") ?? null,
    currentValue: currentValue === "" ? null : Number(currentValue),
    triggerValue: triggerValue === "" ? null : Number(triggerValue),
    dateFired,
  };
  const result = await deps.guard(outcome.accountSid).usageTrigger(firing, now);
  trace.eventKind = "usage-trigger";
  trace.duplicate = result.duplicate;
  if (result.tripped) trace.breaker = "open";
  return new Response(JSON.stringify({ ok: true, tripped: result.tripped, duplicate: result.duplicate }), {
    status: 200,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}
