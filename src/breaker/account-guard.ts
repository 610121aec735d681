// AccountGuard: one Durable Object per AccountSid (SQLite storage). A thin shell: the money logic lives
// in src/ledger/ (classification, pricing, windows, limits, breaker transitions); this class persists
// its results, de-duplicates, and runs the trip's side effects from a durable outbox through alarms.
//
// Exactly-once rules, all enforced inside one synchronous SQLite transaction per call (a Durable Object
// runs one call's synchronous code at a time, so racing requests are serialised here):
//   - an event is counted once: its `${Sid}:${status}` key and Twilio's idempotency token are remembered;
//   - a message or call is priced once per Sid (a call's 1-minute reservation is settled by its completion);
//   - a trip happens once: opening an open breaker has no effects, so one suspension per trip.
// Side effects (suspend, end calls, alerts, reactivate) are outbox rows written in that transaction and
// executed by alarm(); the outbox survives eviction and restarts, and failures retry with backoff.
import { DurableObject } from "cloudflare:workers";
import { getConfig, type Config } from "../config/config.ts";
import type { GuardEnv } from "../config/env.ts";
import { Logger } from "../http/log.ts";
import type { BillableEvent } from "../ledger/classify.ts";
import { parsePolicy, type Limit, type Policy } from "../ledger/policy.ts";
import { fromMicros, priceEvent, toMicros } from "../ledger/pricing.ts";
import { applyEvent, breakerBlocks, tripBreaker, resetBreaker, type Breaker, type Effect, type WindowTotals } from "../ledger/limits.ts";
import { ALL_WINDOWS, isPrunable, windowEnd, windowId, windowStart } from "../ledger/windows.ts";
import { classifyRestFailure, retryDelayMs } from "../ledger/backoff.ts";
import { createTwilioClient, TwilioRestError, type TwilioClient } from "../twilio/rest.ts";
import { metrics, restCallObserver } from "../admin/metrics.ts";
import type { RecordVerdict } from "../webhooks/handler.ts";
import { AlertDeliveryError, alertText, dashboardLink, sendAlertWebhook } from "./alerts.ts";
import { migrateAccountSchema, RECENT_EVENTS_KEPT } from "./schema.ts";
import { EgressStore, type EgressKeyView } from "../egress/store.ts";
import type { GateRefusal, ReserveAnswer, ReserveRequest } from "../egress/protocol.ts";
import { checkPumping } from "../egress/pumping.ts";
import { callReservation, priceSend } from "../egress/send.ts";
import { decideReservation, releaseAsDuplicate, settleReservation, type Reservation, type Settlement } from "../ledger/reservations.ts";
import { GRAINS, bucketsFor, buildSeries, oldestKept, type BucketRow, type Grain, type UsageSeries } from "../ledger/buckets.ts";
import { SUMMARY_PUSH_INTERVAL_MS, summarise, type AccountSummary } from "../accounts/summary.ts";

/**
 * Twilio retries a webhook for at most a few hours (connection overrides allow up to 5 retries with
 * back-off: https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides); keys older than
 * two days can no longer be retries, so they are pruned to bound storage.
 */
const SEEN_RETENTION_MS = 48 * 3_600_000;
/** Pruning runs at most this often, from the alarm, never on the event path. */
const PRUNE_INTERVAL_MS = 3_600_000;
/** Writes one window's totals, updating the row in place when it exists (no delete + insert). */
const UPSERT_TOTALS =
  "INSERT INTO totals (window, window_id, start_ms, usd_micros, events) VALUES (?, ?, ?, ?, ?) ON CONFLICT (window, window_id) DO UPDATE SET usd_micros = excluded.usd_micros, events = excluded.events";
/** Trip history entries kept (attempts, outcomes). */
const HISTORY_KEPT = 500;
/** An alert that still cannot be delivered after this many attempts is dropped (logged): alerts must not retry forever. */
const MAX_ALERT_ATTEMPTS = 8;

export interface UsageTriggerFiring {
  accountSid: string;
  idempotencyToken: string | null;
  usageTriggerSid: string | null;
  usageCategory: string | null;
  currentValue: number | null;
  triggerValue: number | null;
  dateFired: string | null;
}

type OutboxKind = "suspend" | "end-calls" | "reactivate" | "alert-webhook" | "alert-sms";

type OutboxRow = {
  id: number;
  trip_id: string;
  kind: OutboxKind;
  payload: string;
  attempts: number;
  next_at_ms: number;
};

export interface WindowView {
  window: string;
  windowId: string;
  usd: number;
  events: number;
  limits: Array<{ usd?: number; events?: number; used: number }>;
}

export interface AccountSnapshot {
  sid: string;
  isParent: boolean;
  breaker: Breaker & { blocks: boolean; retrying: boolean };
  policy: Policy;
  policySource: "default" | "account";
  windows: WindowView[];
  /** counted: a new billable event; settled: a call's completion settling its reservation (usd = the difference); blocked: answered as blocked. */
  recentEvents: Array<{ at: number; kind: string; sid: string; status: string; usd: number; counted: boolean; settled: boolean; duplicate: boolean; blocked: boolean }>;
  /** Warnings sent (limit reached warnAt), newest first: which limit, in which window, when. */
  warnings: Array<{ limit: string; windowId: string; at: number }>;
  trips: Array<{ tripId: string; openedAt: number; reason: string; detail: string; closedAt: number | null }>;
  history: Array<{ at: number; tripId: string | null; kind: string; outcome: string; detail: string }>;
}

const CLOSED: Breaker = { state: "closed", suspension: "none" };

