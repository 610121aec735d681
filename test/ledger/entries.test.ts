import { describe, expect, it } from "vitest";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { applyBillableEvent, awaitPrice, bind, cancel, realPrice, release, reserve, settle } from "../../src/ledger/entries.ts";

const AC = "AC" + "a".repeat(32);
const CA = "CA" + "b".repeat(32);
const SM = "SM" + "c".repeat(32);

function ev(fields: Record<string, string>): BillableEvent {
  const e = classifyWebhook({ AccountSid: AC, ...fields });
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

describe("reserve", () => {
  it("counts a new Sid's estimate as one event, unsettled", () => {
    expect(reserve(undefined, 14_000)).toEqual({ entry: { usdMicros: 14_000, settled: false }, add: { usdMicros: 14_000, events: 1 } });
  });
  it("does not reserve a Sid already in the ledger again", () => {
    expect(reserve({ usdMicros: 14_000, settled: false }, 14_000).entry).toBeNull();
  });
  it("refuses amounts that are not non-negative integers", () => {
    expect(() => reserve(undefined, 0.5)).toThrow(RangeError);
    expect(() => reserve(undefined, -1)).toThrow(RangeError);
  });
});

describe("settle", () => {
  it("replaces a reservation by the final price, adding the difference and no event", () => {
    expect(settle({ usdMicros: 14_000, settled: false }, 42_000)).toEqual({ entry: { usdMicros: 42_000, settled: true }, add: { usdMicros: 28_000, events: 0 } });
  });
  it("counts a Sid never reserved at its final price, as one event", () => {
    expect(settle(undefined, 8_300)).toEqual({ entry: { usdMicros: 8_300, settled: true }, add: { usdMicros: 8_300, events: 1 } });
  });
  it("ignores a Sid already settled", () => {
    expect(settle({ usdMicros: 8_300, settled: true }, 9_000).entry).toBeNull();
  });
});

describe("release", () => {
  it("refunds a reservation whose outcome costs nothing", () => {
    expect(release({ usdMicros: 14_000, settled: false })).toEqual({ entry: { usdMicros: 0, settled: true }, add: { usdMicros: -14_000, events: 0 } });
  });
  it("has nothing to release for a Sid never reserved", () => {
    expect(release(undefined).entry).toBeNull();
  });
});

describe("applyBillableEvent", () => {
  it("reserves an inbound call and releases it when the call is busy", () => {
    const ringing = applyBillableEvent(undefined, ev({ CallSid: CA, CallStatus: "ringing", Direction: "inbound" }), 14_000);
    const busy = applyBillableEvent(ringing.entry!, ev({ CallSid: CA, CallStatus: "busy", Direction: "inbound" }), 0);
    expect(ringing.add.usdMicros + busy.add.usdMicros).toBe(0);
    expect(busy.entry).toEqual({ usdMicros: 0, settled: true });
  });
  it("changes nothing for an outbound call that was never answered", () => {
    expect(applyBillableEvent(undefined, ev({ CallSid: CA, CallStatus: "no-answer", Direction: "outbound-api" }), 0).entry).toBeNull();
  });
  it("releases a reserved message that failed", () => {
    expect(applyBillableEvent({ usdMicros: 8_300, settled: false }, ev({ MessageSid: SM, MessageStatus: "failed" }), 0).add.usdMicros).toBe(-8_300);
  });
  it("leaves a reserved message alone while it is only queued", () => {
    expect(applyBillableEvent({ usdMicros: 8_300, settled: false }, ev({ MessageSid: SM, MessageStatus: "queued" }), 0).entry).toBeNull();
  });
  it("settles a reserved message at its delivered price", () => {
    expect(applyBillableEvent({ usdMicros: 8_300, settled: false }, ev({ MessageSid: SM, MessageStatus: "delivered", Price: "-0.0079" }), 7_900).add).toEqual({ usdMicros: -400, events: 0 });
  });
});

describe("awaitPrice", () => {
  it("marks a Sid settled at an estimate as waiting for its real price, adding nothing", () => {
    expect(awaitPrice({ usdMicros: 16_600, settled: true })).toEqual({ entry: { usdMicros: 16_600, settled: true, price: "lookup" }, add: { usdMicros: 0, events: 0 } });
  });
  it("changes nothing a second time, at a real price, for an open reservation or an unknown Sid", () => {
    for (const entry of [{ usdMicros: 16_600, settled: true, price: "lookup" as const }, { usdMicros: 15_800, settled: true, price: "real" as const }, { usdMicros: 16_600, settled: false }, undefined]) {
      expect(awaitPrice(entry).entry).toBeNull();
    }
  });
});

describe("realPrice", () => {
  it("replaces an estimate by the real price, adding the difference and no event", () => {
    expect(realPrice({ usdMicros: 16_600, settled: true, price: "lookup" }, 15_800)).toEqual({ entry: { usdMicros: 15_800, settled: true, price: "real" }, add: { usdMicros: -800, events: 0 } });
  });
  it("applies once: a Sid at its real price changes no more", () => {
    const first = realPrice({ usdMicros: 16_600, settled: true }, 15_800);
    expect(realPrice(first.entry!, 15_800).entry).toBeNull();
    expect(realPrice(first.entry!, 20_000).entry).toBeNull();
  });
  it("counts a Sid never seen at its real price, as one event", () => {
    expect(realPrice(undefined, 7_900)).toEqual({ entry: { usdMicros: 7_900, settled: true, price: "real" }, add: { usdMicros: 7_900, events: 1 } });
  });
  it("is what a billed status with a Price does, even to a Sid settled at an estimate", () => {
    const change = applyBillableEvent({ usdMicros: 8_300, settled: true }, ev({ MessageSid: SM, MessageStatus: "delivered", Price: "-0.0079" }), 7_900);
    expect(change).toEqual({ entry: { usdMicros: 7_900, settled: true, price: "real" }, add: { usdMicros: -400, events: 0 } });
    expect(applyBillableEvent(change.entry!, ev({ MessageSid: SM, MessageStatus: "read", Price: "-0.0079" }), 7_900).entry).toBeNull();
  });
  it("leaves a settled Sid alone when the status carries no Price", () => {
    expect(applyBillableEvent({ usdMicros: 8_300, settled: true }, ev({ MessageSid: SM, MessageStatus: "delivered" }), 8_300).entry).toBeNull();
  });
});

describe("bind", () => {
  it("moves a reservation to the Sid Twilio gave the send", () => {
    expect(bind({ usdMicros: 8_300, settled: false }, undefined)).toEqual({ entry: { usdMicros: 8_300, settled: false }, add: { usdMicros: 0, events: 0 } });
  });
  it("takes the reservation back when the Sid's status callback already counted it", () => {
    expect(bind({ usdMicros: 8_300, settled: false }, { usdMicros: 7_900, settled: true })).toEqual({ entry: null, add: { usdMicros: -8_300, events: -1 } });
  });
  it("does nothing without a reservation", () => {
    expect(bind(undefined, undefined).entry).toBeNull();
  });
});

describe("cancel", () => {
  it("takes back a reservation's estimate and its event", () => {
    expect(cancel({ usdMicros: 8_300, settled: false }).add).toEqual({ usdMicros: -8_300, events: -1 });
  });
  it("leaves a settled entry alone", () => {
    expect(cancel({ usdMicros: 8_300, settled: true }).entry).toBeNull();
  });
});
