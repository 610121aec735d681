// UTC-aligned spend windows. Twilio's usage day (and its Usage Records "Today") is the UTC day
// (https://www.twilio.com/docs/usage/api/usage-record), so every window here is aligned to UTC.
import { WINDOW_KINDS, type WindowKind } from "./policy.ts";

export type { WindowKind } from "./policy.ts";
export const ALL_WINDOWS: readonly WindowKind[] = WINDOW_KINDS;

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Epoch ms at which the window of `kind` containing `nowMs` starts. */
export function windowStart(kind: WindowKind, nowMs: number): number {
  switch (kind) {
    case "minute":
      return Math.floor(nowMs / MINUTE_MS) * MINUTE_MS;
    case "hour":
      return Math.floor(nowMs / HOUR_MS) * HOUR_MS;
    case "day":
      return Math.floor(nowMs / DAY_MS) * DAY_MS;
    case "month": {
      const d = new Date(nowMs);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    }
  }
}

/** Epoch ms at which that window ends (the next one starts). */
export function windowEnd(kind: WindowKind, nowMs: number): number {
  switch (kind) {
    case "minute":
      return windowStart(kind, nowMs) + MINUTE_MS;
    case "hour":
      return windowStart(kind, nowMs) + HOUR_MS;
    case "day":
      return windowStart(kind, nowMs) + DAY_MS;
    case "month": {
      const d = new Date(nowMs);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    }
  }
}

/** A stable, readable key: minute:2026-11-28T13:05, hour:2026-11-28T13, day:2026-11-28, month:2026-11. */
export function windowId(kind: WindowKind, nowMs: number): string {
  const iso = new Date(windowStart(kind, nowMs)).toISOString();
  switch (kind) {
    case "minute":
      return `minute:${iso.slice(0, 16)}`;
    case "hour":
      return `hour:${iso.slice(0, 13)}`;
    case "day":
      return `day:${iso.slice(0, 10)}`;
    case "month":
      return `month:${iso.slice(0, 7)}`;
  }
}

/**
 * A window's totals are kept until the window after it has ended too (the dashboard shows the
 * previous window beside the current one); after that they are pruned.
 */
export function isPrunable(kind: WindowKind, windowStartMs: number, nowMs: number): boolean {
  const next = windowEnd(kind, windowStartMs);
  return nowMs >= windowEnd(kind, next);
}
