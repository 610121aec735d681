// The AccountGuard's window totals in SQLite: read and written here only. A row per window (minute, hour,
// day, month) holds the spend the limits see (usd_micros), the events, what the guard's own events add
// up to (counted_micros; NULL in rows older than schema 3 means usd_micros) and, for a day, Twilio's
// Usage Records figure (twilio_micros; NULL before the first reconciliation). See src/ledger/reconcile.ts.
import type { WindowTotals } from "../ledger/limits.ts";
import type { WindowKind } from "../ledger/policy.ts";
import { windowId, windowStart } from "../ledger/windows.ts";
import { perRowCount, rowPlaceholders } from "../durable/sql.ts";

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

/** Drops the in-memory copy of `sql`'s totals (after a rollback, or when storage may have changed under it). */
export function forgetTotals(sql: SqlStorage): void {
  cached.delete(sql);
}

/** The rows of the windows containing `atMs` (zeros where none is stored yet). */
export function readTotals(sql: SqlStorage, windows: readonly WindowKind[], atMs: number): TotalsRow[] {
  const rows = cacheOf(sql);
  return windows.map((window) => {
    const id = windowId(window, atMs);
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
  const values: Array<string | number | null> = [];
  for (const t of rows) {
    const row = { ...t, usdMicros: Math.max(0, t.usdMicros), events: Math.max(0, t.events), countedMicros: Math.max(0, t.countedMicros) };
    values.push(row.window, row.windowId, windowStart(row.window, atMs), row.usdMicros, row.events, row.countedMicros, row.twilioMicros);
    known.set(row.window, row);
  }
  // One statement for every window (rowPlaceholders: why).
  sql.exec(UPSERT_TOTALS(rows.length), ...values);
}
