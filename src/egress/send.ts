// What a send through the gate costs, from its form fields (CreateMessage / CreateCall in
// twilio_api_v2010.json): the units Twilio bills and the destination. Pure.
//   - SMS: segments of `Body` as Twilio counts them, with Twilio's own calculator (npm
//     `sms-segments-calculator`: GSM-7 160/153, UCS-2 70/67, extension characters count two, a character
//     never split across parts; `SmartEncoded=true` replaces look-alikes first);
//   - MMS (`MediaUrl`) and WhatsApp (`whatsapp:` addresses): per message;
//   - a call: the minutes reserved (its TimeLimit, or the policy's maxCallMinutes, set as TimeLimit).
import { SegmentedMessage } from "sms-segments-calculator";
import type { Prices } from "../ledger/policy.ts";
import { toMicros } from "../ledger/pricing.ts";
import { destinationOf, type Channel, type Destination } from "./destination.ts";
import type { SendKind } from "./scope.ts";

/** Twilio refuses bodies over 1600 characters (error 21617): no send is more than this many segments. */
export const MAX_SEND_SEGMENTS = 100;
/** Twilio ends every call after 4 hours by default and 24 hours at most (Call resource, TimeLimit). */
export const MAX_TIME_LIMIT_S = 24 * 3600;
/** Without an egress.maxCallMinutes, a call is reserved (and limited) to one hour. */
export const DEFAULT_MAX_CALL_MINUTES = 60;

export interface SendFacts {
  kind: SendKind;
  channel: Channel;
  destination: Destination;
  /** SMS segments, or 1 for a message billed per message (MMS, WhatsApp, a template without Body). */
  segments: number;
  /** Minutes of a call's own TimeLimit (rounded up), or null when it has none (then maxCallMinutes applies); 0 for messages. */
  minutes: number | null;
  mms: boolean;
  hasStatusCallback: boolean;
}

export class SendError extends Error {}

/**
 * The GSM 03.38 basic character set (one septet each; 3GPP TS 23.038 §6.2.1), without CR: Twilio's
 * calculator treats line breaks with their own rules, so a body with CR takes the calculator's path.
 */
export const GSM7_BASIC = new Set(
  "@£$¥èéùìòÇ\nØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
/** GSM-7: 160 septets in a single message, 153 per part of a concatenated one (the UDH takes 7). */
const GSM7_SINGLE = 160;
const GSM7_PART = 153;

/**
 * Segments of an SMS body, as Twilio's calculator (sms-segments-calculator) counts them. A body of
 * basic GSM-7 characters only (most messages) is counted directly: one septet each, 160 / 153. Anything
 * else (extension characters, UCS-2, line breaks with CR, Smart Encoding) goes to the calculator, whose
 * grapheme splitting costs about a millisecond per few hundred characters.
 */
export function smsSegments(body: string, smartEncoded = false): number {
  if (body === "") return 1;
  if (!smartEncoded && isBasicGsm7(body)) {
    const septets = body.length;
    return Math.min(septets <= GSM7_SINGLE ? 1 : Math.ceil(septets / GSM7_PART), MAX_SEND_SEGMENTS);
  }
  const message = new SegmentedMessage(body, "auto", smartEncoded);
  return Math.min(Math.max(1, message.segmentsCount), MAX_SEND_SEGMENTS);
}

/** Reads a send's form fields. Throws SendError when a field Twilio requires is missing. */
export function sendFacts(kind: SendKind, form: URLSearchParams): SendFacts {
  const to = form.get("To");
  if (to === null || to.trim() === "") throw new SendError("A 'To' phone number is required.");
  const { channelPrefix, destination } = destinationOf(to);
  const hasStatusCallback = (form.get("StatusCallback") ?? "") !== "";
  if (kind === "call") {
    const limitText = form.get("TimeLimit");
    let minutes: number | null = null;
    if (limitText !== null && limitText !== "") {
      if (!/^[0-9]{1,6}$/.test(limitText)) throw new SendError("TimeLimit must be a whole number of seconds.");
      const seconds = Math.min(Number(limitText), MAX_TIME_LIMIT_S);
      // Twilio bills per started minute: a call limited to 61 s may cost two.
      minutes = Math.max(1, Math.ceil(seconds / 60));
    }
    return { kind, channel: "voice", destination, segments: 0, minutes, mms: false, hasStatusCallback };
  }
  const mms = form.has("MediaUrl") && form.getAll("MediaUrl").some((u) => u !== "");
  const channel: Channel = channelPrefix === "whatsapp" ? "whatsapp" : channelPrefix === null ? "sms" : "other";
  const body = form.get("Body");
  const perMessage = mms || channel !== "sms" || body === null;
  const segments = perMessage ? 1 : smsSegments(body, form.get("SmartEncoded") === "true");
  return { kind, channel, destination, segments, minutes: 0, mms, hasStatusCallback };
}

/** GSM7_BASIC by UTF-16 code unit (every one of its characters is one): read without a string per character. */
const GSM7_BASIC_CODES = new Set(Array.from(GSM7_BASIC, (ch) => ch.charCodeAt(0)));

function isBasicGsm7(body: string): boolean {
  // By code unit: a character outside the BMP is two surrogates, neither of which is in the set, as it is not.
  for (let i = 0; i < body.length; i++) if (!GSM7_BASIC_CODES.has(body.charCodeAt(i))) return false;
  return true;
}

function countryPrice(table: Readonly<Record<string, number>> | undefined, country: string | null, fallback: number): number {
  if (table === undefined) return fallback;
  if (country !== null && table[country] !== undefined) return table[country]!;
  return table["*"] ?? fallback;
}

/**
 * A call's reserved minutes and the TimeLimit (seconds) the gate sets: its own TimeLimit when it has one
 * (none set), else the policy's maxCallMinutes, which then becomes its TimeLimit.
 */
export function callReservation(facts: SendFacts, maxCallMinutes: number | undefined): { minutes: number; setTimeLimitS: number | null } {
  if (facts.minutes !== null) return { minutes: facts.minutes, setTimeLimitS: null };
  const minutes = maxCallMinutes ?? DEFAULT_MAX_CALL_MINUTES;
  return { minutes, setTimeLimitS: minutes * 60 };
}

/** The estimate of a send in micro-USD and the unit price it used (a call's per-minute rate). */
export function priceSend(facts: SendFacts, prices: Prices, maxCallMinutes?: number): { usdMicros: number; unitMicros: number } {
  const country = facts.destination.country;
  if (facts.kind === "call") {
    const unit = toMicros(countryPrice(prices.voice, country, prices.voiceMinute));
    return { usdMicros: unit * callReservation(facts, maxCallMinutes).minutes, unitMicros: unit };
  }
  if (facts.mms) {
    const unit = toMicros(prices.mms);
    return { usdMicros: unit, unitMicros: unit };
  }
  // WhatsApp and other channels are billed per message: one unit of the destination's SMS price.
  const unit = toMicros(countryPrice(prices.sms, country, prices.smsSegment));
  return { usdMicros: unit * facts.segments, unitMicros: unit };
}
