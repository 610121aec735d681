// A stateful stand-in for the slice of Twilio's REST API (2010-04-01) that src/twilio/rest.ts uses, for
// Node tests, end-to-end runs and benchmarks: `node:http` on 127.0.0.1, an ephemeral port, in-process.
//
// It answers like Twilio (snake_case JSON from the OpenAPI schemas, list envelopes with next_page_uri,
// errors as {code, message, more_info, status}) and checks every request against the documented shape:
// path pattern and method, form encoding, HTTP Basic with the parent's credentials (CONTRACT.md), known
// parameter names, enum values and required parameters, taken from twilio_api_v2010.json. Each mismatch
// is appended to `violations`; a test that drives the Worker should end with `violations` empty.
//
// Node-only (node:http, node:crypto): never import it from code that runs in workerd.

import { randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { RestPurpose } from "../src/twilio/rest.ts";
import { ACCOUNT_SID, APPLICATION_SID, CALL_SID, CONTENT_SID, MESSAGE_SID, MESSAGING_SERVICE_SID, USAGE_TRIGGER_SID as TRIGGER_SID } from "../src/twilio/sids.ts";

// ---- Shapes from the OpenAPI description (twilio_api_v2010.json) -------------------------------------

const API = "/2010-04-01";

const ACCOUNT_STATUSES = ["active", "suspended", "closed"] as const; // account_enum_status
const CALL_STATUSES = ["queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"] as const; // call_enum_status
const CALL_UPDATE_STATUSES = ["canceled", "completed"] as const; // call_enum_update_status
const RECURRING = ["daily", "monthly", "yearly", "alltime"] as const; // usage_trigger_enum_recurring
const TRIGGER_BY = ["count", "usage", "price"] as const; // usage_trigger_enum_trigger_field
const HTTP_METHODS = ["GET", "POST"] as const; // format: http-method

export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];
export type CallStatus = (typeof CALL_STATUSES)[number];

// Twilio's default and largest PageSize (error 20007 above 1000).
const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 1000;
// Twilio refuses message bodies over 1600 characters (error 21617).
const MAX_BODY_CHARS = 1600;
// Far above anything the client sends; keeps a runaway test from buffering without end.
const MAX_REQUEST_BYTES = 1 << 20;

type ParamType =
  | "string"
  | "uri"
  | "int"
  | "bool"
  | "number"
  | "phone"
  | "date"
  | "date-time"
  | "array"
  | { enum: readonly string[] }
  | { pattern: RegExp }
  | { min: number; max: number };

interface OperationSpec {
  method: "GET" | "POST" | "DELETE";
  params: Record<string, ParamType>;
  required?: readonly string[];
}

const PAGING: Record<string, ParamType> = { PageSize: { min: 1, max: MAX_PAGE_SIZE }, Page: { min: 0, max: Number.MAX_SAFE_INTEGER }, PageToken: "string" };

