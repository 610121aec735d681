// The spend policy (CONTRACT.md, "Policy"): its schema, its default, and strict validation. Pure.

export type WindowKind = "minute" | "hour" | "day" | "month";
export const WINDOW_KINDS: readonly WindowKind[] = ["minute", "hour", "day", "month"];

export interface Limit {
  window: WindowKind;
  /** Estimated spend in USD; exactly one of usd/events is set. */
  usd?: number;
  /** Count of billable events. */
  events?: number;
}

export interface Prices {
  smsSegment: number;
  mms: number;
  voiceMinute: number;
}

export type PolicyAction = "suspend" | "block" | "alert";

export interface Policy {
  limits: Limit[];
  warnAt: number;
  action: PolicyAction;
  prices: Prices;
}

/** US list prices (twilio.com/en-us/sms/pricing/us, /voice/pricing/us): outbound SMS segment, MMS, inbound local minute. */
export const DEFAULT_PRICES: Prices = { smsSegment: 0.0083, mms: 0.022, voiceMinute: 0.014 };

/** CONTRACT default: one daily limit of 50 USD, warn at 80 %, suspend. */
export const DEFAULT_POLICY: Policy = Object.freeze({
  limits: [{ window: "day", usd: 50 }],
  warnAt: 0.8,
  action: "suspend",
  prices: DEFAULT_PRICES,
}) as Policy;

/** More limits than this is a mistake, not a policy; it also bounds the per-event evaluation cost. */
export const MAX_LIMITS = 16;
/** A price above 100 USD per unit is a typo (Twilio's dearest per-minute rates are a few USD). */
const MAX_UNIT_PRICE_USD = 100;
/** Limits are stored in micro-dollars as JS integers: keep them far below 2^53. */
const MAX_LIMIT_USD = 1_000_000_000;
const MAX_LIMIT_EVENTS = 1_000_000_000;

export class PolicyError extends Error {
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`${field}: ${problem}`);
    this.name = "PolicyError";
    this.field = field;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function rejectUnknownKeys(value: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new PolicyError(path ? `${path}.${key}` : key, "unknown field");
  }
}

function positiveNumber(value: unknown, field: string, max: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw new PolicyError(field, "must be a positive number");
  if (value > max) throw new PolicyError(field, `must be at most ${max}`);
  return value;
}

function parseLimit(value: unknown, field: string): Limit {
  if (!isRecord(value)) throw new PolicyError(field, "must be an object");
  rejectUnknownKeys(value, ["window", "usd", "events"], field);
  if (!WINDOW_KINDS.includes(value.window as WindowKind)) throw new PolicyError(`${field}.window`, `must be one of ${WINDOW_KINDS.join(", ")}`);
  const window = value.window as WindowKind;
  const hasUsd = value.usd !== undefined;
  const hasEvents = value.events !== undefined;
  if (hasUsd === hasEvents) throw new PolicyError(field, "needs exactly one of usd or events");
  if (hasUsd) {
    const usd = positiveNumber(value.usd, `${field}.usd`, MAX_LIMIT_USD);
    // Money is counted in micro-dollars: a limit finer than that cannot be honoured exactly.
    if (Math.round(usd * 1e6) / 1e6 !== usd) throw new PolicyError(`${field}.usd`, "must have at most 6 decimals");
    return { window, usd };
  }
  const events = positiveNumber(value.events, `${field}.events`, MAX_LIMIT_EVENTS);
  if (!Number.isInteger(events)) throw new PolicyError(`${field}.events`, "must be a whole number");
  return { window, events };
}

function parsePrices(value: unknown): Prices {
  if (value === undefined) return { ...DEFAULT_PRICES };
  if (!isRecord(value)) throw new PolicyError("prices", "must be an object");
  rejectUnknownKeys(value, ["smsSegment", "mms", "voiceMinute"], "prices");
  const price = (key: keyof Prices): number => {
    const v = value[key];
    if (v === undefined) return DEFAULT_PRICES[key];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new PolicyError(`prices.${key}`, "must be a number ≥ 0");
    if (v > MAX_UNIT_PRICE_USD) throw new PolicyError(`prices.${key}`, `must be at most ${MAX_UNIT_PRICE_USD}`);
    return v;
  };
  return { smsSegment: price("smsSegment"), mms: price("mms"), voiceMinute: price("voiceMinute") };
}

/**
 * Validates a policy and returns a normalised copy. Strict: unknown fields are refused (a typo such as
 * "limit" must not silently mean "no limits"). `limits` may be empty: the account is then only counted.
 */
export function parsePolicy(input: unknown): Policy {
  if (!isRecord(input)) throw new PolicyError("(policy)", "must be a JSON object");
  rejectUnknownKeys(input, ["limits", "warnAt", "action", "prices"], "");
  if (!Array.isArray(input.limits)) throw new PolicyError("limits", "must be an array");
  if (input.limits.length > MAX_LIMITS) throw new PolicyError("limits", `at most ${MAX_LIMITS} limits`);
  const limits = input.limits.map((l, i) => parseLimit(l, `limits[${i}]`));
  let warnAt = DEFAULT_POLICY.warnAt;
  if (input.warnAt !== undefined) {
    if (typeof input.warnAt !== "number" || !Number.isFinite(input.warnAt) || input.warnAt <= 0 || input.warnAt > 1) {
      throw new PolicyError("warnAt", "must be a number in (0, 1]");
    }
    warnAt = input.warnAt;
  }
  let action: PolicyAction = DEFAULT_POLICY.action;
  if (input.action !== undefined) {
    if (input.action !== "suspend" && input.action !== "block" && input.action !== "alert") {
      throw new PolicyError("action", "must be one of suspend, block, alert");
    }
    action = input.action;
  }
  return { limits, warnAt, action, prices: parsePrices(input.prices) };
}

export function parsePolicyJson(text: string): Policy {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PolicyError("(json)", "is not valid JSON");
  }
  return parsePolicy(parsed);
}
