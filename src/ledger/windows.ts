// UTC-aligned spend windows. Twilio's usage day (and its Usage Records "Today") is the UTC day
// (https://www.twilio.com/docs/usage/api/usage-record), so every window here is aligned to UTC, whatever
// the runtime's time zone: only epoch arithmetic and Date's getUTC*/Date.UTC are used. Pure.
import { WINDOW_KINDS, type WindowKind } from "./policy.ts";

export type { WindowKind } from "./policy.ts";
/** Every window kind, shortest first. */
export const ALL_WINDOWS: readonly WindowKind[] = WINDOW_KINDS;

/** Fixed-length windows; a month is computed from the calendar (28 to 31 days). UTC has no DST. */
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

function checkTime(ms: number): void {
  // new Date(ms) is valid only within ±8.64e15 ms; anything else is a caller's bug, not a window.
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) throw new RangeError(`not a valid epoch time: ${ms}`);
}

/** Epoch ms at which the window of `kind` containing `nowMs` starts (month: the 1st of the UTC month, 00:00). */
export function windowStart(kind: WindowKind, nowMs: number): number {
  checkTime(nowMs);
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

/** Epoch ms at which that window ends, exclusive: the start of the next one. */
export function windowEnd(kind: WindowKind, nowMs: number): number {
  const start = windowStart(kind, nowMs);
  switch (kind) {
    case "minute":
      return start + MINUTE_MS;
    case "hour":
      return start + HOUR_MS;
    case "day":
      return start + DAY_MS;
    case "month": {
      const d = new Date(start);
      // Date.UTC rolls month 12 over into January of the next year.
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    }
  }
}

/**
 * The last id computed per window kind, with the window's bounds. An event asks for the same four ids a
 * dozen times (reading, deciding, counting, its buckets), each a Date and an ISO string; the answer is a
 * pure function of the window, so the one of the latest window of each kind is kept (4 entries: bounded).
 */
const lastIds: Partial<Record<WindowKind, { start: number; end: number; id: string }>> = {};

/** A stable, sortable key: minute:2026-11-28T13:05, hour:2026-11-28T13, day:2026-11-28, month:2026-11. */
export function windowId(kind: WindowKind, nowMs: number): string {
  const last = lastIds[kind];
  if (last !== undefined && nowMs >= last.start && nowMs < last.end) return last.id;
  const start = windowStart(kind, nowMs);
  const id = formatWindowId(kind, start);
  lastIds[kind] = { start, end: windowEnd(kind, start), id };
  return id;
}

function formatWindowId(kind: WindowKind, start: number): string {
  const iso = new Date(start).toISOString();
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
 * Until when the totals of the window starting at `windowStartMs` are kept: to the end of the window
 * after it, so that the dashboard can show the previous window beside the current one.
 */
export function retainUntil(kind: WindowKind, windowStartMs: number): number {
  return windowEnd(kind, windowEnd(kind, windowStartMs));
}

/** Whether the window starting at `windowStartMs` is neither the current nor the previous one at `nowMs`. */
export function isPrunable(kind: WindowKind, windowStartMs: number, nowMs: number): boolean {
  checkTime(nowMs);
  return nowMs >= retainUntil(kind, windowStartMs);
}
