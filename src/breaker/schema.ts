// The AccountGuard's SQLite schema and its migrations. Kept apart from the Durable Object so that the
// storage layout can be reviewed (and tested against an old layout) on its own.
//
// Why the layout is what it is: every event's transaction is committed by copying the pages it dirtied
// into the WAL, so the cost of an event is mostly the number of B-tree pages it touches
// (docs/benchmarks.md, "Inside the Durable Object"). Hence:
//   - key/value tables are WITHOUT ROWID (https://www.sqlite.org/withoutrowid.html): a rowid table with
//     a TEXT PRIMARY KEY is two B-trees (the table and its automatic index), written twice per insert;
//   - recent_events is a ring of RECENT_EVENTS_KEPT slots (`id` = seq modulo the ring), replaced in
//     place: no AUTOINCREMENT (whose sqlite_sequence row is one more write per insert) and no delete per
//     insert.
// Schema 3 (this release; nothing was released past 2) only adds, in one step from 2: two nullable
// columns to totals, counted_micros (what the guard's own events add up to; NULL in older rows means
// usd_micros) and twilio_micros (Twilio's Usage Records figure for a day row; NULL before the first
// reconciliation, src/ledger/reconcile.ts); usage_buckets (the hour/day history behind the usage charts,
// src/ledger/buckets.ts) and recent_events.blocked; the REST egress gate's tables (EGRESS_TABLES).
// Rolling back: schema 2's statements work on schema 3 (new columns are nullable or defaulted, no column renamed),
// but schema 2's code refuses a newer version number; from schema 3 on, the check reads `schema_min`,
// the oldest version whose code can run on the layout, so the next version can be rolled back to this one.
//
// Schema 4 only adds, in place from 3: usage_buckets.countries, the egress gate's sends of the bucket by
// destination country (src/ledger/countries.ts; NULL when the bucket had none), filled at the upgrade from
// the reservations still kept (the last 48 hours). Schema 3's statements never name the column, so 3's
// code runs on 4 (schema_min stays 3); sends it records meanwhile are missing from the country figures.
//
// Schema 5 changes no table: it names the first code that runs without the egress gate's tables
// (src/egress/store.ts reads their absence as empty and creates them on the account's first gate write).
// A later version may then leave them out of accounts that never use the gate with schema_min 5: the
// code before 5 reads them on the event path (a call's rate, a status callback's reservation) and in the
// prune, and would fail on such an account, so it must not run there.
//
// Schema 6 moves the de-duplication keys into `counted`, beside their Sid's entry, so that an event's two
// rows (its key and its Sid's price) are in one B-tree and, for a webhook event, on one leaf page: an
// event's commit copies one page less into the WAL, and the event reads both rows in one statement and
// writes them in one (docs/benchmarks.md, issue 15). A key is stored as seenKey() makes it, the event's
// `Sid:status` behind its count key's `msg:`/`call:` (`msg:SM…:received` sorts right after `msg:SM…`), an
// idempotency token as `idem:…`; its row has settled = SEEN_KEY (-1), usd_micros 0, and is pruned after
// SEEN_RETENTION_MS as `seen` rows were. The migration moves `seen`'s rows in place and empties `seen`,
// which stays (the previous release writes it). Schema 4's and 5's code run on 6 (schema_min stays 3): they read
// `counted` only by a count key (`msg:`/`call:` + Sid, never equal to a stored event key), so it never
// sees the moved keys, and it prunes them with the month's entries. What a rollback loses is the
// duplicate mark of a retry whose first delivery the other release recorded (its key is in the other
// table): the retry is answered as a first delivery, and still counted once, because a Sid's entry alone
// decides its counting (src/ledger/entries.ts: settling or reserving a Sid already in the ledger adds
// nothing). The current code prunes what the previous release left in `seen`.
//
// Rolling back is safe: the first release's statements still work on schema 2 (the same column names,
// WITHOUT ROWID changes no statement, `seq` has a default), and what it appends to recent_events outside
// the ring is pruned once the new release runs again (AccountGuard's alarm).

