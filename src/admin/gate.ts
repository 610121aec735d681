// AdminGate: the admin console's shared state, in one Durable Object class (SQLite storage) with these
// instances:
//   - "admin" (ADMIN_GATE_NAME): failed admin attempts per client address and UTC minute (the rate
//     limit), the last accepted TOTP step (a code is accepted once), and the audit trail of every admin
//     mutation;
//   - "rejections" (REJECTIONS_NAME, src/admin/rejections.ts): a bounded ring of the latest refused
//     requests, so junk traffic never queues behind an operator's sign-in;
//   - "egress-auth:<address>" (src/app.ts, src/egress/auth-limit.ts): failed egress-gate credentials per
//     client address.
// The metrics are summed elsewhere, by their own class (MetricsAggregator, src/observability/aggregator.ts).
// Schema 1 created `counters` and `breakers` tables for the metrics this class once aggregated: they are
// left as they are (no schema change), so a rollback to a release that still writes them keeps working.
// A thin shell: the decisions are in auth.ts. Every method is synchronous, so each runs
// alone from start to end (a Durable Object interleaves calls only at awaits): checking and consuming
// a TOTP step, or checking and counting a failure, is atomic across every isolate of the guard.
import type { GuardEnv } from "../config/env.ts";
import { GuardObject, versionedSchema } from "../durable/base.ts";
import { MAX_CLIENTS_PER_MINUTE, OVERFLOW_CLIENT, minuteOf, rateLimit, type RateLimit } from "./auth.ts";
import { REJECTIONS_KEPT, sanitizeRejection, type Rejection, type RejectionBatch } from "./rejections.ts";

export const ADMIN_GATE_NAME = "admin";
/** The audit trail keeps this many entries (all accounts together); older ones are pruned. */
const AUDIT_KEPT = 20_000;
/** Prune the audit trail every this many appends, not on each: one DELETE per hundred mutations. */
const AUDIT_PRUNE_EVERY = 100;
/** An account page shows at most this many audit entries. */
export const AUDIT_PAGE_MAX = 500;
/** before/after snapshots in an audit entry are capped; a policy is far smaller. */
const MAX_AUDIT_JSON_CHARS = 16_384;

export type AdminCall = "policy" | "trip" | "reset" | "usage-triggers" | "elevate" | "egress-key-issue" | "egress-key-revoke";

export interface AuditEntry {
  atMs: number;
  /** The API call, e.g. "POST /admin/accounts/:sid/trip". */
  call: string;
  /** Short name of the call: policy, trip, reset, usage-triggers. */
  action: AdminCall;
  account: string;
  /** First 12 hex of SHA-256 of the bearer token used (auth.ts tokenFingerprint); never the token. */
  tokenFingerprint: string;
  /** Whether a TOTP code was checked and consumed for this call. */
  totp: boolean;
  /** JSON text of the state before and after (breaker, policy, or the usage-trigger report); "null" when none. */
  beforeJson: string;
  afterJson: string;
  /** "ok", or "error: …"; plus a short detail (e.g. "reactivation done"). */
  outcome: string;
  detail: string;
}

export interface AuditRecord extends AuditEntry {
  id: number;
}

export type TotpConsumption = { status: "ok" } | { status: "reused" } | { status: "limited"; retryAfterS: number };

function cappedJson(text: string): string {
  return text.length <= MAX_AUDIT_JSON_CHARS ? text : JSON.stringify({ truncated: true, chars: text.length });
}