const OPERATIONS = {
  ListAccount: { method: "GET", params: { FriendlyName: "string", Status: { enum: ACCOUNT_STATUSES }, ...PAGING } },
  FetchAccount: { method: "GET", params: {} },
  UpdateAccount: { method: "POST", params: { FriendlyName: "string", Status: { enum: ACCOUNT_STATUSES } } },
  ListCall: {
    method: "GET",
    params: {
      To: "phone",
      From: "phone",
      ParentCallSid: { pattern: CALL_SID },
      Status: { enum: CALL_STATUSES },
      StartTime: "date-time",
      "StartTime<": "date-time",
      "StartTime>": "date-time",
      EndTime: "date-time",
      "EndTime<": "date-time",
      "EndTime>": "date-time",
      ...PAGING,
    },
  },
  UpdateCall: {
    method: "POST",
    params: {
      Url: "uri",
      Method: { enum: HTTP_METHODS },
      Status: { enum: CALL_UPDATE_STATUSES },
      FallbackUrl: "uri",
      FallbackMethod: { enum: HTTP_METHODS },
      StatusCallback: "uri",
      StatusCallbackMethod: { enum: HTTP_METHODS },
      Twiml: "string",
      TimeLimit: "int",
    },
  },
  ListUsageTrigger: {
    method: "GET",
    params: { Recurring: { enum: RECURRING }, TriggerBy: { enum: TRIGGER_BY }, UsageCategory: "string", ...PAGING },
  },
  CreateUsageTrigger: {
    method: "POST",
    params: {
      CallbackUrl: "uri",
      TriggerValue: "string",
      UsageCategory: "string",
      CallbackMethod: { enum: HTTP_METHODS },
      FriendlyName: "string",
      Recurring: { enum: RECURRING },
      TriggerBy: { enum: TRIGGER_BY },
    },
    required: ["CallbackUrl", "TriggerValue", "UsageCategory"],
  },
  DeleteUsageTrigger: { method: "DELETE", params: {} },
  // A send's real price (FetchMessage / FetchCall): no parameters beyond the path.
  FetchMessage: { method: "GET", params: {} },
  FetchCall: { method: "GET", params: {} },
  ListUsageRecordToday: {
    method: "GET",
    params: { Category: "string", StartDate: "date", EndDate: "date", IncludeSubaccounts: "bool", ...PAGING },
  },
  // CreateCall (the egress gate's calls): the parameters an app sends most; "endpoint" To/From are
  // numbers, client: or sip: addresses.
  CreateCall: {
    method: "POST",
    params: {
      To: "string",
      From: "string",
      Url: "uri",
      Twiml: "string",
      ApplicationSid: { pattern: APPLICATION_SID },
      Method: { enum: HTTP_METHODS },
      FallbackUrl: "uri",
      FallbackMethod: { enum: HTTP_METHODS },
      StatusCallback: "uri",
      StatusCallbackEvent: "array",
      StatusCallbackMethod: { enum: HTTP_METHODS },
      SendDigits: "string",
      Timeout: "int",
      Record: "bool",
      MachineDetection: "string",
      CallerId: "string",
      TimeLimit: "int",
    },
    required: ["To", "From"],
  },
  CreateMessage: {
    method: "POST",
    params: {
      To: "phone",
      StatusCallback: "uri",
      ApplicationSid: { pattern: APPLICATION_SID },
      MaxPrice: "number",
      ProvideFeedback: "bool",
      Attempt: "int",
      ValidityPeriod: "int",
      ForceDelivery: "bool",
      ContentRetention: { enum: ["retain", "discard"] },
      AddressRetention: { enum: ["retain", "obfuscate"] },
      SmartEncoded: "bool",
      PersistentAction: "array",
      TrafficType: { enum: ["free"] },
      ShortenUrls: "bool",
      ScheduleType: { enum: ["fixed"] },
      SendAt: "date-time",
      SendAsMms: "bool",
      ContentVariables: "string",
      RiskCheck: { enum: ["enable", "disable"] },
      From: "phone",
      FallbackFrom: "phone",
      MessagingServiceSid: { pattern: MESSAGING_SERVICE_SID },
      Body: "string",
      MediaUrl: "array",
      ContentSid: { pattern: CONTENT_SID },
    },
    required: ["To"],
  },
} satisfies Record<string, OperationSpec>;

type OperationId = keyof typeof OPERATIONS;

interface Route {
  operation: OperationId;
  accountSid: string;
  subSid?: string;
}

// Paths (without the /2010-04-01 prefix) of the resources the client uses, by OpenAPI operation.
const ROUTES: { pattern: RegExp; byMethod: Partial<Record<string, OperationId>> }[] = [
  // The account list has no Sid in its path: it lists what the credentials' account may see.
  { pattern: /^\/Accounts\.json$/, byMethod: { GET: "ListAccount" } },
  { pattern: /^\/Accounts\/([^/]+)\.json$/, byMethod: { GET: "FetchAccount", POST: "UpdateAccount" } },
  { pattern: /^\/Accounts\/([^/]+)\/Calls\.json$/, byMethod: { GET: "ListCall", POST: "CreateCall" } },
  { pattern: /^\/Accounts\/([^/]+)\/Calls\/([^/]+)\.json$/, byMethod: { GET: "FetchCall", POST: "UpdateCall" } },
  { pattern: /^\/Accounts\/([^/]+)\/Usage\/Triggers\.json$/, byMethod: { GET: "ListUsageTrigger", POST: "CreateUsageTrigger" } },
  { pattern: /^\/Accounts\/([^/]+)\/Usage\/Triggers\/([^/]+)\.json$/, byMethod: { DELETE: "DeleteUsageTrigger" } },
  { pattern: /^\/Accounts\/([^/]+)\/Usage\/Records\/Today\.json$/, byMethod: { GET: "ListUsageRecordToday" } },
  { pattern: /^\/Accounts\/([^/]+)\/Messages\.json$/, byMethod: { POST: "CreateMessage" } },
  { pattern: /^\/Accounts\/([^/]+)\/Messages\/([^/]+)\.json$/, byMethod: { GET: "FetchMessage" } },
];

const SUB_SID_PATTERN: Partial<Record<OperationId, RegExp>> = { UpdateCall: CALL_SID, FetchCall: CALL_SID, FetchMessage: MESSAGE_SID, DeleteUsageTrigger: TRIGGER_SID };

// ---- Public API ---------------------------------------------------------------------------------------

export type StandinPurpose = RestPurpose | "unknown";

export interface StandinOptions {
  parentSid: string;
  parentToken: string;
  parentFriendlyName?: string;
  /** Server-side cap on PageSize, to exercise paging with few items. Default 1000 (Twilio's maximum). */
  maxPageSize?: number;
  /** Delay before every answer, to model Twilio's latency in benchmarks. Default 0. */
  latencyMs?: number;
  /** Listen on this loopback port instead of an ephemeral one (the local demo uses 8789). */
  port?: number;
}

