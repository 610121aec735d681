// The spend ledger as the request paths see it: the port the Worker calls, implemented over the account's
// Durable Object in src/app.ts (durableLedger) and by AccountGuard.record; its verdict decides the answer.
import type { BillableEvent } from "./classify.ts";

export interface RecordVerdict {
  /** The same event (Sid and status, or Twilio's idempotency token) was recorded before: not counted again. */
  duplicate: boolean;
  /** The account's breaker is open and blocks at the edge: answer with safe TwiML, do not call the origin. */
  blocked: boolean;
}

/**
 * A verdict as AccountGuard.recordEvent answers it: a number (bit 1 duplicate, bit 2 blocked). The runtime
 * answers an RPC whose result is a number for less than one whose result is an object (docs/benchmarks.md).
 */
export type VerdictBits = number;

const DUPLICATE_BIT = 1;
const BLOCKED_BIT = 2;

export function verdictBits(verdict: RecordVerdict): VerdictBits {
  return (verdict.duplicate ? DUPLICATE_BIT : 0) | (verdict.blocked ? BLOCKED_BIT : 0);
}

/** The verdict a number from recordEvent stands for; anything but 0 to 3 is not an answer this release gives. */
export function verdictFromBits(bits: VerdictBits): RecordVerdict {
  if (!Number.isInteger(bits) || bits < 0 || bits > (DUPLICATE_BIT | BLOCKED_BIT)) throw new TypeError(`not a verdict: ${String(bits)}`);
  return { duplicate: (bits & DUPLICATE_BIT) !== 0, blocked: (bits & BLOCKED_BIT) !== 0 };
}

/** One event's outcome in a batch (AccountGuard.recordBatch): its verdict, or failed (rolled back alone, nothing recorded). */
export type RecordOutcome = RecordVerdict | { failed: true };

/** The spend ledger as the webhook path sees it: one call per event, to the account's Durable Object. */
export interface LedgerPort {
  /** `reservationId`: the egress gate's reservation a status callback of the guard's own status path names. */
  record(event: BillableEvent, idempotencyToken: string | null, reservationId?: string): Promise<RecordVerdict>;
  /** Records a status callback at least once (the answer does not wait): retried durably if the write fails. */
  recordStatus(event: BillableEvent, idempotencyToken: string | null, reservationId?: string): Promise<void>;
}
