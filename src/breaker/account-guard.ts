// AccountGuard: one Durable Object per AccountSid (SQLite storage). The RPC shell: the money logic lives
// in src/ledger/ (classification, pricing, per-Sid entries, windows, limits, the breaker's transitions,
// reconciliation), each a pure transition this class calls and persists; the trip's side effects run from
// the outbox (outbox.ts), Twilio's own figures come in through reconcile.ts, bounds are in prune.ts.
//
// Exactly-once rules, all enforced inside one synchronous SQLite transaction per call (a Durable Object
// runs one call's synchronous code at a time, so racing requests are serialised here):
//   - an event is counted once: its `${Sid}:${status}` key and Twilio's idempotency token are remembered;
//   - a message or call is priced once per Sid (src/ledger/entries.ts: reserve, settle, release), and its
//     entry is kept as long as the windows it could change (the month);
//   - a trip happens once: opening an open breaker has no effects, so one suspension per trip;
//   - every side effect is fenced by the trip it belongs to (outbox.ts);
//   - a send through the REST egress gate is reserved before it is forwarded and settled by Twilio's
//     answer (src/ledger/reservations.ts, rows in src/egress/store.ts): its Sid's entry is then bound, so
//     its status callbacks find it counted; its real price, when no callback brought it, is looked up
//     later from the alarm (price-lookup.ts) and replaces the estimate once.
// The listing's summary is pushed to the directory after the answer (src/accounts/summary.ts).
import type { Config } from "../config/config.ts";
import { getConfig } from "../config/config.ts";
import type { GuardEnv } from "../config/env.ts";
import { GuardObject } from "../durable/base.ts";
import { metrics } from "../observability/metrics.ts";
import type { BillableEvent } from "../ledger/classify.ts";
import { applyBillableEvent, awaitPrice, realPrice, type LedgerEntry } from "../ledger/entries.ts";
import {
  applyEvent,
  breakerBlocks,
  CLOSED_BREAKER,
  limitLabel,
  reset as resetBreaker,
  trip as tripBreaker,
  warningAlert,
  warningKey,
  type Addition,
  type Breaker,
} from "../ledger/limits.ts";
import { parsePolicy, type Policy } from "../ledger/policy.ts";
import { fromMicros, priceEvent, toMicros } from "../ledger/pricing.ts";
import { countEvent } from "../ledger/reconcile.ts";
import { ALL_WINDOWS, windowEnd, windowId, windowStart } from "../ledger/windows.ts";
import type { TwilioClient } from "../twilio/rest.ts";
import { twilioClientFor } from "../twilio/client.ts";
import { verdictBits, type RecordOutcome, type RecordVerdict, type VerdictBits } from "../ledger/port.ts";
import { parseLedgerWrite, type LedgerWrite } from "./ledger-queue.ts";
import { MAX_RECORDS_PER_BATCH } from "./record-batches.ts";
import { ACCOUNT_SID } from "../twilio/sids.ts";
import { Outbox, type OutboxHost } from "./outbox.ts";
import { MAX_PENDING_PRICE_LOOKUPS, PRICE_LOOKUP_FIRST_DELAY_MS, type PriceLookup } from "./price-lookup.ts";
import { PRUNE_INTERVAL_MS, SEEN_RETENTION_MS, pruneAccount } from "./prune.ts";
import { reconcileIfDue, type ReconcileHost } from "./reconcile.ts";
import { ACCOUNT_SCHEMA, RECENT_EVENTS_KEPT, SEEN_KEY, seenKey } from "./schema.ts";
import { deferTotals, deferredTotals, dropDeferredTotals, flushTotals, forgetTotals, readTotals, restoreDeferredTotals, writeTotals, type TotalsRow } from "./totals.ts";
import { execRows, perRowCount, rowPlaceholders } from "../durable/sql.ts";
import { dashboardLink } from "./alerts.ts";
import { EgressStore, type EgressKeyView } from "../egress/store.ts";
import type { GateRefusal, ReserveAnswer, ReserveOutcome, ReserveRequest } from "../egress/protocol.ts";
import type { SettlementItem } from "../egress/settlements.ts";
import { checkPumping } from "../egress/pumping.ts";
import { callReservation, priceSend } from "../egress/send.ts";
import { decideReservation, releaseAsDuplicate, settleReservation, type Reservation, type Settlement } from "../ledger/reservations.ts";
import { GRAINS, bucketsFor, buildSeries, oldestKept, type BucketRow, type Grain, type UsageSeries } from "../ledger/buckets.ts";
import { UNKNOWN, addSendStored, correctSendStored, decodeCountries, type CountryDelta } from "../ledger/countries.ts";
import { SUMMARY_PUSH_INTERVAL_MS, summarise, type AccountSummary } from "../accounts/summary.ts";

export interface UsageTriggerFiring {
  accountSid: string;
  idempotencyToken: string | null;
  usageTriggerSid: string | null;
  usageCategory: string | null;
  currentValue: number | null;
  triggerValue: number | null;
  dateFired: string | null;
}

export interface WindowView {
  window: string;
  windowId: string;
  /** The spend the limits see: for a day (and its month), the larger of the two figures below. */
  usd: number;
  events: number;
  /** What the guard's own events add up to. */
  countedUsd: number;
  /** Twilio's Usage Records figure for the day (day window only; null before the first reconciliation). */
  twilioUsd: number | null;
  limits: Array<{ usd?: number; events?: number; used: number }>;
}

export interface AccountSnapshot {
  sid: string;
  isParent: boolean;
  breaker: Breaker & { blocks: boolean; retrying: boolean };
  policy: Policy;
  policySource: "default" | "account";
  windows: WindowView[];
  /** counted: a new billable event; settled: a reservation settled by its outcome (usd = the difference); blocked: answered as blocked. */
  recentEvents: Array<{ at: number; kind: string; sid: string; status: string; usd: number; counted: boolean; settled: boolean; duplicate: boolean; blocked: boolean }>;
  /** Warnings sent (limit reached warnAt), newest first: which limit, in which window, when. */
  warnings: Array<{ limit: string; windowId: string; at: number }>;
  trips: Array<{ tripId: string; openedAt: number; reason: string; detail: string; closedAt: number | null }>;
  history: Array<{ at: number; tripId: string | null; kind: string; outcome: string; detail: string }>;
}

export type Reactivation = "done" | "retrying" | "failed" | "not-needed";

export class AccountGuard extends GuardObject {
  readonly #outbox: Outbox;
  /** Parsed copies of what storage holds, so the event path parses nothing twice. */
  #policyCache: { raw: string; policy: Policy } | null = null;
  #registered = false;
  /** The newest recent_events sequence number, once read (the ring's next slot follows it). */
  #recentSeq: number | null = null;
  /** The newest recent event's time, once read (the summary's last activity); kept with #recentSeq. */
  #lastActivityMs: number | null = null;
  /** The last activity before this instance's first event: where an earlier instance left the summary (see #lastPushAt). */
  #activityBefore: number | null = null;
  /** When the summary was last pushed (real time): null until this instance knows (see #lastPushAt); and the push's revision. */
  #summaryPushedAt: number | null = null;
  #summaryRev = 0;
  /** The REST egress gate's rows (src/egress/store.ts). */
  readonly #egress: EgressStore;
  /** Whether `seen` holds keys a previous release wrote, once read (see #inSeenTable). */
  #seenHolds: boolean | null = null;
  /**
   * usage_buckets.countries as stored, by "grain start", for the buckets #moveCountry read or wrote
   * (only it writes the column): a send's country figures cost no SELECT. Dropped with the other
   * copies (a rollback, an alarm) and by a prune.
   */
  readonly #bucketCountries = new Map<string, string | null>();
  /** Inside record's and recordBatch's transaction: usage-bucket additions and recent events, written at its end (#withEventWrites). */
  #eventWrites: EventWrites | null = null;

  constructor(ctx: DurableObjectState, env: GuardEnv) {
    super(ctx, env, ACCOUNT_SCHEMA, { nameKey: "sid", wholeMeta: true });
    this.#outbox = new Outbox(this.#outboxHost());
    this.#egress = new EgressStore(this.sql);
    // A new instance (after an eviction) trusts only storage: no totals copied by an earlier one.
    forgetTotals(this.sql);
  }

