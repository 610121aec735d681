// The AccountGuard's storage layout: a new object starts at the current schema, and an object written by
// the first release (schema 1) is rebuilt in place on its next start, keeping its money state.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ACCOUNT_SCHEMA_VERSION, RECENT_EVENTS_KEPT, SEEN_KEY, migrateAccountSchema, seenKey } from "../../src/breaker/schema.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { ALL_WINDOWS, windowId, windowStart } from "../../src/ledger/windows.ts";
import { callStatus, uniqueSid } from "../support/twilio.ts";
import { guard, seenKeys } from "../support/guard.ts";

/** The first release's tables, exactly as it created them. */
const SCHEMA_V1 = `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE totals (window TEXT NOT NULL, window_id TEXT NOT NULL, start_ms INTEGER NOT NULL,
    usd_micros INTEGER NOT NULL, events INTEGER NOT NULL, PRIMARY KEY (window, window_id));
  CREATE TABLE seen (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
  CREATE TABLE counted (count_key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, usd_micros INTEGER NOT NULL, settled INTEGER NOT NULL);
  CREATE TABLE recent_events (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    sid TEXT NOT NULL, status TEXT NOT NULL, usd_micros INTEGER NOT NULL, counted INTEGER NOT NULL, duplicate INTEGER NOT NULL);
  CREATE TABLE warned (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
  CREATE TABLE trips (trip_id TEXT PRIMARY KEY, opened_at INTEGER NOT NULL, reason TEXT NOT NULL,
    detail TEXT NOT NULL, closed_at INTEGER);
  CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, trip_id TEXT,
    kind TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);
  CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, trip_id TEXT NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL, state TEXT NOT NULL);
  CREATE INDEX outbox_due ON outbox (state, next_at_ms);
  CREATE TABLE trigger_firings (token TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
`;

const OWN_TABLES = ["meta", "totals", "seen", "counted", "recent_events", "warned", "trips", "history", "outbox", "trigger_firings"];


function sms(account: string, messageSid = uniqueSid("SM")): BillableEvent {
  const event = classifyWebhook(new Map([["AccountSid", account], ["MessageSid", messageSid], ["SmsSid", messageSid], ["SmsStatus", "received"], ["NumSegments", "1"], ["NumMedia", "0"]]));
  if (event.kind === "not-billable") throw new Error(event.reason);
  return event;
}