import type { Schema } from "../durable/base.ts";
import { bucketsFor, oldestKept, type Grain } from "../ledger/buckets.ts";
import { addSend, encodeCountries, type CountryMap } from "../ledger/countries.ts";

/**
 * Schema generations. 1: the first release (rowid tables, recent_events appended and trimmed);
 * 2: WITHOUT ROWID key/value tables, the recent_events ring; 3: reconciled totals, the usage buckets,
 * recent_events.blocked and the egress gate's tables; 4: the usage buckets' sends by destination country;
 * 5: the same layout, code that runs without the egress gate's tables.
 * 6: the de-duplication keys in `counted`, beside their Sid's entry.
 */
export const ACCOUNT_SCHEMA_VERSION = 6;
/** The oldest version whose code can run on this layout (kept in meta('schema_min')). */
export const ACCOUNT_SCHEMA_MIN = 3;

/**
 * The egress gate (src/egress/store.ts): reservations of sends (by id, and by the Sid Twilio gave),
 * pumping counters per rule key and window, destination countries seen, and the account's egress keys
 * (SHA-256 hashes only, never a key).
 */
export const EGRESS_TABLES = `
  CREATE TABLE IF NOT EXISTS egress_reservations (id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    usd_micros INTEGER NOT NULL, unit_micros INTEGER NOT NULL, state TEXT NOT NULL, sid TEXT, country TEXT) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS egress_reservations_by_sid ON egress_reservations (sid);
  CREATE TABLE IF NOT EXISTS egress_counters (key TEXT PRIMARY KEY, window_end_ms INTEGER NOT NULL, n INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS egress_countries (country TEXT PRIMARY KEY, first_at_ms INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS egress_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
    last_used_at_ms INTEGER, revoked_at_ms INTEGER) WITHOUT ROWID;
`;

/** counted.settled of a row that is an event's de-duplication key, not a Sid's entry (schema 6). */
export const SEEN_KEY = -1;

/**
 * Where an event's de-duplication key (`Sid:status`, src/ledger/classify.ts) is kept: behind its Sid's
 * count key's kind (`msg:`, `call:`), so it sorts right after the entry (`msg:SM…` then `msg:SM…:received`).
 * One key per dedupe key: the kind is the Sid's (a CA Sid is a call's, an SM or MM Sid a message's).
 */
export function seenKey(countKey: string, dedupeKey: string): string {
  return countKey.slice(0, countKey.indexOf(":") + 1) + dedupeKey;
}

/** The account page shows this many recent events; the ring has exactly this many slots. */
export const RECENT_EVENTS_KEPT = 50;

