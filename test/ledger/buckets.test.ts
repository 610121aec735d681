// The usage history's pure rules (src/ledger/buckets.ts): UTC buckets, bounded retention, and the
// series a chart gets (every bucket of the range, the policy's limit, trips marked where they opened).
import { describe, expect, it } from "vitest";
import { BUCKETS_KEPT, bucketStart, bucketsFor, buildSeries, grainLimits, oldestKept, type BucketRow } from "../../src/ledger/buckets.ts";
import { parsePolicy } from "../../src/ledger/policy.ts";

const NOW = Date.parse("2030-03-10T13:25:00.000Z");
const HOUR = 3_600_000;
const DAY = 86_400_000;
const policy = parsePolicy({ limits: [{ window: "hour", usd: 10 }, { window: "hour", events: 500 }, { window: "hour", usd: 4 }, { window: "day", usd: 50 }], warnAt: 0.8, action: "suspend" });

describe("buckets", () => {
  it("puts an amount in its UTC hour and UTC day", () => {
    expect(bucketsFor(NOW)).toEqual([
      { grain: "hour", startMs: Date.parse("2030-03-10T13:00:00.000Z") },
      { grain: "day", startMs: Date.parse("2030-03-10T00:00:00.000Z") },
    ]);
  });

  it("keeps 48 hours and 90 days, the current bucket included", () => {
    expect((bucketStart("hour", NOW) - oldestKept("hour", NOW)) / HOUR).toBe(BUCKETS_KEPT.hour - 1);
    expect((bucketStart("day", NOW) - oldestKept("day", NOW)) / DAY).toBe(BUCKETS_KEPT.day - 1);
    expect(BUCKETS_KEPT).toEqual({ hour: 48, day: 90 });
  });

  it("takes the strictest limit of the grain's window for the chart's line", () => {
    expect(grainLimits(policy, "hour")).toEqual({ usd: 4, events: 500 });
    expect(grainLimits(policy, "day")).toEqual({ usd: 50, events: null });
  });
});

describe("buildSeries", () => {
  const hour = bucketStart("hour", NOW);
  const rows: BucketRow[] = [
    { grain: "hour", startMs: hour, usdMicros: 2_500_000, events: 30, blocked: 4, countries: new Map([["US", { sends: 2, usdMicros: 16_600, blocked: 0 }], ["GB", { sends: 1, usdMicros: 40_000, blocked: 0 }]]) },
    { grain: "hour", startMs: hour - 5 * HOUR, usdMicros: 1_000_000, events: 10, blocked: 0, countries: new Map([["GB", { sends: 0, usdMicros: 0, blocked: 3 }], ["US", { sends: 1, usdMicros: 8_300, blocked: 0 }]]) },
    // Too old for the range, and another grain: both ignored.
    { grain: "hour", startMs: hour - 48 * HOUR, usdMicros: 9_000_000, events: 9, blocked: 9, countries: new Map([["CU", { sends: 9, usdMicros: 9, blocked: 0 }]]) },
    { grain: "day", startMs: bucketStart("day", NOW), usdMicros: 7_000_000, events: 70, blocked: 0, countries: new Map() },
  ];

  it("answers every hour of the range, oldest first, with zeros where nothing was recorded", () => {
    const series = buildSeries("hour", NOW, rows, [], policy);
    expect(series.points).toHaveLength(48);
    expect(series.points[0]!.start).toBe(hour - 47 * HOUR);
    expect(series.points[47]).toMatchObject({ start: hour, usd: 2.5, events: 30, blocked: 4 });
    expect(series.points[42]).toMatchObject({ usd: 1, events: 10 });
    expect(series.points[10]).toMatchObject({ usd: 0, events: 0, blocked: 0, trips: [] });
    expect(series.totals).toEqual({ usd: 3.5, events: 40, blocked: 4, trips: 0 });
    expect(series).toMatchObject({ by: "hour", from: hour - 47 * HOUR, to: hour, limits: { usd: 4, events: 500 } });
  });

  it("answers each bucket's sends by destination country, and their total over the range with the first send's time", () => {
    const series = buildSeries("hour", NOW, rows, [], policy, new Map([["US", hour - 40 * HOUR], ["GB", hour - 5 * HOUR]]));
    expect(series.points[47]!.countries).toEqual([{ country: "US", sends: 2, usd: 0.0166, blocked: 0 }, { country: "GB", sends: 1, usd: 0.04, blocked: 0 }]);
    expect(series.points[42]!.countries).toEqual([{ country: "US", sends: 1, usd: 0.0083, blocked: 0 }, { country: "GB", sends: 0, usd: 0, blocked: 3 }]);
    expect(series.points[10]!.countries).toEqual([]);
    expect(series.countries).toEqual([
      { country: "US", sends: 3, usd: 0.0249, blocked: 0, firstSentAt: hour - 40 * HOUR },
      { country: "GB", sends: 1, usd: 0.04, blocked: 3, firstSentAt: hour - 5 * HOUR },
    ]);
  });

  it("marks each trip in the bucket it opened in", () => {
    const trips = [
      { at: hour + 60_000, reason: "limit hour 4 USD" },
      { at: hour - 5 * HOUR + 1, reason: "operator" },
      { at: hour - 100 * HOUR, reason: "too old" },
    ];
    const series = buildSeries("hour", NOW, rows, trips, policy);
    expect(series.points[47]!.trips).toEqual([{ at: hour + 60_000, reason: "limit hour 4 USD" }]);
    expect(series.points[42]!.trips).toEqual([{ at: hour - 5 * HOUR + 1, reason: "operator" }]);
    expect(series.totals.trips).toBe(2);
  });

  it("answers 90 days for the day grain", () => {
    const series = buildSeries("day", NOW, rows, [], policy);
    expect(series.points).toHaveLength(90);
    expect(series.points[89]).toMatchObject({ start: Date.parse("2030-03-10T00:00:00.000Z"), usd: 7, events: 70 });
    expect(series.limits).toEqual({ usd: 50, events: null });
  });
});
