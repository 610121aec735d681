// Which verified webhooks cost money, and how much of what. Twilio's webhooks carry no price for inbound
// traffic, so we classify and count units; a payload's own Price (status callbacks) wins when present.
// Parameters: https://www.twilio.com/docs/messaging/guides/webhook-request,
// https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks,
// https://www.twilio.com/docs/voice/twiml#request-parameters, https://www.twilio.com/docs/voice/api/call-resource#statuscallback
// Pure: the payload is data that passed signature verification, but every count in it is still bounded
// so that no value can blow up the ledger's arithmetic.

import { ACCOUNT_SID, CALL_SID, MESSAGE_SID } from "../twilio/sids.ts";

export type EventKind = "inbound-message" | "message-status" | "inbound-call" | "call-status";

export interface BillableEvent {
  kind: EventKind;
  /** MessageSid (SmsSid) or CallSid. */
  sid: string;
  accountSid: string;
  /** Lower-cased SmsStatus/MessageStatus or CallStatus ("received" for an inbound message without one). */
  status: string;
  /** The same event (Sid and status) arriving again is a retry: `${sid}:${status}`. */
  dedupeKey: string;
  /** What is counted (and priced) once: `msg:${MessageSid}` or `call:${CallSid}`. */
  countKey: string;
  /** Messages: segments (1..100) and media (0..10); calls: minutes (0..1440; 1 for an inbound call's reservation). */
  units: { segments?: number; media?: number; minutes?: number };
  /** |Price| in USD when the payload carries one in USD or without a unit (Twilio sends it negative, e.g. "-0.00750"). */
  reportedPriceUsd?: number;
  /** False for events that cost nothing (yet): a message that failed before sending or is still queued, an unanswered call. */
  billable: boolean;
}

export interface NotBillable {
  kind: "not-billable";
  reason: string;
}

/** Anything with a Map-like `get`: Map, URLSearchParams, or a plain record of strings. */
export type WebhookParams = ReadonlyMap<string, string> | Record<string, string> | { get(key: string): string | null | undefined };


/** The statuses Twilio reports in outbound message status callbacks (outbound-message-status-in-status-callbacks). */
export const OUTBOUND_MESSAGE_STATUSES: ReadonlySet<string> = new Set([
  "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "accepted", "scheduled", "canceled", "partially_delivered",
]);
/**
 * Statuses by which a message has been handed to a carrier and so billed. `failed` never left Twilio
 * (not billed); queued, sending, accepted and scheduled are not billed yet; canceled never will be.
 */
export const BILLED_MESSAGE_STATUSES: ReadonlySet<string> = new Set(["sent", "delivered", "undelivered", "read", "partially_delivered"]);
/** Twilio accepts at most 10 media per MMS (https://www.twilio.com/docs/messaging/api/media-resource). */
export const MAX_MEDIA = 10;
/** Twilio sends at most 10 segments by default (1600 characters); 100 bounds a bad NumSegments harmlessly. */
export const MAX_SEGMENTS = 100;
/** Twilio ends every call after 24 hours (https://www.twilio.com/docs/voice/api/call-resource): a longer one is not real. */
export const MAX_CALL_MINUTES = 24 * 60;
/** The voice request of an inbound call: Twilio asks the Voice URL while the call rings. */
const INBOUND_CALL_STATUSES: ReadonlySet<string> = new Set(["ringing"]);
/**
 * A request Twilio makes during a call already answered: a <Gather> or <Record> action, a <Redirect>, a
 * <Dial> action (https://www.twilio.com/docs/voice/twiml#request-parameters). Part of the call already
 * counted, not a new billable event: forwarded as it is, whatever the breaker says (a trip ends live
 * calls through REST instead).
 */
