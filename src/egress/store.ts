// The egress gate's rows in the account's SQLite (schema.ts EGRESS_TABLES): reservations, pumping
// counters, destination countries seen, egress keys. Storage only: the decisions are the pure modules'
// (src/ledger/reservations.ts, src/egress/pumping.ts); AccountGuard calls these inside its transactions.
//
// The tables may be absent (most accounts never use the gate: schema.ts): every read then answers
// empty, and the first write (a reservation, a pumping counter, a country, an egress key) creates them
// in the caller's transaction. Checking or revoking a key creates nothing (there is no key to find).
import { timingSafeEqualString } from "../util/constant-time.ts";
import { EGRESS_TABLES } from "../breaker/schema.ts";
import type { Reservation, ReservationState } from "../ledger/reservations.ts";
import { MAX_EGRESS_KEYS } from "./keys.ts";

/** "Last used" is kept to the minute: a send does not rewrite the key's row more than once a minute. */
const LAST_USED_RESOLUTION_MS = 60_000;
/** What an unknown key id is compared against (a hash is 64 hex digits). */
const UNKNOWN_KEY_HASH = "0".repeat(64);
/** Countries whose first-send row is remembered: every ISO 3166 code and the unknown one fit. */
const MAX_COUNTRIES_REMEMBERED = 512;

export interface EgressKeyView {
  id: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

type ReservationRow = { id: string; at_ms: number; kind: string; usd_micros: number; state: string; sid: string | null; country: string | null };

/** A reservation as stored: with its destination country (ISO 3166 alpha-2, null when unknown). */
export type StoredReservation = Reservation & { country: string | null };

function toReservation(r: ReservationRow): StoredReservation {
  return { id: r.id, atMs: r.at_ms, kind: r.kind as Reservation["kind"], usdMicros: r.usd_micros, state: r.state as ReservationState, sid: r.sid, country: r.country };
}

export class EgressStore {
  readonly #sql: SqlStorage;
  /** Whether the tables exist, once known (null: ask storage). */
  #present: boolean | null = null;
  /**
   * Copies of storage that save statements on every send, dropped with forget() (a rolled-back
   * transaction, an alarm): live keys read (hash, last use as stored; at most MAX_EGRESS_KEYS, only this
   * store writes them) and countries known to have their first-send row (a bounded set of ISO codes).
   */
  readonly #keys = new Map<string, { hash: string; lastUsedAt: number | null }>();
  readonly #countriesSeen = new Set<string>();
  constructor(sql: SqlStorage) {
    this.#sql = sql;
  }

  /** Forgets whether the tables exist: a rolled-back transaction may have created them. */
  forget(): void {
    this.#present = null;
    this.#keys.clear();
    this.#countriesSeen.clear();
  }

  /** Whether the gate's tables exist (read from storage once). */
  get present(): boolean {
    this.#present ??= this.#sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'egress_reservations'").toArray().length > 0;
    return this.#present;
  }

  /** Creates the tables before a write (inside the caller's transaction). */
  #ensure(): void {
    if (this.present) return;
    this.#sql.exec(EGRESS_TABLES);
    this.#present = true;
  }

  // ---- egress keys

  addKey(id: string, hash: string, nowMs: number): { ok: true } | { ok: false; why: string } {
    this.#ensure();
    const live = this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM egress_keys WHERE revoked_at_ms IS NULL").one().n;
    if (live >= MAX_EGRESS_KEYS) return { ok: false, why: `at most ${MAX_EGRESS_KEYS} live egress keys per account: revoke one first` };
    this.#sql.exec("INSERT INTO egress_keys (id, hash, created_at_ms, last_used_at_ms, revoked_at_ms) VALUES (?, ?, ?, NULL, NULL)", id, hash, nowMs);
    return { ok: true };
  }

  listKeys(): EgressKeyView[] {
    if (!this.present) return [];
    return this.#sql
      .exec<{ id: string; created_at_ms: number; last_used_at_ms: number | null; revoked_at_ms: number | null }>(
        "SELECT id, created_at_ms, last_used_at_ms, revoked_at_ms FROM egress_keys ORDER BY created_at_ms, id",
      )
      .toArray()
      .map((r) => ({ id: r.id, createdAt: r.created_at_ms, lastUsedAt: r.last_used_at_ms, revokedAt: r.revoked_at_ms }));
  }

  /** False when there is no such live key. */
  revokeKey(id: string, nowMs: number): boolean {
    if (!this.present) return false;
    this.#keys.delete(id);
    return this.#sql.exec("UPDATE egress_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL", nowMs, id).rowsWritten > 0;
  }

  /** Constant-time check of a presented key's hash; a match records the time it was last used. */
  useKey(id: string, hash: string, nowMs: number): boolean {
    const row = this.#liveKey(id);
    // Compare against a dummy when absent, so an unknown id costs what a wrong key costs.
    const ok = timingSafeEqualString(row?.hash ?? UNKNOWN_KEY_HASH, hash) && row !== undefined;
    // The last use is written when the stored one is older than the resolution (known from the copy: no statement otherwise).
    if (ok && (row.lastUsedAt === null || row.lastUsedAt <= nowMs - LAST_USED_RESOLUTION_MS)) {
      this.#sql.exec("UPDATE egress_keys SET last_used_at_ms = ? WHERE id = ?", nowMs, id);
      row.lastUsedAt = nowMs;
    }
    return ok;
  }

