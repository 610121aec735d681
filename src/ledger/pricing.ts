// Pricing a billable event with the policy's prices, in integer micro-dollars (1 USD = 1_000_000) so
// that thousands of 0.0083 USD segments add up exactly. A payload's own Price wins over the estimate.
// Pure.
import type { BillableEvent } from "./classify.ts";
import type { Prices } from "./policy.ts";

/** The ledger's unit: Twilio prices have at most 5 decimals today, so a micro-dollar loses nothing. */
export const MICROS_PER_USD = 1_000_000;
/**
 * An inbound call is reserved at one minute when its Voice URL is asked (Twilio bills per started
 * minute, https://www.twilio.com/en-us/voice/pricing/us); its completed status callback settles it.
 */
export const RESERVED_CALL_MINUTES = 1;

/**
 * USD → integer micro-USD, rounded half away from zero. The product is first cut to 15 significant
 * digits so that binary noise (1.0000005 * 1e6 = 1000000.4999…) does not decide the rounding.
 */
export function toMicros(usd: number): number {
  const known = MICROS_OF.get(usd);
  if (known !== undefined) return known;
  if (!Number.isFinite(usd)) throw new RangeError(`not a finite USD amount: ${usd}`);
  const scaled = Number((Math.abs(usd) * MICROS_PER_USD).toPrecision(15));
  const rounded = Math.round(scaled);
  const micros = usd < 0 && rounded !== 0 ? -rounded : rounded;
  if (MICROS_OF.size >= MICROS_REMEMBERED) MICROS_OF.clear();
  MICROS_OF.set(usd, micros);
  return micros;
}

/**
 * toMicros's answers for amounts seen (a pure function of its argument): the same few prices and limits
 * are converted several times per send and event (each a string from toPrecision and its parse).
 * Bounded: Twilio's real prices vary; past this many the memo starts again.
 */
const MICROS_OF = new Map<number, number>();
const MICROS_REMEMBERED = 256;

/** Integer micro-USD → USD (for display and alerts only; never sum these). */
export function fromMicros(micros: number): number {
  return micros / MICROS_PER_USD;
}

/**
 * The event's cost in micro-USD: 0 when not billable; the payload's Price when it carried one in USD;
 * otherwise the estimate: an MMS per message (any media), an SMS per segment, an inbound call its
 * one-minute reservation, a completed call its billed minutes.
 */
export function priceEvent(event: BillableEvent, prices: Prices): number {
  if (!event.billable) return 0;
  if (event.reportedPriceUsd !== undefined) return toMicros(event.reportedPriceUsd);
  switch (event.kind) {
    case "inbound-message":
    case "message-status":
      // Per-unit prices are converted first, then multiplied: integer arithmetic from here on.
      if ((event.units.media ?? 0) > 0) return toMicros(prices.mms);
      return (event.units.segments ?? 1) * toMicros(prices.smsSegment);
    case "inbound-call":
      return RESERVED_CALL_MINUTES * toMicros(prices.voiceMinute);
    case "call-status":
      return (event.units.minutes ?? 0) * toMicros(prices.voiceMinute);
  }
}

/**
 * What to add to the ledger when a call's completed status callback (priced `finalMicros`) replaces the
 * reservation its inbound Voice URL request made (`reservedMicros`; 0 when the call was never reserved,
 * e.g. an outbound call). Negative when the call cost less than reserved (unanswered, or priced lower).
 */
export function settleCall(reservedMicros: number, finalMicros: number): number {
  if (!Number.isSafeInteger(reservedMicros) || !Number.isSafeInteger(finalMicros)) {
    throw new RangeError("settleCall takes integer micro-dollars");
  }
  return finalMicros - reservedMicros;
}
