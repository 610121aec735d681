// Realistic Twilio webhooks for the benchmarks, signed with the official `twilio` package
// (getExpectedTwilioSignature), never with src/verification/signature.ts: both sides of every
// comparison are fed requests exactly as Twilio would sign them.
import { createHash, randomBytes } from "node:crypto";
import twilio from "twilio";

export type Pairs = Array<[string, string]>;

export function sid(prefix: "AC" | "SM" | "MG" | "CA"): string {
  return prefix + randomBytes(16).toString("hex");
}

const MESSAGING_SERVICE = sid("MG");

/**
 * An inbound SMS as Twilio posts it to "A message comes in" (messaging webhook-request docs), with a
 * body long enough that the form is ~1 KiB, a typical size for a multi-segment message plus geo fields.
 */
export function inboundSms(accountSid: string, messageSid = sid("SM")): Pairs {
  const body =
    "Hi! I'd like to reschedule my appointment from Tuesday 3:30pm to Thursday morning if there is " +
    "anything open, otherwise Friday after 2 works too. Also, can you confirm the address & parking " +
    "instructions? Last time the gate code didn't work (#4471?). Thanks so much, see you soon :) " +
    "Sent from my phone, sorry for typos. Reply STOP to opt out is fine but please don't, I like the " +
    "reminders. One more thing: my insurance card changed, should I bring the new one?";
  return [
    ["ToCountry", "US"],
    ["ToState", "CA"],
    ["SmsMessageSid", messageSid],
    ["NumMedia", "0"],
    ["ToCity", "SAN FRANCISCO"],
    ["FromZip", "94105"],
    ["SmsSid", messageSid],
    ["FromState", "CA"],
    ["SmsStatus", "received"],
    ["FromCity", "SAN FRANCISCO"],
    ["Body", body],
    ["FromCountry", "US"],
    ["To", "+15005550006"],
    ["MessagingServiceSid", MESSAGING_SERVICE],
    ["ToZip", "94107"],
    ["NumSegments", "3"],
    ["ReferralNumMedia", "0"],
    ["MessageSid", messageSid],
    ["AccountSid", accountSid],
    ["From", "+14155550100"],
    ["ApiVersion", "2010-04-01"],
  ];
}

/** An outbound message's status callback (track-outbound-message-status docs): billed once "sent". */
export function messageStatus(accountSid: string, messageSid = sid("SM"), status = "sent"): Pairs {
  return [
    ["SmsSid", messageSid],
    ["SmsStatus", status],
    ["MessageStatus", status],
    ["To", "+14155550100"],
    ["MessagingServiceSid", MESSAGING_SERVICE],
    ["MessageSid", messageSid],
    ["AccountSid", accountSid],
    ["From", "+15005550006"],
    ["ApiVersion", "2010-04-01"],
    ["NumSegments", "1"],
  ];
}

/**
 * A JSON-body webhook (Twilio puts bodySHA256 in the URL and signs the URL with no parameters), ~1 KiB,
 * shaped like an Event Streams / Conversations delivery.
 */
export function jsonEvent(accountSid: string): string {
  const messageSid = sid("SM");
  return JSON.stringify({
    specversion: "1.0",
    type: "com.twilio.messaging.inbound-message.received",
    source: `/2010-04-01/Accounts/${accountSid}/Messages/${messageSid}.json`,
    id: randomBytes(16).toString("hex"),
    dataschema: "https://events-schemas.twilio.com/Messaging.InboundMessageV1/5",
    datacontenttype: "application/json",
    time: new Date().toISOString(),
    AccountSid: accountSid,
    data: {
      numMedia: 0,
      timestamp: new Date().toISOString(),
      recipients: ["+15005550006"],
      accountSid,
      messagingServiceSid: MESSAGING_SERVICE,
      to: "+15005550006",
      numSegments: 2,
      messageSid,
      eventName: "com.twilio.messaging.inbound-message.received",
      body:
        "Hi! I'd like to reschedule my appointment from Tuesday to Thursday morning if there is anything " +
        "open, otherwise Friday after 2 works too. Can you confirm the address and parking instructions?",
      from: "+14155550100",
      fromCity: "SAN FRANCISCO",
      fromState: "CA",
      fromZip: "94105",
      fromCountry: "US",
      toCity: "SAN FRANCISCO",
      toState: "CA",
      toZip: "94107",
      toCountry: "US",
    },
  });
}

/** The params object twilio-node signs and validates (what express.urlencoded produces). */
export function paramsObject(pairs: Pairs): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of pairs) {
    const prior = out[key];
    if (prior === undefined) out[key] = value;
    else out[key] = Array.isArray(prior) ? [...prior, value] : [prior, value];
  }
  return out;
}

export function signForm(token: string, url: string, pairs: Pairs): string {
  return twilio.getExpectedTwilioSignature(token, url, paramsObject(pairs));
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A JSON webhook's URL (with bodySHA256) and signature. */
export function signJson(token: string, baseUrl: string, body: string): { url: string; signature: string } {
  const url = `${baseUrl}${baseUrl.includes("?") ? "&" : "?"}bodySHA256=${sha256Hex(body)}`;
  return { url, signature: twilio.getExpectedTwilioSignature(token, url, {}) };
}

/** One pre-signed HTTP request, ready for the load generator. */
export interface SignedRequest {
  path: string;
  body: string;
  headers: Record<string, string>;
}

/** A form webhook to `baseUrl + path`, signed for exactly that URL. */
export function signedFormRequest(token: string, baseUrl: string, path: string, pairs: Pairs): SignedRequest {
  const body = new URLSearchParams(pairs).toString();
  return {
    path,
    body,
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": signForm(token, baseUrl + path, pairs),
      "i-twilio-idempotency-token": randomBytes(16).toString("hex"),
    },
  };
}
