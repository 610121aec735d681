// Bounded storage for an AccountGuard: what each table keeps, and the pruning the alarm runs (at most
// hourly, never on the event path). Measured sizes: docs/storage.md.
import { ALL_WINDOWS, isPrunable, windowStart } from "../ledger/windows.ts";
import { RECENT_EVENTS_KEPT, SEEN_KEY } from "./schema.ts";

/**
 * Twilio retries a webhook for at most a few hours (connection overrides allow up to 5 retries with
 * back-off: https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides); de-duplication
 * keys older than two days can no longer be retries, so they are pruned.
 */
export const SEEN_RETENTION_MS = 48 * 3_600_000;
/**
 * A Sid's price is kept as long as a late status (a `read` days later, a `partially_delivered`) could
 * still add to a window it was counted in: the month, and then this grace, so that a status late by a
 * day across the month's end still finds it (Twilio's own callbacks are retried for hours, not days).
 */
export const COUNTED_GRACE_MS = SEEN_RETENTION_MS;
/** Warnings are remembered per limit and window; the longest window is a month (31 days) plus margin. */
export const WARNED_RETENTION_MS = 40 * 86_400_000;
/** Trip history entries kept (attempts, outcomes). */
export const HISTORY_KEPT = 500;
/** Closed trips kept (the account page shows the newest 50); an open trip is never pruned. */
export const TRIPS_KEPT = 100;
/** Pruning runs at most this often, from the alarm. */
export const PRUNE_INTERVAL_MS = 3_600_000;

/** The first instant whose priced Sids are still kept at `now`: the start of the month of `now - grace`. */
export function countedCutoff(now: number): number {
  return windowStart("month", now - COUNTED_GRACE_MS);
}

/** Prunes every table to its bound at `now`. Returns whether anything is left that a later prune must remove. */
export function pruneAccount(sql: SqlStorage, now: number): { more: boolean } {
  // Event keys live beside their Sids' entries (schema 6); `seen` holds what a previous release wrote.
  // A scan of `counted` (the month's entries and two days of keys), hourly from the alarm: the price of
  // an event's key and entry sharing a page on the event path.
  sql.exec("DELETE FROM counted WHERE settled = ? AND at_ms < ?", SEEN_KEY, now - SEEN_RETENTION_MS);
  sql.exec("DELETE FROM seen WHERE at_ms < ?", now - SEEN_RETENTION_MS);
  // The cutoff moves once a month: the (full) scan of counted runs only then, not every hour.
  const cutoff = countedCutoff(now);
  const pruned = Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'counted_cutoff'").toArray()[0]?.value ?? "0");
  if (cutoff > pruned) {
    sql.exec("DELETE FROM counted WHERE at_ms < ?", cutoff);
    sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('counted_cutoff', ?)", String(cutoff));
  }
  sql.exec("DELETE FROM trigger_firings WHERE at_ms < ?", now - SEEN_RETENTION_MS);
  sql.exec("DELETE FROM warned WHERE at_ms < ?", now - WARNED_RETENTION_MS);
  sql.exec("DELETE FROM history WHERE id <= (SELECT MAX(id) FROM history) - ?", HISTORY_KEPT);
  sql.exec(
    "DELETE FROM trips WHERE closed_at IS NOT NULL AND trip_id NOT IN (SELECT trip_id FROM trips WHERE closed_at IS NOT NULL ORDER BY opened_at DESC LIMIT ?)",
    TRIPS_KEPT,
  );
  // Rows outside the ring's slots: appended by the previous release after a rollback (schema.ts).
  sql.exec("DELETE FROM recent_events WHERE id >= ?", RECENT_EVENTS_KEPT);
  sql.exec("DELETE FROM outbox WHERE state != 'pending' AND next_at_ms < ?", now - SEEN_RETENTION_MS);
  for (const window of ALL_WINDOWS) {
    const rows = sql.exec<{ window_id: string; start_ms: number }>("SELECT window_id, start_ms FROM totals WHERE window = ?", window).toArray();
    for (const r of rows) if (isPrunable(window, r.start_ms, now)) sql.exec("DELETE FROM totals WHERE window = ? AND window_id = ?", window, r.window_id);
  }
  // Idle accounts should not wake up every hour forever: prune again only while keys remain.
  const left = sql.exec<{ n: number }>("SELECT (SELECT COUNT(*) FROM seen) + (SELECT COUNT(*) FROM counted) + (SELECT COUNT(*) FROM trigger_firings) AS n").one().n;
  return { more: left > 0 };
}
