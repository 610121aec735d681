import { describe, expect, it } from "vitest";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { DEFAULT_PRICES } from "../../src/ledger/policy.ts";
import { fromMicros, priceEvent, toMicros } from "../../src/ledger/pricing.ts";

const AC = "AC" + "1".repeat(32);
const event = (fields: Record<string, string>) => classifyWebhook({ AccountSid: AC, ...fields }) as BillableEvent;

describe("pricing", () => {
  it("counts in whole micro-dollars so that many small prices add up exactly", () => {
    expect(toMicros(0.0083)).toBe(8300);
    let total = 0;
    for (let i = 0; i < 10_000; i++) total += toMicros(0.0083);
    expect(fromMicros(total)).toBe(83);
  });

  it("prices an SMS per segment and an MMS per message", () => {
    expect(priceEvent(event({ MessageSid: "SM" + "2".repeat(32), SmsStatus: "received", NumSegments: "3" }), DEFAULT_PRICES)).toBe(3 * 8300);
    expect(priceEvent(event({ MessageSid: "MM" + "2".repeat(32), SmsStatus: "received", NumMedia: "1", NumSegments: "3" }), DEFAULT_PRICES)).toBe(22_000);
  });

  it("reserves one minute for an inbound call and prices a completed call by its minutes", () => {
    expect(priceEvent(event({ CallSid: "CA" + "4".repeat(32), CallStatus: "ringing", Direction: "inbound" }), DEFAULT_PRICES)).toBe(14_000);
    expect(priceEvent(event({ CallSid: "CA" + "4".repeat(32), CallStatus: "completed", Duration: "5" }), DEFAULT_PRICES)).toBe(70_000);
  });

  it("uses the payload's Price over the estimate", () => {
    expect(priceEvent(event({ MessageSid: "SM" + "2".repeat(32), MessageStatus: "delivered", NumSegments: "9", Price: "-0.00750" }), DEFAULT_PRICES)).toBe(7500);
  });

  it("prices a non-billable event at zero", () => {
    expect(priceEvent(event({ MessageSid: "SM" + "2".repeat(32), MessageStatus: "failed", Price: "-1.0" }), DEFAULT_PRICES)).toBe(0);
  });
});
