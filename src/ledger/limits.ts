// Limit evaluation and the breaker's state machine. Pure: the AccountGuard Durable Object persists what
// these return and turns `effects` into outbox rows.
import type { Limit, Policy, PolicyAction, WindowKind } from "./policy.ts";
import { toMicros } from "./pricing.ts";
import { ALL_WINDOWS, windowId } from "./windows.ts";

export interface WindowTotals {
  window: WindowKind;
  windowId: string;
  usdMicros: number;
  events: number;
}

export interface Evaluation {
  /** Every window's totals after the event, for the windows current at nowMs. */
  totals: WindowTotals[];
  /** The first limit the event takes above its value (Twilio's triggers fire when usage exceeds the value). */
  crossed: Limit | null;
  /** Limits whose warnAt share this event reached first (callers warn once per limit and window). */
  warnings: Array<{ limit: Limit; windowId: string }>;
}

function used(limit: Limit, totals: { usdMicros: number; events: number }): number {
  return limit.usd !== undefined ? totals.usdMicros : totals.events;
}

function capacity(limit: Limit): number {
  return limit.usd !== undefined ? toMicros(limit.usd) : limit.events!;
}

/**
 * Adds the event to the windows current at nowMs. Totals of an earlier window (yesterday's `day`) in
 * `current` count as zero: a window that has rolled over starts empty.
 */
export function applyEvent(policy: Policy, current: readonly WindowTotals[], nowMs: number, add: { usdMicros: number; events: number }): Evaluation {
  const windows = [...new Set([...ALL_WINDOWS.filter((w) => current.some((c) => c.window === w) || policy.limits.some((l) => l.window === w))])];
  const before = new Map<WindowKind, WindowTotals>();
  for (const window of windows) {
    const id = windowId(window, nowMs);
    const row = current.find((c) => c.window === window && c.windowId === id);
    before.set(window, { window, windowId: id, usdMicros: row?.usdMicros ?? 0, events: row?.events ?? 0 });
  }
  const totals = [...before.values()].map((t) => ({ ...t, usdMicros: t.usdMicros + add.usdMicros, events: t.events + add.events }));
  const after = new Map(totals.map((t) => [t.window, t]));
  let crossed: Limit | null = null;
  const warnings: Evaluation["warnings"] = [];
  for (const limit of policy.limits) {
    const b = before.get(limit.window)!;
    const a = after.get(limit.window)!;
    const cap = capacity(limit);
    if (used(limit, a) > cap) {
      crossed ??= limit;
      continue;
    }
    const threshold = cap * policy.warnAt;
    if (used(limit, b) < threshold && used(limit, a) >= threshold) warnings.push({ limit, windowId: a.windowId });
  }
  return { totals, crossed, warnings };
}

export type BreakerState = "closed" | "open";
/** CONTRACT: pending, done, failed (retrying or given up), or none (block/alert action, or the parent). */
export type Suspension = "none" | "pending" | "done" | "failed";

export interface Breaker {
  state: BreakerState;
  suspension: Suspension;
  reason?: string;
  openedAt?: number;
  tripId?: string;
  /** The policy action at the trip: `alert` opens the breaker without blocking (notify only). */
  action?: PolicyAction;
}

export type Effect = { type: "suspend" } | { type: "reactivate" } | { type: "alert"; level: "trip" };

export const CLOSED_BREAKER: Breaker = { state: "closed", suspension: "none" };

/**
 * Opens the breaker. Opening an open breaker changes nothing and has no effects: that is what makes one
 * suspension per trip however many requests race across the limit. The parent account is never
 * suspended (Twilio refuses, error 21477): it blocks and alerts.
 */
export function tripBreaker(
  breaker: Breaker,
  input: { reason: string; nowMs: number; action: PolicyAction; isParent: boolean; tripId: string },
): { breaker: Breaker; effects: Effect[] } {
  if (breaker.state === "open") return { breaker, effects: [] };
  const suspend = input.action === "suspend" && !input.isParent;
  return {
    breaker: {
      state: "open",
      suspension: suspend ? "pending" : "none",
      reason: input.reason,
      openedAt: input.nowMs,
      tripId: input.tripId,
      action: input.action,
    },
    effects: suspend ? [{ type: "suspend" }, { type: "alert", level: "trip" }] : [{ type: "alert", level: "trip" }],
  };
}

/** Closes the breaker; reactivates when a suspension was done or may have reached Twilio (failed attempts). */
export function resetBreaker(breaker: Breaker, _input: { nowMs: number }): { breaker: Breaker; effects: Effect[] } {
  const reactivate = breaker.suspension === "done" || breaker.suspension === "failed";
  return { breaker: CLOSED_BREAKER, effects: reactivate ? [{ type: "reactivate" }] : [] };
}

/** Whether the breaker blocks inbound traffic at the edge: open, and its action was not `alert`. */
export function breakerBlocks(breaker: Breaker): boolean {
  return breaker.state === "open" && breaker.action !== "alert";
}
