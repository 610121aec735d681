import { describe, expect, it } from "vitest";
import { countEvent, daySpend, reconcileDay } from "../../src/ledger/reconcile.ts";

const USD = 1_000_000;

describe("daySpend", () => {
  it("is the larger of the guard's count and Twilio's figure", () => {
    expect(daySpend({ countedMicros: 10 * USD, twilioMicros: null })).toBe(10 * USD);
    expect(daySpend({ countedMicros: 10 * USD, twilioMicros: 15 * USD })).toBe(15 * USD);
    expect(daySpend({ countedMicros: 16 * USD, twilioMicros: 15 * USD })).toBe(16 * USD);
  });
});

describe("reconcileDay", () => {
  it("raises the day and month by what Twilio's figure adds, minute and hour by nothing", () => {
    const { day, perWindow } = reconcileDay({ countedMicros: 10 * USD, twilioMicros: null }, 15 * USD);
    expect(day).toEqual({ countedMicros: 10 * USD, twilioMicros: 15 * USD });
    expect(perWindow).toEqual({ minute: { usdMicros: 0, events: 0 }, hour: { usdMicros: 0, events: 0 }, day: { usdMicros: 5 * USD, events: 0 }, month: { usdMicros: 5 * USD, events: 0 } });
  });
  it("ignores a figure lower than one seen before", () => {
    expect(reconcileDay({ countedMicros: 10 * USD, twilioMicros: 15 * USD }, 12 * USD).perWindow.day.usdMicros).toBe(0);
  });
});

describe("countEvent", () => {
  it("adds nothing to the day for spend Twilio's figure already includes, and counts the event", () => {
    const { day, perWindow } = countEvent({ countedMicros: 10 * USD, twilioMicros: 15 * USD }, { usdMicros: USD, events: 1 });
    expect(day.countedMicros).toBe(11 * USD);
    expect(perWindow.day).toEqual({ usdMicros: 0, events: 1 });
    expect(perWindow.minute).toEqual({ usdMicros: USD, events: 1 });
  });
  it("adds what goes beyond Twilio's figure", () => {
    expect(countEvent({ countedMicros: 14 * USD, twilioMicros: 15 * USD }, { usdMicros: 3 * USD, events: 1 }).perWindow.month.usdMicros).toBe(2 * USD);
  });
  it("five late 1 USD callbacks after 10 counted and Twilio at 15 leave the day at 15", () => {
    let day = reconcileDay({ countedMicros: 10 * USD, twilioMicros: null }, 15 * USD).day;
    let total = 15 * USD;
    for (let i = 0; i < 5; i++) {
      const change = countEvent(day, { usdMicros: USD, events: 1 });
      day = change.day;
      total += change.perWindow.day.usdMicros;
    }
    expect(total).toBe(15 * USD);
  });
});