/** Replaces the object's tables with a schema-1 database holding three counted events of today. */
async function writeSchemaV1(sid: string, now: number, messageSids: string[]): Promise<void> {
  await runInDurableObject(guard(sid), (_instance, state) => {
    const sql = state.storage.sql;
    for (const table of OWN_TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
    sql.exec(SCHEMA_V1);
    sql.exec("INSERT INTO meta (key, value) VALUES ('sid', ?), ('registered', ?), ('policy', ?)", sid, String(now),
      JSON.stringify({ limits: [{ window: "day", events: 5 }], warnAt: 0.8, action: "suspend" }));
    for (const window of ALL_WINDOWS) {
      sql.exec("INSERT INTO totals VALUES (?, ?, ?, ?, ?)", window, windowId(window, now), windowStart(window, now), 3 * 7900, 3);
    }
    for (const messageSid of messageSids) {
      sql.exec("INSERT INTO seen (key, at_ms) VALUES (?, ?)", `${messageSid}:received`, now);
      sql.exec("INSERT INTO counted VALUES (?, ?, ?, 1)", messageSid, now, 7900);
    }
    // 60 recent events written by the first release; it kept the newest 50 (ids 11–60).
    for (let id = 1; id <= 60; id++) {
      sql.exec("INSERT INTO recent_events (at_ms, kind, sid, status, usd_micros, counted, duplicate) VALUES (?, 'inbound-message', ?, 'received', 0, 0, 0)", now + id, `SM${id}`);
    }
    sql.exec("DELETE FROM recent_events WHERE id <= 10");
    sql.exec("INSERT INTO warned VALUES ('events:5@day', ?)", now);
    sql.exec("INSERT INTO trips VALUES ('trip-1', ?, 'operator', 'drill', ?)", now - 1000, now - 500);
    sql.exec("INSERT INTO history (at_ms, trip_id, kind, outcome, detail) VALUES (?, 'trip-1', 'trip', 'open', 'drill')", now - 1000);
    sql.exec("INSERT INTO trigger_firings VALUES ('idem-fired', ?)", now);
  });
}

describe("migrateAccountSchema", () => {
  it("creates the current schema in an empty database, and then does nothing", async () => {
    const sid = uniqueSid();
    const found = await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      for (const table of OWN_TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      return [state.storage.transactionSync(() => migrateAccountSchema(sql)), state.storage.transactionSync(() => migrateAccountSchema(sql))];
    });
    expect(found).toEqual([0, ACCOUNT_SCHEMA_VERSION]);
  });

  it("declares the key/value tables WITHOUT ROWID and the recent events as a ring", async () => {
    const sid = uniqueSid();
    const ddl = await runInDurableObject(guard(sid), (_instance, state): Record<string, string> => {
      state.storage.transactionSync(() => migrateAccountSchema(state.storage.sql));
      return Object.fromEntries(state.storage.sql.exec<{ name: string; sql: string }>("SELECT name, sql FROM sqlite_master WHERE type = 'table'").toArray().map((r) => [r.name, r.sql]));
    });
    for (const table of ["meta", "totals", "seen", "counted", "warned", "trigger_firings"]) expect(ddl[table]).toMatch(/WITHOUT ROWID\s*$/);
    expect(ddl["recent_events"]).toContain("id INTEGER PRIMARY KEY");
    expect(ddl["recent_events"]).not.toContain("AUTOINCREMENT");
  });

  it("refuses a database written by a newer version", async () => {
    const sid = uniqueSid();
    const message = await runInDurableObject(guard(sid), (_instance, state) => {
      state.storage.transactionSync(() => migrateAccountSchema(state.storage.sql));
      state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', '99'), ('schema_min', '99')");
      try {
        state.storage.transactionSync(() => migrateAccountSchema(state.storage.sql));
        return "migrated";
      } catch (error) {
        return (error as Error).message;
      } finally {
        state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?), ('schema_min', ?)", String(ACCOUNT_SCHEMA_VERSION), String(ACCOUNT_SCHEMA_VERSION));
      }
    });
    expect(message).toMatch(/schema 99, newer than this code/);
  });

  it("runs on a newer version whose schema_min says this code can use it", async () => {
    const sid = uniqueSid();
    const found = await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      state.storage.transactionSync(() => migrateAccountSchema(sql));
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?), ('schema_min', ?)", String(ACCOUNT_SCHEMA_VERSION + 1), String(ACCOUNT_SCHEMA_VERSION));
      try {
        return state.storage.transactionSync(() => migrateAccountSchema(sql));
      } finally {
        sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", String(ACCOUNT_SCHEMA_VERSION));
      }
    });
    expect(found).toBe(ACCOUNT_SCHEMA_VERSION + 1);
  });

  it("creates nothing for an account only read: the schema waits for the first write", async () => {
    const sid = uniqueSid();
    expect((await guard(sid).snapshot()).sid).toBe("");
    const tables = await runInDurableObject(guard(sid), (_instance, state) =>
      state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'").toArray().map((r) => r.name),
    );
    expect(tables).toEqual([]);
  });
});

/** Schema 2's tables, exactly as the previous release created them. */
const SCHEMA_V2 = `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE totals (window TEXT NOT NULL, window_id TEXT NOT NULL, start_ms INTEGER NOT NULL,
    usd_micros INTEGER NOT NULL, events INTEGER NOT NULL, PRIMARY KEY (window, window_id)) WITHOUT ROWID;
  CREATE TABLE seen (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE counted (count_key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, usd_micros INTEGER NOT NULL, settled INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE recent_events (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL DEFAULT 0, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    sid TEXT NOT NULL, status TEXT NOT NULL, usd_micros INTEGER NOT NULL, counted INTEGER NOT NULL, duplicate INTEGER NOT NULL);
  CREATE TABLE warned (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE trips (trip_id TEXT PRIMARY KEY, opened_at INTEGER NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, closed_at INTEGER);
  CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, trip_id TEXT, kind TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);
  CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, trip_id TEXT NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL, state TEXT NOT NULL);
  CREATE INDEX outbox_due ON outbox (state, next_at_ms);
  CREATE TABLE trigger_firings (token TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID;
`;