export interface StandinAccount {
  sid: string;
  authToken: string;
  friendlyName: string;
  status: AccountStatus;
  ownerAccountSid: string;
  dateCreated: Date;
  dateUpdated: Date;
}

export interface StandinCall {
  sid: string;
  accountSid: string;
  status: CallStatus;
  from: string;
  to: string;
  dateCreated: Date;
  /** What FetchCall answers as `price` (a negative decimal string once billed); absent: null, not priced yet. */
  price?: string | null;
}

export interface StandinTrigger {
  sid: string;
  accountSid: string;
  friendlyName: string;
  usageCategory: string;
  triggerBy: string;
  triggerValue: string;
  recurring: string | null;
  callbackUrl: string;
  callbackMethod: string;
}

export interface StandinMessage {
  sid: string;
  accountSid: string;
  from: string;
  to: string;
  body: string;
  /** What FetchMessage answers as `price` (a negative decimal string once billed); absent: null, not priced yet. */
  price?: string | null;
}

export interface RecordedRequest {
  method: string;
  /** The path as requested, without the query. */
  path: string;
  query: Record<string, string>;
  /** Parsed from an application/x-www-form-urlencoded body; {} otherwise. */
  form: Record<string, string>;
  /** The user of HTTP Basic credentials, null without them. The password is never recorded. */
  basicUser: string | null;
  contentType: string | null;
  purpose: StandinPurpose;
  /** The status answered; "hang"/"drop" for injected failures without an answer. */
  status: number | "hang" | "drop";
  /** True when failNext decided the answer. */
  injected: boolean;
}

export type InjectedFailure = { status: number; code?: number; message?: string } | "hang" | "drop";
export type RequestMatcher = StandinPurpose | ((req: RecordedRequest) => boolean);

export interface TwilioStandin {
  /** Base URL to use as TWILIO_API_BASE, e.g. http://127.0.0.1:38123 */
  url: string;
  close(): Promise<void>;
  addSubaccount(opts?: { sid?: string; authToken?: string; friendlyName?: string; status?: AccountStatus }): { sid: string; authToken: string };
  /** Adds a call (default in-progress) to an account and returns its SID. */
  addCall(accountSid: string, opts?: { status?: CallStatus; from?: string; to?: string }): string;
  /** Every account by SID, the parent included (ownerAccountSid = itself). Mutable: tests may set status. */
  accounts: Map<string, StandinAccount>;
  calls: Map<string, StandinCall>;
  triggers: Map<string, StandinTrigger>;
  /** Today's totalprice in USD per AccountSid; an account without an entry has no usage record. */
  usage: Map<string, number>;
  messages: StandinMessage[];
  requests: RecordedRequest[];
  /**
   * The next `times` requests matching `match` (a purpose, or a predicate over the recorded request)
   * get `response` instead of their normal answer: a Twilio error, "hang" (no answer until close or the
   * client gives up) or "drop" (socket destroyed). State is not changed; shape checks still run.
   */
  failNext(match: RequestMatcher, response: InjectedFailure, times?: number): void;
  /** One line per request that did not match the documented shape: "METHOD /path: problem". */
  violations: string[];
}

// ---- Helpers ------------------------------------------------------------------------------------------

function newSid(prefix: string): string {
  return prefix + randomBytes(16).toString("hex");
}