/** AdminGate's storage. 1: the first release's tables (idempotent, so it adopts a database written before versioning); 2: below. */
export const ADMIN_GATE_SCHEMA = versionedSchema([
  {
    version: 1,
    up: (sql) =>
      sql.exec(`
        CREATE TABLE IF NOT EXISTS failures (minute INTEGER PRIMARY KEY, count INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS totp_steps (secret_id TEXT PRIMARY KEY, last_step INTEGER NOT NULL, at_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, call TEXT NOT NULL,
          action TEXT NOT NULL, account TEXT NOT NULL, token_fp TEXT NOT NULL, totp INTEGER NOT NULL, before_json TEXT NOT NULL,
          after_json TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS audit_by_account ON audit (account, id);
        CREATE TABLE IF NOT EXISTS counters (name TEXT NOT NULL, labels TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (name, labels));
        CREATE TABLE IF NOT EXISTS breakers (sid TEXT PRIMARY KEY, open INTEGER NOT NULL, at_ms INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS breakers_open ON breakers (open);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `),
  },
  {
    // 2: failures counted per client (one address cannot lock every operator out), and the rejections ring.
    version: 2,
    up: (sql) =>
      sql.exec(`
        DROP TABLE IF EXISTS failures;
        CREATE TABLE IF NOT EXISTS client_failures (minute INTEGER NOT NULL, client TEXT NOT NULL, count INTEGER NOT NULL,
          PRIMARY KEY (minute, client)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS rejections (slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, route TEXT NOT NULL,
          method TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL, client TEXT NOT NULL, account TEXT);
      `),
  },
]);

export class AdminGate extends GuardObject {
  constructor(ctx: DurableObjectState, env: GuardEnv) {
    super(ctx, env, ADMIN_GATE_SCHEMA);
  }

  // ---------------------------------------------------------------- rate limit and TOTP ("admin")