  /** A live key's hash and last use, from the copy or storage (undefined: no such live key; not kept). */
  #liveKey(id: string): { hash: string; lastUsedAt: number | null } | undefined {
    const known = this.#keys.get(id);
    if (known !== undefined || !this.present) return known;
    const row = this.#sql
      .exec<{ hash: string; last_used_at_ms: number | null }>("SELECT hash, last_used_at_ms FROM egress_keys WHERE id = ? AND revoked_at_ms IS NULL", id)
      .toArray()[0];
    if (row === undefined) return undefined;
    const key = { hash: row.hash, lastUsedAt: row.last_used_at_ms };
    this.#keys.set(id, key);
    return key;
  }

  // ---- pumping counters

  count(key: string): number {
    if (!this.present) return 0;
    return this.#sql.exec<{ n: number }>("SELECT n FROM egress_counters WHERE key = ?", key).toArray()[0]?.n ?? 0;
  }

  increment(key: string, windowEndMs: number): void {
    this.#ensure();
    this.#sql.exec(
      "INSERT INTO egress_counters (key, window_end_ms, n) VALUES (?, ?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1",
      key, windowEndMs,
    );
  }

  /** True when the account had never sent to this country (or to a number of unknown country: `?`). */
  firstSendTo(country: string | null, nowMs: number): boolean {
    const key = country ?? "?";
    if (this.#countriesSeen.has(key)) return false;
    this.#ensure();
    const first = this.#sql.exec("INSERT OR IGNORE INTO egress_countries (country, first_at_ms) VALUES (?, ?)", key, nowMs).rowsWritten > 0;
    // Rows are never deleted (but by a rollback, which calls forget()); the bound only guards against the unexpected.
    if (this.#countriesSeen.size >= MAX_COUNTRIES_REMEMBERED) this.#countriesSeen.clear();
    this.#countriesSeen.add(key);
    return first;
  }

  /** When the account first sent to each country (the unknown country, stored as `?`, under `unknownKey`). */
  firstSends(unknownKey: string): Map<string, number> {
    if (!this.present) return new Map();
    const rows = this.#sql.exec<{ country: string; first_at_ms: number }>("SELECT country, first_at_ms FROM egress_countries").toArray();
    return new Map(rows.map((r) => [r.country === "?" ? unknownKey : r.country, r.first_at_ms]));
  }

  /** Countries sent to before this one: none means this is the account's first send through the gate. */
  countriesSeen(): number {
    if (!this.present) return 0;
    return this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM egress_countries").one().n;
  }

  // ---- reservations

  /** `unitMicros`: the price per unit it was estimated with (a call's per-minute rate, for its completion). */
  insertReservation(r: Reservation, unitMicros: number, country: string | null): void {
    this.#ensure();
    this.#sql.exec(
      "INSERT INTO egress_reservations (id, at_ms, kind, usd_micros, unit_micros, state, sid, country) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      r.id, r.atMs, r.kind, r.usdMicros, unitMicros, r.state, r.sid, country,
    );
  }

  /** The per-minute rate a bound call was reserved at, or null when the Sid is no call of the gate. */
  callRate(callSid: string): number | null {
    if (!this.present) return null;
    return this.#sql.exec<{ unit_micros: number }>("SELECT unit_micros FROM egress_reservations WHERE sid = ? AND kind = 'call'", callSid).toArray()[0]?.unit_micros ?? null;
  }

  reservation(id: string): StoredReservation | null {
    if (!this.present) return null;
    const row = this.#sql.exec<ReservationRow>("SELECT id, at_ms, kind, usd_micros, state, sid, country FROM egress_reservations WHERE id = ?", id).toArray()[0];
    return row === undefined ? null : toReservation(row);
  }

  reservationBySid(sid: string): StoredReservation | null {
    if (!this.present) return null;
    const row = this.#sql.exec<ReservationRow>("SELECT id, at_ms, kind, usd_micros, state, sid, country FROM egress_reservations WHERE sid = ?", sid).toArray()[0];
    return row === undefined ? null : toReservation(row);
  }

  updateReservation(r: Reservation): void {
    this.#sql.exec("UPDATE egress_reservations SET usd_micros = ?, state = ?, sid = ? WHERE id = ?", r.usdMicros, r.state, r.sid, r.id);
  }

  /** Drops counters of windows that have ended and settled reservations older than `beforeMs`. */
  prune(nowMs: number, beforeMs: number): void {
    if (!this.present) return;
    this.#sql.exec("DELETE FROM egress_counters WHERE window_end_ms <= ?", nowMs);
    this.#sql.exec("DELETE FROM egress_reservations WHERE at_ms < ? AND state IN ('bound', 'released')", beforeMs);
  }
}
