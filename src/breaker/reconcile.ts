// Reconciliation with Twilio's Usage Records, run by the AccountGuard's alarm every RECONCILE_INTERVAL_S
// while the account is active today: GET …/Usage/Records/Today.json?Category=totalprice, then the pure
// reconcileDay (src/ledger/reconcile.ts): the day keeps the guard's count and Twilio's figure, and its
// spend is the larger, so a callback Twilio's figure already includes is not counted again.
import type { Logger } from "../observability/log.ts";
import { applyEvent, limitLabel } from "../ledger/limits.ts";
import type { Policy } from "../ledger/policy.ts";
import { fromMicros, toMicros } from "../ledger/pricing.ts";
import { reconcileDay } from "../ledger/reconcile.ts";
import { windowId } from "../ledger/windows.ts";
import type { TwilioClient } from "../twilio/rest.ts";
import { readTotals, writeTotals } from "./totals.ts";

export interface ReconcileHost {
  readonly sql: SqlStorage;
  readonly logger: Logger;
  sid(): string | null;
  intervalS(): number;
  client(): TwilioClient;
  policy(): Policy;
  meta(key: string): string | null;
  setMeta(key: string, value: string): void;
  deleteMeta(key: string): void;
  transaction<T>(fn: () => T): T;
  history(now: number, tripId: string | null, kind: string, outcome: string, detail: string): void;
  /** Opens the breaker (once per trip); true when outbox rows were queued. */
  trip(reason: string, detail: string, now: number): boolean;
  /** What Twilio's figure raised the day by (the usage history's day bucket). */
  raised(now: number, usdMicros: number): void;
}

/** Reconciles today's spend if it is due. True when outbox rows were queued (a trip). */
export async function reconcileIfDue(host: ReconcileHost, now: number): Promise<boolean> {
  const due = host.meta("reconcile_at");
  const interval = host.intervalS();
  const sid = host.sid();
  if (due === null || Number(due) > now || sid === null) return false;
  if (interval <= 0) {
    host.deleteMeta("reconcile_at");
    return false;
  }
  const [day] = readTotals(host.sql, ["day"], now);
  if (day!.events === 0) {
    // No activity today: stop polling until the next event.
    host.deleteMeta("reconcile_at");
    return false;
  }
  host.setMeta("reconcile_at", String(now + interval * 1000));
  let twilioUsd: number | null;
  try {
    twilioUsd = await host.client().usageTodayUsd(sid);
  } catch (error) {
    host.logger.warn("reconcile-failed", { account: sid, error: error instanceof Error ? host.logger.redact(error.message) : "failed" });
    return false;
  }
  if (twilioUsd === null) return false;
  const twilioMicros = toMicros(Math.abs(twilioUsd));
  const policy = host.policy();
  return host.transaction(() => applyTwilioFigure(host, policy, now, twilioMicros));
}

/** Records Twilio's figure for the day of `now`; raises the day and month by what it adds. */
export function applyTwilioFigure(host: ReconcileHost, policy: Policy, now: number, twilioMicros: number): boolean {
  const rows = readTotals(host.sql, ["day", "month"], now);
  const day = rows[0]!;
  const change = reconcileDay({ countedMicros: day.countedMicros, twilioMicros: day.twilioMicros }, twilioMicros);
  const raised = change.perWindow.day.usdMicros;
  const evaluation = applyEvent(policy, rows, now, { usdMicros: 0, events: 0 }, change.perWindow);
  writeTotals(
    host.sql,
    rows.map((r) => {
      const after = evaluation.totals.find((t) => t.window === r.window)!;
      return { ...r, usdMicros: after.usdMicros, twilioMicros: r.window === "day" ? change.day.twilioMicros : r.twilioMicros };
    }),
    now,
  );
  if (raised === 0) return false;
  host.raised(now, raised);
  host.history(
    now, null, "reconcile", "raised",
    `Twilio reports ${fromMicros(twilioMicros).toFixed(4)} USD today, the guard counted ${fromMicros(day.countedMicros).toFixed(4)}: the day is now ${fromMicros(day.usdMicros + raised).toFixed(4)}`,
  );
  if (evaluation.crossed === null) return false;
  const label = limitLabel(evaluation.crossed);
  return host.trip(`limit ${label}`, `crossed ${label} in ${windowId(evaluation.crossed.window, now)} by reconciliation with Twilio's usage records`, now);
}