describe("an AccountGuard written by schema 2", () => {
  it("keeps its totals as the guard's own count, and reconciles on top of them once", async () => {
    const sid = uniqueSid();
    const now = Date.now();
    const messageSid = uniqueSid("SM");
    await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      for (const table of OWN_TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      sql.exec(SCHEMA_V2);
      sql.exec("INSERT INTO meta (key, value) VALUES ('schema', '2'), ('sid', ?), ('registered', ?), ('policy', ?)", sid, String(now),
        JSON.stringify({ limits: [{ window: "day", usd: 100 }], warnAt: 0.8, action: "suspend" }));
      for (const window of ALL_WINDOWS) sql.exec("INSERT INTO totals VALUES (?, ?, ?, ?, ?)", window, windowId(window, now), windowStart(window, now), 10_000_000, 1);
      sql.exec("INSERT INTO seen (key, at_ms) VALUES (?, ?)", `${messageSid}:delivered`, now);
      sql.exec("INSERT INTO counted VALUES (?, ?, 10000000, 1)", `msg:${messageSid}`, now);
    });
    await evictDurableObject(guard(sid));

    const before = (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
    expect(before).toMatchObject({ usd: 10, countedUsd: 10, twilioUsd: null, events: 1 });
    const layout = await runInDurableObject(guard(sid), (_instance, state) => ({
      version: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").one().value,
      columns: state.storage.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('totals')").toArray().map((c) => c.name),
    }));
    expect(layout.version).toBe(String(ACCOUNT_SCHEMA_VERSION));
    expect(layout.columns).toEqual(expect.arrayContaining(["counted_micros", "twilio_micros"]));
    // A late status of the message counted under schema 2 is still recognised (per-Sid pricing kept).
    const late = classifyWebhook(new Map([["AccountSid", sid], ["MessageSid", messageSid], ["MessageStatus", "read"], ["Price", "-10.0"], ["PriceUnit", "USD"]]));
    if (late.kind === "not-billable") throw new Error(late.reason);
    await guard(sid).record(late, null);
    expect((await guard(sid).snapshot()).windows.find((w) => w.window === "day")).toMatchObject({ usd: 10, events: 1 });
  });
});

describe("an AccountGuard written by the first release", () => {
  it("keeps its totals, policy and recent events when it starts on the new schema", async () => {
    const sid = uniqueSid();
    const now = Date.now();
    await writeSchemaV1(sid, now, [uniqueSid("SM"), uniqueSid("SM"), uniqueSid("SM")]);
    await evictDurableObject(guard(sid));

    const snapshot = await guard(sid).snapshot();
    expect(snapshot.sid).toBe(sid);
    expect(snapshot.policySource).toBe("account");
    expect(snapshot.windows.find((w) => w.window === "day")).toMatchObject({ events: 3 });
    expect(snapshot.recentEvents).toHaveLength(RECENT_EVENTS_KEPT);
    expect(snapshot.recentEvents[0]!.sid).toBe("SM60");
    expect(snapshot.recentEvents.at(-1)!.sid).toBe("SM11");
    expect(snapshot.trips).toEqual([expect.objectContaining({ tripId: "trip-1", reason: "operator" })]);
    const schema = await runInDurableObject(guard(sid), (_instance, state) => ({
      version: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").one().value,
      leftovers: state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name LIKE '%_v1'").toArray().length,
      firings: state.storage.sql.exec("SELECT * FROM trigger_firings").toArray().length,
      warned: state.storage.sql.exec("SELECT * FROM warned").toArray().length,
    }));
    expect(schema).toEqual({ version: String(ACCOUNT_SCHEMA_VERSION), leftovers: 0, firings: 1, warned: 1 });
  });

  it("still recognises the events it counted before, and counts new ones once", async () => {
    const sid = uniqueSid();
    const now = Date.now();
    const counted = [uniqueSid("SM"), uniqueSid("SM"), uniqueSid("SM")];
    await writeSchemaV1(sid, now, counted);
    await evictDurableObject(guard(sid));

    expect(await guard(sid).record(sms(sid, counted[0]), null)).toEqual({ duplicate: true, blocked: false });
    const fresh = sms(sid);
    expect(await guard(sid).record(fresh, "idem-new")).toEqual({ duplicate: false, blocked: false });
    expect(await guard(sid).record(fresh, "idem-new")).toEqual({ duplicate: true, blocked: false });
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.windows.find((w) => w.window === "day")).toMatchObject({ events: 4 });
    expect(snapshot.recentEvents.slice(0, 3).map((e) => [e.sid, e.duplicate])).toEqual([
      [fresh.sid, true],
      [fresh.sid, false],
      [counted[0], true],
    ]);
    expect(snapshot.recentEvents).toHaveLength(RECENT_EVENTS_KEPT);
  });
});