export class AccountGuard extends DurableObject<GuardEnv> {
  readonly #sql: SqlStorage;
  #sid: string | null;
  #logger: Logger;
  /** Outbox rows being attempted right now (an alarm and an operator reset may both run the outbox). */
  readonly #inFlight = new Set<number>();
  /** Parsed copies of what storage holds, so the event path parses nothing twice. */
  #policyCache: { raw: string; policy: Policy } | null = null;
  #registered = false;
  /** What the meta table holds, as far as read (null: known absent). See #meta. */
  readonly #metaValues = new Map<string, string | null>();
  /** The newest recent_events sequence number, once read (the ring's next slot follows it). */
  #recentSeq: number | null = null;
  /** When this instance last pushed its summary to the directory (real time), and the push's revision. */
  #summaryPushedAt = 0;
  #summaryRev = 0;

  /** The REST egress gate's rows (src/egress/store.ts). */
  readonly #egress: EgressStore;

  constructor(ctx: DurableObjectState, env: GuardEnv) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#egress = new EgressStore(this.#sql);
    this.#migrate();
    this.#sid = this.#meta("sid");
    this.#logger = new Logger(this.#secrets());
  }

  // ---------------------------------------------------------------- schema

  #migrate(): void {
    this.ctx.storage.transactionSync(() => migrateAccountSchema(this.#sql));
  }

  /**
   * Runs `fn` in one SQLite transaction. The in-memory copies of what storage holds (meta values, the
   * recent-events sequence) are dropped if it throws, since the rollback undid what they remember.
   */
  #transaction<T>(fn: () => T): T {
    try {
      return this.ctx.storage.transactionSync(fn);
    } catch (error) {
      this.#metaValues.clear();
      this.#recentSeq = null;
      throw error;
    }
  }

  /**
   * A meta value, read from storage once and then from memory: the event path reads policy, breaker,
   * prune_at and reconcile_at on every event. Every write goes through #setMeta/#deleteMeta; the copy is
   * dropped when a transaction rolls back and at the start of every alarm.
   */
  #meta(key: string): string | null {
    const cached = this.#metaValues.get(key);
    if (cached !== undefined) return cached;
    const value = this.#sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value ?? null;
    this.#metaValues.set(key, value);
    return value;
  }

  #setMeta(key: string, value: string): void {
    this.#sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, value);
    this.#metaValues.set(key, value);
  }

  #deleteMeta(key: string): void {
    this.#sql.exec("DELETE FROM meta WHERE key = ?", key);
    this.#metaValues.set(key, null);
  }

  #secrets(): readonly string[] {
    try {
      return getConfig(this.env).secrets;
    } catch {
      return [];
    }
  }

  get #config(): Config {
    return getConfig(this.env);
  }

  /** The account this object keeps: persisted on first use (ctx.id.name is not relied upon). */
  #identify(sid: string, now: number): string {
    if (this.#sid === null) {
      this.#sid = sid;
      this.#setMeta("sid", sid);
    } else if (this.#sid !== sid) {
      throw new Error("AccountGuard addressed with another account's SID");
    }
    if (!this.#registered && this.#meta("registered") !== null) this.#registered = true;
    if (!this.#registered) {
      this.#registered = true;
      const isParent = sid === this.#config.accountSid;
      this.ctx.waitUntil(
        this.env.DIRECTORY.getByName("directory")
          .register(sid, isParent, now)
          .then(() => this.#setMeta("registered", String(now)))
          .catch((error: unknown) => {
            this.#registered = false;
            this.#logger.error("directory-register-failed", error, { account: sid });
          }),
      );
    }
    return sid;
  }

  #isParent(): boolean {
    return this.#sid === this.#config.accountSid;
  }

  #policy(): { policy: Policy; source: "default" | "account" } {
    const own = this.#meta("policy");
    if (own !== null) {
      if (this.#policyCache?.raw !== own) this.#policyCache = { raw: own, policy: parsePolicy(JSON.parse(own)) };
      return { policy: this.#policyCache.policy, source: "account" };
    }
    return { policy: this.#config.policy, source: "default" };
  }

  #breaker(): Breaker {
    const raw = this.#meta("breaker");
    return raw === null ? CLOSED : (JSON.parse(raw) as Breaker);
  }

  #blocks(breaker: Breaker): boolean {
    return breakerBlocks(breaker);
  }

  // ---------------------------------------------------------------- the event path

  /** Records one verified billable event; the verdict decides an inbound event's answer. */
  async record(event: BillableEvent, idempotencyToken: string | null, atMs?: number, reservationId?: string): Promise<RecordVerdict> {
    const now = atMs ?? Date.now();
    const sid = this.#identify(event.accountSid, now);
    const inbound = event.kind === "inbound-message" || event.kind === "inbound-call";
    const { policy } = this.#policy();
    const verdict = this.#transaction((): RecordVerdict & { effects: boolean } => {
      const keys = [event.dedupeKey, ...(idempotencyToken ? [`idem:${idempotencyToken}`] : [])];
      let duplicate = false;
      for (const key of keys) {
        const inserted = this.#sql.exec("INSERT OR IGNORE INTO seen (key, at_ms) VALUES (?, ?)", key, now).rowsWritten;
        if (inserted === 0) duplicate = true;
      }
      let usdMicros = 0;
      let events = 0;
      // A status callback the egress gate asked for names its reservation: bind it before counting, so the
      // send is counted once (by its reservation), and a reported price replaces the estimate.
      let egressEffects = false;
      if (reservationId !== undefined) egressEffects = this.#settleReservation(reservationId, { type: "sid-seen", sid: event.sid }, policy);
      if (event.reportedPriceUsd !== undefined && event.kind === "message-status") {
        const bound = this.#egress.reservationBySid(event.sid);
        if (bound !== null) egressEffects = this.#settleReservation(bound.id, { type: "price", usd: event.reportedPriceUsd }, policy) || egressEffects;
      }
      let settled = false;
      if (!duplicate && event.billable) {
        // A call the gate made is priced at the destination's rate it was reserved at.
        const callRate = event.kind === "call-status" && event.reportedPriceUsd === undefined ? this.#egress.callRate(event.sid) : null;
        const price = callRate !== null ? callRate * (event.units.minutes ?? 0) : priceEvent(event, policy.prices);
        const prior = this.#sql
          .exec<{ usd_micros: number; settled: number }>("SELECT usd_micros, settled FROM counted WHERE count_key = ?", event.countKey)
          .toArray()[0];
        if (prior === undefined) {
          // A call's first sighting (the inbound voice request) reserves an estimate its completion settles.
          const settled = event.kind === "inbound-call" ? 0 : 1;
          this.#sql.exec("INSERT INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, ?, ?)", event.countKey, now, price, settled);
          usdMicros = price;
          events = 1;
        } else if (prior.settled === 0 && event.kind === "call-status") {
          this.#sql.exec("UPDATE counted SET usd_micros = ?, settled = 1 WHERE count_key = ?", price, event.countKey);
          usdMicros = price - prior.usd_micros;
          settled = true;
        }
      }
      let effects = false;
      if (this.#meta("prune_at") === null) {
        // Remembered keys must be pruned some day: the first event after a quiet period schedules it.
        this.#setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
        effects = true;
      }
      if (usdMicros !== 0 || events !== 0) effects = this.#count(policy, now, { usdMicros, events }) || effects;
      const blocked = inbound && this.#blocks(this.#breaker());
      if (blocked) this.#addToBuckets(now, { usdMicros: 0, events: 0, blocked: 1 });
      // The ring keeps the newest RECENT_EVENTS_KEPT events: each event replaces the oldest slot.
      // counted: 1 a new billable event, 2 a call's settlement (v2 code reads only 1 as counted).
      const seq = this.#nextRecentSeq();
      this.#sql.exec(
        "INSERT OR REPLACE INTO recent_events (id, seq, at_ms, kind, sid, status, usd_micros, counted, duplicate, blocked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        seq % RECENT_EVENTS_KEPT, seq, now, event.kind, event.sid, event.status, usdMicros, settled ? 2 : events, duplicate ? 1 : 0, blocked ? 1 : 0,
      );
      return { duplicate, blocked, effects: effects || egressEffects };
    });
    await this.#afterWrite(verdict.effects, now);
    await this.#noteSummary(now, verdict.effects);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return { duplicate: verdict.duplicate, blocked: verdict.blocked };
  }

  #nextRecentSeq(): number {
    this.#recentSeq ??= this.#sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM recent_events").one().seq ?? 0;
    return ++this.#recentSeq;
  }

  /** Adds to every current window, warns and trips as the policy says. True when outbox rows were added. */
  #count(policy: Policy, now: number, add: { usdMicros: number; events: number }): boolean {
    const current: WindowTotals[] = ALL_WINDOWS.map((window) => {
      const id = windowId(window, now);
      const row = this.#sql
        .exec<{ usd_micros: number; events: number }>("SELECT usd_micros, events FROM totals WHERE window = ? AND window_id = ?", window, id)
        .toArray()[0];
      return { window, windowId: id, usdMicros: row?.usd_micros ?? 0, events: row?.events ?? 0 };
    });
    const evaluation = applyEvent(policy, current, now, add);
    for (const t of evaluation.totals) {
      this.#sql.exec(
        UPSERT_TOTALS,
        t.window, t.windowId, windowStart(t.window, now), Math.max(0, t.usdMicros), Math.max(0, t.events),
      );
    }
    this.#addToBuckets(now, { ...add, blocked: 0 });
    let outbox = false;
    for (const warning of evaluation.warnings) {
      const key = `${limitLabel(warning.limit)}@${warning.windowId}`;
      if (this.#sql.exec("INSERT OR IGNORE INTO warned (key, at_ms) VALUES (?, ?)", key, now).rowsWritten === 0) continue;
      metrics.inc("guard_warnings_total");
      outbox = this.#enqueueAlerts("", now, "warn", `spend warning: ${limitLabel(warning.limit)} reached ${Math.round(policy.warnAt * 100)}% (${warning.windowId})`) || outbox;
    }
    if (evaluation.crossed !== null) {
      const label = limitLabel(evaluation.crossed);
      outbox = this.#trip(`limit ${label}`, `crossed ${label} in ${windowId(evaluation.crossed.window, now)}`, now, policy) || outbox;
    }
    // Today's activity makes the account worth reconciling with Twilio's own figures.
    if (this.#config.reconcileIntervalS > 0 && this.#meta("reconcile_at") === null) {
      this.#setMeta("reconcile_at", String(now + this.#config.reconcileIntervalS * 1000));
      outbox = true;
    }
    return outbox;
  }

  /** Adds to the usage history (src/ledger/buckets.ts): the hour and day buckets of `now`, or only `grains`. */
  #addToBuckets(now: number, add: { usdMicros: number; events: number; blocked: number }, grains: readonly Grain[] = GRAINS): void {
    for (const b of bucketsFor(now)) {
      if (!grains.includes(b.grain)) continue;
      this.#sql.exec(
        `INSERT INTO usage_buckets (grain, start_ms, usd_micros, events, blocked) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (grain, start_ms) DO UPDATE SET usd_micros = usd_micros + excluded.usd_micros, events = events + excluded.events, blocked = blocked + excluded.blocked`,
        b.grain, b.startMs, add.usdMicros, add.events, add.blocked,
      );
    }
  }

  /** Opens the breaker once; its side effects go to the outbox. False when it was already open. */
  #trip(reason: string, detail: string, now: number, policy: Policy): boolean {
    const before = this.#breaker();
    const tripId = crypto.randomUUID();
    const { breaker, effects } = tripBreaker(before, { reason, nowMs: now, action: policy.action, isParent: this.#isParent(), tripId });
    if (effects.length === 0 && breaker.state === before.state) return false;
    this.#setMeta("breaker", JSON.stringify(breaker));
    this.#sql.exec("INSERT INTO trips (trip_id, opened_at, reason, detail, closed_at) VALUES (?, ?, ?, ?, NULL)", tripId, now, reason, detail);
    this.#history(now, tripId, "trip", "open", `${detail}; action ${policy.action}${this.#isParent() ? " (parent account: never suspended)" : ""}`);
    this.#logger.warn("breaker-trip", { account: this.#sid, reason, tripId, action: policy.action });
    metrics.inc("guard_breaker_trips_total", { reason: reason.startsWith("limit") ? "limit" : reason });
    if (this.#sid !== null) metrics.breaker(this.#sid, "open", Date.now());
    this.#applyEffects(effects, tripId, now, detail);
    return true;
  }

  #applyEffects(effects: readonly Effect[], tripId: string, now: number, detail: string): void {
    for (const effect of effects) {
      if (effect.type === "suspend") this.#enqueue(tripId, "suspend", {}, now);
      else if (effect.type === "reactivate") this.#enqueue(tripId, "reactivate", {}, now);
      else if (effect.type === "alert") {
        this.#enqueueAlerts(tripId, now, effect.level, `${effect.level === "trip" ? "breaker OPEN" : "breaker notice"}: ${detail}`);
      }
    }
  }

  #enqueue(tripId: string, kind: OutboxKind, payload: Record<string, unknown>, now: number): void {
    this.#sql.exec(
      "INSERT INTO outbox (trip_id, kind, payload, attempts, next_at_ms, state) VALUES (?, ?, ?, 0, ?, 'pending')",
      tripId, kind, JSON.stringify(payload), now,
    );
  }

  #enqueueAlerts(tripId: string, now: number, level: string, message: string): boolean {
    const config = this.#config;
    const today = this.#sql.exec<{ usd_micros: number }>("SELECT usd_micros FROM totals WHERE window = 'day' AND window_id = ?", windowId("day", now)).toArray()[0];
    const text = alertText(this.#sid ?? "?", level, message, { spendTodayUsd: fromMicros(today?.usd_micros ?? 0), link: dashboardLink(config.publicUrl, this.#sid ?? "") });
    let any = false;
    if (config.alertWebhookUrl !== null) {
      this.#enqueue(tripId, "alert-webhook", { level, text, message }, now);
      any = true;
    }
    if (config.alertSms !== null && level !== "warn") {
      this.#enqueue(tripId, "alert-sms", { text }, now);
      any = true;
    }
    if (!any) this.#history(now, tripId || null, "alert", "skipped", "no ALERT_WEBHOOK_URL or ALERT_SMS_TO configured");
    return any;
  }

  #history(now: number, tripId: string | null, kind: string, outcome: string, detail: string): void {
    this.#sql.exec("INSERT INTO history (at_ms, trip_id, kind, outcome, detail) VALUES (?, ?, ?, ?, ?)", now, tripId, kind, outcome, detail);
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
    const due = this.#sql.exec<{ at: number | null }>("SELECT MIN(next_at_ms) AS at FROM outbox WHERE state = 'pending'").one().at;
    const reconcile = this.#meta("reconcile_at");
    const prune = this.#meta("prune_at");
    const summary = this.#meta("summary_at");
    const candidates = [due, reconcile === null ? null : Number(reconcile), prune === null ? null : Number(prune), summary === null ? null : Number(summary)];
    const times = candidates.filter((t): t is number => t !== null && Number.isFinite(t));
    return times.length === 0 ? null : Math.max(now, Math.min(...times));
  }

  // ---------------------------------------------------------------- usage triggers, admin actions

  /** Twilio's Usage Trigger fired for this account: trip (once per IdempotencyToken). */
  async usageTrigger(firing: UsageTriggerFiring, atMs?: number): Promise<{ tripped: boolean; duplicate: boolean }> {
    const now = atMs ?? Date.now();
    this.#identify(firing.accountSid, now);
    const { policy } = this.#policy();
    const result = this.#transaction(() => {
      const token = firing.idempotencyToken ?? `trigger:${firing.usageTriggerSid ?? "?"}:${firing.dateFired ?? "?"}`;
      if (this.#sql.exec("INSERT OR IGNORE INTO trigger_firings (token, at_ms) VALUES (?, ?)", token, now).rowsWritten === 0) {
        return { tripped: false, duplicate: true };
      }
      const value = firing.currentValue === null ? "?" : firing.currentValue.toFixed(2);
      const detail = `Twilio usage trigger ${firing.usageTriggerSid ?? ""} fired: ${firing.usageCategory ?? "usage"} ${value} USD (trigger ${firing.triggerValue ?? "?"})`;
      return { tripped: this.#trip("usage-trigger", detail, now, policy), duplicate: false };
    });
    await this.#afterWrite(result.tripped, now);
    await this.#noteSummary(now, result.tripped);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return result;
  }

  /** Operator trip: opens the breaker with the account's action. */
  async tripNow(sid: string, reason: string, atMs?: number): Promise<AccountSnapshot> {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    const { policy } = this.#policy();
    const queued = this.#transaction(() => this.#trip("operator", reason, now, policy));
    await this.#afterWrite(queued, now);
    await this.#noteSummary(now, true);
    return this.snapshot();
  }

  /**
   * Operator reset: closes the breaker, cancels side effects not yet done, and reactivates the
   * subaccount when the guard suspended it. The REST outcome is returned and kept in the history.
   */
  async reset(sid: string, atMs?: number): Promise<{ snapshot: AccountSnapshot; reactivation: "done" | "retrying" | "failed" | "not-needed" }> {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    const before = this.#breaker();
    const tripId = before.tripId ?? "";
    const { breaker, effects } = resetBreaker(before, { nowMs: now });
    const needsReactivation = effects.some((e) => e.type === "reactivate");
    this.#transaction(() => {
      this.#sql.exec("UPDATE outbox SET state = 'cancelled' WHERE state = 'pending' AND kind IN ('suspend', 'end-calls')");
      this.#setMeta("breaker", JSON.stringify(breaker));
      this.#sql.exec("UPDATE trips SET closed_at = ? WHERE closed_at IS NULL", now);
      this.#history(now, tripId || null, "reset", "closed", "breaker closed by operator");
      if (this.#sid !== null) metrics.breaker(this.#sid, "closed", Date.now());
      if (needsReactivation) this.#enqueue(tripId, "reactivate", {}, now);
    });
    let reactivation: "done" | "retrying" | "failed" | "not-needed" = "not-needed";
    if (needsReactivation) {
      await this.#runOutbox(now);
      const row = this.#sql
        .exec<{ state: string }>("SELECT state FROM outbox WHERE kind = 'reactivate' ORDER BY id DESC LIMIT 1")
        .toArray()[0];
      reactivation = row?.state === "done" ? "done" : row?.state === "failed" ? "failed" : "retrying";
      await this.#reschedule(Date.now());
    }
    await this.#noteSummary(now, true);
    return { snapshot: this.snapshot(), reactivation };
  }

  /** Sets (or, with null, removes) this account's own policy; validated again here. */
  setPolicy(sid: string, policy: unknown | null): AccountSnapshot {
    this.#identify(sid, Date.now());
    if (policy === null) this.#deleteMeta("policy");
    else this.#setMeta("policy", JSON.stringify(parsePolicy(policy)));
    void this.#noteSummary(Date.now(), true);
    return this.snapshot();
  }

  // ---------------------------------------------------------------- usage history and the light summary

  /** GET /admin/accounts/:sid/usage: the hour (48) or day (90) series ending at `atMs`, with limits and trips. */
  usage(by: Grain, atMs?: number): UsageSeries {
    const now = atMs ?? Date.now();
    const from = oldestKept(by, now);
    const rows = this.#sql
      .exec<{ start_ms: number; usd_micros: number; events: number; blocked: number }>(
        "SELECT start_ms, usd_micros, events, blocked FROM usage_buckets WHERE grain = ? AND start_ms >= ? ORDER BY start_ms", by, from,
      )
      .toArray()
      .map((r): BucketRow => ({ grain: by, startMs: r.start_ms, usdMicros: r.usd_micros, events: r.events, blocked: r.blocked }));
    const trips = this.#sql
      .exec<{ opened_at: number; reason: string }>("SELECT opened_at, reason FROM trips WHERE opened_at >= ? ORDER BY opened_at", from)
      .toArray()
      .map((t) => ({ at: t.opened_at, reason: t.reason }));
    return buildSeries(by, now, rows, trips, this.#policy().policy);
  }

  /** The listing's row for this account (src/accounts/summary.ts), at `now`. */
  #summaryOf(now: number): AccountSummary | null {
    if (this.#sid === null) return null;
    const { policy } = this.#policy();
    const breaker = this.#breaker();
    const windows = ALL_WINDOWS.map((window) => {
      const row = this.#sql
        .exec<{ usd_micros: number; events: number }>("SELECT usd_micros, events FROM totals WHERE window = ? AND window_id = ?", window, windowId(window, now))
        .toArray()[0];
      return { window, usdMicros: row?.usd_micros ?? 0, events: row?.events ?? 0 };
    });
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
      windows: this.#windowViews(now, policy),
    };
  }

  /**
   * Sends the summary to the directory after the answer: at once when `force` (a trip, reset, warning,
   * policy), else at most every SUMMARY_PUSH_INTERVAL_MS, with a trailing push from the alarm so the
   * listing always ends up with the last figures.
   */
  async #noteSummary(now: number, force: boolean): Promise<void> {
    const real = Date.now();
    if (!force && real - this.#summaryPushedAt < SUMMARY_PUSH_INTERVAL_MS) {
      if (this.#meta("summary_at") === null) {
        this.#setMeta("summary_at", String(this.#summaryPushedAt + SUMMARY_PUSH_INTERVAL_MS));
        await this.#afterWrite(true, real);
      }
      return;
    }
    this.#pushSummary(now);
  }

  #pushSummary(now: number): void {
    const summary = this.#summaryOf(now);
    if (summary === null) return;
    this.#summaryPushedAt = Date.now();
    if (this.#meta("summary_at") !== null) this.#deleteMeta("summary_at");
    this.ctx.waitUntil(
      this.env.DIRECTORY.getByName("directory")
        .putSummary(summary)
        .catch((error: unknown) => this.#logger.error("summary-push-failed", error, { account: this.#sid })),
    );
  }

  /** Pushes the summary now and answers it (the listing asks accounts it has no summary of yet). */
  summary(atMs?: number): AccountSummary | null {
    const now = atMs ?? Date.now();
    this.#pushSummary(now);
    return this.#summaryOf(now);
  }

  /** The current windows' totals against the policy's limits (used = total / limit). */
  #windowViews(now: number, policy: Policy): WindowView[] {
    return ALL_WINDOWS.map((window) => {
      const id = windowId(window, now);
      const row = this.#sql
        .exec<{ usd_micros: number; events: number }>("SELECT usd_micros, events FROM totals WHERE window = ? AND window_id = ?", window, id)
        .toArray()[0];
      const usdMicros = row?.usd_micros ?? 0;
      const events = row?.events ?? 0;
      const limits = policy.limits
        .filter((l) => l.window === window)
        .map((l) => (l.usd !== undefined ? { usd: l.usd, used: usdMicros / toMicros(l.usd) } : { events: l.events!, used: events / l.events! }));
      return { window, windowId: id, usd: fromMicros(usdMicros), events, limits };
    });
  }

  snapshot(): AccountSnapshot {
    const now = Date.now();
    const { policy, source } = this.#policy();
    const breaker = this.#breaker();
    const retrying = this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending' AND attempts > 0 AND kind = 'suspend'").one().n > 0;
    return {
      sid: this.#sid ?? "",
      isParent: this.#sid !== null && this.#isParent(),
      breaker: { ...breaker, blocks: this.#blocks(breaker), retrying },
      policy,
      policySource: source,
      windows: this.#windowViews(now, policy),
      recentEvents: this.#sql
        .exec<{ at_ms: number; kind: string; sid: string; status: string; usd_micros: number; counted: number; duplicate: number; blocked: number }>(
          "SELECT * FROM recent_events ORDER BY seq DESC LIMIT ?", RECENT_EVENTS_KEPT,
        )
        .toArray()
        .map((r) => ({
          at: r.at_ms, kind: r.kind, sid: r.sid, status: r.status, usd: fromMicros(r.usd_micros),
          counted: r.counted === 1, settled: r.counted === 2, duplicate: r.duplicate === 1, blocked: r.blocked === 1,
        })),
      warnings: this.#sql
        .exec<{ key: string; at_ms: number }>("SELECT key, at_ms FROM warned ORDER BY at_ms DESC LIMIT 50")
        .toArray()
        .map((w) => {
          const at = w.key.lastIndexOf("@");
          return { limit: w.key.slice(0, at), windowId: w.key.slice(at + 1), at: w.at_ms };
        }),
      trips: this.#sql
        .exec<{ trip_id: string; opened_at: number; reason: string; detail: string; closed_at: number | null }>("SELECT * FROM trips ORDER BY opened_at DESC LIMIT 50")
        .toArray()
        .map((r) => ({ tripId: r.trip_id, openedAt: r.opened_at, reason: r.reason, detail: r.detail, closedAt: r.closed_at })),
      history: this.#sql
        .exec<{ at_ms: number; trip_id: string | null; kind: string; outcome: string; detail: string }>("SELECT * FROM history ORDER BY id DESC LIMIT 200")
        .toArray()
        .map((r) => ({ at: r.at_ms, tripId: r.trip_id, kind: r.kind, outcome: r.outcome, detail: r.detail })),
    };
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
    const facts = req.send;
    const { answer, effects } = this.#transaction((): { answer: ReserveAnswer; effects: boolean } => {
      if (req.key !== null && !this.#egress.useKey(req.key.id, req.key.hash, now)) {
        return { answer: { ok: false, refusal: { reason: "credentials", detail: "Authenticate" } }, effects: false };
      }
      const { usdMicros, unitMicros } = priceSend(facts, policy.prices, policy.egress?.maxCallMinutes);
      const setTimeLimitS = facts.kind === "call" ? callReservation(facts, policy.egress?.maxCallMinutes).setTimeLimitS : null;
      const pumping = checkPumping(policy.egress, facts.destination, now, (key) => this.#egress.count(key));
      const decision = decideReservation(policy, this.#currentTotals(now), now, usdMicros, this.#blocks(this.#breaker()));
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
        this.#logger.warn("egress-new-country", { account: this.#sid, country: country ?? "unknown", channel: facts.channel });
        queued = this.#enqueueAlerts("", now, "warn", `first send through the egress gate to ${country ?? "a number of unknown country"} (${facts.channel})`) || queued;
      }
      queued = this.#count(policy, now, { usdMicros, events: 1 }) || queued;
      return {
        answer: { ok: true, reservationId: reservation.id, estimateUsd: fromMicros(usdMicros), setTimeLimitS, wouldRefuse: refusal, newCountry },
        effects: queued,
      };
    });
    await this.#afterWrite(effects, now);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return answer;
  }

  /** Settles a reservation with Twilio's answer (idempotent: a second settlement changes nothing). */
  async settleSend(sid: string, reservationId: string, settlement: Settlement, atMs?: number): Promise<Reservation | null> {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    const { policy } = this.#policy();
    const queued = this.#transaction(() => this.#settleReservation(reservationId, settlement, policy));
    await this.#afterWrite(queued, now);
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    return this.#egress.reservation(reservationId);
  }

  /** Inside a transaction: applies the pure transition, binds the Sid, corrects the windows of the send. */
  #settleReservation(id: string, settlement: Settlement, policy: Policy): boolean {
    const before = this.#egress.reservation(id);
    if (before === null) return false;
    let transition = settleReservation(before, settlement);
    if (transition.bind !== null) {
      const { countKey, usdMicros, settled } = transition.bind;
      const inserted = this.#sql.exec("INSERT OR IGNORE INTO counted (count_key, at_ms, usd_micros, settled) VALUES (?, ?, ?, ?)", countKey, before.atMs, usdMicros, settled).rowsWritten;
      // Its status callback got here first and counted it: the reservation goes, the send stays counted once.
      if (inserted === 0) transition = releaseAsDuplicate(before);
    }
    this.#egress.updateReservation(transition.next);
    if (transition.deltaMicros === 0 && transition.deltaEvents === 0) return false;
    return this.#count(policy, before.atMs, { usdMicros: transition.deltaMicros, events: transition.deltaEvents });
  }

  #currentTotals(now: number): WindowTotals[] {
    return ALL_WINDOWS.map((window) => {
      const id = windowId(window, now);
      const row = this.#sql
        .exec<{ usd_micros: number; events: number }>("SELECT usd_micros, events FROM totals WHERE window = ? AND window_id = ?", window, id)
        .toArray()[0];
      return { window, windowId: id, usdMicros: row?.usd_micros ?? 0, events: row?.events ?? 0 };
    });
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
    return this.#egress.listKeys();
  }

  revokeEgressKey(sid: string, keyId: string, atMs?: number): boolean {
    const now = atMs ?? Date.now();
    this.#identify(sid, now);
    return this.#egress.revokeKey(keyId, now);
  }

  // ---------------------------------------------------------------- the alarm: outbox, reconcile, prune

  override async alarm(): Promise<void> {
    const now = Date.now();
    // Storage is the truth here: an operator's tooling (or a test) may have changed meta directly.
    this.#metaValues.clear();
    try {
      await this.#runOutbox(now);
      await this.#reconcile(now);
      this.#prune(now);
      const summaryAt = this.#meta("summary_at");
      if (summaryAt !== null && Number(summaryAt) <= now) this.#pushSummary(Math.max(now, this.#lastActivity()));
    } catch (error) {
      // Never let the alarm throw: the runtime would retry it only a few times; we reschedule ourselves.
      this.#logger.error("alarm-failed", error, { account: this.#sid });
    }
    await this.#reschedule(Date.now());
    metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
  }

  #lastActivity(): number {
    return this.#sql.exec<{ at: number | null }>("SELECT MAX(at_ms) AS at FROM recent_events").one().at ?? 0;
  }

  async #reschedule(now: number): Promise<void> {
    const next = this.#nextAlarmAt(now);
    if (next === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(next);
  }

  #client(): TwilioClient {
    const config = this.#config;
    return createTwilioClient({ apiBase: config.apiBase, accountSid: config.accountSid, authToken: config.authTokens[0]!, onCall: restCallObserver() });
  }

  async #runOutbox(now: number): Promise<void> {
    const due = this.#sql
      .exec<OutboxRow>("SELECT id, trip_id, kind, payload, attempts, next_at_ms FROM outbox WHERE state = 'pending' AND next_at_ms <= ? ORDER BY id", now)
      .toArray();
    for (const row of due) {
      // Re-read: an earlier row's outcome (or a reset meanwhile) may have changed this one.
      const state = this.#sql.exec<{ state: string }>("SELECT state FROM outbox WHERE id = ?", row.id).one().state;
      if (state !== "pending" || this.#inFlight.has(row.id)) continue;
      this.#inFlight.add(row.id);
      try {
        await this.#attempt(row);
      } finally {
        this.#inFlight.delete(row.id);
      }
    }
  }

  async #attempt(row: OutboxRow): Promise<void> {
    const sid = this.#sid!;
    const attempt = row.attempts + 1;
    try {
      const detail = await this.#perform(row, sid);
      const now = Date.now();
      this.#transaction(() => {
        this.#sql.exec("UPDATE outbox SET state = 'done', attempts = ? WHERE id = ?", attempt, row.id);
        this.#history(now, row.trip_id || null, row.kind, "done", `attempt ${attempt}: ${detail}`);
        if (row.kind !== "suspend") return;
        const breaker = this.#breaker();
        if (breaker.state === "open" && breaker.tripId === row.trip_id) {
          this.#setSuspension(row.trip_id, "done");
          this.#enqueue(row.trip_id, "end-calls", {}, now);
        } else {
          // An operator reset the breaker while this suspension was on its way to Twilio: undo it.
          this.#history(now, row.trip_id || null, "reactivate", "queued", "suspension completed after a reset; reactivating");
          this.#enqueue(row.trip_id, "reactivate", {}, now);
        }
      });
    } catch (error) {
      const now = Date.now();
      const status = error instanceof TwilioRestError ? error.status : error instanceof AlertDeliveryError ? error.status : "network";
      const code = error instanceof TwilioRestError ? error.code : undefined;
      const message = error instanceof Error ? this.#logger.redact(error.message) : "failed";
      const retry = classifyRestFailure(status, code) === "retry" && !(row.kind.startsWith("alert") && attempt >= MAX_ALERT_ATTEMPTS);
      this.#transaction(() => {
        if (retry) {
          const delay = retryDelayMs(attempt, Math.random());
          this.#sql.exec("UPDATE outbox SET attempts = ?, next_at_ms = ? WHERE id = ?", attempt, now + delay, row.id);
          this.#history(now, row.trip_id || null, row.kind, "retry", `attempt ${attempt}: ${message}; next in ${Math.round(delay / 1000)} s`);
        } else {
          this.#sql.exec("UPDATE outbox SET state = 'failed', attempts = ? WHERE id = ?", attempt, row.id);
          this.#history(now, row.trip_id || null, row.kind, "failed", `attempt ${attempt}: ${message}; not retried`);
        }
        if (row.kind === "suspend") {
          this.#setSuspension(row.trip_id, "failed");
          if (!retry) this.#enqueueAlerts(row.trip_id, now, "trip", `suspension FAILED and will not be retried: ${message}`);
        }
      });
      this.#logger.warn("outbox-attempt-failed", { account: sid, kind: row.kind, attempt, retry, status: String(status), error: message });
    }
  }

  #setSuspension(tripId: string, suspension: "done" | "failed"): void {
    const breaker = this.#breaker();
    if (breaker.state !== "open" || breaker.tripId !== tripId) return;
    this.#setMeta("breaker", JSON.stringify({ ...breaker, suspension }));
  }

  async #perform(row: OutboxRow, sid: string): Promise<string> {
    const payload = JSON.parse(row.payload) as { text?: string; level?: string; message?: string };
    switch (row.kind) {
      case "suspend":
        await this.#client().setAccountStatus(sid, "suspended");
        return "account suspended";
      case "reactivate":
        await this.#client().setAccountStatus(sid, "active");
        return "account reactivated";
      case "end-calls": {
        const client = this.#client();
        const calls = await client.listInProgressCalls(sid);
        for (const call of calls) await client.completeCall(sid, call);
        return `${calls.length} in-progress call(s) ended`;
      }
      case "alert-webhook": {
        const url = this.#config.alertWebhookUrl;
        if (url === null) return "skipped: ALERT_WEBHOOK_URL no longer set";
        await sendAlertWebhook(url, { text: payload.text ?? "", account: sid, level: payload.level ?? "trip", message: payload.message ?? "" });
        return "alert webhook delivered";
      }
      case "alert-sms": {
        const sms = this.#config.alertSms;
        if (sms === null) return "skipped: ALERT_SMS_TO no longer set";
        await this.#client().sendSms(sms.from, sms.to, payload.text ?? "");
        return "alert SMS sent";
      }
    }
  }

  async #reconcile(now: number): Promise<void> {
    const due = this.#meta("reconcile_at");
    const interval = this.#config.reconcileIntervalS;
    if (due === null || Number(due) > now || this.#sid === null) return;
    if (interval <= 0) {
      this.#deleteMeta("reconcile_at");
      return;
    }
    const today = windowId("day", now);
    const row = this.#sql.exec<{ usd_micros: number; events: number }>("SELECT usd_micros, events FROM totals WHERE window = 'day' AND window_id = ?", today).toArray()[0];
    if (row === undefined || row.events === 0) {
      // No activity today: stop polling until the next event.
      this.#deleteMeta("reconcile_at");
      return;
    }
    this.#setMeta("reconcile_at", String(now + interval * 1000));
    let twilioUsd: number | null;
    try {
      twilioUsd = await this.#client().usageTodayUsd(this.#sid);
    } catch (error) {
      this.#logger.warn("reconcile-failed", { account: this.#sid, error: error instanceof Error ? this.#logger.redact(error.message) : "failed" });
      return;
    }
    if (twilioUsd === null) return;
    const twilioMicros = toMicros(twilioUsd);
    const { policy } = this.#policy();
    const queued = this.#transaction(() => {
      const current = this.#sql.exec<{ usd_micros: number }>("SELECT usd_micros FROM totals WHERE window = 'day' AND window_id = ?", today).toArray()[0]?.usd_micros ?? 0;
      if (twilioMicros <= current) return false;
      const delta = twilioMicros - current;
      this.#history(now, null, "reconcile", "raised", `Twilio reports ${twilioUsd.toFixed(4)} USD today, guard had ${fromMicros(current).toFixed(4)}: +${fromMicros(delta).toFixed(4)}`);
      // Twilio's figure is the day's; the difference belongs to the day and month windows, not to this minute or hour.
      return this.#countReconciled(policy, now, delta);
    });
    if (queued) await this.#afterWrite(true, now);
  }

  #countReconciled(policy: Policy, now: number, delta: number): boolean {
    const dayPolicy: Policy = { ...policy, limits: policy.limits.filter((l) => l.window === "day" || l.window === "month") };
    const current: WindowTotals[] = (["day", "month"] as const).map((window) => {
      const id = windowId(window, now);
      const row = this.#sql.exec<{ usd_micros: number; events: number }>("SELECT usd_micros, events FROM totals WHERE window = ? AND window_id = ?", window, id).toArray()[0];
      return { window, windowId: id, usdMicros: row?.usd_micros ?? 0, events: row?.events ?? 0 };
    });
    const evaluation = applyEvent(dayPolicy, current, now, { usdMicros: delta, events: 0 });
    for (const t of evaluation.totals.filter((t) => t.window === "day" || t.window === "month")) {
      this.#sql.exec(
        UPSERT_TOTALS,
        t.window, t.windowId, windowStart(t.window, now), t.usdMicros, t.events,
      );
    }
    this.#addToBuckets(now, { usdMicros: delta, events: 0, blocked: 0 }, ["day"]);
    if (evaluation.crossed === null) return false;
    const label = limitLabel(evaluation.crossed);
    return this.#trip(`limit ${label}`, `crossed ${label} by reconciliation with Twilio's usage records`, now, policy);
  }

  #prune(now: number): void {
    const due = this.#meta("prune_at");
    if (due === null || Number(due) > now) return;
    this.#sql.exec("DELETE FROM seen WHERE at_ms < ?", now - SEEN_RETENTION_MS);
    this.#sql.exec("DELETE FROM counted WHERE at_ms < ?", now - SEEN_RETENTION_MS);
    this.#sql.exec("DELETE FROM trigger_firings WHERE at_ms < ?", now - SEEN_RETENTION_MS);
    this.#sql.exec("DELETE FROM warned WHERE at_ms < ?", now - 40 * 86_400_000);
    this.#sql.exec("DELETE FROM history WHERE id <= (SELECT MAX(id) FROM history) - ?", HISTORY_KEPT);
    // Rows outside the ring's slots: appended by the previous release after a rollback (schema.ts).
    this.#sql.exec("DELETE FROM recent_events WHERE id >= ?", RECENT_EVENTS_KEPT);
    this.#sql.exec("DELETE FROM outbox WHERE state != 'pending' AND next_at_ms < ?", now - SEEN_RETENTION_MS);
    this.#egress.prune(now, now - SEEN_RETENTION_MS);
    for (const grain of GRAINS) this.#sql.exec("DELETE FROM usage_buckets WHERE grain = ? AND start_ms < ?", grain, oldestKept(grain, now));
    for (const window of ALL_WINDOWS) {
      const rows = this.#sql.exec<{ window_id: string; start_ms: number }>("SELECT window_id, start_ms FROM totals WHERE window = ?", window).toArray();
      for (const r of rows) if (isPrunable(window, r.start_ms, now)) this.#sql.exec("DELETE FROM totals WHERE window = ? AND window_id = ?", window, r.window_id);
    }
    // Idle accounts should not wake up every hour forever: prune again only while keys remain.
    const remaining = this.#sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM seen").one().n;
    if (remaining > 0) this.#setMeta("prune_at", String(now + PRUNE_INTERVAL_MS));
    else this.#deleteMeta("prune_at");
  }
}

export function limitLabel(limit: Limit): string {
  return limit.usd !== undefined ? `${limit.window} ${limit.usd} USD` : `${limit.window} ${limit.events} events`;
}
