// A small Twilio REST client over plain `fetch` (no SDK): the calls listed in CONTRACT.md, section
// "Twilio REST calls the Worker makes". Form-encoded bodies, HTTP Basic with the parent account's
// credentials, JSON answers, a timeout per HTTP request and bounded paging. Web-standard APIs only.
//
// Paths, parameter names and enum values follow Twilio's OpenAPI description of the 2010-04-01 API
// (twilio-oai, twilio_api_v2010.json): FetchAccount/UpdateAccount, ListCall/UpdateCall,
// ListUsageTrigger/CreateUsageTrigger/DeleteUsageTrigger, ListUsageRecordToday, CreateMessage,
// FetchMessage/FetchCall (a send's real price).

import { toBase64, utf8 } from "../util/encoding.ts";
import { errorFromResponse, redactedDetail, TwilioRestError, type RestPurpose, type RestStatus } from "./errors.ts";
import { ACCOUNT_SID, CALL_SID, MESSAGE_SID, USAGE_TRIGGER_SID } from "./sids.ts";

export { classifyRestFailure, TwilioRestError } from "./errors.ts";
export type { RestPurpose, RestStatus } from "./errors.ts";

// Every resource we use lives under the 2010 API version; the `.json` suffix selects JSON answers
// (the 2010 API answers XML by default: https://www.twilio.com/docs/usage/twilios-response).
const API_VERSION_PATH = "/2010-04-01";

// One Twilio call should take well under a second; 10 s (the same budget CONTRACT.md gives the origin)
// fails a hung call fast enough for the breaker's outbox to retry with backoff inside one alarm.
export const DEFAULT_TIMEOUT_MS = 10_000;

// Twilio's largest PageSize (error 20007 "Page size too large" above 1000), so one request usually suffices.
export const LIST_PAGE_SIZE = 1000;

// Bounds a list walk (10 × 1000 items) so a next_page_uri loop or a huge account cannot pin the Worker.
export const MAX_LIST_PAGES = 10;

// Bounds one walk of the parent's account list (100 × 1000 = 100,000 accounts). Twilio allows 1,000
// subaccounts by default and more on request (error 21480), without a documented ceiling: 100× the
// default. The walk hands over one page at a time (a page of 1000 is ~1 MB of JSON), so memory stays one
// page whatever the bound, and 100 requests fit the paid plan's 1,000 subrequests per invocation.
export const MAX_ACCOUNT_LIST_PAGES = 100;

// The usage category that sums every priced category: what a spend limit watches
// (https://www.twilio.com/docs/usage/api/usage-record#usage-categories).
export const USAGE_CATEGORY_TOTAL_PRICE = "totalprice";

// Usage Triggers fire on the record's `price` field (usage_trigger_enum_trigger_field: count|usage|price).
export const TRIGGER_BY_PRICE = "price";

// /usage-trigger verifies Twilio's signature over POST parameters; Twilio's default is also POST.
export const TRIGGER_CALLBACK_METHOD = "POST";

// Twilio documents FriendlyName of a Usage Trigger as "up to 64 characters long".
export const MAX_TRIGGER_FRIENDLY_NAME_CHARS = 64;

// Twilio refuses message bodies over 1600 characters (error 21617); an alert is truncated rather than lost.
export const MAX_SMS_BODY_CHARS = 1600;

// SID shapes (sids.ts) are checked before a SID goes into a path, so a forged value can never add path
// segments, queries or another host.

// account_enum_status in the OpenAPI.
const ACCOUNT_STATUSES = ["active", "suspended", "closed"] as const;

// A Usage Trigger value: a decimal, or "+N" meaning N above current usage (Twilio resolves the offset).
const TRIGGER_VALUE = /^\+?[0-9]+(\.[0-9]+)?$/;

// Sent so Twilio's request logs show who called; carries no secret.
const USER_AGENT = "twilio-edge-guard";

export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];

