// The spend policy (CONTRACT.md, "Policy"): its schema, its default, and strict validation. Pure: no Env,
// no Worker types. Money stays in USD floats here (what users write); limits.ts converts to micro-dollars.

export type WindowKind = "minute" | "hour" | "day" | "month";
/** Every window kind, shortest first (the order totals and evaluations use). */
export const WINDOW_KINDS: readonly WindowKind[] = Object.freeze(["minute", "hour", "day", "month"]);

export interface Limit {
  window: WindowKind;
  /** Estimated spend in USD (at most 6 decimals: the ledger counts micro-dollars); exactly one of usd/events. */
  usd?: number;
  /** Count of billable events (a message or a call counts once, whatever its status callbacks). */
  events?: number;
}

/** USD per unit, used when a payload carries no Price of its own. */
export interface Prices {
  /** Per SMS segment (inbound and outbound). */
  smsSegment: number;
  /** Per MMS message, whatever its segments. */
  mms: number;
  /** Per voice minute (calls are billed per started minute). */
  voiceMinute: number;
  /** Outbound SMS per segment by ISO 3166 country of the destination, `*` for the rest (the gate's sends). */
  sms?: CountryPrices;
  /** Outbound voice per minute by ISO 3166 country of the destination, `*` for the rest. */
  voice?: CountryPrices;
}

/** USD per unit by ISO 3166-1 alpha-2 country code, or `*` for every other country. */
export type CountryPrices = Readonly<Record<string, number>>;

/** A rate rule of the egress gate: at most `max` sends per window (to one number, or to one block of numbers). */
export interface EgressRate {
  window: WindowKind;
  max: number;
}

/** The REST egress gate's rules for this account's sends (CONTRACT.md, "egress"). */
export interface EgressRules {
  /** Destination countries allowed (ISO 3166-1 alpha-2); absent: every country. */
  countries?: readonly string[];
  /** At most `max` sends per window to numbers sharing all but their last `digits` digits. */
  perPrefix?: EgressRate & { digits: number };
  /** At most `max` sends per window to one number. */
  perDestination?: EgressRate;
  /** The length reserved for a call, and the TimeLimit set on calls that have none. */
  maxCallMinutes?: number;
}

export type PolicyAction = "suspend" | "block" | "alert";

export interface Policy {
  /** May be empty: the account is then counted (and shown) but never tripped by the ledger. */
  limits: Limit[];
  /** Fraction of a limit at which one warning per limit and window is sent, in (0, 1]. */
  warnAt: number;
  action: PolicyAction;
  prices: Prices;
  /** The egress gate's rules; absent: sends are priced and limited, no pumping rules. */
  egress?: EgressRules;
}

/**
 * US list prices: an SMS segment 0.0083 USD and an MMS 0.022 USD (https://www.twilio.com/en-us/sms/pricing/us),
 * a local voice minute 0.014 USD (https://www.twilio.com/en-us/voice/pricing/us). Estimates only: a
 * payload's own Price wins, and users outside the US should set their own.
 */
export const DEFAULT_PRICES: Prices = Object.freeze({ smsSegment: 0.0083, mms: 0.022, voiceMinute: 0.014 });

/** CONTRACT default: one daily limit of 50 USD, warn at 80 %, suspend. Deeply frozen: it is shared. */
export const DEFAULT_POLICY: Policy = Object.freeze({
  limits: Object.freeze([Object.freeze({ window: "day", usd: 50 })]) as Limit[],
  warnAt: 0.8,
  action: "suspend",
  prices: DEFAULT_PRICES,
}) as Policy;

/** More limits than this is a mistake, not a policy; it also bounds the per-event evaluation cost. */
export const MAX_LIMITS = 16;
/** A price above 100 USD per unit is a typo (Twilio's dearest per-minute rates are a few USD). */
export const MAX_UNIT_PRICE_USD = 100;
/** 1e9 USD is 1e15 micro-dollars: integer sums stay exact, far below Number.MAX_SAFE_INTEGER (≈9e15). */
export const MAX_LIMIT_USD = 1_000_000_000;
/** The same bound for event counts: no account sends a billion messages in a window. */
export const MAX_LIMIT_EVENTS = 1_000_000_000;
/** Money is counted in micro-dollars, so a usd limit finer than 6 decimals cannot be honoured exactly. */
const USD_DECIMALS = 6;

