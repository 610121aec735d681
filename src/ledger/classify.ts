// Which verified webhooks cost money, and how much of what. Twilio's webhooks carry no price for inbound
// traffic, so we classify and count units; a payload's own Price (status callbacks) wins when present.
// Parameters: https://www.twilio.com/docs/messaging/guides/webhook-request,
// https://www.twilio.com/docs/messaging/guides/track-outbound-message-status,
// https://www.twilio.com/docs/voice/twiml#request-parameters, https://www.twilio.com/docs/voice/api/call-resource#statuscallback

export type EventKind = "inbound-message" | "message-status" | "inbound-call" | "call-status";

export interface BillableEvent {
  kind: EventKind;
  /** MessageSid or CallSid. */
  sid: string;
  accountSid: string;
  status: string;
  /** The same event (Sid and status) arriving again is a retry: `${sid}:${status}`. */
  dedupeKey: string;
  /** What is priced once: `msg:${MessageSid}` or `call:${CallSid}`. */
  countKey: string;
  units: { segments?: number; media?: number; minutes?: number };
  /** |Price| in USD when the payload carries one in USD (Twilio sends it negative, e.g. "-0.00750"). */
  reportedPriceUsd?: number;
  /** False for events that cost nothing (yet): failed before sending, queued, busy, no-answer… */
  billable: boolean;
}

export interface NotBillable {
  kind: "not-billable";
  reason: string;
}

const ACCOUNT_SID = /^AC[0-9a-f]{32}$/;
const MESSAGE_SID = /^(SM|MM)[0-9a-f]{32}$/i;
const CALL_SID = /^CA[0-9a-f]{32}$/i;

/** Outbound message statuses Twilio reports (track-outbound-message-status). */
const OUTBOUND_MESSAGE_STATUSES = new Set([
  "accepted", "scheduled", "canceled", "queued", "sending", "sent", "failed", "delivered", "undelivered", "receiving", "read", "partially_delivered",
]);
/** Statuses by which a message has been handed to a carrier, and billed (a `failed` one never left Twilio). */
const BILLED_MESSAGE_STATUSES = new Set(["sent", "delivered", "undelivered", "read", "partially_delivered"]);
/** A message is at most 10 media (Twilio's MMS limit) and, for pricing, at most this many segments. */
const MAX_MEDIA = 10;
/** Twilio splits a message into at most 10 segments by default; 100 bounds a forged NumSegments harmlessly. */
const MAX_SEGMENTS = 100;
/** A call longer than Twilio's 24 h maximum call duration is a forged value. */
const MAX_CALL_MINUTES = 24 * 60;
/** Voice request statuses of a call Twilio is asking us to answer. */
const RINGING_STATUSES = new Set(["ringing", "in-progress", "queued"]);
const UNANSWERED_CALL_STATUSES = new Set(["busy", "no-answer", "failed", "canceled"]);

type Fields = ReadonlyMap<string, string> | Record<string, string>;

function getter(fields: Fields): (key: string) => string | undefined {
  if (fields instanceof Map) return (key) => fields.get(key);
  const record = fields as Record<string, string>;
  return (key) => (Object.prototype.hasOwnProperty.call(record, key) ? record[key] : undefined);
}

function boundedInt(text: string | undefined, min: number, max: number, fallback: number): number {
  if (text === undefined || !/^\d{1,6}$/.test(text)) return fallback;
  const n = Number(text);
  return n < min || n > max ? fallback : n;
}

/** |Price| as USD, or undefined when absent, unparsable or in another currency. */
export function parseReportedPrice(price: string | undefined, unit: string | undefined): number | undefined {
  if (price === undefined || price === "") return undefined;
  if (unit !== undefined && unit !== "" && unit.toUpperCase() !== "USD") return undefined;
  if (!/^-?\d{1,6}(\.\d{1,10})?$/.test(price)) return undefined;
  return Math.abs(Number(price));
}

export function classifyWebhook(fields: Fields): BillableEvent | NotBillable {
  const get = getter(fields);
  const accountSid = get("AccountSid");
  if (accountSid === undefined) return { kind: "not-billable", reason: "no AccountSid" };
  if (!ACCOUNT_SID.test(accountSid)) return { kind: "not-billable", reason: "malformed AccountSid" };
  const reportedPriceUsd = parseReportedPrice(get("Price"), get("PriceUnit"));
  const withPrice = reportedPriceUsd === undefined ? {} : { reportedPriceUsd };

  const callSid = get("CallSid");
  const messageSid = get("MessageSid") ?? get("SmsSid");
  if (callSid !== undefined && CALL_SID.test(callSid)) {
    const status = (get("CallStatus") ?? "").toLowerCase();
    const direction = (get("Direction") ?? "").toLowerCase();
    const base = { sid: callSid, accountSid, status, dedupeKey: `${callSid}:${status}`, countKey: `call:${callSid}` };
    if (status === "completed") {
      const duration = get("Duration");
      const minutes =
        duration !== undefined && /^\d{1,6}$/.test(duration)
          ? Math.min(Number(duration), MAX_CALL_MINUTES)
          : Math.min(Math.ceil(boundedInt(get("CallDuration"), 0, MAX_CALL_MINUTES * 60, 0) / 60), MAX_CALL_MINUTES);
      return { kind: "call-status", ...base, units: { minutes }, billable: true, ...withPrice };
    }
    if (UNANSWERED_CALL_STATUSES.has(status)) return { kind: "call-status", ...base, units: { minutes: 0 }, billable: false };
    if (direction === "inbound" && RINGING_STATUSES.has(status)) {
      return { kind: "inbound-call", ...base, units: { minutes: 1 }, billable: true };
    }
    return { kind: "not-billable", reason: `call ${status || "without status"} ${direction || "without direction"}` };
  }
  if (messageSid !== undefined && MESSAGE_SID.test(messageSid)) {
    const status = (get("MessageStatus") ?? get("SmsStatus") ?? "").toLowerCase();
    const media = boundedInt(get("NumMedia"), 0, MAX_MEDIA, 0);
    const segments = boundedInt(get("NumSegments"), 1, MAX_SEGMENTS, 1);
    const base = { sid: messageSid, accountSid, dedupeKey: `${messageSid}:${status || "received"}`, countKey: `msg:${messageSid}` };
    if (status === "received" || (status === "" && get("Body") !== undefined)) {
      return { kind: "inbound-message", ...base, status: "received", units: { segments, media }, billable: true, ...withPrice };
    }
    if (OUTBOUND_MESSAGE_STATUSES.has(status)) {
      return { kind: "message-status", ...base, status, units: { segments, media }, billable: BILLED_MESSAGE_STATUSES.has(status), ...withPrice };
    }
    return { kind: "not-billable", reason: `message status ${status || "missing"}` };
  }
  return { kind: "not-billable", reason: "neither a message nor a call" };
}