export interface TwilioRestConfig {
  /** e.g. https://api.twilio.com (TWILIO_API_BASE); may carry a path prefix for a proxy. */
  apiBase: string;
  /** The parent account: every call authenticates as it (CONTRACT.md). */
  accountSid: string;
  authToken: string;
  /** Per HTTP request, including reading the body. Default DEFAULT_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Default: the global fetch, looked up at call time. */
  fetch?: typeof fetch;
  /** Called once per HTTP request (each page of a list), for metrics. Must not throw; errors are ignored. */
  onCall?: (purpose: RestPurpose, outcome: "ok" | "error", status: RestStatus) => void;
}

export interface TwilioAccount {
  sid: string;
  status: AccountStatus;
  ownerAccountSid: string;
  authToken: string;
  friendlyName: string;
}

export interface UsageTrigger {
  sid: string;
  friendlyName: string;
  usageCategory: string;
  triggerBy: string;
  triggerValue: string;
  recurring: string;
  callbackUrl: string;
}

export interface NewUsageTrigger {
  friendlyName: string;
  /** Decimal USD, e.g. "50" or "12.5"; "+N" means N above today's usage. */
  triggerValue: string;
  recurring: "daily" | "monthly";
  callbackUrl: string;
}

/** What Twilio bills for a send, as its Message or Call resource says (FetchMessage / FetchCall). */
export interface SendPrice {
  /** USD as a positive number (Twilio writes a charge as a negative decimal string); null until Twilio fills it. */
  usd: number | null;
  /** The resource's `price_unit` (null when absent): only USD can be applied to the ledger. */
  unit: string | null;
  /** The resource's `status` (message_enum_status / call_enum_status). */
  status: string;
}

export interface TwilioClient {
  /**
   * GET /Accounts.json?PageSize=1000 through next_page_uri: the parent and each of its subaccounts, with
   * auth tokens and friendly names (items that are not a well-formed account are skipped), handed over a
   * page at a time (`onPage` is awaited before the next request), for at most `maxPages` pages (default MAX_ACCOUNT_LIST_PAGES). `complete` is false when it stopped at the
   * bound with pages left: the caller then saw only part of the parent's accounts.
   */
  walkAccounts(onPage: (accounts: TwilioAccount[]) => void | Promise<void>, maxPages?: number): Promise<{ complete: boolean; pages: number }>;
  /** GET /Accounts/{Sid}.json; null when Twilio answers 404 (unknown SID, or not under the parent). */
  fetchAccount(sid: string): Promise<TwilioAccount | null>;
  /** POST /Accounts/{Sid}.json Status=…; refuses (plain Error, no request) to suspend the parent. */
  setAccountStatus(sid: string, status: "suspended" | "active"): Promise<TwilioAccount>;
  /** GET /Accounts/{Sid}/Calls.json?Status=in-progress, all pages (bounded); the Call SIDs. */
  listInProgressCalls(sid: string): Promise<string[]>;
  /** POST /Accounts/{Sid}/Calls/{CallSid}.json Status=completed; a 404 (call already gone) is success. */
  completeCall(sid: string, callSid: string): Promise<void>;
  /** GET /Accounts/{Sid}/Usage/Triggers.json, all pages (bounded). */
  listUsageTriggers(sid: string): Promise<UsageTrigger[]>;
  /** POST /Accounts/{Sid}/Usage/Triggers.json with UsageCategory=totalprice, TriggerBy=price, CallbackMethod=POST. */
  createUsageTrigger(sid: string, t: NewUsageTrigger): Promise<UsageTrigger>;
  /** DELETE /Accounts/{Sid}/Usage/Triggers/{TriggerSid}.json; a 404 (already deleted) is success. */
  deleteUsageTrigger(sid: string, triggerSid: string): Promise<void>;
  /**
   * GET /Accounts/{Sid}/Usage/Records/Today.json?Category=totalprice&IncludeSubaccounts=false: today's (UTC)
   * spend of this account alone in USD (a parent's records include its subaccounts' by default, and each
   * subaccount has its own ledger), null without a USD record.
   */
  usageTodayUsd(sid: string): Promise<number | null>;
  /** POST /Accounts/{Parent}/Messages.json To, From, Body (Body truncated to MAX_SMS_BODY_CHARS). */
  sendSms(from: string, to: string, body: string): Promise<void>;
  /**
   * GET /Accounts/{Sid}/Messages/{MessageSid}.json or /Calls/{CallSid}.json: the send's `price` and
   * `price_unit` (null until Twilio fills them, up to a day after the send); null when Twilio answers 404.
   */
  fetchSendPrice(sid: string, kind: "message" | "call", sendSid: string): Promise<SendPrice | null>;
}