const TABLES_V2 = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS totals (window TEXT NOT NULL, window_id TEXT NOT NULL, start_ms INTEGER NOT NULL,
    usd_micros INTEGER NOT NULL, events INTEGER NOT NULL, PRIMARY KEY (window, window_id)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS counted (count_key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, usd_micros INTEGER NOT NULL,
    settled INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS recent_events (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL DEFAULT 0, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    sid TEXT NOT NULL, status TEXT NOT NULL, usd_micros INTEGER NOT NULL, counted INTEGER NOT NULL, duplicate INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS warned (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS trips (trip_id TEXT PRIMARY KEY, opened_at INTEGER NOT NULL, reason TEXT NOT NULL,
    detail TEXT NOT NULL, closed_at INTEGER);
  CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, trip_id TEXT,
    kind TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, trip_id TEXT NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL, state TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at_ms);
  CREATE TABLE IF NOT EXISTS trigger_firings (token TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID;
`;

/** Version 1 tables that version 2 rebuilds, with the columns copied across. */
const REBUILT_IN_V2: ReadonlyArray<readonly [table: string, columns: string]> = [
  ["meta", "key, value"],
  ["totals", "window, window_id, start_ms, usd_micros, events"],
  ["seen", "key, at_ms"],
  ["counted", "count_key, at_ms, usd_micros, settled"],
  ["warned", "key, at_ms"],
  ["trigger_firings", "token, at_ms"],
];

/** Version 3's additions: the usage history (bounded by the prune: 48 hour rows, 90 day rows) and blocked events. */
const ADDED_IN_V3 = `
  CREATE TABLE IF NOT EXISTS usage_buckets (grain TEXT NOT NULL, start_ms INTEGER NOT NULL, usd_micros INTEGER NOT NULL,
    events INTEGER NOT NULL, blocked INTEGER NOT NULL, PRIMARY KEY (grain, start_ms)) WITHOUT ROWID;
  ALTER TABLE recent_events ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
`;

/** Version 4's addition: per bucket, the egress gate's sends by destination country (encodeCountries). */
const ADDED_IN_V4 = "ALTER TABLE usage_buckets ADD COLUMN countries TEXT";

/**
 * Schema 3 to 4, in place: the column, then the country figures of the sends whose reservations are
 * still kept (held, bound or unknown; a bound send at its counted price), through the same pure
 * transition a new send takes, so the bound holds for them too.
 */
function migrateToV4(sql: SqlStorage, nowMs: number): void {
  sql.exec(ADDED_IN_V4);
  const sends = sql
    .exec<{ at_ms: number; usd_micros: number; country: string | null }>(
      `SELECT r.at_ms, COALESCE(c.usd_micros, r.usd_micros) AS usd_micros, r.country FROM egress_reservations r
       LEFT JOIN counted c ON c.count_key = (CASE r.kind WHEN 'call' THEN 'call:' ELSE 'msg:' END) || r.sid
       WHERE r.state IN ('held', 'bound', 'unknown') ORDER BY r.at_ms`,
    )
    .toArray();
  const maps = new Map<string, { grain: Grain; startMs: number; map: CountryMap }>();
  for (const s of sends) {
    for (const b of bucketsFor(s.at_ms)) {
      if (b.startMs < oldestKept(b.grain, nowMs)) continue;
      const id = `${b.grain}:${b.startMs}`;
      const entry = maps.get(id) ?? { ...b, map: new Map() };
      entry.map = addSend(entry.map, s.country, { sends: 1, usdMicros: s.usd_micros, blocked: 0 });
      maps.set(id, entry);
    }
  }
  for (const { grain, startMs, map } of maps.values()) {
    sql.exec(
      `INSERT INTO usage_buckets (grain, start_ms, usd_micros, events, blocked, countries) VALUES (?, ?, 0, 0, 0, ?)
       ON CONFLICT (grain, start_ms) DO UPDATE SET countries = excluded.countries`,
      grain, startMs, encodeCountries(map),
    );
  }
}

/**
 * Schema 5 to 6, in place: `seen`'s keys into `counted` as seenKey() writes them (a CallSid's keys behind
 * `call:`, a MessageSid's behind `msg:`, idempotency tokens as they are), then `seen` emptied.
 */
function migrateToV6(sql: SqlStorage): void {
  sql.exec(
    `INSERT OR IGNORE INTO counted (count_key, at_ms, usd_micros, settled)
     SELECT CASE WHEN substr(key, 1, 5) = 'idem:' THEN key WHEN substr(key, 1, 2) = 'CA' THEN 'call:' || key ELSE 'msg:' || key END, at_ms, 0, ? FROM seen`,
    SEEN_KEY,
  );
  sql.exec("DELETE FROM seen");
}

/** Schema 2 to 3, in place: only additions (see the top of this file). */
function migrateToV3(sql: SqlStorage): void {
  // Both figures of a reconciled day (src/ledger/reconcile.ts).
  sql.exec("ALTER TABLE totals ADD COLUMN counted_micros INTEGER");
  sql.exec("ALTER TABLE totals ADD COLUMN twilio_micros INTEGER");
  sql.exec(ADDED_IN_V3);
  // The history starts with what the ledger still holds: the current and previous hour and day totals.
  sql.exec(
    `INSERT OR IGNORE INTO usage_buckets (grain, start_ms, usd_micros, events, blocked)
     SELECT window, start_ms, usd_micros, events, 0 FROM totals WHERE window IN ('hour', 'day')`,
  );
  sql.exec(EGRESS_TABLES);
}

export function accountSchemaVersion(sql: SqlStorage): number {
  const meta = sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'").toArray();
  if (meta.length === 0) return 0;
  const row = sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").toArray()[0];
  return row === undefined ? 1 : Number(row.value);
}

/**
 * Brings the database to ACCOUNT_SCHEMA_VERSION: creates it when empty, rebuilds a version 1 database
 * in place keeping every row (and the newest RECENT_EVENTS_KEPT recent events, in order). Must run inside
 * a transaction (the caller's transactionSync), so a failed migration leaves version 1 untouched.
 * Returns the version found.
 */
export function migrateAccountSchema(sql: SqlStorage, nowMs: number = Date.now()): number {
  const found = accountSchemaVersion(sql);
  if (found === ACCOUNT_SCHEMA_VERSION) return found;
  if (found > ACCOUNT_SCHEMA_VERSION) {
    const min = Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema_min'").toArray()[0]?.value ?? found);
    if (min <= ACCOUNT_SCHEMA_VERSION) return found;
    throw new Error(`account storage is schema ${found}, newer than this code (${ACCOUNT_SCHEMA_VERSION})`);
  }
  if (found < 2) migrateToV2(sql, found);
  if (found < 3) migrateToV3(sql);
  if (found < 4) migrateToV4(sql, nowMs);
  // 5: no table changes (see the top of this file).
  if (found < 6) migrateToV6(sql);
  sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?), ('schema_min', ?)", String(ACCOUNT_SCHEMA_VERSION), String(ACCOUNT_SCHEMA_MIN));
  return found;
}

/** The AccountGuard's schema for GuardObject: lazy, so reading an account never written creates nothing. */
export const ACCOUNT_SCHEMA: Schema = {
  version: ACCOUNT_SCHEMA_VERSION,
  lazy: true,
  found: accountSchemaVersion,
  // A meta table without the key is the first release's (see accountSchemaVersion).
  foundInMeta: (schema) => (schema === null ? 1 : Number(schema)),
  migrate: migrateAccountSchema,
};

/** Schema 0 (empty) or 1 to schema 2. */
function migrateToV2(sql: SqlStorage, found: number): void {
  if (found === 1) {
    for (const [table] of REBUILT_IN_V2) sql.exec(`ALTER TABLE ${table} RENAME TO ${table}_v1`);
    sql.exec("ALTER TABLE recent_events RENAME TO recent_events_v1");
  }
  // trips, history and outbox (with its index) have the same layout in both versions: kept as they are.
  sql.exec(TABLES_V2);
  if (found === 1) {
    for (const [table, columns] of REBUILT_IN_V2) {
      sql.exec(`INSERT INTO ${table} (${columns}) SELECT ${columns} FROM ${table}_v1`);
      sql.exec(`DROP TABLE ${table}_v1`);
    }
    // The newest events keep their order: seq follows the old id, the slot (id) is seq modulo the ring.
    sql.exec(
      `INSERT OR IGNORE INTO recent_events (id, seq, at_ms, kind, sid, status, usd_micros, counted, duplicate)
       SELECT id % ?, id, at_ms, kind, sid, status, usd_micros, counted, duplicate
       FROM recent_events_v1 ORDER BY id DESC LIMIT ?`,
      RECENT_EVENTS_KEPT, RECENT_EVENTS_KEPT,
    );
    sql.exec("DROP TABLE recent_events_v1");
  }
}