const MID_CALL_STATUS = "in-progress";
/** Terminal call statuses of a call never connected: Twilio bills nothing for them. */
const UNANSWERED_CALL_STATUSES: ReadonlySet<string> = new Set(["busy", "no-answer", "failed", "canceled"]);
/** Twilio's negative decimal prices ("-0.00750"); more than 6 integer digits is no single event's price. */
const PRICE = /^-?\d{1,6}(\.\d{1,10})?$/;

/** Parameters that only a message's webhooks carry (messaging webhook-request and status-callback docs). */
const MESSAGE_FIELDS = ["MessageSid", "SmsSid", "SmsMessageSid", "MessageStatus", "SmsStatus", "Body", "NumSegments", "NumMedia"] as const;
/** Parameters that only a call's webhooks carry (voice request parameters, call StatusCallback). */
const CALL_FIELDS = ["CallStatus", "Duration", "CallDuration"] as const;

/**
 * Every field classification reads. A request naming one twice is refused before it is classified
 * (webhooks/read.ts): the guard never picks one of two values.
 */
export const CLASSIFIED_FIELDS: readonly string[] = [
  "AccountSid", "CallSid", "Direction", "Price", "PriceUnit", ...MESSAGE_FIELDS, ...CALL_FIELDS,
];

function getter(params: WebhookParams): (key: string) => string | undefined {
  if (typeof (params as { get?: unknown }).get === "function") {
    const source = params as { get(key: string): string | null | undefined };
    return (key) => source.get(key) ?? undefined;
  }
  const record = params as Record<string, string>;
  return (key) => {
    if (!Object.prototype.hasOwnProperty.call(record, key)) return undefined;
    const value = record[key];
    return typeof value === "string" ? value : undefined;
  };
}

/** A decimal integer in [min, max]; `fallback` when absent, malformed or out of range. */
function boundedInt(text: string | undefined, min: number, max: number, fallback: number): number {
  if (text === undefined || !/^\d{1,9}$/.test(text)) return fallback;
  const n = Number(text);
  return n < min || n > max ? fallback : n;
}

/** |Price| as USD, or undefined when absent, empty, malformed or in another currency. */
export function parseReportedPrice(price: string | undefined, unit: string | undefined): number | undefined {
  if (price === undefined) return undefined;
  const text = price.trim();
  if (text === "") return undefined;
  if (unit !== undefined && unit.trim() !== "" && unit.trim().toUpperCase() !== "USD") return undefined;
  if (!PRICE.test(text)) return undefined;
  return Math.abs(Number(text));
}

function notBillable(reason: string): NotBillable {
  return { kind: "not-billable", reason };
}

/** Billed minutes of a completed call: Duration (minutes), else CallDuration (seconds) rounded up, else 0. */
function billedMinutes(duration: string | undefined, callDuration: string | undefined): number {
  if (duration !== undefined && /^\d{1,9}$/.test(duration)) return Math.min(Number(duration), MAX_CALL_MINUTES);
  if (callDuration !== undefined && /^\d{1,9}$/.test(callDuration)) return Math.min(Math.ceil(Number(callDuration) / 60), MAX_CALL_MINUTES);
  return 0;
}

/**
 * Whether the parameters mix a message's with a call's. Twilio never sends both kinds in one request,
 * but its signature concatenates keys and values without separators, so a message Body an attacker
 * chose ("hiCallSidCA…CallStatuscompletedDuration1440") can be re-split into call parameters under the
 * same signature. Such a request is refused, and never classified as either kind.
 */
export function mixesEventKinds(params: WebhookParams): boolean {
  const get = getter(params);
  return MESSAGE_FIELDS.some((key) => get(key) !== undefined) && CALL_FIELDS.some((key) => get(key) !== undefined);
}