  protected override onRollback(): void {
    this.#recentSeq = null;
    this.#lastActivityMs = null;
    this.#egress.forget();
  }

  protected override forgetCached(): void {
    super.forgetCached();
    forgetTotals(this.sql);
    this.#recentSeq = null;
    this.#lastActivityMs = null;
    this.#egress.forget();
    this.#bucketCountries.clear();
  }

  get #config(): Config {
    return getConfig(this.env);
  }

  get #sid(): string | null {
    return this.objectName;
  }

  /** The account this object keeps: persisted on first use; registers it with the directory once. */
  #identify(sid: string, now: number): string {
    this.identifyAs(sid);
    if (!this.#registered && this.meta("registered") !== null) this.#registered = true;
    if (!this.#registered) {
      this.#registered = true;
      const isParent = sid === this.#config.accountSid;
      this.ctx.waitUntil(
        this.env.DIRECTORY.getByName("directory")
          .register(sid, isParent, now)
          .then(() => this.setMeta("registered", String(now)))
          .catch((error: unknown) => {
            this.#registered = false;
            this.logger.error("directory-register-failed", error, { account: sid });
          }),
      );
    }
    return sid;
  }

  #isParent(): boolean {
    return this.#sid === this.#config.accountSid;
  }

  #policy(): { policy: Policy; source: "default" | "account" } {
    const own = this.ready ? this.meta("policy") : null;
    if (own !== null) {
      if (this.#policyCache?.raw !== own) this.#policyCache = { raw: own, policy: parsePolicy(JSON.parse(own)) };
      return { policy: this.#policyCache.policy, source: "account" };
    }
    return { policy: this.#config.policy, source: "default" };
  }

  #breaker(): Breaker {
    const raw = this.ready ? this.meta("breaker") : null;
    return raw === null ? CLOSED_BREAKER : (JSON.parse(raw) as Breaker);
  }

  #setBreaker(breaker: Breaker): void {
    const before = this.#breaker();
    this.setMeta("breaker", JSON.stringify(breaker));
    if (this.#sid !== null && before.state !== breaker.state) metrics.breaker(this.#sid, breaker.state, Date.now());
  }

  #client(): TwilioClient {
    return twilioClientFor(this.#config);
  }

  #history(now: number, tripId: string | null, kind: string, outcome: string, detail: string): void {
    this.sql.exec("INSERT INTO history (at_ms, trip_id, kind, outcome, detail) VALUES (?, ?, ?, ?, ?)", now, tripId, kind, outcome, detail);
  }

  #outboxHost(): OutboxHost {
    return {
      sql: this.sql,
      logger: this.logger,
      sid: () => this.#sid ?? "?",
      config: () => this.#config,
      client: () => this.#client(),
      breaker: () => this.#breaker(),
      setBreaker: (breaker) => this.#setBreaker(breaker),
      transaction: (fn) => this.transaction(fn),
      history: (...args) => this.#history(...args),
      alertFigures: (now) => {
        const [day] = readTotals(this.sql, ["day"], now);
        return { spendTodayUsd: fromMicros(day!.usdMicros), link: dashboardLink(this.#config.publicUrl, this.#sid ?? "") };
      },
      applyRealPrice: (lookup, usdMicros) => this.#applyRealPrice(lookup, usdMicros),
    };
  }

  #reconcileHost(): ReconcileHost {
    return {
      sql: this.sql,
      logger: this.logger,
      sid: () => this.#sid,
      intervalS: () => this.#config.reconcileIntervalS,
      client: () => this.#client(),
      policy: () => this.#policy().policy,
      meta: (key) => this.meta(key),
      setMeta: (key, value) => this.setMeta(key, value),
      deleteMeta: (key) => this.deleteMeta(key),
      transaction: (fn) => this.transaction(fn),
      history: (...args) => this.#history(...args),
      trip: (reason, detail, now) => this.#trip(reason, detail, now, this.#policy().policy),
      // Twilio's figure is the day's: what it raises goes to the day's usage bucket, not to an hour.
      raised: (now, usdMicros) => this.#addToBuckets(now, { usdMicros, events: 0, blocked: 0 }, ["day"]),
    };
  }

  // ---------------------------------------------------------------- the event path

  /** Records one verified billable event; the verdict decides an inbound event's answer. */
  /** `reservationId`: the egress gate's reservation a status callback of the guard's own status path names. */
  async record(event: BillableEvent, idempotencyToken: string | null, atMs?: number, reservationId?: string): Promise<RecordVerdict> {
    const now = atMs ?? Date.now();
    this.#identify(event.accountSid, now);
    const { policy } = this.#policy();
    const write: LedgerWrite = { event, idempotencyToken, atMs: now, ...(reservationId !== undefined ? { reservationId } : {}) };
    const verdict = this.transaction(() => this.#withEventWrites(() => this.#recordOne(write, policy)));
    await this.#afterWrite(verdict.effects, now);
    await this.#noteSummary(now, verdict.effects);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return { duplicate: verdict.duplicate, blocked: verdict.blocked };
  }

  /**
   * record(), its verdict answered as a number (verdictBits, src/ledger/port.ts): the webhook path's call
   * for a lone event (record-batches.ts recordCall), since an RPC answer that is a number costs the runtime
   * less than an object (docs/benchmarks.md). record() stays, for the previous release's Workers.
   */
  async recordEvent(event: BillableEvent, idempotencyToken: string | null, atMs?: number, reservationId?: string): Promise<VerdictBits> {
    return verdictBits(await this.record(event, idempotencyToken, atMs, reservationId));
  }

  /**
   * Records several events of this account in one transaction (the webhook path's group commit:
   * src/breaker/record-batches.ts), in the order given, each exactly as record() would one after the
   * other: a duplicate within the batch is a duplicate, an event that trips the breaker blocks the
   * inbound events after it. Each event runs in its own savepoint, so one that fails (or that is not a
   * write this release makes) is rolled back alone and answered `failed`, and the others stand.
   */
  async recordBatch(sid: string, writes: readonly LedgerWrite[]): Promise<RecordOutcome[]> {
    if (!ACCOUNT_SID.test(sid) || !Array.isArray(writes) || writes.length === 0 || writes.length > MAX_RECORDS_PER_BATCH) {
      throw new TypeError(`recordBatch: an AccountSid and 1 to ${MAX_RECORDS_PER_BATCH} writes`);
    }
    const valid = writes.map((w) => {
      const parsed = parseLedgerWrite(w);
      return parsed !== null && parsed.event.accountSid === sid ? parsed : null;
    });
    const now = Math.max(...valid.map((w) => w?.atMs ?? 0));
    this.#identify(sid, now > 0 ? now : Date.now());
    const { policy } = this.#policy();
    const outcomes = this.transaction(() =>
      this.#withEventWrites(() =>
        this.#eachAlone(valid, "ledger-batch-write", "not a ledger write", (write) => ({ account: sid, event: write.event.kind }), (write) => this.#recordOne(write, policy)),
      ),
    );
    const effects = outcomes.some((o) => "effects" in o && o.effects);
    await this.#afterWrite(effects, now);
    await this.#noteSummary(now, effects);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return outcomes.map((o) => ("failed" in o ? o : { duplicate: o.duplicate, blocked: o.blocked }));
  }

  /**
   * Inside a batch's transaction: `apply` to each item in order, each in its own savepoint, so one that
   * fails is rolled back alone and answered `failed`, the others standing. A null item (not a valid
   * write of this account) is answered `failed` without being applied. Both are logged as
   * `<event>-invalid` / `<event>-failed` with the item's index.
   */
  #eachAlone<T, R>(items: readonly (T | null)[], event: string, invalid: string, fields: (item: T) => Record<string, unknown>, apply: (item: T) => R): Array<R | { failed: true }> {
    return items.map((item, index) => {
      if (item === null) {
        this.logger.error(`${event}-invalid`, new Error(invalid), { account: this.#sid, index });
        return { failed: true as const };
      }
      const mark = this.#markEventWrites();
      try {
        return this.transaction(() => apply(item));
      } catch (error) {
        if (mark !== null) this.#restoreEventWrites(mark);
        this.logger.error(`${event}-failed`, error, { ...fields(item), index });
        return { failed: true as const };
      }
    });
  }

  /**
   * Inside a transaction: runs `fn` (the events of record or recordBatch) with their writes of the window
   * totals (totals.ts deferTotals), the usage buckets and the recent events ring kept in memory, and
   * writes them at the end, a statement per table however many events (each event still decides on the
   * totals of those before it). A failed write throws, and the whole transaction rolls back.
   */
  #withEventWrites<T>(fn: () => T): T {
    deferTotals(this.sql);
    this.#eventWrites = { buckets: new Map(), recent: [] };
    try {
      const result = fn();
      const { buckets, recent } = this.#eventWrites;
      flushTotals(this.sql);
      const values: SqlStorageValue[] = [];
      for (const b of buckets.values()) values.push(b.grain, b.startMs, b.usdMicros, b.events, b.blocked);
      execRows(this.sql, ADD_TO_BUCKETS, 5, values);
      execRows(this.sql, WRITE_RECENT_EVENTS, RECENT_EVENT_COLUMNS, recent);
      return result;
    } finally {
      dropDeferredTotals(this.sql);
      this.#eventWrites = null;
    }
  }

  /** Where the event writes stand before one item of a batch (null outside #withEventWrites), to restore if it is rolled back. */
  #markEventWrites(): EventWritesMark | null {
    const totals = deferredTotals(this.sql);
    if (this.#eventWrites === null || totals === undefined) return null;
    return { totals, buckets: new Map(this.#eventWrites.buckets), recent: this.#eventWrites.recent.length, recentSeq: this.#recentSeq, lastActivityMs: this.#lastActivityMs };
  }

  /** One item of a batch rolled back: its event writes go too (the ring's next seq and last activity with them). */
  #restoreEventWrites(mark: EventWritesMark): void {
    restoreDeferredTotals(this.sql, mark.totals);
    this.#eventWrites!.buckets = mark.buckets;
    this.#eventWrites!.recent.length = mark.recent;
    this.#recentSeq = mark.recentSeq;
    this.#lastActivityMs = mark.lastActivityMs;
  }

  /** Inside a transaction: one event, as record() and recordBatch() both record it. True `effects`: outbox rows added. */
  #recordOne({ event, idempotencyToken, atMs: now, reservationId }: LedgerWrite, policy: Policy): RecordVerdict & { effects: boolean } {
    const inbound = event.kind === "inbound-message" || event.kind === "inbound-call";
    // A status callback the egress gate asked for names its reservation: bind it before counting, so the
    // send is counted once (by its reservation), and a reported price replaces the estimate.
    let effects = false;
    if (reservationId !== undefined) effects = this.#settleReservation(reservationId, { type: "sid-seen", sid: event.sid }, policy);
    // The event's keys and its Sid's entry are rows of one table, side by side (schema.ts, schema 6):
    // read in one statement, and the new ones written in one with the entry (#writeLedgerRows).
    const token = idempotencyToken ? [`idem:${idempotencyToken}`] : [];
    const keys = [seenKey(event.countKey, event.dedupeKey), ...token];
    const rows = this.sql
      .exec<{ count_key: string; at_ms: number; usd_micros: number; settled: number }>(READ_LEDGER_ROWS(keys.length + 1), event.countKey, ...keys)
      .toArray();
    const inSeen = this.#inSeenTable([event.dedupeKey, ...token]);
    const newKeys = keys.filter((key, i) => !inSeen[i] && !rows.some((r) => r.count_key === key));
    const duplicate = newKeys.length < keys.length;
    const entryRow = rows.find((r) => r.count_key === event.countKey);
    /** The rows to write: the entry when it changes (first, as #setEntry writes it), then the new keys. */
    const writes: Array<string | number> = [];
    /** The Sid's entry after a new event (none for a duplicate, or a Sid with no entry). */
    let entry: { entry: LedgerEntry; atMs: number } | undefined;
    let add: Addition = { usdMicros: 0, events: 0 };
    let settled = false;
    /** What the recent events ring shows for it: what it added, wherever it went. */
    let shownMicros = 0;
    if (!duplicate) {
      // A call the gate made is priced at the destination's rate it was reserved at.
      const callRate = event.kind === "call-status" && event.reportedPriceUsd === undefined ? this.#egress.callRate(event.sid) : null;
      const price = callRate !== null ? callRate * (event.units.minutes ?? 0) : priceEvent(event, policy.prices);
      const before = entryRow === undefined ? undefined : { entry: decodeEntry(entryRow.usd_micros, entryRow.settled), atMs: entryRow.at_ms };
      const change = applyBillableEvent(before?.entry, event, price);
      let after = before;
      if (change.entry !== null && before?.entry.settled === true) {
        // Only a real price changes a settled Sid: the difference goes to the windows it was counted in.
        after = { entry: change.entry, atMs: before.atMs };
        effects = this.#count(policy, before.atMs, change.add) || effects;
        shownMicros = change.add.usdMicros;
      } else {
        if (change.entry !== null) after = { entry: change.entry, atMs: now };
        add = change.add;
        shownMicros = add.usdMicros;
      }
      if (after !== undefined && after !== before) writes.push(event.countKey, after.atMs, after.entry.usdMicros, encodeEntry(after.entry));
      entry = after;
      // An entry changed without a new event: a reservation settled (or released) by its outcome.
      settled = change.entry !== null && change.add.events === 0;
      // A gate send's settlement or real price (a call's minutes): its country figure moves by what the entry moved.
      if (settled && change.add.usdMicros !== 0) this.#correctCountryOf(event.sid, change.add.usdMicros);
    }
    for (const key of newKeys) writes.push(key, now, 0, SEEN_KEY);
    this.#writeLedgerRows(writes);
    // After the entry's write: a lookup of its real price rewrites it.
    if (entry !== undefined) effects = this.#awaitPrice(event, entry, now) || effects;
    if (this.meta("prune_at") === null) {
      // Remembered keys must be pruned some day: the first event after a quiet period schedules it.
      this.setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
      effects = true;
    }
    if (add.usdMicros !== 0 || add.events !== 0) effects = this.#count(policy, now, add) || effects;
    const blocked = inbound && breakerBlocks(this.#breaker());
    if (blocked) this.#addToBuckets(now, { usdMicros: 0, events: 0, blocked: 1 });
    // The ring keeps the newest RECENT_EVENTS_KEPT events: each event replaces the oldest slot.
    // counted: 1 a new billable event, 2 a reservation's settlement (v2 code reads only 1 as counted).
    const seq = this.#nextRecentSeq();
    const ring = [seq % RECENT_EVENTS_KEPT, seq, now, event.kind, event.sid, event.status, shownMicros, settled ? 2 : add.events, duplicate ? 1 : 0, blocked ? 1 : 0];
    if (this.#eventWrites !== null) this.#eventWrites.recent.push(...ring);
    else this.sql.exec(WRITE_RECENT_EVENTS(1), ...ring);
    this.#lastActivityMs = Math.max(this.#lastActivityMs ?? 0, now);
    return { duplicate, blocked, effects };
  }

  /** A Sid's ledger entry and when it was counted (the windows a correction of its price goes to). */
  #entryRow(countKey: string): { entry: LedgerEntry; atMs: number } | undefined {
    const row = this.sql.exec<{ usd_micros: number; settled: number; at_ms: number }>("SELECT usd_micros, settled, at_ms FROM counted WHERE count_key = ?", countKey).toArray()[0];
    return row === undefined ? undefined : { entry: decodeEntry(row.usd_micros, row.settled), atMs: row.at_ms };
  }

  /**
   * Which of an event's keys (as `seen` holds them: its dedupe key, then its token's) a previous release wrote to `seen` (schema.ts,
   * schema 6: its code keeps writing there after a rollback). Whether `seen` holds any row is read once per
   * instance and again after a prune: this code never writes it, so an empty `seen` costs no statement.
   */
  #inSeenTable(keys: readonly string[]): boolean[] {
    this.#seenHolds ??= this.sql.exec<{ any: number }>("SELECT EXISTS (SELECT 1 FROM seen) AS any").one().any === 1;
    if (!this.#seenHolds) return keys.map(() => false);
    const found = this.sql.exec<{ key: string }>(keys.map(() => "SELECT key FROM seen WHERE key = ?").join(" UNION ALL "), ...keys).toArray();
    return keys.map((key) => found.some((r) => r.key === key));
  }

  /** Writes rows of `counted` (count_key, at_ms, usd_micros, settled each) in one statement. */
  #writeLedgerRows(values: ReadonlyArray<string | number>): void {
    if (values.length > 0) this.sql.exec(WRITE_LEDGER_ROWS(values.length / 4), ...values);
  }

  #setEntry(countKey: string, entry: LedgerEntry, atMs: number): void {
    this.sql.exec("INSERT OR REPLACE INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, ?, ?)", countKey, atMs, entry.usdMicros, encodeEntry(entry));
  }

  /**
   * Inside record's transaction: a gate send's billed final status without a Price queues one lookup of
   * its real price (price-lookup.ts), unless the account already has MAX_PENDING_PRICE_LOOKUPS waiting.
   */
  #awaitPrice(event: BillableEvent, row: { entry: LedgerEntry; atMs: number }, now: number): boolean {
    if (!event.billable || event.reportedPriceUsd !== undefined || (event.kind !== "message-status" && event.kind !== "call-status")) return false;
    const change = awaitPrice(row.entry);
    if (change.entry === null || this.#egress.reservationBySid(event.sid) === null) return false;
    if (this.#outbox.pendingPriceLookups() >= MAX_PENDING_PRICE_LOOKUPS) {
      metrics.inc("guard_price_lookups_total", { outcome: "over-bound" });
      this.logger.warn("price-lookup-over-bound", { account: this.#sid, sid: event.sid, pending: MAX_PENDING_PRICE_LOOKUPS });
      return false;
    }
    this.#setEntry(event.countKey, change.entry, row.atMs);
    const lookup: PriceLookup = { sid: event.sid, kind: event.kind === "call-status" ? "call" : "message", countKey: event.countKey, since: now };
    this.#outbox.enqueue("", "price-lookup", lookup, now + PRICE_LOOKUP_FIRST_DELAY_MS);
    return true;
  }

  /** The outbox's price lookup found the real price: applied once (entries.ts realPrice), to the windows of the send. */
  #applyRealPrice({ countKey, sid }: PriceLookup, usdMicros: number): boolean {
    const row = this.#entryRow(countKey);
    // A Sid no longer in the ledger (pruned with its month) has no window left to correct.
    if (row === undefined) return false;
    const change = realPrice(row.entry, usdMicros);
    if (change.entry === null) return false;
    this.#setEntry(countKey, change.entry, row.atMs);
    if (change.add.usdMicros !== 0) {
      this.#count(this.#policy().policy, row.atMs, change.add);
      this.#correctCountryOf(sid, change.add.usdMicros);
      // The listing shows the day's spend: the alarm running this lookup pushes the new figure when it ends.
      if (this.meta("summary_at") === null) this.setMeta("summary_at", String(Date.now()));
    }
    return true;
  }

  /** A bound gate send's price moved by `usdMicros`: its destination country's figure moves with it. */
  #correctCountryOf(sid: string, usdMicros: number): void {
    const sent = this.#egress.reservationBySid(sid);
    if (sent !== null && sent.state === "bound") this.#moveCountry(sent.atMs, sent.country, { sends: 0, usdMicros, blocked: 0 }, "correct");
  }

  #nextRecentSeq(): number {
    if (this.#recentSeq === null) this.#readRecent();
    return ++this.#recentSeq!;
  }

  /** The ring's newest sequence number and time, in one read (a new instance's first event needs both). */
  #readRecent(): void {
    const row = this.sql.exec<{ seq: number | null; at: number | null }>("SELECT MAX(seq) AS seq, MAX(at_ms) AS at FROM recent_events").one();
    this.#recentSeq = row.seq ?? 0;
    this.#lastActivityMs = row.at ?? 0;
    this.#activityBefore ??= this.#lastActivityMs;
  }

  /**
   * Adds to the windows of `now`, warns and trips as the policy says. True when outbox rows were added.
   * `rows`: the windows of `now` when this transaction has already read them (a reservation, to decide).
   */
  #count(policy: Policy, now: number, add: Addition, rows: TotalsRow[] = readTotals(this.sql, ALL_WINDOWS, now)): boolean {
    const day = rows.find((r) => r.window === "day")!;
    const change = countEvent({ countedMicros: day.countedMicros, twilioMicros: day.twilioMicros }, add);
    const evaluation = applyEvent(policy, rows, now, add, change.perWindow);
    writeTotals(
      this.sql,
      rows.map((r) => ({
        ...evaluation.totals.find((t) => t.window === r.window)!,
        countedMicros: r.window === "day" ? change.day.countedMicros : r.countedMicros + add.usdMicros,
        twilioMicros: r.twilioMicros,
      })),
      now,
    );
    this.#addToBuckets(now, { ...add, blocked: 0 });
    let outbox = false;
    for (const warning of evaluation.warnings) {
      if (this.sql.exec("INSERT OR IGNORE INTO warned (key, at_ms) VALUES (?, ?)", warningKey(warning.limitIndex, warning.windowId), now).rowsWritten === 0) continue;
      metrics.inc("guard_warnings_total");
      outbox = this.#outbox.applyEffects([warningAlert(warning, policy.warnAt)], "", now, (e) => `spend warning: ${e.reason}`) || outbox;
    }
    if (evaluation.crossed !== null) {
      const label = limitLabel(evaluation.crossed);
      outbox = this.#trip(`limit ${label}`, `crossed ${label} in ${windowId(evaluation.crossed.window, now)}`, now, policy) || outbox;
    }
    // Today's activity makes the account worth reconciling with Twilio's own figures.
    if (this.#config.reconcileIntervalS > 0 && this.meta("reconcile_at") === null) {
      this.setMeta("reconcile_at", String(now + this.#config.reconcileIntervalS * 1000));
      outbox = true;
    }
    return outbox;
  }

  /**
   * Adds to the usage history (src/ledger/buckets.ts): the hour and day buckets of `now`, or only `grains`.
   * One statement for the buckets (each `exec` is a cursor object in the isolate: docs/benchmarks.md
   * section 6, the gate's own tail).
   */
  #addToBuckets(now: number, add: { usdMicros: number; events: number; blocked: number }, grains: readonly Grain[] = GRAINS): void {
    const pending = this.#eventWrites?.buckets;
    const values: Array<string | number> = [];
    for (const b of bucketsFor(now)) {
      if (!grains.includes(b.grain)) continue;
      if (pending === undefined) {
        values.push(b.grain, b.startMs, add.usdMicros, add.events, add.blocked);
        continue;
      }
      // Within an event transaction: summed here, written by #withEventWrites (a new object each time: marks copy the map only).
      const key = `${b.grain} ${b.startMs}`;
      const before = pending.get(key);
      pending.set(key, before === undefined
        ? { grain: b.grain, startMs: b.startMs, ...add }
        : { ...before, usdMicros: before.usdMicros + add.usdMicros, events: before.events + add.events, blocked: before.blocked + add.blocked });
    }
    if (values.length > 0) this.sql.exec(ADD_TO_BUCKETS(values.length / 5), ...values);
  }

  /**
   * Adds to the egress gate's figures by destination country (src/ledger/countries.ts) in the hour and
   * day buckets of `atMs`: "add" for a new send or refusal, "correct" for a settlement of a send counted
   * there (it moves the key the send was counted under, and nothing when its bucket was pruned). The
   * buckets (one per grain) are read in one statement and written in one.
   */
  #moveCountry(atMs: number, country: string | null, delta: CountryDelta, how: "add" | "correct"): void {
    const buckets = bucketsFor(atMs);
    const known = this.#bucketCountries;
    const keys: Array<string | number> = [];
    for (const b of buckets) if (!known.has(`${b.grain} ${b.startMs}`)) keys.push(b.grain, b.startMs);
    if (keys.length > 0) {
      if (known.size > MAX_BUCKET_COUNTRIES_KEPT) {
        known.clear();
        keys.length = 0;
        for (const b of buckets) keys.push(b.grain, b.startMs);
      }
      // A bucket without a row reads as null, as its row with no send yet does (both: no countries).
      for (let i = 0; i < keys.length; i += 2) known.set(`${keys[i]} ${keys[i + 1]}`, null);
      for (const row of this.sql.exec<{ grain: string; start_ms: number; countries: string | null }>(READ_BUCKET_COUNTRIES(keys.length / 2), ...keys)) {
        known.set(`${row.grain} ${row.start_ms}`, row.countries);
      }
    }
    const writes: Array<string | number> = [];
    for (const b of buckets) {
      const key = `${b.grain} ${b.startMs}`;
      // On the stored JSON itself (no Map per bucket: this runs with every send and settlement).
      const after = how === "add" ? addSendStored(known.get(key) ?? null, country, delta) : correctSendStored(known.get(key) ?? null, country, delta);
      if (after === null) continue;
      writes.push(b.grain, b.startMs, after);
      known.set(key, after);
    }
    if (writes.length > 0) this.sql.exec(WRITE_BUCKET_COUNTRIES(writes.length / 3), ...writes);
  }

  /** Opens the breaker once; its side effects go to the outbox. False when it was already open. */
  #trip(reason: string, detail: string, now: number, policy: Policy): boolean {
    const before = this.#breaker();
    const tripId = crypto.randomUUID();
    const { breaker, effects } = tripBreaker(before, { reason, nowMs: now, action: policy.action, isParent: this.#isParent(), tripId });
    if (breaker === before) return false;
    this.#setBreaker(breaker);
    this.sql.exec("INSERT INTO trips (trip_id, opened_at, reason, detail, closed_at) VALUES (?, ?, ?, ?, NULL)", tripId, now, reason, detail);
    this.#history(now, tripId, "trip", "open", `${detail}; action ${policy.action}${this.#isParent() ? " (parent account: never suspended)" : ""}`);
    this.logger.warn("breaker-trip", { account: this.#sid, reason, tripId, action: policy.action });
    metrics.inc("guard_breaker_trips_total", { reason: reason.startsWith("limit") ? "limit" : reason });
    this.#outbox.applyEffects(effects, tripId, now, () => `breaker OPEN: ${detail}`);
    return true;
  }

  /** After a write that queued work: make sure the alarm will run it. */
  async #afterWrite(queued: boolean, now: number): Promise<void> {
    if (!queued) return;
    const next = this.#nextAlarmAt(now);
    if (next === null) return;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > next) await this.ctx.storage.setAlarm(next);
  }

  #nextAlarmAt(now: number): number | null {
    const reconcile = this.meta("reconcile_at");
    const prune = this.meta("prune_at");
    const summary = this.meta("summary_at");
    const candidates = [this.#outbox.nextDueAt(), ...[reconcile, prune, summary].map((t) => (t === null ? null : Number(t)))];
    const times = candidates.filter((t): t is number => t !== null && Number.isFinite(t));
    return times.length === 0 ? null : Math.max(now, Math.min(...times));
  }

  // ---------------------------------------------------------------- usage triggers, admin actions

  /** Twilio's Usage Trigger fired for this account: trip (once per IdempotencyToken). */
  async usageTrigger(firing: UsageTriggerFiring, atMs?: number): Promise<{ tripped: boolean; duplicate: boolean }> {
    const now = atMs ?? Date.now();
    this.#identify(firing.accountSid, now);
    const { policy } = this.#policy();
    const result = this.transaction(() => {
      const token = firing.idempotencyToken ?? `trigger:${firing.usageTriggerSid ?? "?"}:${firing.dateFired ?? "?"}`;
      if (this.sql.exec("INSERT OR IGNORE INTO trigger_firings (token, at_ms) VALUES (?, ?)", token, now).rowsWritten === 0) {
        return { tripped: false, duplicate: true };
      }
      if (this.meta("prune_at") === null) this.setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
      const value = firing.currentValue === null ? "?" : firing.currentValue.toFixed(2);
      const detail = `Twilio usage trigger ${firing.usageTriggerSid ?? ""} fired: ${firing.usageCategory ?? "usage"} ${value} USD (trigger ${firing.triggerValue ?? "?"})`;
      return { tripped: this.#trip("usage-trigger", detail, now, policy), duplicate: false };
    });
    await this.#afterWrite(true, now);
    await this.#noteSummary(now, result.tripped);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return result;
  }

  /** Operator trip: opens the breaker with the account's action. */
  async tripNow(sid: string, reason: string, atMs?: number): Promise<AccountSnapshot> {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    const { policy } = this.#policy();
    const queued = this.transaction(() => this.#trip("operator", reason, now, policy));
    await this.#afterWrite(queued, now);
    await this.#noteSummary(now, true);
    return this.snapshot();
  }

  /**
   * Operator reset: closes the breaker and reactivates the subaccount when the guard suspended it (or
   * may have). Effects of the closed trip still queued are dropped by the outbox's fence. The REST
   * outcome is returned and kept in the history; a reactivation given up is alerted.
   */
  async reset(sid: string, atMs?: number): Promise<{ snapshot: AccountSnapshot; reactivation: Reactivation }> {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    const before = this.#breaker();
    const tripId = before.tripId ?? "";
    const { breaker, effects } = resetBreaker(before, { nowMs: now });
    const needsReactivation = effects.some((e) => e.type === "reactivate");
    this.transaction(() => {
      this.sql.exec("UPDATE outbox SET state = 'cancelled' WHERE state = 'pending' AND kind IN ('suspend', 'end-calls')");
      this.#setBreaker(breaker);
      this.sql.exec("UPDATE trips SET closed_at = ? WHERE closed_at IS NULL", now);
      this.#history(now, tripId || null, "reset", "closed", "breaker closed by operator");
      this.#outbox.applyEffects(effects, tripId, now, (e) => e.reason);
    });
    let reactivation: Reactivation = "not-needed";
    if (needsReactivation) {
      await this.#outbox.run(now, false);
      const state = this.#outbox.latestState("reactivate");
      reactivation = state === "done" ? "done" : state === "failed" ? "failed" : "retrying";
    }
    await this.#reschedule(Date.now());
    await this.#noteSummary(now, true);
    return { snapshot: this.snapshot(), reactivation };
  }

  /** Sets (or, with null, removes) this account's own policy; validated again here. */
  setPolicy(sid: string, policy: unknown | null): AccountSnapshot {
    this.#identify(sid, Date.now());
    if (policy === null) this.deleteMeta("policy");
    else this.setMeta("policy", JSON.stringify(parsePolicy(policy)));
    void this.#noteSummary(Date.now(), true);
    return this.snapshot();
  }

  /** The account view. Reading an account never written creates nothing (the schema is lazy): sid is "" then. */
  snapshot(): AccountSnapshot {
    const now = Date.now();
    const { policy, source } = this.#policy();
    const breaker = this.#breaker();
    const sid = this.#sid ?? "";
    if (!this.ready) {
      return {
        sid, isParent: false, breaker: { ...breaker, blocks: false, retrying: false }, policy, policySource: source,
        windows: ALL_WINDOWS.map((window) => windowView(policy, window, windowId(window, now), 0, 0, 0, null)),
        recentEvents: [], warnings: [], trips: [], history: [],
      };
    }
    const windows = readTotals(this.sql, ALL_WINDOWS, now).map((r) => windowView(policy, r.window, r.windowId, r.usdMicros, r.events, r.countedMicros, r.twilioMicros));
    return {
      sid,
      isParent: sid !== "" && this.#isParent(),
      breaker: { ...breaker, blocks: breakerBlocks(breaker), retrying: this.#outbox.retryingSuspension() },
      policy,
      policySource: source,
      windows,
      recentEvents: this.sql
        .exec<{ at_ms: number; kind: string; sid: string; status: string; usd_micros: number; counted: number; duplicate: number; blocked: number }>(
          "SELECT * FROM recent_events ORDER BY seq DESC LIMIT ?", RECENT_EVENTS_KEPT,
        )
        .toArray()
        .map((r) => ({
          at: r.at_ms, kind: r.kind, sid: r.sid, status: r.status, usd: fromMicros(r.usd_micros),
          counted: r.counted === 1, settled: r.counted === 2, duplicate: r.duplicate === 1, blocked: r.blocked === 1,
        })),
      warnings: this.sql
        .exec<{ key: string; at_ms: number }>("SELECT key, at_ms FROM warned ORDER BY at_ms DESC LIMIT 50")
        .toArray()
        .map((w) => {
          // warningKey(limitIndex, windowId): the limit is named by the policy in force.
          const at = w.key.indexOf(":");
          const limit = policy.limits[Number(w.key.slice(0, at))];
          return { limit: limit === undefined ? "a removed limit" : limitLabel(limit), windowId: w.key.slice(at + 1), at: w.at_ms };
        }),
      trips: this.sql
        .exec<{ trip_id: string; opened_at: number; reason: string; detail: string; closed_at: number | null }>("SELECT * FROM trips ORDER BY opened_at DESC LIMIT 50")
        .toArray()
        .map((r) => ({ tripId: r.trip_id, openedAt: r.opened_at, reason: r.reason, detail: r.detail, closedAt: r.closed_at })),
      history: this.sql
        .exec<{ at_ms: number; trip_id: string | null; kind: string; outcome: string; detail: string }>("SELECT * FROM history ORDER BY id DESC LIMIT 200")
        .toArray()
        .map((r) => ({ at: r.at_ms, tripId: r.trip_id, kind: r.kind, outcome: r.outcome, detail: r.detail })),
    };
  }

  // ---------------------------------------------------------------- usage history and the light summary

  /** GET /admin/accounts/:sid/usage: the hour (48) or day (90) series ending at `atMs`, with limits, trips and sends by country. */
  usage(by: Grain, atMs?: number): UsageSeries {
    const now = atMs ?? Date.now();
    const from = oldestKept(by, now);
    // An account never written has no storage (the schema is lazy): an empty series, and nothing created.
    if (!this.ready) return buildSeries(by, now, [], [], this.#policy().policy);
    const rows = this.sql
      .exec<{ start_ms: number; usd_micros: number; events: number; blocked: number; countries: string | null }>(
        "SELECT start_ms, usd_micros, events, blocked, countries FROM usage_buckets WHERE grain = ? AND start_ms >= ? ORDER BY start_ms", by, from,
      )
      .toArray()
      .map((r): BucketRow => ({ grain: by, startMs: r.start_ms, usdMicros: r.usd_micros, events: r.events, blocked: r.blocked, countries: decodeCountries(r.countries) }));
    const trips = this.sql
      .exec<{ opened_at: number; reason: string }>("SELECT opened_at, reason FROM trips WHERE opened_at >= ? ORDER BY opened_at", from)
      .toArray()
      .map((t) => ({ at: t.opened_at, reason: t.reason }));
    return buildSeries(by, now, rows, trips, this.#policy().policy, this.#egress.firstSends(UNKNOWN));
  }

  /** The listing's row for this account (src/accounts/summary.ts), at `now`. */
  #summaryOf(now: number): AccountSummary | null {
    if (this.#sid === null) return null;
    const { policy } = this.#policy();
    const breaker = this.#breaker();
    const totals = readTotals(this.sql, ALL_WINDOWS, now);
    const windows = totals.map((r) => ({ window: r.window, usdMicros: r.usdMicros, events: r.events }));
    const day = windows.find((w) => w.window === "day")!;
    const last = this.#lastActivity();
    this.#summaryRev = Math.max(this.#summaryRev + 1, Date.now() * 1000);
    return {
      sid: this.#sid,
      isParent: this.#isParent(),
      state: breaker.state,
      suspension: breaker.suspension,
      action: policy.action,
      dayStartMs: windowStart("day", now),
      spendTodayMicros: day.usdMicros,
      eventsToday: day.events,
      ...summarise(policy, windows, now),
      lastActivityMs: last,
      rev: this.#summaryRev,
      policySource: this.#policy().source,
      windows: totals.map((r) => windowView(policy, r.window, r.windowId, r.usdMicros, r.events, r.countedMicros, r.twilioMicros)),
    };
  }

  /**
   * Sends the summary to the directory after the answer: at once when `force` (a trip, reset, warning,
   * policy), else at most every SUMMARY_PUSH_INTERVAL_MS, with a trailing push from the alarm so the
   * listing always ends up with the last figures.
   */
  async #noteSummary(now: number, force: boolean): Promise<void> {
    const real = Date.now();
    const pushedAt = force ? null : this.#lastPushAt(now, real);
    if (pushedAt !== null && real - pushedAt < SUMMARY_PUSH_INTERVAL_MS) {
      if (this.meta("summary_at") === null) {
        this.setMeta("summary_at", String(pushedAt + SUMMARY_PUSH_INTERVAL_MS));
        await this.#afterWrite(true, real);
      }
      return;
    }
    this.#pushSummary(now);
  }

  /**
   * When the summary was last pushed, in real time. A new instance (after an eviction, a deploy) has
   * not pushed yet, but an earlier one left every event of the account either pushed or in summary_at
   * for the alarm's trailing push: so the last push is no older than the last activity before this
   * instance's first event. That activity is in the event clock (`now`'s): its distance from `now` is
   * taken back from real time, so the two clocks are never compared. Without it, every new instance
   * would push on its first event, however recently the one before it had.
   */
  #lastPushAt(now: number, real: number): number {
    if (this.#summaryPushedAt === null) {
      const before = this.#activityBefore ?? this.#lastActivity();
      this.#summaryPushedAt = before === 0 ? 0 : real - Math.max(0, now - before);
    }
    return this.#summaryPushedAt;
  }

  #pushSummary(now: number): void {
    const summary = this.#summaryOf(now);
    if (summary === null) return;
    this.#summaryPushedAt = Date.now();
    if (this.meta("summary_at") !== null) this.deleteMeta("summary_at");
    this.ctx.waitUntil(
      this.env.DIRECTORY.getByName("directory")
        .putSummary(summary)
        .catch((error: unknown) => this.logger.error("summary-push-failed", error, { account: this.#sid })),
    );
  }

  /** Pushes the summary now and answers it (the listing asks accounts it has no summary of yet). */
  summary(atMs?: number): AccountSummary | null {
    const now = atMs ?? Date.now();
    this.#pushSummary(now);
    return this.#summaryOf(now);
  }

  // ---------------------------------------------------------------- the REST egress gate (src/egress/)

  /**
   * Reserves a send before the gate forwards it, in one transaction: the egress key (when one is
   * presented), the breaker, the pumping rules and the limits are checked and the estimate counted
   * together, so racing sends can never overshoot a limit. A send that would cross a limit trips the
   * breaker (as a webhook does) and is refused.
   */
  async reserveSend(req: ReserveRequest): Promise<ReserveAnswer> {
    const now = req.atMs;
    this.#identify(req.accountSid, now);
    const { policy } = this.#policy();
    const { answer, effects } = this.transaction(() => this.#reserveOne(req, policy));
    await this.#afterWrite(effects, now);
    // The listing's spend today includes the gate's sends, as it does webhooks' (throttled the same way).
    await this.#noteSummary(now, effects);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return answer;
  }

  /**
   * Reserves several sends of this account in one transaction (the gate's group commit:
   * src/egress/reservation-batches.ts): `settle` first, then each send in the order given, each by
   * the code reserveSend runs, so every answer is what the sends reserved one after the other would
   * have got. Each send runs in its own savepoint: one that fails is rolled back alone and answered
   * `failed` (the gate refuses it, as a failed reservation call), and the others stand.
   */
  async reserveSends(sid: string, reqs: readonly ReserveRequest[], settle: readonly SettlementItem[] = []): Promise<ReserveOutcome[]> {
    if (!ACCOUNT_SID.test(sid) || !Array.isArray(reqs) || reqs.length === 0 || reqs.length > MAX_RECORDS_PER_BATCH || !Array.isArray(settle)) {
      throw new TypeError(`reserveSends: an AccountSid, 1 to ${MAX_RECORDS_PER_BATCH} reservations and an array of settlements`);
    }
    const valid = reqs.map((r) => (r !== null && typeof r === "object" && r.accountSid === sid && Number.isFinite(r.atMs) && r.settle === undefined ? r : null));
    const now = Math.max(...valid.map((r) => r?.atMs ?? 0));
    this.#identify(sid, now > 0 ? now : Date.now());
    const { policy } = this.#policy();
    const { outcomes, effects } = this.transaction(() => {
      let effects = this.#settleCarried(settle, policy);
      const results = this.#eachAlone(valid, "egress-batch-reservation", "not a reservation of this account", () => ({ account: sid }), (req) => this.#reserveOne(req, policy));
      const outcomes = results.map((r): ReserveOutcome => {
        if ("failed" in r) return r;
        effects = r.effects || effects;
        return r.answer;
      });
      return { outcomes, effects };
    });
    await this.#afterWrite(effects, now);
    await this.#noteSummary(now, effects);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return outcomes;
  }

  /** Inside a transaction: one send, as reserveSend() and reserveSends() both reserve it. */
  #reserveOne(req: ReserveRequest, policy: Policy): { answer: ReserveAnswer; effects: boolean } {
    // Earlier sends' outcomes first (whatever this call decides): a released one frees its budget.
    const settled = this.#settleCarried(req.settle ?? [], policy);
    const result = this.#reserve(req, policy, req.atMs);
    return { answer: result.answer, effects: result.effects || settled };
  }

  /** Inside reserveSend's transaction: the reservation itself. */
  #reserve(req: ReserveRequest, policy: Policy, now: number): { answer: ReserveAnswer; effects: boolean } {
    const facts = req.send;
    if (req.key !== null && !this.#egress.useKey(req.key.id, req.key.hash, now)) {
      return { answer: { ok: false, refusal: { reason: "credentials", detail: "Authenticate" } }, effects: false };
    }
    const { usdMicros, unitMicros } = priceSend(facts, policy.prices, policy.egress?.maxCallMinutes);
    const setTimeLimitS = facts.kind === "call" ? callReservation(facts, policy.egress?.maxCallMinutes).setTimeLimitS : null;
    const pumping = checkPumping(policy.egress, facts.destination, now, (key) => this.#egress.count(key));
    const totals = readTotals(this.sql, ALL_WINDOWS, now);
    const decision = decideReservation(policy, totals, now, usdMicros, breakerBlocks(this.#breaker()));
    let refusal: GateRefusal | null = null;
    if (!pumping.ok) {
      refusal = pumping.reason === "country"
        ? { reason: "country", detail: `Permission to send to ${pumping.country ?? "this destination"} has not been enabled for this account by the guard's policy.` }
        : { reason: pumping.reason, retryAfterS: pumping.retryAfterS, detail: pumping.reason === "per-prefix" ? "Too many sends to this block of numbers; retry later." : "Too many sends to this number; retry later." };
    } else if (!decision.ok) {
      refusal = decision.reason === "breaker-open"
        ? { reason: "breaker-open", detail: "The guard's circuit breaker is open for this account: sends are blocked." }
        : { reason: "limit", detail: `This send would take the account above its ${limitLabel(decision.limit)} limit.` };
    }
    let queued = false;
    if (refusal !== null && req.mode === "enforce") {
      // Refused by the gate (never by bad credentials, above): the pumping signal, by country.
      this.#moveCountry(now, facts.destination.country, { sends: 0, usdMicros: 0, blocked: 1 }, "add");
      if (!decision.ok && decision.reason === "limit") {
        const label = limitLabel(decision.limit);
        queued = this.#trip(`limit ${label}`, `a send through the egress gate would cross ${label} in ${windowId(decision.limit.window, now)}`, now, policy);
      }
      return { answer: { ok: false, refusal }, effects: queued };
    }
    const reservation: Reservation = { id: crypto.randomUUID(), atMs: now, kind: facts.kind, usdMicros, state: "held", sid: null };
    const country = facts.destination.country;
    this.#egress.insertReservation(reservation, unitMicros, country);
    if (pumping.ok) for (const c of pumping.counters) this.#egress.increment(c.key, windowEnd(c.window, now));
    const newCountry = this.#egress.firstSendTo(country, now);
    if (newCountry) {
      this.logger.warn("egress-new-country", { account: this.#sid, country: country ?? "unknown", channel: facts.channel });
      queued = this.#outbox.enqueueAlerts("", now, "warn", `first send through the egress gate to ${country ?? "a number of unknown country"} (${facts.channel})`) || queued;
    }
    // Nothing above wrote the totals: they are counted from the rows the decision read.
    queued = this.#count(policy, now, { usdMicros, events: 1 }, totals) || queued;
    this.#moveCountry(now, country, { sends: 1, usdMicros, blocked: 0 }, "add");
    return {
      answer: { ok: true, reservationId: reservation.id, estimateUsd: fromMicros(usdMicros), setTimeLimitS, wouldRefuse: refusal, newCountry },
      effects: queued,
    };
  }

  /**
   * Settles a reservation with Twilio's answer (idempotent: a second settlement changes nothing). The
   * gate now calls settleSends; this one stays for Workers of the previous release during a deploy.
   */
  async settleSend(sid: string, reservationId: string, settlement: Settlement, atMs?: number): Promise<void> {
    const now = atMs ?? Date.now();
    await this.settleSends(sid, [{ reservationId, settlement }], now);
  }

  /**
   * Settles several reservations in one transaction (the gate's settlements that no reservation
   * carried: src/egress/settlements.ts). Each is applied as settleSend would; answers nothing, since
   * the gate calls it after its own answer (no read, no copy over RPC).
   */
  async settleSends(sid: string, items: readonly SettlementItem[], atMs?: number): Promise<void> {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    const { policy } = this.#policy();
    const queued = this.transaction(() => this.#settleAll(items, policy));
    await this.#afterWrite(queued, now);
    await this.#noteSummary(now, queued);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
  }

  /**
   * Inside reserveSend's transaction: the settlements it carries, each in its own savepoint, so one
   * that fails is rolled back alone and logged (as a failed settlement call is) and never blocks the
   * account's reservations.
   */
  #settleCarried(items: readonly SettlementItem[], policy: Policy): boolean {
    let effects = false;
    for (const item of items) {
      try {
        effects = this.transaction(() => this.#settleReservation(item.reservationId, item.settlement, policy)) || effects;
      } catch (error) {
        this.logger.error("egress-settle-failed", error, { account: this.#sid, reservation: item.reservationId });
      }
    }
    return effects;
  }

  /** Inside a transaction: settles each of `items`; true when outbox rows were added. */
  #settleAll(items: readonly SettlementItem[], policy: Policy): boolean {
    let effects = false;
    for (const item of items) effects = this.#settleReservation(item.reservationId, item.settlement, policy) || effects;
    return effects;
  }

  /** Inside a transaction: applies the pure transition, binds the Sid, corrects the windows of the send. */
  #settleReservation(id: string, settlement: Settlement, policy: Policy): boolean {
    const before = this.#egress.reservation(id);
    if (before === null) return false;
    let transition = settleReservation(before, settlement);
    // The send's country figure moves with the windows, by the same transition.
    let country: CountryDelta = { sends: transition.deltaEvents, usdMicros: transition.deltaMicros, blocked: 0 };
    if (transition.bind !== null) {
      const { countKey, entry } = transition.bind;
      const inserted = this.sql.exec("INSERT OR IGNORE INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, ?, ?)", countKey, before.atMs, entry.usdMicros, encodeEntry(entry)).rowsWritten;
      if (inserted === 0) {
        // Its status callback got here first and counted it: the reservation goes, the send stays counted
        // once (by the callback, in the windows). The callback knew no country: the send stays in its
        // country, at the price the callback counted.
        transition = releaseAsDuplicate(before);
        const counted = this.#entryRow(countKey)?.entry.usdMicros ?? 0;
        country = { sends: transition.deltaEvents + 1, usdMicros: transition.deltaMicros + counted, blocked: 0 };
      }
    }
    this.#egress.updateReservation(transition.next);
    if (country.sends !== 0 || country.usdMicros !== 0) this.#moveCountry(before.atMs, before.country, country, "correct");
    if (transition.deltaMicros === 0 && transition.deltaEvents === 0) return false;
    return this.#count(policy, before.atMs, { usdMicros: transition.deltaMicros, events: transition.deltaEvents });
  }

  /** An egress key for a call that is not a send (the gate's reads): checked, and its last use recorded. */
  checkEgressKey(sid: string, keyId: string, hash: string, atMs?: number): boolean {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    return this.#egress.useKey(keyId, hash, now);
  }

  issueEgressKey(sid: string, keyId: string, hash: string, atMs?: number): { ok: true } | { ok: false; why: string } {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    return this.#egress.addKey(keyId, hash, now);
  }

  listEgressKeys(): EgressKeyView[] {
    return this.ready ? this.#egress.listKeys() : [];
  }

  revokeEgressKey(sid: string, keyId: string, atMs?: number): boolean {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    return this.#egress.revokeKey(keyId, now);
  }

  // ---------------------------------------------------------------- the alarm: outbox, reconcile, prune

  override async alarm(): Promise<void> {
    if (!this.ready) return;
    const now = Date.now();
    // Storage is the truth here: an operator's tooling (or a test) may have changed meta directly.
    this.forgetCached();
    try {
      await this.#outbox.run(now);
      if (await reconcileIfDue(this.#reconcileHost(), now)) await this.#outbox.run(Date.now());
      this.#prune(now);
      const summaryAt = this.meta("summary_at");
      if (summaryAt !== null && Number(summaryAt) <= now) this.#pushSummary(Math.max(now, this.#lastActivity()));
    } catch (error) {
      // Never let the alarm throw: the runtime would retry it only a few times; we reschedule ourselves.
      this.logger.error("alarm-failed", error, { account: this.#sid });
    }
    await this.#reschedule(Date.now());
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
  }

  #lastActivity(): number {
    if (this.#lastActivityMs === null) this.#readRecent();
    return this.#lastActivityMs!;
  }

  async #reschedule(now: number): Promise<void> {
    const next = this.#nextAlarmAt(now);
    if (next === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(next);
  }

  #prune(now: number): void {
    const due = this.meta("prune_at");
    if (due === null || Number(due) > now) return;
    this.transaction(() => {
      const { more } = pruneAccount(this.sql, now);
      forgetTotals(this.sql);
      this.#seenHolds = null;
      this.#recentSeq = null;
      this.#lastActivityMs = null;
      this.#egress.prune(now, now - SEEN_RETENTION_MS);
      for (const grain of GRAINS) this.sql.exec("DELETE FROM usage_buckets WHERE grain = ? AND start_ms < ?", grain, oldestKept(grain, now));
      this.#bucketCountries.clear();
      if (more) this.setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
      else this.deleteMeta("prune_at");
    });
  }
}

/**
 * counted.settled holds an entry's state (no schema change): 0 a reservation, 1 settled at an estimate,
 * 2 settled at an estimate whose price lookup is queued, 3 settled at Twilio's real price.
 */
/**
 * `n` rows of `counted` by key: an event's Sid's entry and its de-duplication keys (schema.ts, seenKey).
 * A point lookup per key (`IN (…)` would first build an ephemeral B-tree of the keys).
 */
const READ_LEDGER_ROWS = perRowCount((n) =>
  Array.from({ length: n }, () => "SELECT count_key, at_ms, usd_micros, settled FROM counted WHERE count_key = ?").join(" UNION ALL "),
);
/** Writes `n` rows of `counted` (count_key, at_ms, usd_micros, settled per row). */
const WRITE_LEDGER_ROWS = perRowCount((n) => `INSERT OR REPLACE INTO counted (count_key, at_ms, usd_micros, settled) VALUES ${rowPlaceholders(n, 4)}`);
/** The recent events ring's columns, in WRITE_RECENT_EVENTS's order. */
const RECENT_EVENT_COLUMNS = 10;
/** Writes `n` recent events into their slots of the ring (a later row of the same slot replaces an earlier one). */
const WRITE_RECENT_EVENTS = perRowCount(
  (n) => `INSERT OR REPLACE INTO recent_events (id, seq, at_ms, kind, sid, status, usd_micros, counted, duplicate, blocked) VALUES ${rowPlaceholders(n, RECENT_EVENT_COLUMNS)}`,
);

/** An event transaction's writes kept for its end (#withEventWrites); the totals are kept by totals.ts. */
interface EventWrites {
  /** Usage-bucket additions by grain and start. */
  buckets: Map<string, { grain: Grain; startMs: number; usdMicros: number; events: number; blocked: number }>;
  /** Recent events, RECENT_EVENT_COLUMNS values each, in order. */
  recent: SqlStorageValue[];
}

interface EventWritesMark {
  totals: NonNullable<ReturnType<typeof deferredTotals>>;
  buckets: EventWrites["buckets"];
  recent: number;
  recentSeq: number | null;
  lastActivityMs: number | null;
}

/** Adds to `n` usage buckets (grain, start, usd, events, blocked per row). */
const ADD_TO_BUCKETS = perRowCount(
  (n) => `INSERT INTO usage_buckets (grain, start_ms, usd_micros, events, blocked) VALUES ${rowPlaceholders(n, 5)}
   ON CONFLICT (grain, start_ms) DO UPDATE SET usd_micros = usd_micros + excluded.usd_micros, events = events + excluded.events, blocked = blocked + excluded.blocked`,
);
/** Buckets whose country figures #moveCountry keeps (the current hour and day, and a few a settlement corrects). */
const MAX_BUCKET_COUNTRIES_KEPT = 8;
/** The country figures of `n` usage buckets, each named by (grain, start); one bucket per grain. */
const READ_BUCKET_COUNTRIES = perRowCount(
  (n) => `SELECT grain, start_ms, countries FROM usage_buckets WHERE ${Array.from({ length: n }, () => "(grain = ? AND start_ms = ?)").join(" OR ")}`,
);
/** Sets the country figures of `n` usage buckets (grain, start, countries per row), creating them empty. */
const WRITE_BUCKET_COUNTRIES = perRowCount(
  (n) => `INSERT INTO usage_buckets (grain, start_ms, countries, usd_micros, events, blocked) VALUES ${rowPlaceholders(n, 3, ", 0, 0, 0")}
   ON CONFLICT (grain, start_ms) DO UPDATE SET countries = excluded.countries`,
);

const ENTRY_STATES = { reserved: 0, estimate: 1, lookup: 2, real: 3 } as const;

function encodeEntry(entry: LedgerEntry): number {
  if (!entry.settled) return ENTRY_STATES.reserved;
  return entry.price === undefined ? ENTRY_STATES.estimate : ENTRY_STATES[entry.price];
}

function decodeEntry(usdMicros: number, state: number): LedgerEntry {
  if (state === ENTRY_STATES.lookup) return { usdMicros, settled: true, price: "lookup" };
  if (state === ENTRY_STATES.real) return { usdMicros, settled: true, price: "real" };
  return { usdMicros, settled: state === ENTRY_STATES.estimate };
}

function windowView(policy: Policy, window: string, id: string, usdMicros: number, events: number, countedMicros: number, twilioMicros: number | null): WindowView {
  const limits = policy.limits
    .filter((l) => l.window === window)
    .map((l) => (l.usd !== undefined ? { usd: l.usd, used: usdMicros / toMicros(l.usd) } : { events: l.events!, used: events / l.events! }));
  return { window, windowId: id, usd: fromMicros(usdMicros), events, countedUsd: fromMicros(countedMicros), twilioUsd: twilioMicros === null ? null : fromMicros(twilioMicros), limits };
}
