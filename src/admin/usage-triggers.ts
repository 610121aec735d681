// POST /admin/accounts/:sid/usage-triggers: Twilio Usage Triggers that mirror the policy's `usd` limits,
// so Twilio itself calls /usage-trigger (and the breaker trips) even for spend the guard never sees as a
// webhook (API-initiated calls, messages sent without a StatusCallback, other products).
//
// `planUsageTriggers` is pure: it compares the triggers the account has with the ones the policy wants.
// `provisionUsageTriggers` is the thin executor over the REST client. Idempotent: running it twice
// creates nothing the second time.
//   - desired: one trigger per `usd` limit whose window Twilio's `Recurring` can express (day → daily,
//     month → monthly; Twilio has no hourly or per-minute recurrence). UsageCategory=totalprice,
//     TriggerBy=price, TriggerValue = the limit, CallbackUrl = PUBLIC_URL (or the request's origin) +
//     /usage-trigger, FriendlyName "twilio-edge-guard <window> <usd> USD".
//   - ours: a trigger whose FriendlyName starts with "twilio-edge-guard ". Only ours are ever deleted;
//     anyone else's triggers are left alone, whatever they watch.
//   - kept: ours, matching a desired trigger exactly (category, trigger-by, recurring, value, callback).
//   - deleted: ours that match nothing desired (value changed — Twilio cannot update a trigger's value —,
//     callback moved, limit removed, or a duplicate), after the replacements are created.
import type { Limit, Policy } from "../ledger/policy.ts";
import { toMicros } from "../ledger/pricing.ts";
import {
  TRIGGER_BY_PRICE,
  USAGE_CATEGORY_TOTAL_PRICE,
  type NewUsageTrigger,
  type TwilioClient,
  type UsageTrigger,
} from "../twilio/rest.ts";

/** Every trigger the guard creates has a FriendlyName starting with this (and a space): that is how we know ours. */
export const TRIGGER_NAME_PREFIX = "twilio-edge-guard";
/** Twilio's `Recurring` values for the windows it supports (usage_trigger_enum_recurring: daily, monthly, yearly, alltime). */
const RECURRING_BY_WINDOW: Partial<Record<Limit["window"], "daily" | "monthly">> = { day: "daily", month: "monthly" };
/** The path Twilio calls back (CONTRACT.md, "Routes"). */
export const USAGE_TRIGGER_PATH = "/usage-trigger";

export interface DesiredTrigger extends NewUsageTrigger {
  limit: Limit;
}

export interface TriggerSummary {
  sid: string;
  friendlyName: string;
  triggerValue: string;
  recurring: string;
  callbackUrl: string;
}

export interface TriggerPlan {
  create: DesiredTrigger[];
  keep: UsageTrigger[];
  delete: Array<{ trigger: UsageTrigger; reason: string }>;
  skipped: Array<{ limit: Limit; reason: string }>;
}

export interface TriggerReport {
  created: TriggerSummary[];
  kept: TriggerSummary[];
  deleted: Array<TriggerSummary & { reason: string }>;
  skipped: Array<{ limit: Limit; reason: string }>;
}

/** "50" for 50, "12.5" for 12.5: the shortest decimal, as Twilio's TriggerValue takes it. */
export function triggerValueOf(usd: number): string {
  return String(usd);
}

export function triggerName(limit: Limit & { usd: number }): string {
  return `${TRIGGER_NAME_PREFIX} ${limit.window} ${triggerValueOf(limit.usd)} USD`;
}

export function isGuardTrigger(trigger: Pick<UsageTrigger, "friendlyName">): boolean {
  return trigger.friendlyName.startsWith(`${TRIGGER_NAME_PREFIX} `);
}

/** Twilio may answer "50.0" or "50.00" for a value sent as "50": compare amounts, not strings. */
function sameValue(existing: string, usd: number): boolean {
  if (existing.startsWith("+")) return false;
  const n = Number(existing);
  return Number.isFinite(n) && existing.trim() !== "" && toMicros(n) === toMicros(usd);
}

function matches(trigger: UsageTrigger, desired: DesiredTrigger): boolean {
  return (
    isGuardTrigger(trigger) &&
    trigger.usageCategory === USAGE_CATEGORY_TOTAL_PRICE &&
    trigger.triggerBy === TRIGGER_BY_PRICE &&
    trigger.recurring === desired.recurring &&
    sameValue(trigger.triggerValue, desired.limit.usd!) &&
    trigger.callbackUrl === desired.callbackUrl
  );
}