  /** The row a client's failures are counted in: its own, or the shared overflow row once the minute is full. */
  #failureRow(minute: number, client: string): { client: string; count: number } {
    const own = this.sql.exec<{ count: number }>("SELECT count FROM client_failures WHERE minute = ? AND client = ?", minute, client).toArray()[0];
    if (own !== undefined) return { client, count: own.count };
    const tracked = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM client_failures WHERE minute = ?", minute).one().n;
    if (tracked < MAX_CLIENTS_PER_MINUTE) return { client, count: 0 };
    const overflow = this.sql.exec<{ count: number }>("SELECT count FROM client_failures WHERE minute = ? AND client = ?", minute, OVERFLOW_CLIENT).toArray()[0];
    return { client: OVERFLOW_CLIENT, count: overflow?.count ?? 0 };
  }

  /**
   * Whether this client's admin calls are refused right now (too many of its own failures this UTC
   * minute). Changes nothing. An address without failures of its own is never refused.
   */
  check(nowMs: number, client: string): RateLimit {
    const own = this.sql.exec<{ count: number }>("SELECT count FROM client_failures WHERE minute = ? AND client = ?", minuteOf(nowMs), client).toArray()[0];
    return rateLimit(own?.count ?? 0, nowMs);
  }

  /**
   * Counts one failed attempt of this client, unless it is already refused (a refused call changes
   * nothing). Returns the state *before* this failure: `limited` means answer 429, otherwise 401/403.
   */
  fail(nowMs: number, client: string): RateLimit {
    const minute = minuteOf(nowMs);
    const row = this.#failureRow(minute, client);
    const before = rateLimit(row.count, nowMs);
    if (before.limited) return before;
    this.sql.exec("DELETE FROM client_failures WHERE minute < ?", minute);
    this.sql.exec(
      "INSERT INTO client_failures (minute, client, count) VALUES (?, ?, 1) ON CONFLICT (minute, client) DO UPDATE SET count = count + 1",
      minute, row.client,
    );
    return before;
  }

  /**
   * Accepts a matched TOTP step once: refused (and counted as a failure) when it is not above the last
   * step accepted for this secret. Checked and recorded in one synchronous step, so two isolates
   * presenting the same code at the same moment cannot both succeed.
   */
  consumeTotp(secretId: string, step: number, nowMs: number, client: string): TotpConsumption {
    const limit = this.check(nowMs, client);
    if (limit.limited) return { status: "limited", retryAfterS: limit.retryAfterS };
    const last = this.sql.exec<{ last_step: number }>("SELECT last_step FROM totp_steps WHERE secret_id = ?", secretId).toArray()[0]?.last_step;
    if (last !== undefined && step <= last) {
      this.fail(nowMs, client);
      return { status: "reused" };
    }
    this.sql.exec("INSERT OR REPLACE INTO totp_steps (secret_id, last_step, at_ms) VALUES (?, ?, ?)", secretId, step, nowMs);
    return { status: "ok" };
  }

  // ---------------------------------------------------------------- audit trail ("admin")

  appendAudit(entry: AuditEntry): number {
    const id = this.sql
      .exec<{ id: number }>(
        `INSERT INTO audit (at_ms, call, action, account, token_fp, totp, before_json, after_json, outcome, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        entry.atMs, entry.call, entry.action, entry.account, entry.tokenFingerprint, entry.totp ? 1 : 0,
        cappedJson(entry.beforeJson), cappedJson(entry.afterJson), entry.outcome, entry.detail,
      )
      .one().id;
    if (id % AUDIT_PRUNE_EVERY === 0) this.sql.exec("DELETE FROM audit WHERE id <= ?", id - AUDIT_KEPT);
    return id;
  }

  /** Newest first; one account's entries, or every account's when `account` is omitted. */
  audit(options: { account?: string; limit?: number } = {}): AuditRecord[] {
    const limit = Math.max(1, Math.min(options.limit ?? 100, AUDIT_PAGE_MAX));
    type Row = { id: number; at_ms: number; call: string; action: string; account: string; token_fp: string; totp: number; before_json: string; after_json: string; outcome: string; detail: string };
    const rows =
      options.account === undefined
        ? this.sql.exec<Row>("SELECT * FROM audit ORDER BY id DESC LIMIT ?", limit).toArray()
        : this.sql.exec<Row>("SELECT * FROM audit WHERE account = ? ORDER BY id DESC LIMIT ?", options.account, limit).toArray();
    return rows.map((r) => ({
      id: r.id,
      atMs: r.at_ms,
      call: r.call,
      action: r.action as AdminCall,
      account: r.account,
      tokenFingerprint: r.token_fp,
      totp: r.totp === 1,
      beforeJson: r.before_json,
      afterJson: r.after_json,
      outcome: r.outcome,
      detail: r.detail,
    }));
  }

  // ---------------------------------------------------------------- refused requests ("rejections")

  /** Adds one isolate's refused requests to the ring; the oldest are overwritten (REJECTIONS_KEPT). */
  addRejections(batch: RejectionBatch): void {
    this.ctx.storage.transactionSync(() => {
      let seq = this.sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM rejections").one().seq ?? 0;
      for (const raw of batch.entries.slice(-REJECTIONS_KEPT)) {
        const r = sanitizeRejection(raw);
        if (r === null) continue;
        seq += 1;
        this.sql.exec(
          "INSERT OR REPLACE INTO rejections (slot, seq, at_ms, route, method, path, status, reason, client, account) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
          seq % REJECTIONS_KEPT, seq, r.atMs, r.route, r.method, r.path, r.status, r.reason, r.client, r.account,
        );
      }
      if (batch.dropped > 0) this.setMeta("rejections_dropped", String(Number(this.meta("rejections_dropped") ?? "0") + batch.dropped));
    });
  }

  /** Newest first. `dropped`: entries isolates could not keep while the ring was being written. */
  rejections(limit: number): { rejections: Rejection[]; dropped: number } {
    type Row = { at_ms: number; route: string; method: string; path: string; status: number; reason: string; client: string; account: string | null };
    const rows = this.sql.exec<Row>("SELECT * FROM rejections ORDER BY seq DESC LIMIT ?", Math.max(1, Math.min(limit, REJECTIONS_KEPT))).toArray();
    return {
      rejections: rows.map((r) => ({ atMs: r.at_ms, route: r.route, method: r.method, path: r.path, status: r.status, reason: r.reason, client: r.client, account: r.account })),
      dropped: Number(this.meta("rejections_dropped") ?? "0"),
    };
  }
}
