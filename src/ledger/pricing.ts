// Pricing a billable event with the policy's prices, in integer micro-dollars (1 USD = 1_000_000) so
// that thousands of 0.0083 USD segments add up exactly. A payload's own Price wins over the estimate.
import type { BillableEvent } from "./classify.ts";
import type { Prices } from "./policy.ts";

export const MICROS_PER_USD = 1_000_000;

export function toMicros(usd: number): number {
  return Math.round(usd * MICROS_PER_USD);
}

export function fromMicros(micros: number): number {
  return micros / MICROS_PER_USD;
}

/** The event's cost in micro-USD. An inbound call is reserved at one minute until its completion settles it. */
export function priceEvent(event: BillableEvent, prices: Prices): number {
  if (!event.billable) return 0;
  if (event.reportedPriceUsd !== undefined) return toMicros(event.reportedPriceUsd);
  switch (event.kind) {
    case "inbound-message":
    case "message-status": {
      // Twilio prices an MMS per message, an SMS per segment.
      if ((event.units.media ?? 0) > 0) return toMicros(prices.mms);
      return (event.units.segments ?? 1) * toMicros(prices.smsSegment);
    }
    case "inbound-call":
      return toMicros(prices.voiceMinute);
    case "call-status":
      return (event.units.minutes ?? 0) * toMicros(prices.voiceMinute);
  }
}
