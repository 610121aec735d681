// Reservations of the REST egress gate, as pure transitions the account's Durable Object applies
// (CONTRACT.md: "A send is reserved in the account's ledger before it is forwarded … Twilio's answer
// settles it"). Amounts are integer micro-USD.
//
//   held ──accepted(Sid)──▶ bound      the estimate stays (or the price Twilio's answer carried), now
//    │                                  bound to the Sid: its status callbacks find it counted
//    ├──rejected──▶ released
//    └──unknown───▶ unknown ──sid-seen / accepted──▶ bound
//                      └──rejected (nothing was created)──▶ released
// Once bound, the Sid's ledger entry (src/ledger/entries.ts) is what it is counted at: the real price,
// from a status callback or looked up later (src/breaker/price-lookup.ts), replaces it there, once.
// A settlement that does not apply to the state (a second answer, a late retry) changes nothing, so
// settling is idempotent: a send is counted exactly once however often its outcome is reported.
import type { Policy } from "./policy.ts";
import type { LedgerEntry } from "./entries.ts";
import { applyEvent, type Evaluation, type WindowTotals } from "./limits.ts";
import type { Limit } from "./policy.ts";
import { toMicros } from "./pricing.ts";

export type ReservationState = "held" | "bound" | "released" | "unknown";

export interface Reservation {
  id: string;
  /** When it was reserved: releases and price corrections go to the windows of this instant. */
  atMs: number;
  kind: "message" | "call";
  usdMicros: number;
  state: ReservationState;
  /** The MessageSid or CallSid, once Twilio named it. */
  sid: string | null;
}

export type Settlement =
  /** Twilio created the resource (2xx with a Sid); its answer may carry the price. */
  | { type: "accepted"; sid: string; priceUsd?: number | null }
  /** Twilio answered an error: nothing was created. */
  | { type: "rejected" }
  /** No answer (timeout, connection lost): Twilio may have created it. */
  | { type: "unknown" }
  /** A status callback of the guard's own StatusCallback named the Sid. */
  | { type: "sid-seen"; sid: string };

export interface Transition {
  next: Reservation;
  /** What to add to the windows of `atMs` (negative: released or cheaper than estimated). */
  deltaMicros: number;
  /** Events to add to those windows (-1 when a send is released: it was never made). */
  deltaEvents: number;
  /** The ledger entry that makes the Sid counted (status callbacks then do not count it again). */
  bind: { countKey: string; entry: LedgerEntry } | null;
}

export function countKeyFor(kind: Reservation["kind"], sid: string): string {
  return kind === "message" ? `msg:${sid}` : `call:${sid}`;
}

function unchanged(r: Reservation): Transition {
  return { next: r, deltaMicros: 0, deltaEvents: 0, bind: null };
}

function bound(r: Reservation, sid: string, priceUsd: number | null | undefined): Transition {
  const real = priceUsd !== null && priceUsd !== undefined;
  const usdMicros = real ? toMicros(Math.abs(priceUsd)) : r.usdMicros;
  // A call's completion status callback settles it (its real minutes replace the reserved ones): unsettled.
  const entry: LedgerEntry = real ? { usdMicros, settled: true, price: "real" } : { usdMicros, settled: r.kind === "message" };
  return {
    next: { ...r, state: "bound", sid, usdMicros },
    deltaMicros: usdMicros - r.usdMicros,
    deltaEvents: 0,
    bind: { countKey: countKeyFor(r.kind, sid), entry },
  };
}

export function settleReservation(r: Reservation, s: Settlement): Transition {
  switch (r.state) {
    case "released":
      return unchanged(r);
    case "held":
    case "unknown":
      if (s.type === "accepted") return bound(r, s.sid, s.priceUsd);
      if (s.type === "sid-seen") return bound(r, s.sid, null);
      if (s.type === "rejected") return { next: { ...r, state: "released" }, deltaMicros: -r.usdMicros, deltaEvents: -1, bind: null };
      if (s.type === "unknown" && r.state === "held") return { next: { ...r, state: "unknown" }, deltaMicros: 0, deltaEvents: 0, bind: null };
      return unchanged(r);
    case "bound":
      return unchanged(r);
  }
}

/**
 * When the Sid was already counted by the time its reservation is bound (a status callback overtook
 * Twilio's answer), the reservation is released instead: the send stays counted once.
 */
export function releaseAsDuplicate(r: Reservation): Transition {
  return { next: { ...r, state: "released" }, deltaMicros: -r.usdMicros, deltaEvents: -1, bind: null };
}

export type ReserveDecision = { ok: true; evaluation: Evaluation } | { ok: false; reason: "limit"; limit: Limit } | { ok: false; reason: "breaker-open" };

/**
 * Whether a send of `usdMicros` may be reserved: not while the breaker blocks, and not when it would take
 * a window above a limit (the event that would cross a limit is refused before Twilio sees it; the
 * caller trips the breaker). The returned evaluation is what reserving it adds.
 */
export function decideReservation(policy: Policy, current: readonly WindowTotals[], nowMs: number, usdMicros: number, breakerBlocks: boolean): ReserveDecision {
  if (breakerBlocks) return { ok: false, reason: "breaker-open" };
  const evaluation = applyEvent(policy, current, nowMs, { usdMicros, events: 1 });
  if (evaluation.crossed !== null) return { ok: false, reason: "limit", limit: evaluation.crossed };
  return { ok: true, evaluation };
}
