// Usage history for the charts of GET /admin/accounts/:sid/usage: spend, events and blocked events per
// UTC hour (the last 48) and per UTC day (the last 90). Pure: which buckets an amount goes to, which
// buckets are too old to keep, and the series an answer carries (every bucket of the range, empty ones
// too, with the policy's limit for that grain and the trips that opened in it, and the egress gate's sends
// by destination country, src/ledger/countries.ts). The AccountGuard stores the rows (table
// usage_buckets, schema.ts) and calls these; nothing else decides about buckets.
import { countryLines, type CountryMap, type CountryPoint } from "./countries.ts";
import type { Policy } from "./policy.ts";
import { windowStart } from "./windows.ts";

export type Grain = "hour" | "day";
export const GRAINS: readonly Grain[] = ["hour", "day"];

/** CONTRACT.md: per hour for the last 48 hours, per day for the last 90 days (the current one included). */
export const BUCKETS_KEPT: Readonly<Record<Grain, number>> = { hour: 48, day: 90 };
const GRAIN_MS: Readonly<Record<Grain, number>> = { hour: 3_600_000, day: 86_400_000 };

export interface BucketRow {
  grain: Grain;
  startMs: number;
  usdMicros: number;
  events: number;
  blocked: number;
  /** The egress gate's sends in this bucket by destination country (empty when none). */
  countries: CountryMap;
}

export interface SeriesPoint {
  /** Start of the UTC hour or day, epoch ms. */
  start: number;
  usd: number;
  events: number;
  /** Inbound messages and calls answered as blocked (breaker open) in this bucket. */
  blocked: number;
  /** Trips opened in this bucket: when and why. */
  trips: Array<{ at: number; reason: string }>;
  /** Sends through the egress gate by destination country (most first; `other` past the bound, last). */
  countries: CountryPoint[];
}

/** A country's line in the range's total, with when the account first sent to it (null: not known). */
export interface CountryTotal extends CountryPoint {
  firstSentAt: number | null;
}

export interface UsageSeries {
  by: Grain;
  /** First and last bucket start; `to` is the bucket holding `now`. */
  from: number;
  to: number;
  /** The policy's limits for this grain (spend and event limits of the same window), for the chart's lines. */
  limits: { usd: number | null; events: number | null };
  points: SeriesPoint[];
  totals: { usd: number; events: number; blocked: number; trips: number };
  /** Sends through the egress gate by destination country over the whole range. */
  countries: CountryTotal[];
}

export function isGrain(value: string | null): value is Grain {
  return value === "hour" || value === "day";
}

/** The start of the bucket holding `nowMs`. */
export function bucketStart(grain: Grain, nowMs: number): number {
  return windowStart(grain, nowMs);
}

/** The oldest bucket start still kept at `nowMs`: anything before it may be deleted. */
export function oldestKept(grain: Grain, nowMs: number): number {
  return bucketStart(grain, nowMs) - (BUCKETS_KEPT[grain] - 1) * GRAIN_MS[grain];
}

/** Both buckets an amount recorded at `nowMs` is added to. */
export function bucketsFor(nowMs: number): Array<{ grain: Grain; startMs: number }> {
  return GRAINS.map((grain) => ({ grain, startMs: bucketStart(grain, nowMs) }));
}

/** The strictest limit of the policy in the window of this grain, for spend and for events. */
export function grainLimits(policy: Policy, grain: Grain): { usd: number | null; events: number | null } {
  const same = policy.limits.filter((l) => l.window === grain);
  const usd = same.flatMap((l) => (l.usd !== undefined ? [l.usd] : []));
  const events = same.flatMap((l) => (l.events !== undefined ? [l.events] : []));
  return { usd: usd.length ? Math.min(...usd) : null, events: events.length ? Math.min(...events) : null };
}

/**
 * The full series for the chart: BUCKETS_KEPT[grain] points ending with the bucket of `nowMs`, oldest
 * first, with zeros where nothing was recorded; rows outside the range are ignored.
 */
export function buildSeries(
  grain: Grain,
  nowMs: number,
  rows: readonly BucketRow[],
  trips: ReadonlyArray<{ at: number; reason: string }>,
  policy: Policy,
  /** When the account first sent to each country (egress_countries), for the range's total. */
  firstSent: ReadonlyMap<string, number> = new Map(),
): UsageSeries {
  const step = GRAIN_MS[grain];
  const to = bucketStart(grain, nowMs);
  const from = oldestKept(grain, nowMs);
  const byStart = new Map<number, BucketRow>();
  for (const r of rows) if (r.grain === grain && r.startMs >= from && r.startMs <= to) byStart.set(r.startMs, r);
  const points: SeriesPoint[] = [];
  for (let start = from; start <= to; start += step) {
    const r = byStart.get(start);
    points.push({
      start,
      usd: (r?.usdMicros ?? 0) / 1_000_000,
      events: r?.events ?? 0,
      blocked: r?.blocked ?? 0,
      trips: trips.filter((t) => t.at >= start && t.at < start + step).map((t) => ({ at: t.at, reason: t.reason })),
      countries: countryLines(r === undefined ? [] : [r.countries]),
    });
  }
  const totals = points.reduce(
    (sum, p) => ({ usd: sum.usd + p.usd, events: sum.events + p.events, blocked: sum.blocked + p.blocked, trips: sum.trips + p.trips.length }),
    { usd: 0, events: 0, blocked: 0, trips: 0 },
  );
  totals.usd = Math.round(totals.usd * 1_000_000) / 1_000_000;
  const countries = countryLines([...byStart.values()].map((r) => r.countries)).map((c) => ({ ...c, firstSentAt: firstSent.get(c.country) ?? null }));
  return { by: grain, from, to, limits: grainLimits(policy, grain), points, totals, countries };
}
