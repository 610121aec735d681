// The spend ledger as the request paths see it: the port the Worker calls, implemented over the account's
// Durable Object in src/app.ts (durableLedger) and by AccountGuard.record; its verdict decides the answer.
import type { BillableEvent } from "./classify.ts";

export interface RecordVerdict {
  /** The same event (Sid and status, or Twilio's idempotency token) was recorded before: not counted again. */
  duplicate: boolean;
  /** The account's breaker is open and blocks at the edge: answer with safe TwiML, do not call the origin. */
  blocked: boolean;
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
