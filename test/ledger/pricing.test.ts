import { describe, expect, it } from "vitest";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { DEFAULT_PRICES, type Prices } from "../../src/ledger/policy.ts";
import { MICROS_PER_USD, fromMicros, priceEvent, settleCall, toMicros } from "../../src/ledger/pricing.ts";

const AC = "AC" + "1a".repeat(16);
const SM = "SM" + "2b".repeat(16);
const MM = "MM" + "3c".repeat(16);
const CA = "CA" + "4d".repeat(16);

function event(fields: Record<string, string>): BillableEvent {
  const result = classifyWebhook({ AccountSid: AC, ApiVersion: "2010-04-01", ...fields });
  if (result.kind === "not-billable") throw new Error(result.reason);
  return result;
}

const sms = (extra: Record<string, string> = {}) => event({ MessageSid: SM, SmsSid: SM, SmsStatus: "received", Body: "hi", NumMedia: "0", NumSegments: "1", ...extra });
const ringing = () => event({ CallSid: CA, CallStatus: "ringing", Direction: "inbound" });
const completed = (extra: Record<string, string>) => event({ CallSid: CA, CallStatus: "completed", Direction: "inbound", ...extra });

describe("toMicros", () => {
  it("converts a US segment price to whole micro-dollars", () => {
    expect(toMicros(0.0083)).toBe(8300);
  });

  it("adds up ten thousand segments exactly", () => {
    let total = 0;
    for (let i = 0; i < 10_000; i++) total += toMicros(0.0083);
    expect(total).toBe(83 * MICROS_PER_USD);
  });

  it("rounds half a micro-dollar away from zero despite binary noise", () => {
    expect([toMicros(1.0000005), toMicros(0.0000005), toMicros(-0.0000005)]).toEqual([1_000_001, 1, -1]);
  });

  it("answers an amount seen before as the first time, a negative one apart, past its memo's bound too", () => {
    // 600 amounts (past the memo's 256) with their negatives, asked three times in different orders.
    const amounts = Array.from({ length: 600 }, (_, i) => (i % 2 === 0 ? 1 : -1) * (0.0000005 + i * 0.0013));
    const first = amounts.map(toMicros);
    expect(first.slice(0, 4)).toEqual([1, -1301, 2601, -3901]);
    expect([...amounts].reverse().map(toMicros)).toEqual([...first].reverse());
    expect(amounts.map((a) => toMicros(-a))).toEqual(first.map((m) => -m));
    expect(amounts.map(toMicros)).toEqual(first);
    expect([toMicros(-0), toMicros(0)]).toEqual([0, 0]);
  });

  it("rounds below half a micro-dollar down", () => {
    expect(toMicros(0.0000004)).toBe(0);
  });

  it("keeps the sign of a negative amount", () => {
    expect(toMicros(-0.0075)).toBe(-7500);
  });

  it("converts the largest allowed limit exactly", () => {
    expect(toMicros(999_999_999.999999)).toBe(999_999_999_999_999);
  });

  it("refuses a non-finite amount", () => {
    expect(() => toMicros(Number.NaN)).toThrow(RangeError);
  });
});

describe("fromMicros", () => {
  it("converts micro-dollars back to USD", () => {
    expect(fromMicros(8300)).toBe(0.0083);
  });
});

describe("priceEvent", () => {
  it("prices an inbound SMS per segment", () => {
    expect(priceEvent(sms({ NumSegments: "3" }), DEFAULT_PRICES)).toBe(3 * 8300);
  });

  it("prices an inbound MMS per message, whatever its segments and media", () => {
    expect(priceEvent(event({ MessageSid: MM, SmsStatus: "received", NumMedia: "3", NumSegments: "3" }), DEFAULT_PRICES)).toBe(22_000);
  });

  it("prices an outbound SMS's billable status callback per segment", () => {
    expect(priceEvent(event({ MessageSid: SM, MessageStatus: "sent", NumSegments: "2" }), DEFAULT_PRICES)).toBe(2 * 8300);
  });

  it("prices an outbound MMS status callback (MM Sid) as an MMS", () => {
    expect(priceEvent(event({ MessageSid: MM, MessageStatus: "delivered" }), DEFAULT_PRICES)).toBe(22_000);
  });

  it("reserves one voice minute for an inbound call", () => {
    expect(priceEvent(ringing(), DEFAULT_PRICES)).toBe(14_000);
  });

  it("prices a completed call by its billed minutes", () => {
    expect(priceEvent(completed({ Duration: "5" }), DEFAULT_PRICES)).toBe(70_000);
  });

  it("uses the payload's Price over the estimate", () => {
    expect(priceEvent(event({ MessageSid: SM, MessageStatus: "delivered", NumSegments: "9", Price: "-0.00750", PriceUnit: "USD" }), DEFAULT_PRICES)).toBe(7500);
  });

  it("uses a completed call's Price over minutes × voiceMinute", () => {
    expect(priceEvent(completed({ Duration: "5", Price: "-0.08500", PriceUnit: "USD" }), DEFAULT_PRICES)).toBe(85_000);
  });

  it("falls back to the estimate when the Price is in another currency", () => {
    expect(priceEvent(sms({ NumSegments: "2", Price: "-0.00700", PriceUnit: "EUR" }), DEFAULT_PRICES)).toBe(2 * 8300);
  });

  it("prices a non-billable event at zero, whatever its Price", () => {
    expect(priceEvent(event({ MessageSid: SM, MessageStatus: "failed", Price: "-1.0" }), DEFAULT_PRICES)).toBe(0);
  });

  it("prices an unanswered call at zero", () => {
    expect(priceEvent(event({ CallSid: CA, CallStatus: "no-answer", Direction: "outbound-api" }), DEFAULT_PRICES)).toBe(0);
  });

  it("uses the policy's own prices", () => {
    const prices: Prices = { smsSegment: 0.05, mms: 0.2, voiceMinute: 0.1 };
    expect([priceEvent(sms({ NumSegments: "2" }), prices), priceEvent(ringing(), prices), priceEvent(completed({ Duration: "3" }), prices)]).toEqual([100_000, 100_000, 300_000]);
  });

  it("stays an exact integer for the largest counts a payload can claim", () => {
    const worst = priceEvent(completed({ Duration: "999999" }), { smsSegment: 100, mms: 100, voiceMinute: 100 });
    expect([worst, Number.isSafeInteger(worst)]).toEqual([1440 * 100 * MICROS_PER_USD, true]);
  });
});

describe("settleCall", () => {
  it("adds what a call cost beyond its one-minute reservation", () => {
    expect(settleCall(priceEvent(ringing(), DEFAULT_PRICES), priceEvent(completed({ Duration: "4" }), DEFAULT_PRICES))).toBe(3 * 14_000);
  });

  it("returns a negative delta when the call cost less than reserved", () => {
    expect(settleCall(14_000, 0)).toBe(-14_000);
  });

  it("adds the whole price of a call that was never reserved", () => {
    expect(settleCall(0, 28_000)).toBe(28_000);
  });

  it("leaves the ledger at the final price: reservation + delta", () => {
    const reserved = priceEvent(ringing(), DEFAULT_PRICES);
    const final = priceEvent(completed({ Duration: "7", Price: "-0.09100" }), DEFAULT_PRICES);
    expect(reserved + settleCall(reserved, final)).toBe(91_000);
  });

  it("refuses amounts that are not integer micro-dollars", () => {
    expect(() => settleCall(0.5, 1)).toThrow(RangeError);
  });
});
