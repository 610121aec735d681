// The AccountGuard's window totals in SQLite: read and written here only. A row per window (minute, hour,
// day, month) holds the spend the limits see (usd_micros), the events, what the guard's own events add
// up to (counted_micros; NULL in rows older than schema 3 means usd_micros) and, for a day, Twilio's
// Usage Records figure (twilio_micros; NULL before the first reconciliation). See src/ledger/reconcile.ts.
import type { WindowTotals } from "../ledger/limits.ts";
import type { WindowKind } from "../ledger/policy.ts";
import { windowId, windowStart } from "../ledger/windows.ts";

export interface TotalsRow extends WindowTotals {
  countedMicros: number;
  twilioMicros: number | null;
}

/** Writes one window's row, updating it in place when it exists (no delete + insert). */
const UPSERT_TOTALS =
  "INSERT INTO totals (window, window_id, start_ms, usd_micros, events, counted_micros, twilio_micros) VALUES (?, ?, ?, ?, ?, ?, ?) " +
  "ON CONFLICT (window, window_id) DO UPDATE SET usd_micros = excluded.usd_micros, events = excluded.events, " +
  "counted_micros = excluded.counted_micros, twilio_micros = excluded.twilio_micros";

/** The rows of the windows containing `atMs` (zeros where none is stored yet). */
export function readTotals(sql: SqlStorage, windows: readonly WindowKind[], atMs: number): TotalsRow[] {
  return windows.map((window) => {
    const id = windowId(window, atMs);
    const row = sql
      .exec<{ usd_micros: number; events: number; counted_micros: number | null; twilio_micros: number | null }>(
        "SELECT usd_micros, events, counted_micros, twilio_micros FROM totals WHERE window = ? AND window_id = ?", window, id,
      )
      .toArray()[0];
    const usdMicros = row?.usd_micros ?? 0;
    return { window, windowId: id, usdMicros, events: row?.events ?? 0, countedMicros: row?.counted_micros ?? usdMicros, twilioMicros: row?.twilio_micros ?? null };
  });
}

export function writeTotals(sql: SqlStorage, rows: readonly TotalsRow[], atMs: number): void {
  for (const t of rows) {
    sql.exec(
      UPSERT_TOTALS,
      t.window, t.windowId, windowStart(t.window, atMs), Math.max(0, t.usdMicros), Math.max(0, t.events), Math.max(0, t.countedMicros), t.twilioMicros,
    );
  }
}
