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
//   - every side effect is fenced by the trip it belongs to (outbox.ts).
import type { Config } from "../config/config.ts";
import { getConfig } from "../config/config.ts";
import type { GuardEnv } from "../config/env.ts";
import { GuardObject } from "../durable/base.ts";
import { metrics, restCallObserver } from "../admin/metrics.ts";
import type { BillableEvent } from "../ledger/classify.ts";
import { applyBillableEvent, bind, cancel, reserve, type LedgerEntry } from "../ledger/entries.ts";
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
import { ALL_WINDOWS, windowId } from "../ledger/windows.ts";
import { createTwilioClient, type TwilioClient } from "../twilio/rest.ts";
import type { RecordVerdict } from "../webhooks/handler.ts";
import { Outbox, type OutboxHost } from "./outbox.ts";
import { PRUNE_INTERVAL_MS, pruneAccount } from "./prune.ts";
import { reconcileIfDue, type ReconcileHost } from "./reconcile.ts";
import { ACCOUNT_SCHEMA, RECENT_EVENTS_KEPT } from "./schema.ts";
import { readTotals, writeTotals } from "./totals.ts";

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
  recentEvents: Array<{ at: number; kind: string; sid: string; status: string; usd: number; counted: boolean; duplicate: boolean }>;
  trips: Array<{ tripId: string; openedAt: number; reason: string; detail: string; closedAt: number | null }>;
  history: Array<{ at: number; tripId: string | null; kind: string; outcome: string; detail: string }>;
}

export type Reactivation = "done" | "retrying" | "failed" | "not-needed";

/** The egress gate's answer from the ledger: reserved, or refused with why (nothing counted). */
export type SendReservation = { ok: true } | { ok: false; reason: "breaker-open" | "limit" | "invalid-request"; limit?: string };

/** What settleSend did: `settled` false when the reservation was unknown or already settled. A result, not an exception (errors lose their type across RPC). */
export type SendSettlement = { ok: true; settled: boolean } | { ok: false; reason: "invalid-request" };

/** How a reserved send ended: Twilio created it (`countKey`: `msg:<MessageSid>` or `call:<CallSid>`), or it never happened. */
export type SendOutcome = { countKey: string } | { failed: true };

/** A countKey the gate may bind a reservation to (classify.ts's format). */
const SEND_COUNT_KEY = /^(msg:(SM|MM)|call:CA)[0-9a-fA-F]{32}$/;
/** A reservation id: the gate's own (a UUID, say). */
const RESERVATION_ID = /^[A-Za-z0-9-]{8,64}$/;
/**
 * A reservation the gate has not settled after this long belongs to a request that died between
 * reserve and settle (the gate waits at most its REST timeout for Twilio): it is cancelled by the prune.
 */
export const RESERVATION_TTL_MS = 3_600_000;

export class AccountGuard extends GuardObject {
  readonly #outbox: Outbox;
  /** Parsed copies of what storage holds, so the event path parses nothing twice. */
  #policyCache: { raw: string; policy: Policy } | null = null;
  #registered = false;
  /** The newest recent_events sequence number, once read (the ring's next slot follows it). */
  #recentSeq: number | null = null;

  constructor(ctx: DurableObjectState, env: GuardEnv) {
    super(ctx, env, ACCOUNT_SCHEMA, { nameKey: "sid" });
    this.#outbox = new Outbox(this.#outboxHost());
  }