/** Twilio's RFC 2822 timestamps: "Fri, 18 Oct 2019 17:00:00 +0000". */
function rfc2822(d: Date): string {
  return d.toUTCString().replace(/GMT$/, "+0000");
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function twilioError(status: number, code: number, message: string) {
  return { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status };
}

const E164 = /^\+[1-9][0-9]{1,14}$/;
const CHANNEL_ADDRESS = /^(whatsapp|messenger|rcs):\S+$/;
const ALPHANUMERIC_SENDER = /^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$/;

function checkValue(type: ParamType, value: string): string | null {
  if (typeof type === "object") {
    if ("enum" in type) return type.enum.includes(value) ? null : `not one of ${type.enum.join("|")}`;
    if ("pattern" in type) return type.pattern.test(value) ? null : `does not match ${type.pattern.source}`;
    if (!/^[0-9]+$/.test(value)) return "is not an integer";
    const n = Number(value);
    return n >= type.min && n <= type.max ? null : `is outside ${type.min}..${type.max}`;
  }
  switch (type) {
    case "string":
    case "array":
      return null;
    case "uri":
      try {
        const u = new URL(value);
        return u.protocol === "http:" || u.protocol === "https:" ? null : "is not an http(s) URL";
      } catch {
        return "is not a URL";
      }
    case "int":
      return /^-?[0-9]+$/.test(value) ? null : "is not an integer";
    case "number":
      return value.trim() !== "" && Number.isFinite(Number(value)) ? null : "is not a number";
    case "bool":
      return value === "true" || value === "false" ? null : "is not true|false";
    case "phone":
      return E164.test(value) || CHANNEL_ADDRESS.test(value) || ALPHANUMERIC_SENDER.test(value) ? null : "is not an E.164 number";
    case "date":
      return /^\d{4}-\d{2}-\d{2}$/.test(value) ? null : "is not YYYY-MM-DD";
    case "date-time":
      return Number.isNaN(Date.parse(value)) ? "is not a date-time" : null;
  }
}

function entriesOf(params: URLSearchParams): { values: Record<string, string>; repeated: string[] } {
  const values: Record<string, string> = {};
  const repeated: string[] = [];
  for (const [k, v] of params) {
    if (k in values && !repeated.includes(k)) repeated.push(k);
    values[k] = v;
  }
  return { values, repeated };
}

class HttpAnswer {
  readonly status: number;
  readonly body: unknown;
  constructor(status: number, body: unknown) {
    this.status = status;
    this.body = body;
  }
}

// ---- The server ---------------------------------------------------------------------------------------

export async function startTwilioStandin(opts: StandinOptions): Promise<TwilioStandin> {
  if (!ACCOUNT_SID.test(opts.parentSid)) throw new Error("startTwilioStandin: parentSid must be AC + 32 hex");
  if (!opts.parentToken) throw new Error("startTwilioStandin: parentToken is required");
  const parentSid = opts.parentSid;
  const maxPageSize = opts.maxPageSize ?? MAX_PAGE_SIZE;
  const latencyMs = opts.latencyMs ?? 0;

  const accounts = new Map<string, StandinAccount>();
  const calls = new Map<string, StandinCall>();
  const triggers = new Map<string, StandinTrigger>();
  const usage = new Map<string, number>();
  const messages: StandinMessage[] = [];
  const requests: RecordedRequest[] = [];
  const violations: string[] = [];
  const injections: { match: RequestMatcher; response: InjectedFailure; remaining: number }[] = [];
  const hanging = new Set<http.ServerResponse>();

  const now = new Date();
  accounts.set(parentSid, {
    sid: parentSid,
    authToken: opts.parentToken,
    friendlyName: opts.parentFriendlyName ?? "parent",
    status: "active",
    ownerAccountSid: parentSid,
    dateCreated: now,
    dateUpdated: now,
  });

  // Case-insensitive lookups: Twilio SIDs are hex, and either case addresses the same resource.
  const find = <T>(map: Map<string, T>, sid: string): T | undefined => map.get(sid) ?? [...map.entries()].find(([k]) => k.toLowerCase() === sid.toLowerCase())?.[1];

  function accountJson(a: StandinAccount) {
    const uri = `${API}/Accounts/${a.sid}.json`;
    return {
      auth_token: a.authToken,
      date_created: rfc2822(a.dateCreated),
      date_updated: rfc2822(a.dateUpdated),
      friendly_name: a.friendlyName,
      owner_account_sid: a.ownerAccountSid,
      sid: a.sid,
      status: a.status,
      subresource_uris: {
        calls: `${API}/Accounts/${a.sid}/Calls.json`,
        messages: `${API}/Accounts/${a.sid}/Messages.json`,
        usage: `${API}/Accounts/${a.sid}/Usage.json`,
      },
      type: "Full",
      uri,
    };
  }

  function callJson(c: StandinCall) {
    return {
      account_sid: c.accountSid,
      api_version: "2010-04-01",
      date_created: rfc2822(c.dateCreated),
      date_updated: rfc2822(c.dateCreated),
      direction: "inbound",
      from: c.from,
      parent_call_sid: null,
      price: c.price ?? null,
      price_unit: "USD",
      sid: c.sid,
      start_time: rfc2822(c.dateCreated),
      end_time: c.status === "completed" || c.status === "canceled" ? rfc2822(new Date()) : null,
      status: c.status,
      to: c.to,
      uri: `${API}/Accounts/${c.accountSid}/Calls/${c.sid}.json`,
    };
  }

  function messageJson(msg: StandinMessage, status: string) {
    return {
      account_sid: msg.accountSid,
      api_version: "2010-04-01",
      body: msg.body,
      date_created: rfc2822(new Date()),
      direction: "outbound-api",
      error_code: null,
      error_message: null,
      from: msg.from,
      messaging_service_sid: null,
      num_media: "0",
      num_segments: "1",
      price: msg.price ?? null,
      price_unit: "USD",
      sid: msg.sid,
      status,
      to: msg.to,
      uri: `${API}/Accounts/${msg.accountSid}/Messages/${msg.sid}.json`,
    };
  }

  function triggerJson(t: StandinTrigger) {
    const current = t.usageCategory === "totalprice" && t.triggerBy === "price" ? String(usage.get(t.accountSid) ?? 0) : "0";
    return {
      account_sid: t.accountSid,
      api_version: "2010-04-01",
      callback_method: t.callbackMethod,
      callback_url: t.callbackUrl,
      current_value: current,
      date_created: rfc2822(now),
      date_fired: null,
      date_updated: rfc2822(now),
      friendly_name: t.friendlyName,
      recurring: t.recurring,
      sid: t.sid,
      trigger_by: t.triggerBy,
      trigger_value: t.triggerValue,
      uri: `${API}/Accounts/${t.accountSid}/Usage/Triggers/${t.sid}.json`,
      usage_category: t.usageCategory,
      usage_record_uri: `${API}/Accounts/${t.accountSid}/Usage/Records.json?Category=${encodeURIComponent(t.usageCategory)}`,
    };
  }

  function usageTodayJson(accountSid: string, price: number) {
    const today = new Date().toISOString().slice(0, 10);
    return {
      account_sid: accountSid,
      api_version: "2010-04-01",
      as_of: new Date().toISOString().replace(/\.\d{3}Z$/, "+00:00"),
      category: "totalprice",
      count: "0",
      count_unit: "",
      description: "Total Price",
      end_date: today,
      // Twilio declares price a number in the OpenAPI but sends a decimal string (see its own examples).
      price: price.toFixed(5).replace(/0+$/, "").replace(/\.$/, ""),
      price_unit: "usd",
      start_date: today,
      subresource_uris: {},
      uri: `${API}/Accounts/${accountSid}/Usage/Records/Today.json?Category=totalprice`,
      usage: price.toFixed(5).replace(/0+$/, "").replace(/\.$/, ""),
      usage_unit: "usd",
    };
  }

  /** A Twilio list envelope; next_page_uri keeps the filters, like Twilio's. */
  function page(path: string, query: Record<string, string>, key: string, items: unknown[]): HttpAnswer {
    const requested = query.PageSize === undefined ? DEFAULT_PAGE_SIZE : Number(query.PageSize);
    if (!Number.isInteger(requested) || requested < 1) return new HttpAnswer(400, twilioError(400, 400, "Invalid PageSize"));
    if (requested > MAX_PAGE_SIZE) return new HttpAnswer(400, twilioError(400, 20007, "Page size too large"));
    const size = Math.min(requested, maxPageSize);
    const pageNo = query.Page === undefined ? 0 : Number(query.Page);
    let start = pageNo * size;
    if (query.PageToken !== undefined) {
      const m = /^PA([0-9]+)$/.exec(query.PageToken);
      if (!m) return new HttpAnswer(400, twilioError(400, 21481, "Invalid PageToken"));
      start = Number(m[1]);
    }
    const filters = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (k !== "Page" && k !== "PageSize" && k !== "PageToken") filters.append(k, v);
    const uriFor = (p: number, token?: string) => {
      const q = new URLSearchParams(filters);
      q.set("PageSize", String(size));
      q.set("Page", String(p));
      if (token) q.set("PageToken", token);
      return `${API}${path}?${q.toString()}`;
    };
    const slice = items.slice(start, start + size);
    const hasNext = start + size < items.length;
    return new HttpAnswer(200, {
      first_page_uri: uriFor(0),
      end: start + Math.max(slice.length - 1, 0),
      previous_page_uri: pageNo > 0 ? uriFor(pageNo - 1) : null,
      uri: uriFor(pageNo, query.PageToken),
      page_size: size,
      start,
      next_page_uri: hasNext ? uriFor(pageNo + 1, `PA${start + size}`) : null,
      page: pageNo,
      [key]: slice,
    });
  }

  const notFound = (path: string) => new HttpAnswer(404, twilioError(404, 20404, `The requested resource ${path} was not found`));

  /** The documented behaviour of each operation, on already-validated input. */
  function perform(route: Route, path: string, query: Record<string, string>, form: Record<string, string>, note: (v: string) => void): HttpAnswer {
    const account = find(accounts, route.accountSid);
    if (!account) return notFound(`${API}${path}`);
    const apiPath = path; // without the version prefix
    switch (route.operation) {
      case "ListAccount": {
        // Twilio lists the authenticated account and its subaccounts (api.twilio.com ListAccount).
        const list = [...accounts.values()]
          .filter((a) => (a.sid === account.sid || a.ownerAccountSid === account.sid) && (query.Status === undefined || a.status === query.Status))
          .filter((a) => query.FriendlyName === undefined || a.friendlyName === query.FriendlyName)
          .sort((a, b) => a.dateCreated.getTime() - b.dateCreated.getTime())
          .map(accountJson);
        return page(apiPath, query, "accounts", list);
      }

      case "FetchAccount":
        return new HttpAnswer(200, accountJson(account));

      case "UpdateAccount": {
        const status = form.Status as AccountStatus | undefined;
        if (status !== undefined && status !== account.status) {
          if (account.sid === parentSid && status !== "active") {
            note("attempted to suspend or close the parent account (CONTRACT: never)");
            return new HttpAnswer(400, twilioError(400, 21477, "Cannot suspend or close the parent account"));
          }
          if (account.status === "closed") {
            return new HttpAnswer(400, twilioError(400, 20005, "Account is closed; its status cannot change"));
          }
          account.status = status;
          account.dateUpdated = new Date();
        }
        if (form.FriendlyName !== undefined) account.friendlyName = form.FriendlyName;
        return new HttpAnswer(200, accountJson(account));
      }

      case "ListCall": {
        const list = [...calls.values()]
          .filter((c) => c.accountSid === account.sid && (query.Status === undefined || c.status === query.Status))
          .sort((a, b) => b.dateCreated.getTime() - a.dateCreated.getTime())
          .map(callJson);
        return page(apiPath, query, "calls", list);
      }

      case "UpdateCall": {
        const call = find(calls, route.subSid!);
        if (!call || call.accountSid !== account.sid) return notFound(`${API}${path}`);
        const live = call.status === "queued" || call.status === "ringing" || call.status === "in-progress";
        // Twilio: "completed" hangs up a live call, "canceled" only affects queued or ringing ones.
        if (form.Status === "completed" && live) call.status = "completed";
        if (form.Status === "canceled" && (call.status === "queued" || call.status === "ringing")) call.status = "canceled";
        return new HttpAnswer(200, callJson(call));
      }

      case "ListUsageTrigger": {
        const list = [...triggers.values()]
          .filter(
            (t) =>
              t.accountSid === account.sid &&
              (query.Recurring === undefined || t.recurring === query.Recurring) &&
              (query.TriggerBy === undefined || t.triggerBy === query.TriggerBy) &&
              (query.UsageCategory === undefined || t.usageCategory === query.UsageCategory),
          )
          .map(triggerJson);
        return page(apiPath, query, "usage_triggers", list);
      }

      case "CreateUsageTrigger": {
        const raw = form.TriggerValue!;
        const m = /^(\+)?([0-9]+(?:\.[0-9]+)?)$/.exec(raw);
        if (!m) {
          note(`TriggerValue ${JSON.stringify(raw)} is not a decimal (or +offset)`);
          return new HttpAnswer(400, twilioError(400, 400, "Invalid TriggerValue"));
        }
        const triggerBy = form.TriggerBy ?? "usage";
        const category = form.UsageCategory!;
        // "+N" is N above the current value of the watched field (Twilio resolves it at creation).
        const current = category === "totalprice" && triggerBy === "price" ? (usage.get(account.sid) ?? 0) : 0;
        const value = m[1] ? String(current + Number(m[2])) : m[2]!;
        const t: StandinTrigger = {
          sid: newSid("UT"),
          accountSid: account.sid,
          friendlyName: form.FriendlyName ?? "",
          usageCategory: category,
          triggerBy,
          triggerValue: value,
          recurring: form.Recurring ?? null,
          callbackUrl: form.CallbackUrl!,
          callbackMethod: form.CallbackMethod ?? "POST",
        };
        triggers.set(t.sid, t);
        return new HttpAnswer(201, triggerJson(t));
      }

      case "FetchCall": {
        const call = find(calls, route.subSid!);
        if (!call || call.accountSid !== account.sid) return notFound(`${API}${path}`);
        return new HttpAnswer(200, callJson(call));
      }

      case "FetchMessage": {
        const msg = messages.find((m) => m.sid.toLowerCase() === route.subSid!.toLowerCase() && m.accountSid === account.sid);
        if (!msg) return notFound(`${API}${path}`);
        return new HttpAnswer(200, messageJson(msg, "delivered"));
      }

      case "DeleteUsageTrigger": {
        const t = find(triggers, route.subSid!);
        if (!t || t.accountSid !== account.sid) return notFound(`${API}${path}`);
        triggers.delete(t.sid);
        return new HttpAnswer(204, null);
      }

      case "ListUsageRecordToday": {
        const price = usage.get(account.sid);
        const wanted = query.Category === undefined || query.Category === "totalprice";
        const list = price !== undefined && wanted ? [usageTodayJson(account.sid, price)] : [];
        return page(apiPath, query, "usage_records", list);
      }

      case "CreateCall": {
        if (form.Url === undefined && form.Twiml === undefined && form.ApplicationSid === undefined) {
          note("neither Url, Twiml nor ApplicationSid");
          return new HttpAnswer(400, twilioError(400, 21205, "Url parameter is required."));
        }
        const sid = newSid("CA");
        calls.set(sid, { sid, accountSid: account.sid, status: "queued", from: form.From!, to: form.To!, dateCreated: new Date() });
        return new HttpAnswer(201, {
          account_sid: account.sid,
          api_version: "2010-04-01",
          date_created: rfc2822(new Date()),
          direction: "outbound-api",
          from: form.From,
          price: null,
          price_unit: "USD",
          sid,
          status: "queued",
          to: form.To,
          uri: `${API}/Accounts/${account.sid}/Calls/${sid}.json`,
        });
      }

      case "CreateMessage": {
        if (form.From === undefined && form.MessagingServiceSid === undefined) {
          note("neither From nor MessagingServiceSid");
          return new HttpAnswer(400, twilioError(400, 21603, "A 'From' phone number is required."));
        }
        if (form.Body === undefined && form.MediaUrl === undefined && form.ContentSid === undefined) {
          note("neither Body, MediaUrl nor ContentSid");
          return new HttpAnswer(400, twilioError(400, 21602, "Message body is required."));
        }
        if (form.Body !== undefined && Array.from(form.Body).length > MAX_BODY_CHARS) {
          note(`Body longer than ${MAX_BODY_CHARS} characters`);
          return new HttpAnswer(400, twilioError(400, 21617, "The concatenated message body exceeds the 1600 character limit."));
        }
        const msg: StandinMessage = { sid: newSid("SM"), accountSid: account.sid, from: form.From ?? "", to: form.To!, body: form.Body ?? "" };
        messages.push(msg);
        return new HttpAnswer(201, { ...messageJson(msg, "queued"), messaging_service_sid: form.MessagingServiceSid ?? null });
      }
    }
  }

  function purposeOf(route: Route | null, form: Record<string, string>): StandinPurpose {
    if (!route) return "unknown";
    switch (route.operation) {
      case "ListAccount":
        return "list-accounts";
      case "FetchAccount":
        return "fetch-account";
      case "UpdateAccount":
        return form.Status === "suspended" ? "suspend" : form.Status === "active" ? "reactivate" : "unknown";
      case "ListCall":
        return "list-calls";
      case "UpdateCall":
        return "end-call";
      case "ListUsageTrigger":
        return "list-triggers";
      case "CreateUsageTrigger":
        return "create-trigger";
      case "DeleteUsageTrigger":
        return "delete-trigger";
      case "ListUsageRecordToday":
        return "usage-today";
      case "CreateMessage":
        return "alert-sms";
      case "FetchMessage":
      case "FetchCall":
        return "fetch-price";
      case "CreateCall":
        return "unknown";
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_REQUEST_BYTES) {
        res.writeHead(413).end();
        return;
      }
      chunks.push(chunk as Buffer);
    }
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const method = (req.method ?? "GET").toUpperCase();
    const url = new URL(req.url ?? "/", "http://standin.invalid");
    const path = url.pathname;
    const problems: string[] = [];
    const note = (p: string) => problems.push(p);

    // Credentials
    let basicUser: string | null = null;
    let basicPassword: string | null = null;
    const auth = req.headers.authorization;
    if (auth?.startsWith("Basic ")) {
      const decoded = Buffer.from(auth.slice(6), "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon >= 0) {
        basicUser = decoded.slice(0, colon);
        basicPassword = decoded.slice(colon + 1);
      }
    }

    // Query and body
    const { values: query, repeated: repeatedQuery } = entriesOf(url.searchParams);
    const contentType = req.headers["content-type"] ?? null;
    const mediaType = contentType?.split(";")[0]!.trim().toLowerCase() ?? null;
    let form: Record<string, string> = {};
    let repeatedForm: string[] = [];
    if (mediaType === "application/x-www-form-urlencoded") {
      ({ values: form, repeated: repeatedForm } = entriesOf(new URLSearchParams(rawBody)));
    }

    // Route
    let route: Route | null = null;
    let operation: OperationId | undefined;
    let routeAnswer: HttpAnswer | null = null;
    const rel = path.startsWith(`${API}/`) ? path.slice(API.length) : null;
    const matched = rel === null ? undefined : ROUTES.map((r) => ({ r, m: r.pattern.exec(rel) })).find((x) => x.m !== null);
    if (!matched) {
      note("no such endpoint in the client's slice of the 2010-04-01 API");
      routeAnswer = notFound(path);
    } else {
      operation = matched.r.byMethod[method];
      // Accounts.json names no account: it is the authenticated (parent) account's list.
      const accountSid = matched.m![1] ?? parentSid;
      const subSid = matched.m![2];
      if (!operation) {
        note(`method not allowed (expected ${Object.keys(matched.r.byMethod).join(" or ")})`);
        routeAnswer = new HttpAnswer(405, twilioError(405, 20004, "Method not allowed"));
      } else if (!ACCOUNT_SID.test(accountSid)) {
        note(`AccountSid ${JSON.stringify(accountSid)} does not match ${ACCOUNT_SID.source}`);
        routeAnswer = notFound(path);
      } else if (subSid !== undefined && !SUB_SID_PATTERN[operation]!.test(subSid)) {
        note(`Sid ${JSON.stringify(subSid)} does not match ${SUB_SID_PATTERN[operation]!.source}`);
        routeAnswer = notFound(path);
      } else {
        route = subSid === undefined ? { operation, accountSid } : { operation, accountSid, subSid };
      }
    }

    // Shape of the request for its operation
    let invalid: HttpAnswer | null = null;
    if (operation) {
      const spec: OperationSpec = OPERATIONS[operation];
      if (spec.method === "POST") {
        if (mediaType !== "application/x-www-form-urlencoded") {
          note(`Content-Type ${JSON.stringify(contentType)} is not application/x-www-form-urlencoded`);
        }
        if (url.search !== "") note("POST parameters belong in the form body, not the query");
      } else {
        if (rawBody.length > 0) note(`${method} with a request body`);
      }
      const params = spec.method === "POST" ? form : query;
      for (const name of spec.method === "POST" ? repeatedForm : repeatedQuery) {
        if (spec.params[name] !== "array") note(`parameter ${name} given more than once`);
      }
      for (const [name, value] of Object.entries(params)) {
        const type = spec.params[name];
        if (type === undefined) {
          // Twilio ignores unknown parameters (warning 20001): usually a misspelt name.
          note(`unknown parameter ${name} (warning 20001)`);
          continue;
        }
        const problem = checkValue(type, value);
        if (problem) {
          note(`${name}=${JSON.stringify(value)} ${problem}`);
          invalid ??= new HttpAnswer(400, twilioError(400, name === "To" ? 21211 : name === "From" ? 21212 : 400, `Invalid ${name}`));
        }
      }
      for (const name of spec.required ?? []) {
        if (params[name] === undefined || params[name] === "") {
          note(`required parameter ${name} missing`);
          invalid ??= new HttpAnswer(400, twilioError(400, name === "To" ? 21604 : 400, `Missing required parameter ${name}`));
        }
      }
    }

    const recorded: RecordedRequest = {
      method,
      path,
      query,
      form,
      basicUser,
      contentType,
      purpose: purposeOf(route, form),
      status: 0,
      injected: false,
    };
    requests.push(recorded);

    const credentialsOk = basicUser !== null && basicPassword !== null && safeEqual(basicUser, parentSid) && safeEqual(basicPassword, opts.parentToken);
    if (!credentialsOk) note(basicUser === null ? "no HTTP Basic credentials" : `HTTP Basic credentials are not the parent's (user ${basicUser})`);

    let answer: HttpAnswer | "hang" | "drop";
    const injection = injections.find((i) => i.remaining > 0 && (typeof i.match === "function" ? i.match(recorded) : i.match === recorded.purpose));
    if (injection) {
      injection.remaining--;
      recorded.injected = true;
      const r = injection.response;
      answer = r === "hang" || r === "drop" ? r : new HttpAnswer(r.status, twilioError(r.status, r.code ?? r.status, r.message ?? http.STATUS_CODES[r.status] ?? "Error"));
    } else if (!credentialsOk) {
      answer = new HttpAnswer(401, twilioError(401, 20003, "Authenticate"));
    } else if (routeAnswer) {
      answer = routeAnswer;
    } else if (invalid) {
      answer = invalid;
    } else {
      answer = perform(route!, rel!, query, form, note);
    }

    for (const p of problems) violations.push(`${method} ${path}: ${p}`);

    if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));

    if (answer === "hang") {
      recorded.status = "hang";
      hanging.add(res);
      res.on("close", () => hanging.delete(res));
      return;
    }
    if (answer === "drop") {
      recorded.status = "drop";
      req.socket.destroy();
      return;
    }
    recorded.status = answer.status;
    const headers: Record<string, string> = {};
    if (answer.status === 401) headers["WWW-Authenticate"] = 'Basic realm="Twilio API"';
    if (answer.status === 204) {
      res.writeHead(204, headers).end();
      return;
    }
    headers["Content-Type"] = "application/json; charset=utf-8";
    res.writeHead(answer.status, headers).end(JSON.stringify(answer.body));
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      violations.push(`standin internal error: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "application/json" }).end(JSON.stringify(twilioError(500, 20500, "Internal Server Error")));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closed: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${port}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
    addSubaccount(o = {}) {
      const sid = o.sid ?? newSid("AC");
      if (!ACCOUNT_SID.test(sid)) throw new Error("addSubaccount: sid must be AC + 32 hex");
      if (accounts.has(sid)) throw new Error(`addSubaccount: ${sid} exists`);
      const authToken = o.authToken ?? randomBytes(16).toString("hex");
      const t = new Date();
      accounts.set(sid, {
        sid,
        authToken,
        friendlyName: o.friendlyName ?? `subaccount ${sid.slice(-6)}`,
        status: o.status ?? "active",
        ownerAccountSid: parentSid,
        dateCreated: t,
        dateUpdated: t,
      });
      return { sid, authToken };
    },
    addCall(accountSid, o = {}) {
      if (!accounts.has(accountSid)) throw new Error(`addCall: unknown account ${accountSid}`);
      const sid = newSid("CA");
      // Strictly increasing creation times keep list order (newest first) deterministic.
      const last = Math.max(0, ...[...calls.values()].map((c) => c.dateCreated.getTime()));
      calls.set(sid, { sid, accountSid, status: o.status ?? "in-progress", from: o.from ?? "+15005550006", to: o.to ?? "+15551230000", dateCreated: new Date(Math.max(Date.now(), last + 1000)) });
      return sid;
    },
    accounts,
    calls,
    triggers,
    usage,
    messages,
    requests,
    failNext(match, response, times = 1) {
      injections.push({ match, response, remaining: times });
    },
    violations,
  };
}
