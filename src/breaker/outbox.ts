// The AccountGuard's outbox runner: every side effect of a trip or a reset (suspend, end the live calls,
// reactivate, alert) is a row written in the same transaction as the state change that wants it, and
// run from here (the alarm, or an operator's reset) until it sticks or is given up.
//
// Rules (each a pure transition in src/ledger/limits.ts, called here, never re-implemented):
//   - fenced: just before an account effect goes to Twilio, effectCurrent() asks whether it still
//     serves the breaker as it is now; a suspension of an old trip, or a reactivation overtaken by a
//     newer trip, is dropped (so an account re-tripped meanwhile never ends active);
//   - outcomes: suspensionResult() and reactivationResult() turn a confirmed outcome into the
//     breaker's next state and the effects that follow (end the calls; undo a suspension that landed
//     after a reset; suspend again after a reactivation that landed after a new trip);
//   - confirmed: a suspend or reactivate counts as done only when Twilio's answer shows the status asked
//     for; a 2xx with an unreadable body, or another status, is retried (classifyRestFailure is the one
//     classifier for everything else);
//   - never silent: every effect given up is in the history, counted in guard_effects_given_up_total,
//     and (unless it was an alert itself) alerted;
//   - one at a time: runs are serialised, so two REST calls about the account's status never race;
//   - bookkeeping last: a send's real-price lookup (price-lookup.ts) runs after the account's effects and
//     alerts, at most PRICE_LOOKUPS_PER_RUN per run; being money bookkeeping, not a protection, its
//     attempts stay out of the trip history (a busy account would bury its trips under them), its
//     outcomes go to guard_price_lookups_total and the log.
import { toMicros } from "../ledger/pricing.ts";
import { PRICE_LOOKUP_BACKOFF, PRICE_LOOKUP_HORIZON_MS, PRICE_LOOKUPS_PER_RUN, PriceUnavailable, readPrice, type PriceLookup } from "./price-lookup.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../observability/log.ts";
import { metrics } from "../observability/metrics.ts";
import { retryDelayMs } from "../ledger/backoff.ts";
import { effectCurrent, reactivationResult, suspensionResult, type Breaker, type Effect, type Transition } from "../ledger/limits.ts";
import { classifyRestFailure, TwilioRestError } from "../twilio/errors.ts";
import type { TwilioClient } from "../twilio/rest.ts";
import { AlertDeliveryError, alertText, sendAlertWebhook, type AlertFigures } from "./alerts.ts";

export type OutboxKind = "suspend" | "end-calls" | "reactivate" | "alert-webhook" | "alert-sms" | "price-lookup";

type OutboxRow = {
  id: number;
  trip_id: string;
  kind: OutboxKind;
  payload: string;
  attempts: number;
};

/** An alert that still cannot be delivered after this many attempts is given up (logged): alerts must not retry forever. */
export const MAX_ALERT_ATTEMPTS = 8;
/** One run attempts at most this many rows (a reset waits for its run; the alarm comes back for the rest). */
const MAX_ROWS_PER_RUN = 100;

/** What the runner needs from the Durable Object around it. */
export interface OutboxHost {
  readonly sql: SqlStorage;
  readonly logger: Logger;
  sid(): string;
  config(): Config;
  client(): TwilioClient;
  breaker(): Breaker;
  setBreaker(breaker: Breaker): void;
  transaction<T>(fn: () => T): T;
  history(now: number, tripId: string | null, kind: string, outcome: string, detail: string): void;
  /** What an alert's text adds: today's spend, the dashboard link. */
  alertFigures(now: number): AlertFigures;
  /** Applies a send's real price to its ledger entry (once: false when it changed nothing). */
  applyRealPrice(lookup: PriceLookup, usdMicros: number): boolean;
}

/** Twilio answered, but not with the status asked for: not done. `permanent` when repeating cannot help (a closed account). */
class UnconfirmedEffect extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent: boolean) {
    super(message);
    this.permanent = permanent;
  }
}

/** The one place an attempt's failure becomes retry or give-up. */
export function attemptOutcome(error: unknown): "retry" | "failed" {
  if (error instanceof UnconfirmedEffect) return error.permanent ? "failed" : "retry";
  // A 2xx whose body we could not read may or may not have acted: only a readable answer confirms.
  if (error instanceof TwilioRestError) return error.unconfirmed ? "retry" : classifyRestFailure(error.status, error.code);
  if (error instanceof AlertDeliveryError) return classifyRestFailure(error.status);
  // Anything else (a bug, a runtime hiccup): retrying costs a request, giving up could cost the account.
  return "retry";
}

