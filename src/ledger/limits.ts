// Limit evaluation and the breaker's state machine. Pure and deterministic: the AccountGuard Durable
// Object persists what these return and turns `effects` (plain data) into outbox rows.
import type { Limit, Policy, PolicyAction, WindowKind } from "./policy.ts";
import { toMicros } from "./pricing.ts";
import { ALL_WINDOWS, windowId } from "./windows.ts";

// ---------------------------------------------------------------------------------------------- limits

export interface WindowTotals {
  window: WindowKind;
  windowId: string;
  usdMicros: number;
  events: number;
}

export interface LimitWarning {
  limit: Limit;
  /** Index of the limit in policy.limits. */
  limitIndex: number;
  windowId: string;
}

export interface Evaluation {
  /** Every window kind's totals after the event (ALL_WINDOWS order), in the windows current at nowMs. */
  totals: WindowTotals[];
  /** The first limit (policy order) the event leaves its window above; null when none. */
  crossed: Limit | null;
  /** Index of `crossed` in policy.limits, or null. */
  crossedIndex: number | null;
  /** Limits whose warnAt share this event reached or passed (once per limit and window; see warningKey). */
  warnings: LimitWarning[];
}

/** What one event adds: integer micro-USD (negative when a call settles below its reservation) and events. */
export interface Addition {
  usdMicros: number;
  events: number;
}

/** Relative slack for float noise in limit × warnAt (100 × 0.07 = 7.000000000000001 must warn at 7). */
const WARN_EPSILON = 1e-12;

function used(limit: Limit, totals: Addition): number {
  return limit.usd !== undefined ? totals.usdMicros : totals.events;
}

/** The limit's value in the unit it counts: micro-USD or events. */
export function limitValue(limit: Limit): number {
  return limit.usd !== undefined ? toMicros(limit.usd) : (limit.events ?? 0);
}

/** The smallest total (in the limit's unit) that reaches warnAt of the limit; at least 1. */
export function warnThreshold(limit: Limit, warnAt: number): number {
  const value = limitValue(limit);
  return Math.max(1, Math.ceil(value * warnAt - value * WARN_EPSILON));
}

/** The key callers dedupe warnings by: one warning per limit (by index in the policy) and window. */
export function warningKey(limitIndex: number, windowId: string): string {
  return `${limitIndex}:${windowId}`;
}

/** A short human label: "day 50 USD", "minute 120 events". */
export function limitLabel(limit: Limit): string {
  return limit.usd !== undefined ? `${limit.window} ${limit.usd} USD` : `${limit.window} ${limit.events} events`;
}

/** applyEvent's scratch, per window kind (ALL_WINDOWS order): totals before, and what the event adds. */
const BEFORE_USD = new Float64Array(ALL_WINDOWS.length);
const BEFORE_EVENTS = new Float64Array(ALL_WINDOWS.length);
const ADDED_USD = new Float64Array(ALL_WINDOWS.length);
const ADDED_EVENTS = new Float64Array(ALL_WINDOWS.length);

/**
 * Adds an event to the windows current at `nowMs` and evaluates the policy's limits.
 *
 * - Rows of `current` whose windowId is not the current one for their kind (yesterday's `day` after
 *   UTC midnight, last month's `month`) count as zero: a window that has rolled over starts empty.
 * - A limit is crossed when, after the event, its window is strictly above the limit's value and the
 *   event added to what that limit counts. With `events: 20` twenty events pass and the 21st crosses;
 *   a usd total equal to the limit does not cross. A window already above its limit (the limit was
 *   lowered, or an operator reset the breaker) is crossed again by the next event that adds to it:
 *   a reset is not a licence for unlimited spend; raising the limit is. trip() on an open breaker is a
 *   no-op, so reporting it again costs nothing.
 * - A warning is reported for a limit when the event takes its total from below warnThreshold to at or
 *   above it, unless the same event crosses that limit (the trip alert says more). Callers dedupe by
 *   warningKey(limitIndex, windowId).
 * - Totals never go below zero (a settlement refund landing in a new window).
 * - `perWindow` replaces `add` for the windows it names: reconciliation adds to the day and month only,
 *   and an event adds to the day and month what it changes of the day's reconciled spend (reconcile.ts).
 */
