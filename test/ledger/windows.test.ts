import { describe, expect, it } from "vitest";
import { ALL_WINDOWS, isPrunable, retainUntil, windowEnd, windowId, windowStart } from "../../src/ledger/windows.ts";

const at = (iso: string) => Date.parse(iso);
const T = at("2026-11-28T13:05:42.123Z");

describe("ALL_WINDOWS", () => {
  it("lists every window kind, shortest first", () => {
    expect(ALL_WINDOWS).toEqual(["minute", "hour", "day", "month"]);
  });
});

describe("windowStart", () => {
  it("aligns a minute to its first millisecond", () => {
    expect(windowStart("minute", T)).toBe(at("2026-11-28T13:05:00Z"));
  });

  it("aligns an hour to UTC", () => {
    expect(windowStart("hour", T)).toBe(at("2026-11-28T13:00:00Z"));
  });

  it("aligns a day to UTC midnight", () => {
    expect(windowStart("day", T)).toBe(at("2026-11-28T00:00:00Z"));
  });

  it("aligns a month to the first day of the UTC month", () => {
    expect(windowStart("month", T)).toBe(at("2026-11-01T00:00:00Z"));
  });

  it("is its own start at the boundary", () => {
    const midnight = at("2027-01-01T00:00:00Z");
    expect(ALL_WINDOWS.map((kind) => windowStart(kind, midnight))).toEqual([midnight, midnight, midnight, midnight]);
  });

  it("refuses a time that is not one", () => {
    expect(() => windowStart("day", Number.NaN)).toThrow(RangeError);
  });
});

describe("windowEnd", () => {
  it("ends a day at the next UTC midnight", () => {
    expect(windowEnd("day", at("2026-11-28T23:59:59.999Z"))).toBe(at("2026-11-29T00:00:00Z"));
  });

  it("ends December at January 1 of the next year", () => {
    expect(windowEnd("month", at("2026-12-31T23:59:59.999Z"))).toBe(at("2027-01-01T00:00:00Z"));
  });

  it("ends a leap February after the 29th", () => {
    expect(windowEnd("month", at("2028-02-10T00:00:00Z"))).toBe(at("2028-03-01T00:00:00Z"));
  });

  it("ends a common February after the 28th", () => {
    expect(windowEnd("month", at("2027-02-28T23:59:59.999Z"))).toBe(at("2027-03-01T00:00:00Z"));
  });

  it("ends a 30-day month after the 30th", () => {
    expect(windowEnd("month", at("2026-11-15T00:00:00Z")) - windowStart("month", at("2026-11-15T00:00:00Z"))).toBe(30 * 86_400_000);
  });

  it("is the start of the next window", () => {
    for (const kind of ALL_WINDOWS) expect(windowStart(kind, windowEnd(kind, T))).toBe(windowEnd(kind, T));
  });
});

