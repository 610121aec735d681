// POST /usage-trigger: Twilio calls this when a Usage Trigger fires (https://www.twilio.com/docs/usage/api/usage-trigger).
// Verified like a webhook, with the token of the payload's AccountSid; trips that account with reason
// `usage-trigger` and Twilio's CurrentValue. Twilio retries a trigger callback on 5xx (up to three
// times), so the trip is idempotent per IdempotencyToken; the answer is a quick 200 either way.
import type { Config } from "../config/config.ts";
import { GuardError } from "../http/errors.ts";
import type { Logger } from "../http/log.ts";
import { authenticateWebhook, type TokenResolver } from "../webhooks/authenticate.ts";
import type { WebhookTrace } from "../webhooks/handler.ts";
import { parseWebhook, readBody } from "../webhooks/read.ts";
import type { UsageTriggerFiring } from "./account-guard.ts";

export interface UsageTriggerDeps {
  config: Config;
  logger: Logger;
  resolveTokens: TokenResolver;
  guard: (sid: string) => { usageTrigger(firing: UsageTriggerFiring, atMs: number): Promise<{ tripped: boolean; duplicate: boolean }> };
  now: () => number;
}

/** Twilio's trigger callbacks carry these as decimals, e.g. "50.00"; anything else is malformed. */
const DECIMAL = /^-?[0-9]+(\.[0-9]+)?$/;

export async function handleUsageTrigger(request: Request, deps: UsageTriggerDeps, trace: WebhookTrace): Promise<Response> {
  if (request.method !== "POST") {
    throw new GuardError(405, "method not allowed: usage trigger callbacks are POST", {
      reason: "method-not-allowed",
      headers: { allow: "POST" },
    });
  }
  const webhook = parseWebhook(request, await readBody(request));
  // Unlike /webhooks/*, nothing is forwarded here, so report-only mode has nothing to let through:
  // an unverified trigger never trips an account, in either mode.
  const outcome = await authenticateWebhook(webhook, request.headers, deps.config, deps.resolveTokens);
  trace.account = outcome.accountSid;
  if (!outcome.ok) {
    trace.verdict = outcome.error.reason;
    throw outcome.error;
  }
  trace.verdict = `verified-${outcome.via}`;
  const fields = webhook.fields;
  if (webhook.claimedAccountSid === null) {
    throw new GuardError(400, "usage trigger without AccountSid", { reason: "trigger-without-account" });
  }
  const currentValue = fields.get("CurrentValue") ?? "";
  const triggerValue = fields.get("TriggerValue") ?? "";
  if ((currentValue !== "" && !DECIMAL.test(currentValue)) || (triggerValue !== "" && !DECIMAL.test(triggerValue))) {
    throw new GuardError(400, "usage trigger with malformed CurrentValue or TriggerValue", { reason: "trigger-bad-value" });
  }
  const firing: UsageTriggerFiring = {
    accountSid: outcome.accountSid,
    idempotencyToken: fields.get("IdempotencyToken") ?? request.headers.get("i-twilio-idempotency-token") ?? null,
    usageTriggerSid: fields.get("UsageTriggerSid") ?? null,
    usageCategory: fields.get("UsageCategory") ?? null,
    currentValue: currentValue === "" ? null : Number(currentValue),
    triggerValue: triggerValue === "" ? null : Number(triggerValue),
    dateFired: fields.get("DateFired") ?? null,
  };
  const result = await deps.guard(outcome.accountSid).usageTrigger(firing, deps.now());
  trace.eventKind = "usage-trigger";
  trace.duplicate = result.duplicate;
  if (result.tripped) trace.breaker = "open";
  return new Response(JSON.stringify({ ok: true, tripped: result.tripped, duplicate: result.duplicate }), {
    status: 200,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}
