// An account's Durable Object from workerd tests: its stub, its breaker and day window, running its alarm
// until the outbox (the suspensions, reactivations and alerts it owes Twilio and the operator) is empty,
// and making its next alarm reconcile.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import { SEEN_KEY } from "../../src/breaker/schema.ts";

export function guard(sid: string): DurableObjectStub<AccountGuard> {
  return env.ACCOUNT_GUARD.getByName(sid);
}

/** Runs the account's alarm until its outbox is empty (every pending row made due first); throws if it never empties. */
export async function drainAlarms(sid: string, rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    const pending = await runInDurableObject(guard(sid), (_instance, state) => {
      state.storage.sql.exec("UPDATE outbox SET next_at_ms = 0 WHERE state = 'pending'");
      return state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'").one().n;
    });
    if (pending === 0) return;
    await runDurableObjectAlarm(guard(sid));
  }
  throw new Error(`outbox of ${sid} not drained after ${rounds} alarms`);
}

/**
 * Drops what the account queued for later (outbox rows, its alarm) once a test has checked it: a trip's
 * suspension and alerts would otherwise be retried against the disabled outbound network after the
 * test file ended, and their log lines would reach a runner that has closed its console channel.
 */
export async function quiesce(sid: string): Promise<void> {
  await runInDurableObject(guard(sid), async (_instance, state) => {
    state.storage.sql.exec("DELETE FROM outbox");
    await state.storage.deleteAlarm();
  });
}

/** The account's breaker state: "closed" or "open". */
export async function breakerState(sid: string): Promise<string> {
  return (await guard(sid).snapshot()).breaker.state;
}

/** The day window of the account's snapshot. */
export async function today(sid: string) {
  return (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
}

/** Makes the account's next alarm reconcile with Twilio's usage records. */
export async function reconcileNow(sid: string): Promise<void> {
  await runInDurableObject(guard(sid), (_instance, state) => {
    state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('reconcile_at', '0')");
  });
  await runDurableObjectAlarm(guard(sid));
}

/** Everything the ledger keeps for an account, without what differs by nature (trip ids, the account's Sid). */
export async function ledgerRows(sid: string) {
  return runInDurableObject(guard(sid), (_instance: AccountGuard, state) => {
    const rows = (query: string) => state.storage.sql.exec(query).toArray();
    return {
      totals: rows("SELECT window, window_id, usd_micros, events, counted_micros FROM totals ORDER BY window, window_id"),
      counted: rows(`SELECT count_key, at_ms, usd_micros, settled FROM counted WHERE settled != ${SEEN_KEY} ORDER BY count_key`),
      seen: seenKeys(state.storage.sql),
      recent: rows("SELECT seq, at_ms, kind, sid, status, usd_micros, counted, duplicate, blocked FROM recent_events ORDER BY seq"),
      buckets: rows("SELECT grain, start_ms, usd_micros, events, blocked FROM usage_buckets ORDER BY grain, start_ms"),
      outbox: rows("SELECT kind, state FROM outbox ORDER BY id"),
      trips: rows("SELECT opened_at, reason, detail FROM trips ORDER BY opened_at"),
      warned: rows("SELECT key, at_ms FROM warned ORDER BY key"),
      reservations: rows("SELECT at_ms, kind, usd_micros, unit_micros, state, sid, country FROM egress_reservations ORDER BY at_ms, state"),
      counters: rows("SELECT key, window_end_ms, n FROM egress_counters ORDER BY key"),
      countries: rows("SELECT country, first_at_ms FROM egress_countries ORDER BY country"),
      breaker: (JSON.parse(String(rows("SELECT value FROM meta WHERE key = 'breaker'")[0]?.value ?? "{}")) as { state?: string }).state ?? "closed",
    };
  });
}

/** The egress gate's tables (created with every account today; an account may lack them: src/egress/store.ts). */
export const EGRESS_TABLE_NAMES = ["egress_counters", "egress_countries", "egress_keys", "egress_reservations"] as const;

/**
 * Drops the account's egress tables and evicts its object, as a later schema that creates them on the
 * first gate write would leave an account that never used the gate (schema 5's code runs without them).
 */
export async function dropEgressTables(sid: string): Promise<void> {
  await runInDurableObject(guard(sid), (_i, state) => {
    for (const table of EGRESS_TABLE_NAMES) state.storage.sql.exec(`DROP TABLE IF EXISTS ${table}`);
  });
  await evictDurableObject(guard(sid));
}

/**
 * The event keys an account remembers, as the events name them (`Sid:status`, `idem:…`): since schema 6
 * they are rows of `counted` (src/breaker/schema.ts, seenKey); `seen` holds what a previous release wrote.
 */
export function seenKeys(sql: SqlStorage): Array<{ key: string; at_ms: number }> {
  return sql
    .exec<{ key: string; at_ms: number }>(
      `SELECT CASE WHEN substr(count_key, 1, 5) = 'idem:' THEN count_key ELSE substr(count_key, instr(count_key, ':') + 1) END AS key, at_ms
       FROM counted WHERE settled = ? UNION ALL SELECT key, at_ms FROM seen ORDER BY key`,
      SEEN_KEY,
    )
    .toArray();
}