function requireSid(pattern: RegExp, value: unknown, what: string): string {
  if (typeof value !== "string" || !pattern.test(value)) {
    // The value is not echoed: it may be attacker-controlled and would end up in logs.
    throw new Error(`invalid ${what}: expected ${pattern.source.slice(1, 3)} followed by 32 hex digits`);
  }
  return value;
}

function normalizeApiBase(apiBase: string): string {
  let url: URL;
  try {
    url = new URL(apiBase);
  } catch {
    throw new Error("invalid Twilio API base URL");
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.username || url.password || url.search || url.hash) {
    throw new Error("invalid Twilio API base URL: expected http(s)://host[/prefix] without credentials, query or fragment");
  }
  return `${url.origin}${url.pathname}`.replace(/\/+$/, "");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

/** A 2xx answer we cannot use. Not retryable: repeating the call would not change Twilio's answer. */
class MalformedResponse extends Error {}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MalformedResponse("response body is not JSON");
  }
}

function toAccount(json: unknown, expectedSid: string): TwilioAccount {
  if (!isRecord(json)) throw new MalformedResponse("account is not an object");
  const sid = json.sid;
  if (typeof sid !== "string" || sid.toLowerCase() !== expectedSid.toLowerCase()) {
    throw new MalformedResponse("account sid does not match the request");
  }
  const status = json.status;
  if (typeof status !== "string" || !(ACCOUNT_STATUSES as readonly string[]).includes(status)) {
    throw new MalformedResponse("account status is not active|suspended|closed");
  }
  const authToken = json.auth_token;
  // An empty token would make every HMAC forgeable by anyone: refuse it rather than pass it on.
  if (typeof authToken !== "string" || authToken.length === 0) {
    throw new MalformedResponse("account has no auth_token");
  }
  return {
    sid,
    status: status as AccountStatus,
    ownerAccountSid: str(json.owner_account_sid),
    authToken,
    friendlyName: str(json.friendly_name),
  };
}

const ACCOUNTS_LIST_PATH = `${API_VERSION_PATH}/Accounts.json`;

/** An item of the account list; undefined (skipped) when it is not a well-formed account. */
function toListedAccount(item: unknown): TwilioAccount | undefined {
  if (!isRecord(item) || typeof item.sid !== "string" || !ACCOUNT_SID.test(item.sid)) return undefined;
  try {
    return toAccount(item, item.sid);
  } catch (error) {
    if (error instanceof MalformedResponse) return undefined;
    throw error;
  }
}

function toTrigger(json: unknown): UsageTrigger {
  if (!isRecord(json) || typeof json.sid !== "string" || !USAGE_TRIGGER_SID.test(json.sid)) {
    throw new MalformedResponse("usage trigger has no valid sid");
  }
  return {
    sid: json.sid,
    friendlyName: str(json.friendly_name),
    usageCategory: str(json.usage_category),
    triggerBy: str(json.trigger_by),
    triggerValue: str(json.trigger_value),
    recurring: str(json.recurring),
    callbackUrl: str(json.callback_url),
  };
}

/** Twilio documents `price` as a number but answers with decimal strings ("0.0075"); accept both. */
function toPrice(value: unknown): number | null {
  if (value === null || value === undefined || value === "") return null;
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : Number.NaN;
  if (!Number.isFinite(n)) throw new MalformedResponse("price is not a number");
  return n;
}

interface ListPage {
  items: unknown[];
  nextPageUri: string | null;
}

