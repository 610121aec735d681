// The AccountGuard's window totals in SQLite: read and written here only. A row per window (minute, hour,
// day, month) holds the spend the limits see (usd_micros), the events, what the guard's own events add
// up to (counted_micros; NULL in rows older than schema 3 means usd_micros) and, for a day, Twilio's
// Usage Records figure (twilio_micros; NULL before the first reconciliation). See src/ledger/reconcile.ts.
import type { WindowTotals } from "../ledger/limits.ts";
import type { WindowKind } from "../ledger/policy.ts";
import { windowId, windowStart } from "../ledger/windows.ts";
import { execRows, perRowCount, rowPlaceholders } from "../durable/sql.ts";

export interface TotalsRow extends WindowTotals {
  countedMicros: number;
  twilioMicros: number | null;
}

/** Writes `n` windows' rows in one statement, updating each in place when it exists (no delete + insert). */
const UPSERT_TOTALS = perRowCount(
  (n) =>
    `INSERT INTO totals (window, window_id, start_ms, usd_micros, events, counted_micros, twilio_micros) VALUES ${rowPlaceholders(n, 7)} ` +
    "ON CONFLICT (window, window_id) DO UPDATE SET usd_micros = excluded.usd_micros, events = excluded.events, " +
    "counted_micros = excluded.counted_micros, twilio_micros = excluded.twilio_micros",
);

/**
 * What each AccountGuard's totals table holds for the latest window of each kind read or written:
 * every event reads the rows of the current windows and writes them back, and only this module writes
 * them (prune.ts deletes only past windows). Storage stays the truth: the copy is dropped with the
 * object's other cached copies when a transaction rolls back, an alarm starts or a prune ran
 * (forgetTotals). At most one row per window kind: bounded memory. Saves the four SELECTs of every
 * event (docs/benchmarks.md: the Durable Object's CPU per event 360 → 315 µs).
 */
const cached = new WeakMap<SqlStorage, Map<WindowKind, TotalsRow>>();

function cacheOf(sql: SqlStorage): Map<WindowKind, TotalsRow> {
  let rows = cached.get(sql);
  if (rows === undefined) cached.set(sql, (rows = new Map()));
  return rows;
}

/**
 * Rows written while `sql`'s totals are deferred (deferTotals: an event transaction of the AccountGuard),
 * by window and window id, with their window's start: readTotals sees them first, flushTotals writes them
 * all in one statement at the transaction's end. So a batch of events writes its totals once, each event
 * still deciding on the totals of the ones before it. Not touched by forgetTotals: the AccountGuard
 * restores them itself when one event of a batch is rolled back (deferredTotals, restoreDeferredTotals).
 */
type Deferred = Map<string, { row: TotalsRow; startMs: number }>;
const deferred = new WeakMap<SqlStorage, Deferred>();

/** From now until flushTotals (or dropDeferredTotals), writeTotals keeps `sql`'s rows in memory. */
export function deferTotals(sql: SqlStorage): void {
  deferred.set(sql, new Map());
}

/** A copy of the rows deferred so far (undefined when not deferring), to restore after a rolled-back savepoint. */
export function deferredTotals(sql: SqlStorage): Deferred | undefined {
  const rows = deferred.get(sql);
  return rows === undefined ? undefined : new Map(rows);
}

export function restoreDeferredTotals(sql: SqlStorage, rows: Deferred): void {
  deferred.set(sql, rows);
}

/** Writes the deferred rows in one statement, and stops deferring. */
export function flushTotals(sql: SqlStorage): void {
  const rows = deferred.get(sql);
  deferred.delete(sql);
  if (rows === undefined || rows.size === 0) return;
  const values: Array<string | number | null> = [];
  for (const { row, startMs } of rows.values()) values.push(row.window, row.windowId, startMs, row.usdMicros, row.events, row.countedMicros, row.twilioMicros);
  execRows(sql, UPSERT_TOTALS, 7, values);
}

/** Stops deferring without writing (the transaction rolled back). */
export function dropDeferredTotals(sql: SqlStorage): void {
  deferred.delete(sql);
}

/** Drops the in-memory copy of `sql`'s totals (after a rollback, or when storage may have changed under it). */
export function forgetTotals(sql: SqlStorage): void {
  cached.delete(sql);
}

/** The rows of the windows containing `atMs` (zeros where none is stored yet). */
export function readTotals(sql: SqlStorage, windows: readonly WindowKind[], atMs: number): TotalsRow[] {
  const rows = cacheOf(sql);
  return windows.map((window) => {
    const id = windowId(window, atMs);
    const pending = deferred.get(sql)?.get(`${window} ${id}`);
    if (pending !== undefined) return { ...pending.row };
    const known = rows.get(window);
    if (known !== undefined && known.windowId === id) return { ...known };
    const row = sql
      .exec<{ usd_micros: number; events: number; counted_micros: number | null; twilio_micros: number | null }>(
        "SELECT usd_micros, events, counted_micros, twilio_micros FROM totals WHERE window = ? AND window_id = ?", window, id,
      )
      .toArray()[0];
    const usdMicros = row?.usd_micros ?? 0;
    const read = { window, windowId: id, usdMicros, events: row?.events ?? 0, countedMicros: row?.counted_micros ?? usdMicros, twilioMicros: row?.twilio_micros ?? null };
    rows.set(window, read);
    return { ...read };
  });
}

export function writeTotals(sql: SqlStorage, rows: readonly TotalsRow[], atMs: number): void {
  if (rows.length === 0) return;
  const known = cacheOf(sql);
  const later = deferred.get(sql);
  const values: Array<string | number | null> = [];
  for (const t of rows) {
    const row = { ...t, usdMicros: Math.max(0, t.usdMicros), events: Math.max(0, t.events), countedMicros: Math.max(0, t.countedMicros) };
    const startMs = windowStart(row.window, atMs);
    if (later !== undefined) later.set(`${row.window} ${row.windowId}`, { row, startMs });
    else values.push(row.window, row.windowId, startMs, row.usdMicros, row.events, row.countedMicros, row.twilioMicros);
    known.set(row.window, row);
  }
  // One statement for every window (rowPlaceholders: why).
  if (values.length > 0) sql.exec(UPSERT_TOTALS(rows.length), ...values);
}