describe("rolling back to the first release after schema 2", () => {
  it("leaves the first release's event-path statements working, and the next start prunes what it appended", async () => {
    const sid = uniqueSid();
    const earlier = Array.from({ length: RECENT_EVENTS_KEPT }, () => sms(sid));
    for (const event of earlier) await guard(sid).record(event, null); // the ring is full: ids 0–49
    const now = Date.now();
    const rolledBack = uniqueSid("SM");
    // The first release's own statements for one event (account-guard.ts at 9eb8685), run on schema 2.
    const appendedId = await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      return state.storage.transactionSync(() => {
        sql.exec("INSERT OR IGNORE INTO seen (key, at_ms) VALUES (?, ?)", `${rolledBack}:received`, now);
        sql.exec("INSERT INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, ?, ?)", rolledBack, now, 7900, 1);
        sql.exec("INSERT INTO recent_events (at_ms, kind, sid, status, usd_micros, counted, duplicate) VALUES (?, ?, ?, ?, ?, ?, ?)", now, "inbound-message", rolledBack, "received", 7900, 1, 0);
        const id = sql.exec<{ id: number }>("SELECT last_insert_rowid() AS id").one().id;
        sql.exec("DELETE FROM recent_events WHERE id = last_insert_rowid() - ?", RECENT_EVENTS_KEPT);
        sql.exec("INSERT OR REPLACE INTO totals (window, window_id, start_ms, usd_micros, events) VALUES (?, ?, ?, ?, ?)", "day", windowId("day", now), windowStart("day", now), (RECENT_EVENTS_KEPT + 1) * 7900, RECENT_EVENTS_KEPT + 1);
        sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", "prune_at", "0");
        return id;
      });
    });
    expect(appendedId).toBe(RECENT_EVENTS_KEPT); // outside the ring's slots

    await evictDurableObject(guard(sid)); // the new release starts again
    const after = sms(sid);
    expect(await guard(sid).record(after, null)).toEqual({ duplicate: false, blocked: false });
    expect(await guard(sid).record(sms(sid, rolledBack), null)).toEqual({ duplicate: true, blocked: false });
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.windows.find((w) => w.window === "day")).toMatchObject({ events: RECENT_EVENTS_KEPT + 2 });
    expect(snapshot.recentEvents[0]!.sid).toBe(rolledBack); // the duplicate, just recorded
    expect(snapshot.recentEvents[1]!.sid).toBe(after.sid);

    await runDurableObjectAlarm(guard(sid)); // prune_at is due
    const rows = await runInDurableObject(guard(sid), (_instance, state) =>
      state.storage.sql.exec<{ id: number; seq: number }>("SELECT id, seq FROM recent_events").toArray(),
    );
    expect(rows.length).toBeLessThanOrEqual(RECENT_EVENTS_KEPT);
    expect(rows.every((r) => r.id < RECENT_EVENTS_KEPT && r.seq > 0)).toBe(true);
  });
});