function toListPage(json: unknown, key: string): ListPage {
  if (!isRecord(json) || !Array.isArray(json[key])) throw new MalformedResponse(`list has no ${key} array`);
  const next = json.next_page_uri;
  return { items: json[key] as unknown[], nextPageUri: typeof next === "string" && next.length > 0 ? next : null };
}

type Method = "GET" | "POST" | "DELETE";

export function createTwilioClient(cfg: TwilioRestConfig): TwilioClient {
  const apiBase = normalizeApiBase(cfg.apiBase);
  const parentSid = requireSid(ACCOUNT_SID, cfg.accountSid, "parent Account SID");
  if (typeof cfg.authToken !== "string" || cfg.authToken.length === 0) throw new Error("missing Twilio auth token");
  const timeoutMs = cfg.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new Error("invalid Twilio REST timeout");

  const basic = toBase64(utf8(`${parentSid}:${cfg.authToken}`));
  const authorization = `Basic ${basic}`;
  // Never let either form of the credential reach an error message.
  const secrets = [cfg.authToken, basic];
  // Called as a plain function: workerd rejects a fetch invoked with a foreign `this`.
  const doFetch: typeof fetch = cfg.fetch ?? ((input, init) => fetch(input, init));

  function report(purpose: RestPurpose, outcome: "ok" | "error", status: RestStatus): void {
    try {
      cfg.onCall?.(purpose, outcome, status);
    } catch {
      // Metrics must never turn a successful call into a failure.
    }
  }

  /**
   * One HTTP request. `accept` lists non-2xx statuses the caller treats as an answer (e.g. 404 → null);
   * `parse` turns the answer into the result, throwing MalformedResponse when it cannot.
   */
  async function request<T>(
    purpose: RestPurpose,
    method: Method,
    pathAndQuery: string,
    form: Record<string, string> | undefined,
    parse: (status: number, text: string) => T,
    accept: readonly number[] = [],
  ): Promise<T> {
    const headers: Record<string, string> = {
      Authorization: authorization,
      Accept: "application/json",
      "User-Agent": USER_AGENT,
    };
    let body: string | undefined;
    if (form !== undefined) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(form).toString();
    }

    const controller = new AbortController();
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Raced against fetch and the body read, so even a fetch that ignores the signal cannot hang us.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
        reject(new Error("timeout"));
      }, timeoutMs);
    });
    deadline.catch(() => {});

    let status: number;
    let statusText: string;
    let text: string;
    try {
      const response = await Promise.race([
        doFetch(`${apiBase}${pathAndQuery}`, { method, headers, body, signal: controller.signal, redirect: "manual" }),
        deadline,
      ]);
      status = response.status;
      statusText = response.statusText;
      text = await Promise.race([response.text(), deadline]);
    } catch (err) {
      if (timedOut) {
        report(purpose, "error", "timeout");
        throw new TwilioRestError({ purpose, status: "timeout", detail: `no answer within ${timeoutMs} ms` });
      }
      report(purpose, "error", "network");
      const detail = err instanceof Error ? redactedDetail(err.message, secrets) : "";
      throw new TwilioRestError({ purpose, status: "network", detail: detail || "network error" });
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }

    if ((status < 200 || status > 299) && !accept.includes(status)) {
      report(purpose, "error", status);
      throw errorFromResponse(purpose, status, statusText, text, secrets);
    }
    try {
      const result = parse(status, text);
      report(purpose, "ok", status);
      return result;
    } catch (err) {
      report(purpose, "error", status);
      if (err instanceof MalformedResponse) {
        throw new TwilioRestError({ purpose, status, detail: `unexpected response: ${err.message}` });
      }
      throw err;
    }
  }

  /**
   * Walks next_page_uri (relative to apiBase, same resource only) for at most `maxPages` pages, handing
   * each page's items to `onPage` (awaited) before asking for the next; `mapItem` returns undefined to
   * skip an item, throws MalformedResponse to fail. `complete`: the last page had no next_page_uri.
   */
  async function walkList<T>(
    purpose: RestPurpose,
    path: string,
    query: Record<string, string>,
    key: string,
    mapItem: (item: unknown) => T | undefined,
    onPage: (items: T[]) => void | Promise<void>,
    maxPages: number,
  ): Promise<{ complete: boolean; pages: number }> {
    let next: string | null = `${path}?${new URLSearchParams(query).toString()}`;
    let pages = 0;
    for (; next !== null && pages < maxPages; pages++) {
      const result: { mapped: T[]; nextPageUri: string | null } = await request(purpose, "GET", next, undefined, (_status, text) => {
        const parsed = toListPage(parseJson(text), key);
        const uri = parsed.nextPageUri;
        // Only a page of the same resource on the same API base: credentials never go anywhere else.
        if (uri !== null && !uri.toLowerCase().startsWith(`${path.toLowerCase()}?`)) {
          throw new MalformedResponse("next_page_uri points outside the listed resource");
        }
        const mapped: T[] = [];
        for (const item of parsed.items) {
          const value = mapItem(item);
          if (value !== undefined) mapped.push(value);
        }
        return { mapped, nextPageUri: uri };
      });
      await onPage(result.mapped);
      next = result.nextPageUri;
    }
    return { complete: next === null, pages };
  }

  /** walkList for at most MAX_LIST_PAGES pages, collected into one array. */
  async function listAll<T>(
    purpose: RestPurpose,
    path: string,
    query: Record<string, string>,
    key: string,
    mapItem: (item: unknown) => T | undefined,
  ): Promise<T[]> {
    const items: T[] = [];
    await walkList(purpose, path, query, key, mapItem, (page) => void items.push(...page), MAX_LIST_PAGES);
    return items;
  }

  const accountPath = (sid: string) => `${API_VERSION_PATH}/Accounts/${requireSid(ACCOUNT_SID, sid, "Account SID")}`;

  return {
    async walkAccounts(onPage, maxPages = MAX_ACCOUNT_LIST_PAGES) {
      if (!Number.isInteger(maxPages) || maxPages < 1) throw new Error("invalid page bound: expected a positive integer");
      return walkList("list-accounts", ACCOUNTS_LIST_PATH, { PageSize: String(LIST_PAGE_SIZE) }, "accounts", toListedAccount, onPage, maxPages);
    },

    async fetchAccount(sid) {
      const path = `${accountPath(sid)}.json`;
      return request("fetch-account", "GET", path, undefined, (status, text) => (status === 404 ? null : toAccount(parseJson(text), sid)), [404]);
    },

    async setAccountStatus(sid, status) {
      const path = `${accountPath(sid)}.json`;
      if (status !== "suspended" && status !== "active") throw new Error("invalid account status: expected suspended or active");
      // Twilio refuses to suspend a parent account (error 21477) and CONTRACT.md forbids trying.
      if (status === "suspended" && sid.toLowerCase() === parentSid.toLowerCase()) {
        throw new Error("refusing to suspend the parent account");
      }
      const purpose: RestPurpose = status === "suspended" ? "suspend" : "reactivate";
      return request(purpose, "POST", path, { Status: status }, (_s, text) => toAccount(parseJson(text), sid));
    },

    async listInProgressCalls(sid) {
      const path = `${accountPath(sid)}/Calls.json`;
      const query = { Status: "in-progress", PageSize: String(LIST_PAGE_SIZE) };
      // Skip anything that is not a Call SID: completeCall could not address it anyway.
      return listAll("list-calls", path, query, "calls", (call) =>
        isRecord(call) && typeof call.sid === "string" && CALL_SID.test(call.sid) ? call.sid : undefined,
      );
    },

    async completeCall(sid, callSid) {
      const path = `${accountPath(sid)}/Calls/${requireSid(CALL_SID, callSid, "Call SID")}.json`;
      await request("end-call", "POST", path, { Status: "completed" }, () => undefined, [404]);
    },

    async listUsageTriggers(sid) {
      const path = `${accountPath(sid)}/Usage/Triggers.json`;
      return listAll("list-triggers", path, { PageSize: String(LIST_PAGE_SIZE) }, "usage_triggers", toTrigger);
    },

    async createUsageTrigger(sid, t) {
      const path = `${accountPath(sid)}/Usage/Triggers.json`;
      if (typeof t.friendlyName !== "string" || t.friendlyName.length > MAX_TRIGGER_FRIENDLY_NAME_CHARS) {
        throw new Error(`invalid usage trigger friendlyName: at most ${MAX_TRIGGER_FRIENDLY_NAME_CHARS} characters`);
      }
      if (typeof t.triggerValue !== "string" || !TRIGGER_VALUE.test(t.triggerValue)) {
        throw new Error("invalid usage trigger value: expected a decimal, optionally prefixed with +");
      }
      if (t.recurring !== "daily" && t.recurring !== "monthly") throw new Error("invalid usage trigger recurring: expected daily or monthly");
      let callback: URL;
      try {
        callback = new URL(t.callbackUrl);
      } catch {
        throw new Error("invalid usage trigger callbackUrl");
      }
      if (callback.protocol !== "https:" && callback.protocol !== "http:") throw new Error("invalid usage trigger callbackUrl");
      const form: Record<string, string> = {
        UsageCategory: USAGE_CATEGORY_TOTAL_PRICE,
        TriggerBy: TRIGGER_BY_PRICE,
        TriggerValue: t.triggerValue,
        Recurring: t.recurring,
        CallbackUrl: t.callbackUrl,
        CallbackMethod: TRIGGER_CALLBACK_METHOD,
        FriendlyName: t.friendlyName,
      };
      return request("create-trigger", "POST", path, form, (_s, text) => toTrigger(parseJson(text)));
    },

    async deleteUsageTrigger(sid, triggerSid) {
      const path = `${accountPath(sid)}/Usage/Triggers/${requireSid(USAGE_TRIGGER_SID, triggerSid, "Usage Trigger SID")}.json`;
      await request("delete-trigger", "DELETE", path, undefined, () => undefined, [404]);
    },

    async usageTodayUsd(sid) {
      const path = `${accountPath(sid)}/Usage/Records/Today.json?${new URLSearchParams({ Category: USAGE_CATEGORY_TOTAL_PRICE, IncludeSubaccounts: "false" }).toString()}`;
      return request("usage-today", "GET", path, undefined, (_s, text) => {
        const page = toListPage(parseJson(text), "usage_records");
        const record = page.items.find((r) => isRecord(r) && r.category === USAGE_CATEGORY_TOTAL_PRICE);
        if (!isRecord(record)) return null;
        // The ledger counts USD; an account billed in another currency has no USD figure to reconcile.
        const unit = record.price_unit;
        if (typeof unit === "string" && unit !== "" && unit.toLowerCase() !== "usd") return null;
        return toPrice(record.price);
      });
    },

    async fetchSendPrice(sid, kind, sendSid) {
      const path = kind === "message"
        ? `${accountPath(sid)}/Messages/${requireSid(MESSAGE_SID, sendSid, "Message SID")}.json`
        : `${accountPath(sid)}/Calls/${requireSid(CALL_SID, sendSid, "Call SID")}.json`;
      return request("fetch-price", "GET", path, undefined, (status, text) => {
        if (status === 404) return null;
        const json = parseJson(text);
        if (!isRecord(json) || typeof json.sid !== "string" || json.sid.toLowerCase() !== sendSid.toLowerCase()) {
          throw new MalformedResponse(`${kind} sid does not match the request`);
        }
        const price = toPrice(json.price);
        const unit = typeof json.price_unit === "string" && json.price_unit !== "" ? json.price_unit : null;
        return { usd: price === null ? null : Math.abs(price), unit, status: str(json.status) };
      }, [404]);
    },

    async sendSms(from, to, body) {
      if (typeof from !== "string" || from.length === 0) throw new Error("missing SMS From");
      if (typeof to !== "string" || to.length === 0) throw new Error("missing SMS To");
      const path = `${accountPath(parentSid)}/Messages.json`;
      const text = Array.from(String(body)).slice(0, MAX_SMS_BODY_CHARS).join("");
      await request("alert-sms", "POST", path, { To: to, From: from, Body: text }, () => undefined);
    },
  };
}