export function applyEvent(
  policy: Policy,
  current: readonly WindowTotals[],
  nowMs: number,
  add: Addition,
  perWindow?: Partial<Record<WindowKind, Addition>>,
): Evaluation {
  // Per window kind, in ALL_WINDOWS order: the totals after (the answer), and what was before and what is
  // added in the module's scratch arrays (this runs twice per send and once per event: no garbage for them).
  const after: WindowTotals[] = [];
  for (let w = 0; w < ALL_WINDOWS.length; w++) {
    const window = ALL_WINDOWS[w]!;
    const a = perWindow?.[window] ?? add;
    if (!Number.isSafeInteger(a.usdMicros) || !Number.isSafeInteger(a.events)) {
      throw new RangeError("applyEvent adds integer micro-dollars and integer events");
    }
    const id = windowId(window, nowMs);
    let usdMicros = 0;
    let events = 0;
    for (const c of current) {
      if (c.window !== window || c.windowId !== id) continue;
      usdMicros = c.usdMicros;
      events = c.events;
      break;
    }
    BEFORE_USD[w] = usdMicros;
    BEFORE_EVENTS[w] = events;
    ADDED_USD[w] = a.usdMicros;
    ADDED_EVENTS[w] = a.events;
    after.push({ window, windowId: id, usdMicros: Math.max(0, usdMicros + a.usdMicros), events: Math.max(0, events + a.events) });
  }

  let crossed: Limit | null = null;
  let crossedIndex: number | null = null;
  const warnings: LimitWarning[] = [];
  for (let limitIndex = 0; limitIndex < policy.limits.length; limitIndex++) {
    const limit = policy.limits[limitIndex]!;
    const w = ALL_WINDOWS.indexOf(limit.window);
    const byUsd = limit.usd !== undefined;
    const b = byUsd ? BEFORE_USD[w]! : BEFORE_EVENTS[w]!;
    const a = used(limit, after[w]!);
    if ((byUsd ? ADDED_USD[w]! : ADDED_EVENTS[w]!) > 0 && a > limitValue(limit)) {
      if (crossed === null) {
        crossed = limit;
        crossedIndex = limitIndex;
      }
      continue;
    }
    const threshold = warnThreshold(limit, policy.warnAt);
    if (b < threshold && a >= threshold) warnings.push({ limit, limitIndex, windowId: after[w]!.windowId });
  }
  return { totals: after, crossed, crossedIndex, warnings };
}

// --------------------------------------------------------------------------------------------- breaker

export type BreakerState = "closed" | "open";
/** CONTRACT: pending, done, failed (an attempt failed: retrying, or given up), or none (block/alert action, or the parent). */
export type Suspension = "none" | "pending" | "done" | "failed";

/**
 * The breaker as persisted. Action `alert` ("notify only") is modelled as an open breaker that does
 * not block: the open state is what makes one alert per trip (a second trip is a no-op until reset),
 * and breakerBlocks() is what the edge asks. The admin API reports it as `open` with suspension `none`.
 */
export interface Breaker {
  state: BreakerState;
  suspension: Suspension;
  reason?: string;
  openedAt?: number;
  tripId?: string;
  /** The policy action at the trip. */
  action?: PolicyAction;
}

/** Side effects, as data: the Durable Object queues them (outbox) and runs them with retries. */
export type Effect =
  | { type: "suspend" }
  | { type: "end-calls" }
  | { type: "reactivate" }
  | { type: "alert"; level: "trip" | "warn"; reason: string };

export interface Transition {
  breaker: Breaker;
  effects: Effect[];
}

export interface TripInput {
  reason: string;
  nowMs: number;
  action: PolicyAction;
  /** The parent account is never suspended: Twilio refuses (https://www.twilio.com/docs/errors/21477). */
  isParent: boolean;
  tripId: string;
}

export const CLOSED_BREAKER: Breaker = Object.freeze({ state: "closed", suspension: "none" }) as Breaker;

/**
 * Opens the breaker. Opening an open breaker returns it unchanged with no effects: that is what makes
 * one suspension (and one alert) per trip however many requests race across the limit.
 * - `suspend` on a subaccount: suspension pending; effects suspend + trip alert (end-calls follows the
 *   suspension's success, see suspensionResult);
 * - `suspend` on the parent, or `block`: suspension none, trip alert; the edge blocks;
 * - `alert`: suspension none, trip alert; the edge does not block (breakerBlocks is false).
 */
export function trip(breaker: Breaker, input: TripInput): Transition {
  if (breaker.state === "open") return { breaker, effects: [] };
  const suspend = input.action === "suspend" && !input.isParent;
  const alert: Effect = { type: "alert", level: "trip", reason: input.reason };
  return {
    breaker: {
      state: "open",
      suspension: suspend ? "pending" : "none",
      reason: input.reason,
      openedAt: input.nowMs,
      tripId: input.tripId,
      action: input.action,
    },
    effects: suspend ? [{ type: "suspend" }, alert] : [alert],
  };
}