describe("windowId", () => {
  it("names each kind stably", () => {
    expect(ALL_WINDOWS.map((kind) => windowId(kind, T))).toEqual(["minute:2026-11-28T13:05", "hour:2026-11-28T13", "day:2026-11-28", "month:2026-11"]);
  });

  it("puts the last millisecond before UTC midnight in the old day", () => {
    expect(windowId("day", at("2026-11-28T23:59:59.999Z"))).toBe("day:2026-11-28");
  });

  it("puts UTC midnight itself in the new day", () => {
    expect(windowId("day", at("2026-11-29T00:00:00.000Z"))).toBe("day:2026-11-29");
  });

  it("rolls every window over from Dec 31 to Jan 1", () => {
    const before = ALL_WINDOWS.map((kind) => windowId(kind, at("2026-12-31T23:59:59.999Z")));
    const after = ALL_WINDOWS.map((kind) => windowId(kind, at("2027-01-01T00:00:00.000Z")));
    expect([before, after]).toEqual([
      ["minute:2026-12-31T23:59", "hour:2026-12-31T23", "day:2026-12-31", "month:2026-12"],
      ["minute:2027-01-01T00:00", "hour:2027-01-01T00", "day:2027-01-01", "month:2027-01"],
    ]);
  });

  it("has a Feb 29 in a leap year, still in February", () => {
    expect([windowId("day", at("2028-02-29T12:00:00Z")), windowId("month", at("2028-02-29T23:59:59.999Z"))]).toEqual(["day:2028-02-29", "month:2028-02"]);
  });

  it("goes from Feb 28 straight to Mar 1 in a common year", () => {
    expect([windowId("day", at("2027-02-28T23:59:59.999Z")), windowId("day", at("2027-02-28T23:59:59.999Z") + 1)]).toEqual(["day:2027-02-28", "day:2027-03-01"]);
  });

  it("follows UTC whatever offset a date string carried (23:30 in New York is the next UTC day)", () => {
    expect(windowId("day", at("2026-11-28T23:30:00-05:00"))).toBe("day:2026-11-29");
  });

  it("follows UTC for an offset ahead of UTC (00:30 in Auckland is the previous UTC day and month)", () => {
    expect([windowId("day", at("2026-12-01T00:30:00+13:00")), windowId("month", at("2026-12-01T00:30:00+13:00"))]).toEqual(["day:2026-11-30", "month:2026-11"]);
  });

  it("names the same window the same for every instant in it", () => {
    expect(windowId("hour", at("2026-11-28T13:00:00Z"))).toBe(windowId("hour", at("2026-11-28T13:59:59.999Z")));
  });

  it("answers each instant's own window when instants alternate between windows (the id of the latest window is kept)", () => {
    const month = windowEnd("month", T);
    const instants = [T, month - 1, month, T, month, month - 1, windowStart("month", T), windowStart("month", T) - 1];
    for (const kind of ALL_WINDOWS) {
      for (const ms of instants) expect(windowId(kind, ms), `${kind} at ${ms}`).toBe(`${kind}:${new Date(windowStart(kind, ms)).toISOString().slice(0, { minute: 16, hour: 13, day: 10, month: 7 }[kind])}`);
    }
  });

  it("still refuses a time that is not one after answering a valid one", () => {
    windowId("day", T);
    expect(() => windowId("day", Number.NaN)).toThrow(RangeError);
    expect(() => windowId("day", Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});

describe("retainUntil", () => {
  it("keeps a day until the end of the day after it", () => {
    expect(retainUntil("day", at("2026-11-27T00:00:00Z"))).toBe(at("2026-11-29T00:00:00Z"));
  });

  it("keeps December until the end of January", () => {
    expect(retainUntil("month", at("2026-12-01T00:00:00Z"))).toBe(at("2027-02-01T00:00:00Z"));
  });
});

describe("isPrunable", () => {
  it("keeps the current window", () => {
    expect(isPrunable("day", at("2026-11-28T00:00:00Z"), at("2026-11-28T12:00:00Z"))).toBe(false);
  });

  it("keeps the previous window for display", () => {
    expect(isPrunable("day", at("2026-11-27T00:00:00Z"), at("2026-11-28T23:59:59.999Z"))).toBe(false);
  });

  it("prunes the window before the previous one", () => {
    expect(isPrunable("day", at("2026-11-27T00:00:00Z"), at("2026-11-29T00:00:00Z"))).toBe(true);
  });

  it("keeps last month throughout this month and prunes it on the 1st of the next", () => {
    const october = at("2026-10-01T00:00:00Z");
    expect([isPrunable("month", october, at("2026-11-30T23:59:59.999Z")), isPrunable("month", october, at("2026-12-01T00:00:00Z"))]).toEqual([false, true]);
  });

  it("prunes minutes two minutes on", () => {
    const minute = at("2026-11-28T13:05:00Z");
    expect([isPrunable("minute", minute, at("2026-11-28T13:06:59.999Z")), isPrunable("minute", minute, at("2026-11-28T13:07:00Z"))]).toEqual([false, true]);
  });
});
