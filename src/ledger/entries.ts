// The ledger's per-Sid entries: what a message or call has been counted for. Pure transitions, the only
// way the AccountGuard changes its `counted` table, and the interface the REST egress gate builds on:
//   reserve  a send (or an inbound call's Voice URL request) before its price is known: an estimate
//            counted now, so racing sends cannot overshoot a limit;
//   settle   its real outcome: the final price replaces the reservation (the difference is added, a
//            refund when it cost less); a Sid never reserved is counted at its final price;
//   release  an outcome that costs nothing (busy, no-answer, canceled, failed): settle at zero;
//   bind     a send's reservation to the Sid Twilio answered with (its callbacks then settle it);
//   cancel   a send that never happened: its estimate and its event taken back;
//   awaitPrice  a send settled at an estimate whose real price is to be looked up (once per Sid);
//   realPrice   Twilio's own price (a callback's Price, the resource's `price`): replaces whatever the
//            Sid is counted at, once; a Sid already at its real price is never changed again.
// Each returns the entry to store and what to add to the windows; a repeat is a no-op, so every Sid is
// counted once however its statuses arrive. Integer micro-dollars throughout.
import type { BillableEvent } from "./classify.ts";
import type { Addition } from "./limits.ts";
import { settleCall } from "./pricing.ts";

export interface LedgerEntry {
  /** What the windows hold for this Sid: the reservation, or the settled price. */
  usdMicros: number;
  /** False while it is a reservation awaiting its outcome. */
  settled: boolean;
  /**
   * Where the amount stands against Twilio's bill: absent, an estimate (the policy's prices);
   * "lookup", an estimate whose real price is being looked up; "real", Twilio's own price (final).
   */
  price?: "lookup" | "real";
}

export interface EntryChange {
  /** The entry to store; null when nothing changes. */
  entry: LedgerEntry | null;
  add: Addition;
}

const UNCHANGED: EntryChange = Object.freeze({ entry: null, add: Object.freeze({ usdMicros: 0, events: 0 }) }) as EntryChange;

/**
 * Message statuses that end a message without a charge: `failed` never left Twilio, `canceled` was a
 * scheduled message withdrawn (https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks).
 */
export const UNBILLED_FINAL_MESSAGE_STATUSES: ReadonlySet<string> = new Set(["failed", "canceled"]);

function checkMicros(micros: number): void {
  if (!Number.isSafeInteger(micros) || micros < 0) throw new RangeError("ledger amounts are non-negative integer micro-dollars");
}

/** Reserves `micros` for a Sid seen for the first time (one event); a Sid already in the ledger is not reserved again. */
export function reserve(entry: LedgerEntry | undefined, micros: number): EntryChange {
  checkMicros(micros);
  if (entry !== undefined) return UNCHANGED;
  return { entry: { usdMicros: micros, settled: false }, add: { usdMicros: micros, events: 1 } };
}

/** Settles a Sid at its final price: replaces a reservation, counts a Sid never seen (one event), ignores a settled one. */
export function settle(entry: LedgerEntry | undefined, finalMicros: number): EntryChange {
  checkMicros(finalMicros);
  if (entry === undefined) return { entry: { usdMicros: finalMicros, settled: true }, add: { usdMicros: finalMicros, events: 1 } };
  if (entry.settled) return UNCHANGED;
  return { entry: { usdMicros: finalMicros, settled: true }, add: { usdMicros: settleCall(entry.usdMicros, finalMicros), events: 0 } };
}

/** Releases a reservation whose outcome costs nothing. Nothing to release: no change (nothing is counted for it). */
export function release(entry: LedgerEntry | undefined): EntryChange {
  if (entry === undefined || entry.settled) return UNCHANGED;
  return settle(entry, 0);
}

/**
 * What a verified webhook event (not a duplicate) does to its Sid's entry, priced `priceMicros`:
 * - an inbound call's Voice URL request reserves its estimate;
 * - a completed call, a billed message status, an inbound message settle at the price;
 * - an unanswered call, a failed or canceled message release what was reserved;
 * - any other status (queued, sending, an outbound call ringing…) changes nothing.
 */
export function applyBillableEvent(entry: LedgerEntry | undefined, event: BillableEvent, priceMicros: number): EntryChange {
  // A billable event that reports its Price settles at Twilio's own figure (see realPrice).
  const final = event.billable && event.reportedPriceUsd !== undefined ? realPrice : settle;
  switch (event.kind) {
    case "inbound-call":
      return reserve(entry, priceMicros);
    case "call-status":
      return event.billable ? final(entry, priceMicros) : release(entry);
    case "inbound-message":
      return final(entry, priceMicros);
    case "message-status":
      if (event.billable) return final(entry, priceMicros);
      return UNBILLED_FINAL_MESSAGE_STATUSES.has(event.status) ? release(entry) : UNCHANGED;
  }
}

/**
 * Marks a Sid settled at an estimate as waiting for its real price: the caller queues one lookup exactly
 * when this changes the entry (so one lookup per Sid however many final statuses arrive). A reservation
 * still open, a Sid already looked up or already at its real price: no change.
 */
export function awaitPrice(entry: LedgerEntry | undefined): EntryChange {
  if (entry === undefined || !entry.settled || entry.price !== undefined) return UNCHANGED;
  return { entry: { ...entry, price: "lookup" }, add: { usdMicros: 0, events: 0 } };
}

/**
 * Twilio's real price for a Sid (a status callback's Price, or the Message/Call resource's `price`):
 * replaces whatever it is counted at (an estimate, or a reservation), adding the difference; a Sid never
 * seen is counted at it as one event. Applied once: a Sid already at its real price changes no more,
 * whichever of the callback and the lookup brings it second.
 */
export function realPrice(entry: LedgerEntry | undefined, realMicros: number): EntryChange {
  checkMicros(realMicros);
  if (entry === undefined) return { entry: { usdMicros: realMicros, settled: true, price: "real" }, add: { usdMicros: realMicros, events: 1 } };
  if (entry.price === "real") return UNCHANGED;
  return { entry: { usdMicros: realMicros, settled: true, price: "real" }, add: { usdMicros: realMicros - entry.usdMicros, events: 0 } };
}

export interface BindChange {
  /** The entry to store under the Sid's countKey; null when it keeps what it has. */
  entry: LedgerEntry | null;
  add: Addition;
}

/**
 * Binds a send's reservation to the Sid Twilio gave it (the reservation row is then removed). When the
 * Sid is already in the ledger (its status callback overtook the gate's answer and counted it), the
 * reservation is taken back, its event and its estimate, so the send is counted once.
 */
export function bind(reservation: LedgerEntry | undefined, existing: LedgerEntry | undefined): BindChange {
  if (reservation === undefined) return UNCHANGED;
  if (existing === undefined) return { entry: reservation, add: { usdMicros: 0, events: 0 } };
  return { entry: null, add: { usdMicros: -reservation.usdMicros, events: -1 } };
}

/** Takes back a reservation whose send never happened (Twilio refused it, or it never got an answer in time): its estimate and its event. */
export function cancel(reservation: LedgerEntry | undefined): EntryChange {
  if (reservation === undefined || reservation.settled) return UNCHANGED;
  return { entry: { usdMicros: 0, settled: true }, add: { usdMicros: -reservation.usdMicros, events: -1 } };
}