const POLICY_KEYS = ["limits", "warnAt", "action", "prices", "egress"] as const;
const LIMIT_KEYS = ["window", "usd", "events"] as const;
const PRICE_KEYS = ["smsSegment", "mms", "voiceMinute", "sms", "voice"] as const;
const EGRESS_KEYS = ["countries", "perPrefix", "perDestination", "maxCallMinutes"] as const;
/** ISO 3166-1 alpha-2, as libphonenumber-js reports a number's country. */
const COUNTRY_CODE = /^[A-Z]{2}$/;
/** Twilio ends every call after 24 hours (https://www.twilio.com/docs/voice/api/call-resource): no longer reservation is real. */
export const MAX_EGRESS_CALL_MINUTES = 24 * 60;
/** An E.164 number has at most 15 digits (ITU-T E.164); a "prefix" of more trailing digits is no prefix. */
const MAX_PREFIX_DIGITS = 14;
/** Far above any real per-number or per-prefix rate; bounds the counters. */
const MAX_EGRESS_RATE = 1_000_000;
const ACTIONS: readonly PolicyAction[] = ["suspend", "block", "alert"];

/** A policy that does not validate. `field` is the path of the offending value (`limits[1].usd`, `(json)`). */
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
    if (!allowed.includes(key)) throw new PolicyError(path === "" ? key : `${path}.${key}`, "unknown field");
  }
}

function positiveNumber(value: unknown, field: string, max: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw new PolicyError(field, "must be a positive number");
  if (value > max) throw new PolicyError(field, `must be at most ${max}`);
  return value;
}

function hasAtMostDecimals(value: number, decimals: number): boolean {
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale === value;
}

function parseLimit(value: unknown, field: string): Limit {
  if (!isRecord(value)) throw new PolicyError(field, "must be an object");
  rejectUnknownKeys(value, LIMIT_KEYS, field);
  if (typeof value.window !== "string" || !WINDOW_KINDS.includes(value.window as WindowKind)) {
    throw new PolicyError(`${field}.window`, `must be one of ${WINDOW_KINDS.join(", ")}`);
  }
  const window = value.window as WindowKind;
  const hasUsd = value.usd !== undefined;
  const hasEvents = value.events !== undefined;
  if (hasUsd === hasEvents) throw new PolicyError(field, "needs exactly one of usd or events");
  if (hasUsd) {
    const usd = positiveNumber(value.usd, `${field}.usd`, MAX_LIMIT_USD);
    if (!hasAtMostDecimals(usd, USD_DECIMALS)) throw new PolicyError(`${field}.usd`, `must have at most ${USD_DECIMALS} decimals`);
    return { window, usd };
  }
  const events = positiveNumber(value.events, `${field}.events`, MAX_LIMIT_EVENTS);
  if (!Number.isInteger(events)) throw new PolicyError(`${field}.events`, "must be a whole number");
  return { window, events };
}

function parsePrices(value: unknown): Prices {
  if (value === undefined) return { ...DEFAULT_PRICES };
  if (!isRecord(value)) throw new PolicyError("prices", "must be an object");
  rejectUnknownKeys(value, PRICE_KEYS, "prices");
  const price = (key: "smsSegment" | "mms" | "voiceMinute"): number => {
    const v = value[key];
    if (v === undefined) return DEFAULT_PRICES[key];
    // Zero is allowed: a user may decide a unit costs them nothing worth counting.
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new PolicyError(`prices.${key}`, "must be a number ≥ 0");
    if (v > MAX_UNIT_PRICE_USD) throw new PolicyError(`prices.${key}`, `must be at most ${MAX_UNIT_PRICE_USD}`);
    return v;
  };
  const out: Prices = { smsSegment: price("smsSegment"), mms: price("mms"), voiceMinute: price("voiceMinute") };
  for (const key of ["sms", "voice"] as const) {
    if (value[key] !== undefined) out[key] = parseCountryPrices(value[key], `prices.${key}`);
  }
  return out;
}

function parseCountryPrices(value: unknown, field: string): CountryPrices {
  if (!isRecord(value)) throw new PolicyError(field, "must be an object of country code to price");
  const out: Record<string, number> = {};
  for (const [country, v] of Object.entries(value)) {
    if (country !== "*" && !COUNTRY_CODE.test(country)) throw new PolicyError(`${field}.${country}`, "must be an ISO 3166 country code (US, GB) or *");
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new PolicyError(`${field}.${country}`, "must be a number ≥ 0");
    if (v > MAX_UNIT_PRICE_USD) throw new PolicyError(`${field}.${country}`, `must be at most ${MAX_UNIT_PRICE_USD}`);
    out[country] = v;
  }
  return out;
}

