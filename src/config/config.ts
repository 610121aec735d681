// Settings, parsed and validated once per environment object (the runtime hands the same `env` to
// every request of an isolate, so this runs once per isolate). A missing or malformed setting is a
// ConfigError: 500 with a JSON body naming the setting, logged, and nothing forwarded.
import { ConfigError } from "../http/errors.ts";
import { DEFAULT_POLICY, PolicyError, parsePolicyJson, type Policy } from "../ledger/policy.ts";
import type { GuardEnv } from "./env.ts";
import { ACCOUNT_SID } from "../twilio/sids.ts";

export type WebhookAuth = "signature" | "basic" | "both";
export type GuardMode = "enforce" | "report-only";
/** The REST egress gate (`/twilio/*`): off (the default), enforce, or report-only. */
export type EgressMode = "off" | "enforce" | "report-only";

export interface BasicCredentials {
  user: string;
  password: string;
}

export interface Config {
  accountSid: string;
  /** Primary first; Twilio signs with the primary only, the secondary is accepted during rotation. */
  authTokens: readonly string[];
  apiBase: string;
  originUrl: string | null;
  /** The first PUBLIC_URL: the base the guard hands out (usage-trigger callbacks, status callbacks). */
  publicUrl: string | null;
  /** Every PUBLIC_URL base (comma-separated in the setting), each accepted for verification; [] when unset. */
  publicUrls: readonly string[];
  /** TWILIO_WEBHOOK_SHARED_KEYS: Webhook SharedKey secrets by key id; empty when unset. */
  sharedKeys: ReadonlyMap<string, string>;
  webhookAuth: WebhookAuth;
  basic: BasicCredentials | null;
  mode: GuardMode;
  egressMode: EgressMode;
  policy: Policy;
  adminToken: string | null;
  adminTotpSecret: string | null;
  alertWebhookUrl: string | null;
  alertSms: { to: string; from: string } | null;
  reconcileIntervalS: number;
  /** Every secret value configured, for the log redactor. */
  secrets: readonly string[];
}

const DEFAULT_API_BASE = "https://api.twilio.com";
/** Contract default: poll Twilio's Usage Records every 5 minutes while an account is active today. */
const DEFAULT_RECONCILE_INTERVAL_S = 300;
/** Twilio's Usage Records are updated every few minutes; polling faster than a minute buys nothing. */
const MIN_RECONCILE_INTERVAL_S = 60;

function text(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const trimmed = value.trim();
  return trimmed === "" ? null : trimmed;
}

function httpUrl(setting: string, value: string | null): string | null {
  if (value === null) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(setting, "must be an absolute http(s) URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigError(setting, "must be an absolute http(s) URL");
  }
  if (url.username || url.password) throw new ConfigError(setting, "must not contain credentials");
  if (url.search || url.hash) throw new ConfigError(setting, "must not contain a query or fragment");
  return url.href.replace(/\/+$/, "");
}

function oneOf<T extends string>(setting: string, value: string | null, allowed: readonly T[], fallback: T): T {
  if (value === null) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(setting, `must be one of ${allowed.join(", ")}`);
}

/** PUBLIC_URL: one or more base URLs separated by commas (say the workers.dev URL and a custom domain). */
function publicUrlList(value: string | null): string[] {
  if (value === null) return [];
  const urls = value.split(",").map((part) => part.trim());
  if (urls.some((url) => url === "")) throw new ConfigError("PUBLIC_URL", "has an empty entry between commas");
  return [...new Set(urls.map((url) => httpUrl("PUBLIC_URL", url)!))];
}

/** Twilio's SharedKey ids and secrets are opaque strings; these bounds keep a header lookup cheap. */
const SHARED_KEY_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Two keys while one is rotated (CONTRACT.md); a few more leave room, more is a mistake. */
const MAX_SHARED_KEYS = 8;

function sharedKeyMap(value: string | null): Map<string, string> {
  const keys = new Map<string, string>();
  if (value === null) return keys;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new ConfigError("TWILIO_WEBHOOK_SHARED_KEYS", 'must be a JSON object {"<key id>": "<secret>"}');
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError("TWILIO_WEBHOOK_SHARED_KEYS", 'must be a JSON object {"<key id>": "<secret>"}');
  }
  for (const [id, secret] of Object.entries(parsed)) {
    if (!SHARED_KEY_ID.test(id)) throw new ConfigError("TWILIO_WEBHOOK_SHARED_KEYS", "has a key id that is not 1-128 letters, digits or _.:-");
    if (typeof secret !== "string" || secret.trim() === "") throw new ConfigError("TWILIO_WEBHOOK_SHARED_KEYS", "has a key whose secret is not a non-empty string");
    keys.set(id, secret);
  }
  if (keys.size > MAX_SHARED_KEYS) throw new ConfigError("TWILIO_WEBHOOK_SHARED_KEYS", `holds more than ${MAX_SHARED_KEYS} keys`);
  return keys;
}