export class Outbox {
  readonly #host: OutboxHost;
  #chain: Promise<void> = Promise.resolve();

  constructor(host: OutboxHost) {
    this.#host = host;
  }

  enqueue(tripId: string, kind: OutboxKind, payload: object, now: number): void {
    this.#host.sql.exec(
      "INSERT INTO outbox (trip_id, kind, payload, attempts, next_at_ms, state) VALUES (?, ?, ?, 0, ?, 'pending')",
      tripId, kind, JSON.stringify(payload), now,
    );
  }

  /** Price lookups waiting (the bound MAX_PENDING_PRICE_LOOKUPS is checked against this). */
  pendingPriceLookups(): number {
    return this.#host.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending' AND kind = 'price-lookup'").one().n;
  }

  /** Queues alerts by every configured channel (SMS for trips only). False when none is configured. */
  enqueueAlerts(tripId: string, now: number, level: "trip" | "warn", message: string): boolean {
    const config = this.#host.config();
    const text = alertText(this.#host.sid(), level, message, this.#host.alertFigures(now));
    let any = false;
    if (config.alertWebhookUrl !== null) {
      this.enqueue(tripId, "alert-webhook", { level, text, message }, now);
      any = true;
    }
    if (config.alertSms !== null && level !== "warn") {
      this.enqueue(tripId, "alert-sms", { text }, now);
      any = true;
    }
    if (!any) this.#host.history(now, tripId || null, "alert", "skipped", "no ALERT_WEBHOOK_URL or ALERT_SMS_TO configured");
    return any;
  }

  /** Turns a transition's effects into rows. `alertMessage` words an alert effect. True when rows were added. */
  applyEffects(effects: readonly Effect[], tripId: string, now: number, alertMessage: (effect: Extract<Effect, { type: "alert" }>) => string): boolean {
    let queued = false;
    for (const effect of effects) {
      if (effect.type === "alert") queued = this.enqueueAlerts(tripId, now, effect.level, alertMessage(effect)) || queued;
      else {
        this.enqueue(tripId, effect.type, {}, now);
        queued = true;
      }
    }
    return queued;
  }

  /** The earliest pending row's time, or null. */
  nextDueAt(): number | null {
    return this.#host.sql.exec<{ at: number | null }>("SELECT MIN(next_at_ms) AS at FROM outbox WHERE state = 'pending'").one().at;
  }

  /** The state of the newest row of `kind`, if any. */
  latestState(kind: OutboxKind): string | null {
    return this.#host.sql.exec<{ state: string }>("SELECT state FROM outbox WHERE kind = ? ORDER BY id DESC LIMIT 1", kind).toArray()[0]?.state ?? null;
  }

  /** Whether a suspension of the current trip has failed at least once and is still being retried. */
  retryingSuspension(): boolean {
    return this.#host.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending' AND attempts > 0 AND kind = 'suspend'").one().n > 0;
  }

  /**
   * Runs every row due at `now` (and those their outcomes queue), after any run already under way.
   * `priceLookups: false` leaves the lookups to the alarm (an operator's reset waits for its run).
   */
  run(now: number, priceLookups = true): Promise<void> {
    const next = this.#chain.then(() => this.#runDue(now, priceLookups));
    this.#chain = next.catch(() => {});
    return next;
  }

  async #runDue(now: number, priceLookups: boolean): Promise<void> {
    const tried = new Set<number>();
    let lookups = 0;
    for (let i = 0; i < MAX_ROWS_PER_RUN; i++) {
      const due = Math.max(now, Date.now());
      // The account's effects and alerts first, price lookups after them; only rows tried in this run can
      // come back, so one more than those is enough to find an untried one.
      const row = this.#host.sql
        .exec<OutboxRow>(
          "SELECT id, trip_id, kind, payload, attempts FROM outbox WHERE state = 'pending' AND next_at_ms <= ? ORDER BY kind = 'price-lookup', id LIMIT ?",
          due, tried.size + 1,
        )
        .toArray()
        .find((r) => !tried.has(r.id));
      if (row === undefined) return;
      if (row.kind === "price-lookup" && (!priceLookups || ++lookups > PRICE_LOOKUPS_PER_RUN)) return;
      tried.add(row.id);
      await this.#attempt(row);
    }
  }

  async #attempt(row: OutboxRow): Promise<void> {
    const host = this.#host;
    const attempt = row.attempts + 1;
    if (isAccountEffect(row.kind) && !effectCurrent(host.breaker(), row.kind, row.trip_id)) {
      host.transaction(() => {
        host.sql.exec("UPDATE outbox SET state = 'cancelled' WHERE id = ?", row.id);
        host.history(Date.now(), row.trip_id || null, row.kind, "fenced", "dropped: the breaker has moved on since it was queued");
      });
      return;
    }
    let detail: string;
    try {
      detail = await this.#perform(row);
    } catch (error) {
      if (row.kind === "price-lookup") this.#priceLookupFailed(row, attempt, error);
      else this.#failed(row, attempt, error);
      return;
    }
    const now = Date.now();
    if (row.kind === "price-lookup") {
      host.sql.exec("UPDATE outbox SET state = 'done', attempts = ? WHERE id = ?", attempt, row.id);
      return;
    }
    host.transaction(() => {
      host.sql.exec("UPDATE outbox SET state = 'done', attempts = ? WHERE id = ?", attempt, row.id);
      host.history(now, row.trip_id || null, row.kind, "done", `attempt ${attempt}: ${detail}`);
      if (row.kind === "suspend") this.#follow(suspensionResult(host.breaker(), "done", row.trip_id), row.trip_id, now, "suspension completed after the breaker moved on: undoing it");
      else if (row.kind === "reactivate") this.#follow(reactivationResult(host.breaker(), "done"), host.breaker().tripId ?? "", now, "reactivation landed after a new trip: suspending again");
    });
  }

  /** Persists a transition that follows an outcome; `why` is logged when it queues account effects. */
  #follow(transition: Transition, tripId: string, now: number, why: string, alert?: string): void {
    const host = this.#host;
    const before = host.breaker();
    if (transition.breaker !== before) host.setBreaker(transition.breaker);
    if (transition.effects.some((e) => e.type === "reactivate" || e.type === "suspend")) host.history(now, tripId || null, "outbox", "queued", why);
    this.applyEffects(transition.effects, tripId, now, (e) => alert ?? e.reason);
  }

  #failed(row: OutboxRow, attempt: number, error: unknown): void {
    const host = this.#host;
    const now = Date.now();
    const message = error instanceof Error ? host.logger.redact(error.message) : "failed";
    const outcome = attemptOutcome(error);
    const retry = outcome === "retry" && !(row.kind.startsWith("alert") && attempt >= MAX_ALERT_ATTEMPTS);
    host.transaction(() => {
      if (retry) {
        const delay = retryDelayMs(attempt, Math.random());
        host.sql.exec("UPDATE outbox SET attempts = ?, next_at_ms = ? WHERE id = ?", attempt, now + delay, row.id);
        host.history(now, row.trip_id || null, row.kind, "retry", `attempt ${attempt}: ${message}; next in ${Math.round(delay / 1000)} s`);
        if (row.kind === "suspend") this.#follow(suspensionResult(host.breaker(), "retry", row.trip_id), row.trip_id, now, "");
        return;
      }
      host.sql.exec("UPDATE outbox SET state = 'failed', attempts = ? WHERE id = ?", attempt, row.id);
      host.history(now, row.trip_id || null, row.kind, "failed", `attempt ${attempt}: ${message}; given up`);
      metrics.inc("guard_effects_given_up_total", { kind: row.kind });
      if (row.kind === "suspend") {
        this.#follow(suspensionResult(host.breaker(), "failed", row.trip_id), row.trip_id, now, "", `suspension FAILED and will not be retried: ${message}`);
      } else if (row.kind === "reactivate") {
        this.enqueueAlerts(row.trip_id, now, "trip", `reactivation FAILED and will not be retried (${message}): the breaker is closed but the subaccount may still be suspended`);
      } else if (row.kind === "end-calls") {
        this.enqueueAlerts(row.trip_id, now, "trip", `ending the live calls FAILED and will not be retried: ${message}`);
      }
    });
    host.logger.warn("outbox-attempt-failed", { account: host.sid(), kind: row.kind, attempt, retry, error: message });
    if (!retry && row.kind.startsWith("alert")) host.logger.error("alert-given-up", new Error(message), { account: host.sid(), kind: row.kind });
  }

  /** A lookup that found no price (yet), or failed: again later with backoff, until the horizon; then given up, logged and counted. */
  #priceLookupFailed(row: OutboxRow, attempt: number, error: unknown): void {
    const host = this.#host;
    const now = Date.now();
    const lookup = JSON.parse(row.payload) as PriceLookup;
    const message = error instanceof Error ? host.logger.redact(error.message) : "failed";
    const outcome = error instanceof PriceUnavailable ? (error.permanent ? "failed" : "retry") : attemptOutcome(error);
    const next = now + retryDelayMs(attempt, Math.random(), PRICE_LOOKUP_BACKOFF);
    if (outcome === "retry" && next <= lookup.since + PRICE_LOOKUP_HORIZON_MS) {
      host.sql.exec("UPDATE outbox SET attempts = ?, next_at_ms = ? WHERE id = ?", attempt, next, row.id);
      // "No price yet" is the expected answer for a while: only a failed REST call is worth a log line.
      if (!(error instanceof PriceUnavailable)) host.logger.warn("price-lookup-failed", { account: host.sid(), sid: lookup.sid, attempt, error: message });
      return;
    }
    host.sql.exec("UPDATE outbox SET state = 'failed', attempts = ? WHERE id = ?", attempt, row.id);
    metrics.inc("guard_price_lookups_total", { outcome: "given-up" });
    // The send stays counted at its estimate; the day's reconciliation with Twilio's usage records still corrects the day.
    host.logger.warn("price-lookup-given-up", { account: host.sid(), sid: lookup.sid, kind: lookup.kind, attempts: attempt, error: message });
  }

  async #perform(row: OutboxRow): Promise<string> {
    const host = this.#host;
    const sid = host.sid();
    const payload = JSON.parse(row.payload) as { text?: string; level?: string; message?: string };
    switch (row.kind) {
      case "suspend":
        await setStatusConfirmed(host.client(), sid, "suspended");
        return "account suspended";
      case "reactivate":
        await setStatusConfirmed(host.client(), sid, "active");
        return "account reactivated";
      case "end-calls": {
        const client = host.client();
        const calls = await client.listInProgressCalls(sid);
        for (const call of calls) await client.completeCall(sid, call);
        return `${calls.length} in-progress call(s) ended`;
      }
      case "alert-webhook": {
        const url = host.config().alertWebhookUrl;
        if (url === null) return "skipped: ALERT_WEBHOOK_URL no longer set";
        await sendAlertWebhook(url, { text: payload.text ?? "", account: sid, level: payload.level ?? "trip", message: payload.message ?? "" });
        return "alert webhook delivered";
      }
      case "alert-sms": {
        const sms = host.config().alertSms;
        if (sms === null) return "skipped: ALERT_SMS_TO no longer set";
        await host.client().sendSms(sms.from, sms.to, payload.text ?? "");
        return "alert SMS sent";
      }
      case "price-lookup": {
        const lookup = JSON.parse(row.payload) as PriceLookup;
        const usd = readPrice(await host.client().fetchSendPrice(sid, lookup.kind, lookup.sid));
        const applied = host.transaction(() => host.applyRealPrice(lookup, toMicros(usd)));
        metrics.inc("guard_price_lookups_total", { outcome: applied ? "applied" : "unchanged" });
        return applied ? `real price ${usd} USD applied` : "already at its real price";
      }
    }
  }
}

function isAccountEffect(kind: OutboxKind): kind is "suspend" | "end-calls" | "reactivate" {
  return kind === "suspend" || kind === "end-calls" || kind === "reactivate";
}

/** Sets the account's status and checks that Twilio's answer shows it. */
async function setStatusConfirmed(client: TwilioClient, sid: string, status: "suspended" | "active"): Promise<void> {
  const account = await client.setAccountStatus(sid, status);
  if (account.status === status) return;
  // A closed account can be neither suspended nor reactivated (https://www.twilio.com/docs/iam/api/account).
  throw new UnconfirmedEffect(`Twilio answered status ${account.status}, not ${status}`, account.status === "closed");
}