/**
 * Classifies a verified webhook's parameters. A CallSid with a CallStatus is a call; otherwise a
 * MessageSid (or SmsSid) is a message. Rules:
 * - inbound message: MessageSid/SmsSid and status `received`, or no status but a Body;
 * - message status callback: a status in OUTBOUND_MESSAGE_STATUSES; billable in BILLED_MESSAGE_STATUSES;
 * - inbound call: Direction `inbound` and CallStatus ringing (the Voice URL request); 1 minute reserved;
 * - a mid-call request (CallStatus in-progress: Gather actions, redirects) is not billable;
 * - call status callback: `completed` (billable) or busy/no-answer/failed/canceled (not billable, 0 minutes);
 *   other call requests (an outbound call's ringing/answered callbacks, its Voice URL) are not billable:
 *   the call is counted once, at completion.
 */
export function classifyWebhook(params: WebhookParams): BillableEvent | NotBillable {
  const get = getter(params);
  const accountSid = get("AccountSid");
  if (accountSid === undefined || accountSid === "") return notBillable("no AccountSid");
  if (!ACCOUNT_SID.test(accountSid)) return notBillable("malformed AccountSid");
  if (mixesEventKinds(params)) return notBillable("parameters of both a message and a call");
  const reportedPriceUsd = parseReportedPrice(get("Price"), get("PriceUnit"));
  const withPrice = reportedPriceUsd === undefined ? {} : { reportedPriceUsd };

  const callSid = get("CallSid");
  const messageSid = get("MessageSid") ?? get("SmsSid");
  // A call's requests carry CallStatus; a CallSid beside a MessageSid without one belongs to a message.
  if (callSid !== undefined && (get("CallStatus") !== undefined || messageSid === undefined)) {
    if (!CALL_SID.test(callSid)) return notBillable("malformed CallSid");
    const status = (get("CallStatus") ?? "").trim().toLowerCase();
    const direction = (get("Direction") ?? "").trim().toLowerCase();
    const base = { sid: callSid, accountSid, status, dedupeKey: `${callSid}:${status}`, countKey: `call:${callSid}` };
    if (status === "completed") {
      const minutes = billedMinutes(get("Duration"), get("CallDuration"));
      return { kind: "call-status", ...base, units: { minutes }, billable: true, ...withPrice };
    }
    if (UNANSWERED_CALL_STATUSES.has(status)) return { kind: "call-status", ...base, units: { minutes: 0 }, billable: false, ...withPrice };
    if (status === MID_CALL_STATUS) return notBillable("mid-call request: part of a call already counted");
    if (direction === "inbound" && INBOUND_CALL_STATUSES.has(status)) {
      return { kind: "inbound-call", ...base, units: { minutes: 1 }, billable: true };
    }
    return notBillable(`call ${status || "without status"} (${direction || "no direction"}): counted at completion`);
  }

  if (messageSid !== undefined) {
    if (!MESSAGE_SID.test(messageSid)) return notBillable("malformed MessageSid");
    const status = (get("MessageStatus") ?? get("SmsStatus") ?? "").trim().toLowerCase();
    // An MM Sid is an MMS even when a status callback leaves NumMedia out: price it as one.
    const media = boundedInt(get("NumMedia"), 0, MAX_MEDIA, messageSid.startsWith("MM") ? 1 : 0);
    const segments = boundedInt(get("NumSegments"), 1, MAX_SEGMENTS, 1);
    const units = { segments, media };
    const base = { sid: messageSid, accountSid, countKey: `msg:${messageSid}`, units };
    if (status === "received" || (status === "" && get("Body") !== undefined)) {
      // An inbound message's webhook carries no Price (Twilio prices it later, in the Messages
      // resource): a Price here is not the event's own, so the estimate applies.
      return { kind: "inbound-message", ...base, status: "received", dedupeKey: `${messageSid}:received`, billable: true };
    }
    if (OUTBOUND_MESSAGE_STATUSES.has(status)) {
      const billable = BILLED_MESSAGE_STATUSES.has(status);
      return { kind: "message-status", ...base, status, dedupeKey: `${messageSid}:${status}`, billable, ...withPrice };
    }
    return notBillable(`message status ${status || "missing"}`);
  }
  return notBillable("neither a message nor a call");
}