describe("the recent-events ring", () => {
  it("keeps the newest events, newest first, across eviction", async () => {
    const sid = uniqueSid();
    const events = Array.from({ length: RECENT_EVENTS_KEPT + 7 }, () => sms(sid));
    for (const event of events.slice(0, 30)) await guard(sid).record(event, null);
    await evictDurableObject(guard(sid));
    for (const event of events.slice(30)) await guard(sid).record(event, null);
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.recentEvents.map((e) => e.sid)).toEqual(events.slice(-RECENT_EVENTS_KEPT).reverse().map((e) => e.sid));
    const rows = await runInDurableObject(guard(sid), (_instance, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM recent_events").one().n);
    expect(rows).toBe(RECENT_EVENTS_KEPT);
  });
});

describe("schema 3: the usage history", () => {
  it("upgrades a schema-2 database in place, in one step: reconciled totals, usage_buckets from the hour and day totals, recent_events.blocked, the egress tables", async () => {
    const sid = uniqueSid();
    const now = Date.now();
    const messageSid = uniqueSid("SM");
    await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      for (const table of OWN_TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      sql.exec(SCHEMA_V2);
      sql.exec("INSERT INTO meta (key, value) VALUES ('schema', '2'), ('sid', ?), ('registered', ?)", sid, String(now));
      for (const window of ALL_WINDOWS) sql.exec("INSERT INTO totals VALUES (?, ?, ?, ?, ?)", window, windowId(window, now), windowStart(window, now), 7900, 1);
      sql.exec(
        "INSERT INTO recent_events (id, seq, at_ms, kind, sid, status, usd_micros, counted, duplicate) VALUES (1, 1, ?, 'inbound-message', ?, 'received', 7900, 1, 0)",
        now, messageSid,
      );
    });
    const found = await runInDurableObject(guard(sid), (_instance, state) => state.storage.transactionSync(() => migrateAccountSchema(state.storage.sql)));
    expect(found).toBe(2);
    const after = await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      return {
        meta: sql.exec<{ key: string; value: string }>("SELECT key, value FROM meta WHERE key IN ('schema', 'schema_min') ORDER BY key").toArray(),
        totals: sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('totals')").toArray().map((c) => c.name),
        buckets: sql.exec<{ grain: string; start_ms: number; events: number }>("SELECT grain, start_ms, events FROM usage_buckets ORDER BY grain").toArray(),
        blocked: sql.exec<{ blocked: number }>("SELECT blocked FROM recent_events").toArray(),
        egress: sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'egress_%' ORDER BY name").toArray().map((t) => t.name),
      };
    });
    expect(after.meta).toEqual([{ key: "schema", value: String(ACCOUNT_SCHEMA_VERSION) }, { key: "schema_min", value: "3" }]);
    expect(after.totals).toEqual(expect.arrayContaining(["counted_micros", "twilio_micros"]));
    expect(after.buckets).toEqual([
      { grain: "day", start_ms: windowStart("day", now), events: 1 },
      { grain: "hour", start_ms: windowStart("hour", now), events: 1 },
    ]);
    expect(after.blocked).toEqual([{ blocked: 0 }]);
    expect(after.egress).toEqual(["egress_counters", "egress_countries", "egress_keys", "egress_reservations"]);
    // The upgraded account works: its old event is shown, a new one is counted on top.
    await evictDurableObject(guard(sid));
    await guard(sid).record(sms(sid), null);
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.windows.find((w) => w.window === "day")).toMatchObject({ events: 2 });
    expect(snapshot.recentEvents.find((e) => e.sid === messageSid)).toMatchObject({ counted: true, blocked: false });
  });

  it("leaves schema 2's event-path statements working (rollback): recent_events without blocked", async () => {
    const sid = uniqueSid();
    await guard(sid).record(sms(sid), null);
    const rolledBack = uniqueSid("SM");
    await runInDurableObject(guard(sid), (_instance, state) => {
      state.storage.sql.exec(
        "INSERT OR REPLACE INTO recent_events (id, seq, at_ms, kind, sid, status, usd_micros, counted, duplicate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        7, 7, Date.now(), "inbound-message", rolledBack, "received", 7900, 1, 0,
      );
    });
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.recentEvents.find((e) => e.sid === rolledBack)).toMatchObject({ counted: true, blocked: false });
  });
});