function wholeNumber(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new PolicyError(field, `must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function parseRate(value: unknown, field: string, extra: readonly string[]): EgressRate & Record<string, unknown> {
  if (!isRecord(value)) throw new PolicyError(field, "must be an object");
  rejectUnknownKeys(value, ["window", "max", ...extra], field);
  if (typeof value.window !== "string" || !WINDOW_KINDS.includes(value.window as WindowKind)) {
    throw new PolicyError(`${field}.window`, `must be one of ${WINDOW_KINDS.join(", ")}`);
  }
  return { ...value, window: value.window as WindowKind, max: wholeNumber(value.max, `${field}.max`, 1, MAX_EGRESS_RATE) };
}

function parseEgress(value: unknown): EgressRules {
  if (!isRecord(value)) throw new PolicyError("egress", "must be an object");
  rejectUnknownKeys(value, EGRESS_KEYS, "egress");
  const out: EgressRules = {};
  if (value.countries !== undefined) {
    if (!Array.isArray(value.countries)) throw new PolicyError("egress.countries", "must be an array of country codes");
    const countries: string[] = [];
    for (let i = 0; i < value.countries.length; i++) {
      const c: unknown = value.countries[i];
      if (typeof c !== "string" || !COUNTRY_CODE.test(c)) throw new PolicyError(`egress.countries[${i}]`, "must be an ISO 3166 country code (US, GB)");
      countries.push(c);
    }
    out.countries = countries;
  }
  if (value.perPrefix !== undefined) {
    const rate = parseRate(value.perPrefix, "egress.perPrefix", ["digits"]);
    out.perPrefix = { window: rate.window, max: rate.max, digits: wholeNumber(rate.digits, "egress.perPrefix.digits", 1, MAX_PREFIX_DIGITS) };
  }
  if (value.perDestination !== undefined) {
    const rate = parseRate(value.perDestination, "egress.perDestination", []);
    out.perDestination = { window: rate.window, max: rate.max };
  }
  if (value.maxCallMinutes !== undefined) out.maxCallMinutes = wholeNumber(value.maxCallMinutes, "egress.maxCallMinutes", 1, MAX_EGRESS_CALL_MINUTES);
  return out;
}

/**
 * Validates a policy and returns a normalised copy (never the input's own objects). Strict: unknown
 * fields are refused, so a typo such as "limit" cannot silently mean "no limits".
 * - `limits` is required and may be empty (an explicit "count, never trip"); at most MAX_LIMITS.
 * - `warnAt` defaults to 0.8 and must be in (0, 1]; `action` defaults to "suspend".
 * - `prices` is optional; each missing price takes its DEFAULT_PRICES value.
 */
export function parsePolicy(input: unknown): Policy {
  if (!isRecord(input)) throw new PolicyError("(policy)", "must be a JSON object");
  rejectUnknownKeys(input, POLICY_KEYS, "");
  const rawLimits = input.limits;
  if (!Array.isArray(rawLimits)) throw new PolicyError("limits", "must be an array");
  if (rawLimits.length > MAX_LIMITS) throw new PolicyError("limits", `must have at most ${MAX_LIMITS} limits`);
  const limits: Limit[] = [];
  // An index loop, not map(): map skips the holes of a sparse array, which must be refused, not dropped.
  for (let i = 0; i < rawLimits.length; i++) limits.push(parseLimit(rawLimits[i], `limits[${i}]`));

  let warnAt = DEFAULT_POLICY.warnAt;
  if (input.warnAt !== undefined) {
    if (typeof input.warnAt !== "number" || !Number.isFinite(input.warnAt) || input.warnAt <= 0 || input.warnAt > 1) {
      throw new PolicyError("warnAt", "must be a number in (0, 1]");
    }
    warnAt = input.warnAt;
  }
  let action: PolicyAction = DEFAULT_POLICY.action;
  if (input.action !== undefined) {
    if (!ACTIONS.includes(input.action as PolicyAction)) throw new PolicyError("action", `must be one of ${ACTIONS.join(", ")}`);
    action = input.action as PolicyAction;
  }
  const policy: Policy = { limits, warnAt, action, prices: parsePrices(input.prices) };
  if (input.egress !== undefined) policy.egress = parseEgress(input.egress);
  return policy;
}

/** parsePolicy over JSON text; a syntax error is a PolicyError on the field "(json)". */
export function parsePolicyJson(text: string): Policy {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PolicyError("(json)", "is not valid JSON");
  }
  return parsePolicy(parsed);
}