/**
 * Closes the breaker (an operator's reset). Reactivates when the guard suspended the account or may
 * have: suspension done, pending (a request may be on its way or its answer lost) or failed (a failed
 * attempt may still have reached Twilio). Reactivating an active account is harmless; leaving one
 * suspended is not. Resetting a closed breaker changes nothing.
 */
export function reset(breaker: Breaker, _input: { nowMs: number }): Transition {
  if (breaker.state === "closed") return { breaker, effects: [] };
  const reactivate = breaker.suspension === "done" || breaker.suspension === "pending" || breaker.suspension === "failed";
  return { breaker: CLOSED_BREAKER, effects: reactivate ? [{ type: "reactivate" }] : [] };
}

/**
 * Records the outcome of a suspension attempt for trip `tripId` (the breaker's current trip when omitted).
 * - done: suspension done, then end the account's live calls (CONTRACT: after suspension); a repeat is a no-op;
 * - retry: suspension failed (CONTRACT: "failed (retrying)"); the caller schedules the retry (backoff.ts);
 * - failed: suspension failed for good; a trip-level alert says so.
 * An outcome for a breaker that was reset meanwhile (closed, or open for another trip that does not
 * suspend) changes nothing, except that a suspension that landed anyway is undone (reactivate).
 */
export function suspensionResult(breaker: Breaker, outcome: "done" | "failed" | "retry", tripId?: string): Transition {
  const current = breaker.state === "open" && (tripId === undefined || tripId === breaker.tripId);
  if (!current || breaker.suspension === "none") {
    const unwanted = breaker.state === "closed" || breaker.suspension === "none";
    return { breaker, effects: outcome === "done" && unwanted ? [{ type: "reactivate" }] : [] };
  }
  if (breaker.suspension === "done") return { breaker, effects: [] };
  switch (outcome) {
    case "done":
      return { breaker: { ...breaker, suspension: "done" }, effects: [{ type: "end-calls" }] };
    case "retry":
      return { breaker: { ...breaker, suspension: "failed" }, effects: [] };
    case "failed":
      return {
        breaker: { ...breaker, suspension: "failed" },
        effects: [{ type: "alert", level: "trip", reason: "suspension failed and will not be retried" }],
      };
  }
}

/**
 * Records the outcome of a reactivation. A trip that opened the breaker (and wants the account
 * suspended) while the reactivation was on its way to Twilio may have been suspended already: the
 * reactivation undid it, so suspend again for the current trip. Otherwise nothing changes.
 */
export function reactivationResult(breaker: Breaker, outcome: "done" | "failed" | "retry"): Transition {
  if (outcome !== "done" || breaker.state !== "open" || breaker.suspension !== "done") return { breaker, effects: [] };
  return { breaker: { ...breaker, suspension: "pending" }, effects: [{ type: "suspend" }] };
}

export type AccountEffect = "suspend" | "end-calls" | "reactivate";

/**
 * The fence every account effect passes just before it is sent to Twilio: whether the effect, queued
 * for trip `tripId`, still serves the breaker as it is now.
 * - suspend: only for the breaker's current trip, while that trip's suspension is not yet done;
 * - end-calls: only for the current trip (the calls of an account that is still suspended);
 * - reactivate: unless the breaker is open again and wants the account suspended (a newer trip).
 * A fenced-off effect is dropped: the account's Twilio status then follows the newest trip alone.
 */
export function effectCurrent(breaker: Breaker, effect: AccountEffect, tripId: string): boolean {
  const open = breaker.state === "open";
  switch (effect) {
    case "suspend":
      return open && breaker.tripId === tripId && (breaker.suspension === "pending" || breaker.suspension === "failed");
    case "end-calls":
      return open && breaker.tripId === tripId && breaker.suspension !== "none";
    case "reactivate":
      return !(open && breaker.suspension !== "none");
  }
}

/** Whether the breaker blocks inbound traffic at the edge: open, and its action was not `alert`. */
export function breakerBlocks(breaker: Breaker): boolean {
  return breaker.state === "open" && breaker.action !== "alert";
}

/** The warn-level alert for a warning applyEvent reported. */
export function warningAlert(warning: LimitWarning, warnAt: number): Effect {
  return { type: "alert", level: "warn", reason: `${limitLabel(warning.limit)} reached ${Math.round(warnAt * 100)}% in ${warning.windowId}` };
}