/** The callback Twilio is given: PUBLIC_URL when set (a proxy or custom domain), else the request's origin. */
export function triggerCallbackUrl(publicUrl: string | null, requestUrl: string): string {
  const base = publicUrl ?? new URL(requestUrl).origin;
  return `${base.replace(/\/+$/, "")}${USAGE_TRIGGER_PATH}`;
}

/** Pure: what to create, keep and delete so the account's triggers mirror the policy's usd limits. */
export function planUsageTriggers(policy: Policy, existing: readonly UsageTrigger[], callbackUrl: string): TriggerPlan {
  const skipped: TriggerPlan["skipped"] = [];
  const desired: DesiredTrigger[] = [];
  for (const limit of policy.limits) {
    if (limit.usd === undefined) {
      skipped.push({ limit, reason: "counts events: Twilio usage triggers here watch spend (TriggerBy=price)" });
      continue;
    }
    const recurring = RECURRING_BY_WINDOW[limit.window];
    if (recurring === undefined) {
      skipped.push({ limit, reason: `Twilio usage triggers recur daily or monthly; there is no ${limit.window} recurrence` });
      continue;
    }
    const friendlyName = triggerName({ ...limit, usd: limit.usd });
    if (desired.some((d) => d.friendlyName === friendlyName)) {
      skipped.push({ limit, reason: "same window and value as another limit: one trigger covers both" });
      continue;
    }
    desired.push({ limit, friendlyName, triggerValue: triggerValueOf(limit.usd), recurring, callbackUrl });
  }

  const create: DesiredTrigger[] = [];
  const keep: UsageTrigger[] = [];
  const claimed = new Set<string>();
  for (const d of desired) {
    const match = existing.find((t) => !claimed.has(t.sid) && matches(t, d));
    if (match === undefined) create.push(d);
    else {
      keep.push(match);
      claimed.add(match.sid);
    }
  }
  const remove: TriggerPlan["delete"] = [];
  for (const t of existing) {
    if (claimed.has(t.sid) || !isGuardTrigger(t)) continue;
    const sameWindow = desired.filter((d) => d.recurring === t.recurring);
    let reason = "no longer in the policy";
    if (desired.some((d) => matches(t, d))) reason = "duplicate";
    else if (sameWindow.some((d) => sameValue(t.triggerValue, d.limit.usd!))) reason = "callback URL or settings changed";
    else if (sameWindow.length > 0) reason = `value changed (${t.triggerValue} → ${sameWindow.map((d) => d.triggerValue).join(", ")})`;
    remove.push({ trigger: t, reason });
  }
  return { create, keep, delete: remove, skipped };
}

export function summarize(t: UsageTrigger): TriggerSummary {
  return { sid: t.sid, friendlyName: t.friendlyName, triggerValue: t.triggerValue, recurring: t.recurring, callbackUrl: t.callbackUrl };
}

/** A REST failure part-way: what was done so far comes with it, so the caller can report and audit it. */
export class ProvisioningError extends Error {
  readonly partial: TriggerReport;
  constructor(partial: TriggerReport, cause: unknown) {
    super(cause instanceof Error ? cause.message : "usage trigger provisioning failed", { cause });
    this.name = "ProvisioningError";
    this.partial = partial;
  }
}

/**
 * Lists the account's triggers, plans, creates the missing ones and only then deletes the outdated
 * ones of ours (so a failure part-way never leaves a window without a trigger). Throws
 * ProvisioningError with the partial report on the first REST failure; running again finishes the job.
 */
export async function provisionUsageTriggers(
  client: Pick<TwilioClient, "listUsageTriggers" | "createUsageTrigger" | "deleteUsageTrigger">,
  sid: string,
  policy: Policy,
  callbackUrl: string,
): Promise<TriggerReport> {
  const report: TriggerReport = { created: [], kept: [], deleted: [], skipped: [] };
  let plan: TriggerPlan;
  try {
    plan = planUsageTriggers(policy, await client.listUsageTriggers(sid), callbackUrl);
  } catch (error) {
    throw new ProvisioningError(report, error);
  }
  report.kept = plan.keep.map(summarize);
  report.skipped = plan.skipped;
  try {
    for (const d of plan.create) {
      const created = await client.createUsageTrigger(sid, {
        friendlyName: d.friendlyName,
        triggerValue: d.triggerValue,
        recurring: d.recurring,
        callbackUrl: d.callbackUrl,
      });
      report.created.push(summarize(created));
    }
    for (const { trigger, reason } of plan.delete) {
      await client.deleteUsageTrigger(sid, trigger.sid);
      report.deleted.push({ ...summarize(trigger), reason });
    }
  } catch (error) {
    throw new ProvisioningError(report, error);
  }
  return report;
}