describe("schema 4: sends by destination country in the usage buckets", () => {
  /** A schema-3 database: the current layout without usage_buckets.countries, version 3 in meta. */
  async function writeSchemaV3(sid: string, fill: (sql: SqlStorage) => void): Promise<void> {
    await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      for (const table of [...OWN_TABLES, "usage_buckets", "egress_reservations", "egress_counters", "egress_countries", "egress_keys"]) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      state.storage.transactionSync(() => migrateAccountSchema(sql));
      sql.exec("ALTER TABLE usage_buckets DROP COLUMN countries");
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', '3'), ('schema_min', '3'), ('sid', ?), ('registered', '1')", sid);
      fill(sql);
    });
  }

  it("adds the column in place and fills it from the reservations still kept, at their counted price", async () => {
    const sid = uniqueSid();
    const now = Date.now();
    const hour = windowStart("hour", now);
    const bound = uniqueSid("SM");
    await writeSchemaV3(sid, (sql) => {
      sql.exec("INSERT INTO usage_buckets VALUES ('hour', ?, 58300, 2, 0), ('day', ?, 58300, 2, 0)", hour, windowStart("day", now));
      const reservation = "INSERT INTO egress_reservations (id, at_ms, kind, usd_micros, unit_micros, state, sid, country) VALUES (?, ?, 'message', ?, ?, ?, ?, ?)";
      sql.exec(reservation, "r-held", now, 8300, 8300, "held", null, "US");
      sql.exec(reservation, "r-bound", now, 40000, 40000, "bound", bound, "GB");
      sql.exec(reservation, "r-released", now, 40000, 40000, "released", null, "GB");
      sql.exec("INSERT INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, 50000, 1)", `msg:${bound}`, now);
    });
    const found = await runInDurableObject(guard(sid), (_instance, state) => state.storage.transactionSync(() => migrateAccountSchema(state.storage.sql, now)));
    expect(found).toBe(3);
    const rows = await runInDurableObject(guard(sid), (_instance, state) =>
      state.storage.sql.exec<{ grain: string; events: number; countries: string }>("SELECT grain, events, countries FROM usage_buckets ORDER BY grain").toArray()
        .map((r) => ({ ...r, countries: JSON.parse(r.countries) as unknown })),
    );
    // [sends, micro-USD, blocked]: the held send at its estimate, the bound one at its counted price, the released one not at all.
    const expected = { US: [1, 8300, 0], GB: [1, 50000, 0] };
    expect(rows).toEqual([{ grain: "day", events: 2, countries: expected }, { grain: "hour", events: 2, countries: expected }]);
    // The upgraded account answers them, and settles the held send against its country.
    await evictDurableObject(guard(sid));
    const series = await guard(sid).usage("hour", now);
    expect(series.points.at(-1)!.countries).toEqual([{ country: "GB", sends: 1, usd: 0.05, blocked: 0 }, { country: "US", sends: 1, usd: 0.0083, blocked: 0 }]);
    await guard(sid).settleSend(sid, "r-held", { type: "rejected" }, now);
    expect((await guard(sid).usage("hour", now)).countries).toEqual([{ country: "GB", sends: 1, usd: 0.05, blocked: 0, firstSentAt: null }]);
  });

  it("keeps schema 3's statements working (rollback): its bucket upsert leaves the countries as they were", async () => {
    const sid = uniqueSid();
    await guard(sid).record(sms(sid), null);
    const now = Date.now();
    const countries = await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("UPDATE usage_buckets SET countries = '{\"US\":[1,8300,0]}' WHERE grain = 'hour'");
      // Schema 3's own bucket statement (account-guard.ts before schema 4).
      sql.exec(
        `INSERT INTO usage_buckets (grain, start_ms, usd_micros, events, blocked) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (grain, start_ms) DO UPDATE SET usd_micros = usd_micros + excluded.usd_micros, events = events + excluded.events, blocked = blocked + excluded.blocked`,
        "hour", windowStart("hour", now), 7900, 1, 0,
      );
      return sql.exec<{ events: number; countries: string }>("SELECT events, countries FROM usage_buckets WHERE grain = 'hour'").one();
    });
    expect(countries).toEqual({ events: 2, countries: '{"US":[1,8300,0]}' });
  });
});