  protected override onRollback(): void {
    this.#recentSeq = null;
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
    const config = this.#config;
    return createTwilioClient({ apiBase: config.apiBase, accountSid: config.accountSid, authToken: config.authTokens[0]!, onCall: restCallObserver() });
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
    };
  }

  // ---------------------------------------------------------------- the event path

  /** Records one verified billable event; the verdict decides an inbound event's answer. */
  async record(event: BillableEvent, idempotencyToken: string | null, atMs?: number): Promise<RecordVerdict> {
    const now = atMs ?? Date.now();
    this.#identify(event.accountSid, now);
    const inbound = event.kind === "inbound-message" || event.kind === "inbound-call";
    const { policy } = this.#policy();
    const verdict = this.transaction((): RecordVerdict & { effects: boolean } => {
      const keys = [event.dedupeKey, ...(idempotencyToken ? [`idem:${idempotencyToken}`] : [])];
      let duplicate = false;
      for (const key of keys) {
        const inserted = this.sql.exec("INSERT OR IGNORE INTO seen (key, at_ms) VALUES (?, ?)", key, now).rowsWritten;
        if (inserted === 0) duplicate = true;
      }
      let add: Addition = { usdMicros: 0, events: 0 };
      if (!duplicate) {
        const change = applyBillableEvent(this.#entry(event.countKey), event, priceEvent(event, policy.prices));
        if (change.entry !== null) this.#setEntry(event.countKey, change.entry, now);
        add = change.add;
      }
      // The ring keeps the newest RECENT_EVENTS_KEPT events: each event replaces the oldest slot.
      const seq = this.#nextRecentSeq();
      this.sql.exec(
        "INSERT OR REPLACE INTO recent_events (id, seq, at_ms, kind, sid, status, usd_micros, counted, duplicate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        seq % RECENT_EVENTS_KEPT, seq, now, event.kind, event.sid, event.status, add.usdMicros, add.events, duplicate ? 1 : 0,
      );
      let effects = false;
      if (this.meta("prune_at") === null) {
        // Remembered keys must be pruned some day: the first event after a quiet period schedules it.
        this.setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
        effects = true;
      }
      if (add.usdMicros !== 0 || add.events !== 0) effects = this.#count(policy, now, add) || effects;
      return { duplicate, blocked: inbound && breakerBlocks(this.#breaker()), effects };
    });
    await this.#afterWrite(verdict.effects, now);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return { duplicate: verdict.duplicate, blocked: verdict.blocked };
  }

  #entry(countKey: string): LedgerEntry | undefined {
    const row = this.sql.exec<{ usd_micros: number; settled: number }>("SELECT usd_micros, settled FROM counted WHERE count_key = ?", countKey).toArray()[0];
    return row === undefined ? undefined : { usdMicros: row.usd_micros, settled: row.settled === 1 };
  }

  #setEntry(countKey: string, entry: LedgerEntry, now: number): void {
    this.sql.exec("INSERT OR REPLACE INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, ?, ?)", countKey, now, entry.usdMicros, entry.settled ? 1 : 0);
  }

  #nextRecentSeq(): number {
    this.#recentSeq ??= this.sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM recent_events").one().seq ?? 0;
    return ++this.#recentSeq;
  }

  /** Adds to the windows of `now`, warns and trips as the policy says. True when outbox rows were added. */
  #count(policy: Policy, now: number, add: Addition): boolean {
    const rows = readTotals(this.sql, ALL_WINDOWS, now);
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
    const candidates = [this.#outbox.nextDueAt(), reconcile === null ? null : Number(reconcile), prune === null ? null : Number(prune)];
    const times = candidates.filter((t): t is number => t !== null && Number.isFinite(t));
    return times.length === 0 ? null : Math.max(now, Math.min(...times));
  }

  // ---------------------------------------------------------------- the egress gate: reserve, then settle

  /**
   * Reserves a send's estimate before the gate forwards it, in one transaction, so racing sends can never
   * overshoot a limit. Refused, with nothing counted, while the breaker blocks, or when the send would
   * take a window above a limit (unless the policy's action is `alert`: then it is counted, and trips).
   * Reserving the same id again is a no-op answered ok.
   */
  async reserveSend(accountSid: string, reservationId: string, estimateMicros: number, atMs?: number): Promise<SendReservation> {
    if (!RESERVATION_ID.test(reservationId) || !Number.isSafeInteger(estimateMicros) || estimateMicros < 0) return { ok: false, reason: "invalid-request" };
    const now = atMs ?? Date.now();
    this.#identify(accountSid, now);
    const { policy } = this.#policy();
    const result = this.transaction((): { answer: SendReservation; queued: boolean } => {
      if (breakerBlocks(this.#breaker())) return { answer: { ok: false, reason: "breaker-open" }, queued: false };
      const key = `res:${reservationId}`;
      const change = reserve(this.#entry(key), estimateMicros);
      if (change.entry === null) return { answer: { ok: true }, queued: false };
      const rows = readTotals(this.sql, ALL_WINDOWS, now);
      const day = rows.find((r) => r.window === "day")!;
      const crossed = applyEvent(policy, rows, now, change.add, countEvent({ countedMicros: day.countedMicros, twilioMicros: day.twilioMicros }, change.add).perWindow).crossed;
      if (crossed !== null && policy.action !== "alert") return { answer: { ok: false, reason: "limit", limit: limitLabel(crossed) }, queued: false };
      this.#setEntry(key, change.entry, now);
      let queued = this.#count(policy, now, change.add);
      if (this.meta("prune_at") === null) {
        this.setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
        queued = true;
      }
      return { answer: { ok: true }, queued };
    });
    await this.#afterWrite(result.queued, now);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return result.answer;
  }

  /**
   * Settles a reservation with Twilio's answer: a created send binds it to its Sid (whose status
   * callbacks then settle it at the real price, and do not count it again); a send that never happened
   * takes it back. Unknown or already settled reservations are a no-op.
   */
  async settleSend(accountSid: string, reservationId: string, outcome: SendOutcome, atMs?: number): Promise<SendSettlement> {
    if (!RESERVATION_ID.test(reservationId) || ("countKey" in outcome && !SEND_COUNT_KEY.test(outcome.countKey))) return { ok: false, reason: "invalid-request" };
    const now = atMs ?? Date.now();
    this.#identify(accountSid, now);
    const { policy } = this.#policy();
    const result = this.transaction(() => this.#settleReservation(`res:${reservationId}`, outcome, policy, now));
    await this.#afterWrite(result.queued, now);
    return { ok: true, settled: result.settled };
  }

  #settleReservation(key: string, outcome: SendOutcome, policy: Policy, now: number): { settled: boolean; queued: boolean } {
    const reservation = this.#entry(key);
    if (reservation === undefined) return { settled: false, queued: false };
    this.sql.exec("DELETE FROM counted WHERE count_key = ?", key);
    let add: Addition;
    if ("countKey" in outcome) {
      const change = bind(reservation, this.#entry(outcome.countKey));
      if (change.entry !== null) this.#setEntry(outcome.countKey, change.entry, now);
      add = change.add;
    } else {
      add = cancel(reservation).add;
    }
    return { settled: true, queued: add.usdMicros !== 0 || add.events !== 0 ? this.#count(policy, now, add) : false };
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
      await this.#outbox.run(now);
      const state = this.#outbox.latestState("reactivate");
      reactivation = state === "done" ? "done" : state === "failed" ? "failed" : "retrying";
    }
    await this.#reschedule(Date.now());
    return { snapshot: this.snapshot(), reactivation };
  }

  /** Sets (or, with null, removes) this account's own policy; validated again here. */
  setPolicy(sid: string, policy: unknown | null): AccountSnapshot {
    this.#identify(sid, Date.now());
    if (policy === null) this.deleteMeta("policy");
    else this.setMeta("policy", JSON.stringify(parsePolicy(policy)));
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
        recentEvents: [], trips: [], history: [],
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
        .exec<{ at_ms: number; kind: string; sid: string; status: string; usd_micros: number; counted: number; duplicate: number }>(
          "SELECT * FROM recent_events ORDER BY seq DESC LIMIT ?", RECENT_EVENTS_KEPT,
        )
        .toArray()
        .map((r) => ({ at: r.at_ms, kind: r.kind, sid: r.sid, status: r.status, usd: fromMicros(r.usd_micros), counted: r.counted === 1, duplicate: r.duplicate === 1 })),
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
    } catch (error) {
      // Never let the alarm throw: the runtime would retry it only a few times; we reschedule ourselves.
      this.logger.error("alarm-failed", error, { account: this.#sid });
    }
    await this.#reschedule(Date.now());
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
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
      // Reservations the gate never settled: taken back in the windows they were counted in.
      const stale = this.sql
        .exec<{ count_key: string; at_ms: number }>("SELECT count_key, at_ms FROM counted WHERE count_key LIKE 'res:%' AND at_ms < ?", now - RESERVATION_TTL_MS)
        .toArray();
      const { policy } = this.#policy();
      for (const r of stale) this.#settleReservation(r.count_key, { failed: true }, policy, r.at_ms);
      const { more } = pruneAccount(this.sql, now);
      if (more) this.setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
      else this.deleteMeta("prune_at");
    });
  }
}

function windowView(policy: Policy, window: string, id: string, usdMicros: number, events: number, countedMicros: number, twilioMicros: number | null): WindowView {
  const limits = policy.limits
    .filter((l) => l.window === window)
    .map((l) => (l.usd !== undefined ? { usd: l.usd, used: usdMicros / toMicros(l.usd) } : { events: l.events!, used: events / l.events! }));
  return { window, windowId: id, usd: fromMicros(usdMicros), events, countedUsd: fromMicros(countedMicros), twilioUsd: twilioMicros === null ? null : fromMicros(twilioMicros), limits };
}