export function parseConfig(env: GuardEnv): Config {
  const accountSid = text(env.TWILIO_ACCOUNT_SID);
  if (accountSid === null) throw new ConfigError("TWILIO_ACCOUNT_SID", "is required");
  if (!ACCOUNT_SID.test(accountSid)) {
    throw new ConfigError("TWILIO_ACCOUNT_SID", "must be AC followed by 32 lowercase hex characters");
  }
  const primary = text(env.TWILIO_AUTH_TOKEN);
  if (primary === null) throw new ConfigError("TWILIO_AUTH_TOKEN", "is required");
  const secondary = text(env.TWILIO_AUTH_TOKEN_SECONDARY);

  const webhookAuth = oneOf<WebhookAuth>("WEBHOOK_AUTH", text(env.WEBHOOK_AUTH), ["signature", "basic", "both"], "signature");
  const user = text(env.BASIC_AUTH_USER);
  const password = text(env.BASIC_AUTH_PASSWORD);
  if (webhookAuth !== "signature") {
    if (user === null) throw new ConfigError("BASIC_AUTH_USER", `is required when WEBHOOK_AUTH is ${webhookAuth}`);
    if (password === null) throw new ConfigError("BASIC_AUTH_PASSWORD", `is required when WEBHOOK_AUTH is ${webhookAuth}`);
    // RFC 7617: the user-id cannot contain a colon, since the first colon separates it from the password.
    if (user.includes(":")) throw new ConfigError("BASIC_AUTH_USER", "must not contain ':'");
  }

  let policy: Policy = DEFAULT_POLICY;
  const policyText = text(env.GUARD_POLICY);
  if (policyText !== null) {
    try {
      policy = parsePolicyJson(policyText);
    } catch (error) {
      const field = error instanceof PolicyError ? (error as Error).message : "invalid policy";
      throw new ConfigError("GUARD_POLICY", field);
    }
  }

  const reconcileText = text(env.RECONCILE_INTERVAL_S);
  let reconcileIntervalS = DEFAULT_RECONCILE_INTERVAL_S;
  if (reconcileText !== null) {
    const n = Number(reconcileText);
    if (!Number.isInteger(n) || n < 0 || (n > 0 && n < MIN_RECONCILE_INTERVAL_S)) {
      throw new ConfigError("RECONCILE_INTERVAL_S", `must be 0 (off) or a whole number of seconds ≥ ${MIN_RECONCILE_INTERVAL_S}`);
    }
    reconcileIntervalS = n;
  }

  const smsTo = text(env.ALERT_SMS_TO);
  const smsFrom = text(env.ALERT_SMS_FROM);
  if ((smsTo === null) !== (smsFrom === null)) {
    throw new ConfigError(smsTo === null ? "ALERT_SMS_TO" : "ALERT_SMS_FROM", "ALERT_SMS_TO and ALERT_SMS_FROM go together");
  }

  const adminToken = text(env.ADMIN_TOKEN);
  const adminTotpSecret = text(env.ADMIN_TOTP_SECRET);
  const publicUrls = publicUrlList(text(env.PUBLIC_URL));
  const sharedKeys = sharedKeyMap(text(env.TWILIO_WEBHOOK_SHARED_KEYS));

  return {
    accountSid,
    authTokens: secondary === null ? [primary] : [primary, secondary],
    apiBase: httpUrl("TWILIO_API_BASE", text(env.TWILIO_API_BASE)) ?? DEFAULT_API_BASE,
    originUrl: httpUrl("ORIGIN_URL", text(env.ORIGIN_URL)),
    publicUrl: publicUrls[0] ?? null,
    publicUrls,
    sharedKeys,
    webhookAuth,
    basic: webhookAuth === "signature" || user === null || password === null ? null : { user, password },
    mode: oneOf<GuardMode>("GUARD_MODE", text(env.GUARD_MODE), ["enforce", "report-only"], "enforce"),
    egressMode: oneOf<EgressMode>("EGRESS_MODE", text(env.EGRESS_MODE), ["off", "enforce", "report-only"], "off"),
    policy,
    adminToken,
    adminTotpSecret,
    alertWebhookUrl: httpUrl("ALERT_WEBHOOK_URL", text(env.ALERT_WEBHOOK_URL)),
    alertSms: smsTo !== null && smsFrom !== null ? { to: smsTo, from: smsFrom } : null,
    reconcileIntervalS,
    secrets: [primary, secondary, password, adminToken, adminTotpSecret, ...sharedKeys.values()].filter((s): s is string => s !== null),
  };
}

const cache = new WeakMap<object, Config | ConfigError>();

/** Parsed settings for this env object; the same ConfigError again on every request until fixed. */
export function getConfig(env: GuardEnv): Config {
  let entry = cache.get(env);
  if (entry === undefined) {
    try {
      entry = parseConfig(env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      entry = error;
    }
    cache.set(env, entry);
  }
  if (entry instanceof ConfigError) throw entry;
  return entry;
}