describe("schema 6: an event's keys beside its Sid's entry", () => {
  function completedCall(account: string, callSid = uniqueSid("CA")): BillableEvent {
    const event = classifyWebhook(new Map(callStatus(account, callSid, "completed", { CallDuration: "60" })));
    if (event.kind === "not-billable") throw new Error(event.reason);
    return event;
  }

  /** A schema-4 database (the same tables; event keys in `seen`, as schema 4's code wrote them), version 4 in meta. */
  async function writeSchemaV4(sid: string, fill: (sql: SqlStorage) => void): Promise<void> {
    await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      for (const table of [...OWN_TABLES, "usage_buckets", "egress_reservations", "egress_counters", "egress_countries", "egress_keys"]) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      state.storage.transactionSync(() => migrateAccountSchema(sql));
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', '4'), ('schema_min', '3'), ('sid', ?), ('registered', '1')", sid);
      fill(sql);
    });
  }

  it("moves a schema-4 database's keys in place: what it recorded stays a duplicate, its counts unchanged", async () => {
    const sid = uniqueSid();
    const now = Date.now();
    const [message, call] = [sms(sid), completedCall(sid)];
    await writeSchemaV4(sid, (sql) => {
      sql.exec("INSERT INTO seen (key, at_ms) VALUES (?, ?), (?, ?), (?, ?)", message.dedupeKey, now, call.dedupeKey, now, "idem:token-1", now);
      sql.exec("INSERT INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, 7900, 1), (?, ?, 14000, 1)", message.countKey, now, call.countKey, now);
      sql.exec("INSERT INTO totals (window, window_id, start_ms, usd_micros, events) VALUES ('day', ?, ?, 21900, 2)", windowId("day", now), windowStart("day", now));
    });
    await evictDurableObject(guard(sid)); // the new release starts: the migration runs in its constructor

    const stored = await runInDurableObject(guard(sid), (_instance, state) => ({
      meta: state.storage.sql.exec<{ key: string; value: string }>("SELECT key, value FROM meta WHERE key IN ('schema', 'schema_min') ORDER BY key").toArray(),
      seenRows: state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM seen").one().n,
      keys: state.storage.sql.exec<{ count_key: string }>("SELECT count_key FROM counted WHERE settled = ? ORDER BY count_key", SEEN_KEY).toArray().map((r) => r.count_key),
      remembered: seenKeys(state.storage.sql).map((r) => r.key),
    }));
    expect(stored.meta).toEqual([{ key: "schema", value: String(ACCOUNT_SCHEMA_VERSION) }, { key: "schema_min", value: "3" }]);
    expect(stored.seenRows).toBe(0);
    // Each key right behind its Sid's count key; the token as it was.
    expect(stored.keys).toEqual([seenKey(call.countKey, call.dedupeKey), "idem:token-1", seenKey(message.countKey, message.dedupeKey)].sort());
    expect(stored.keys[0]).toBe(`${call.countKey}:completed`);
    expect(stored.remembered).toEqual([message.dedupeKey, call.dedupeKey, "idem:token-1"].sort());

    expect(await guard(sid).record(message, null)).toEqual({ duplicate: true, blocked: false });
    expect(await guard(sid).record(call, null)).toEqual({ duplicate: true, blocked: false });
    expect(await guard(sid).record(sms(sid), "token-1")).toEqual({ duplicate: true, blocked: false });
    const day = async () => (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
    expect(await day()).toMatchObject({ events: 2, usd: 0.0219 });
    const fresh = sms(sid);
    expect(await guard(sid).record(fresh, null)).toEqual({ duplicate: false, blocked: false });
    expect(await guard(sid).record(fresh, null)).toEqual({ duplicate: true, blocked: false });
    expect(await day()).toMatchObject({ events: 3 });
  });

  it("keeps schema 4's event-path statements working (rollback), and a retry of what they recorded is a duplicate", async () => {
    const sid = uniqueSid();
    const before = sms(sid);
    await guard(sid).record(before, null);
    const rolledBack = sms(sid);
    const now = Date.now();
    const seenByOldCode = await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      return state.storage.transactionSync(() => {
        // Schema 4's own statements for one event (account-guard.ts before schema 6), for a new event…
        sql.exec("INSERT OR IGNORE INTO seen (key, at_ms) VALUES (?, ?)", rolledBack.dedupeKey, now);
        const entry = sql.exec("SELECT usd_micros, settled, at_ms FROM counted WHERE count_key = ?", rolledBack.countKey).toArray();
        sql.exec("INSERT OR REPLACE INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, ?, ?)", rolledBack.countKey, now, 7900, 1);
        sql.exec(
          `INSERT INTO totals (window, window_id, start_ms, usd_micros, events, counted_micros, twilio_micros) VALUES ('day', ?, ?, ?, ?, ?, NULL)
           ON CONFLICT (window, window_id) DO UPDATE SET usd_micros = excluded.usd_micros, events = excluded.events, counted_micros = excluded.counted_micros`,
          windowId("day", now), windowStart("day", now), 15800, 2, 15800,
        );
        // … and a retry of one the new code recorded: its key is not where schema 4 looks, but its Sid's entry is, so it adds nothing.
        const retryEntry = sql.exec<{ settled: number }>("SELECT usd_micros, settled, at_ms FROM counted WHERE count_key = ?", before.countKey).toArray();
        return { entry: entry.length, retryEntry: retryEntry.map((r) => r.settled) };
      });
    });
    expect(seenByOldCode).toEqual({ entry: 0, retryEntry: [1] });

    await evictDurableObject(guard(sid)); // the new release starts again
    expect(await guard(sid).record(rolledBack, null)).toEqual({ duplicate: true, blocked: false });
    expect(await guard(sid).record(before, null)).toEqual({ duplicate: true, blocked: false });
    expect((await guard(sid).snapshot()).windows.find((w) => w.window === "day")).toMatchObject({ events: 2 });
  });
});
