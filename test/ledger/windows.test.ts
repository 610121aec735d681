import { describe, expect, it } from "vitest";
import { isPrunable, windowEnd, windowId, windowStart } from "../../src/ledger/windows.ts";

const at = (iso: string) => Date.parse(iso);

describe("windows", () => {
  it("aligns minute, hour and day to UTC", () => {
    const t = at("2026-11-28T13:05:42.123Z");
    expect(windowStart("minute", t)).toBe(at("2026-11-28T13:05:00Z"));
    expect(windowStart("hour", t)).toBe(at("2026-11-28T13:00:00Z"));
    expect(windowStart("day", t)).toBe(at("2026-11-28T00:00:00Z"));
    expect(windowStart("month", t)).toBe(at("2026-11-01T00:00:00Z"));
  });

  it("names windows stably", () => {
    const t = at("2026-11-28T13:05:42Z");
    expect([windowId("minute", t), windowId("hour", t), windowId("day", t), windowId("month", t)]).toEqual([
      "minute:2026-11-28T13:05",
      "hour:2026-11-28T13",
      "day:2026-11-28",
      "month:2026-11",
    ]);
  });

  it("puts the last millisecond before UTC midnight and midnight itself in different days", () => {
    expect(windowId("day", at("2026-11-28T23:59:59.999Z"))).toBe("day:2026-11-28");
    expect(windowId("day", at("2026-11-29T00:00:00.000Z"))).toBe("day:2026-11-29");
  });

  it("rolls the month over on Dec 31 → Jan 1 and Feb 28/29", () => {
    expect(windowId("month", at("2026-12-31T23:59:59.999Z"))).toBe("month:2026-12");
    expect(windowId("month", at("2027-01-01T00:00:00.000Z"))).toBe("month:2027-01");
    expect(windowEnd("month", at("2028-02-10T00:00:00Z"))).toBe(at("2028-03-01T00:00:00Z"));
    expect(windowId("day", at("2028-02-29T12:00:00Z"))).toBe("day:2028-02-29");
    expect(windowEnd("month", at("2027-02-10T00:00:00Z"))).toBe(at("2027-03-01T00:00:00Z"));
  });

  it("ignores local time: the day follows UTC whatever offset a date string carried", () => {
    expect(windowId("day", at("2026-11-28T23:30:00-05:00"))).toBe("day:2026-11-29");
  });

  it("keeps the previous window and prunes the one before", () => {
    const day = at("2026-11-27T00:00:00Z");
    expect(isPrunable("day", day, at("2026-11-28T12:00:00Z"))).toBe(false);
    expect(isPrunable("day", day, at("2026-11-29T00:00:00Z"))).toBe(true);
    const month = at("2026-10-01T00:00:00Z");
    expect(isPrunable("month", month, at("2026-11-30T00:00:00Z"))).toBe(false);
    expect(isPrunable("month", month, at("2026-12-01T00:00:00Z"))).toBe(true);
  });
});
