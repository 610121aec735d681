// At-least-once status callbacks into the exactly-once ledger. A status callback is forwarded first and
// recorded after the answer (its bookkeeping decides nothing), so Twilio, which got its 200, will never
// retry it: a ledger write that fails here would be outbound spend silently uncounted. So:
//   1. the write goes straight to the account's Durable Object (the usual case: one RPC);
//   2. if that fails, it is sent to the LEDGER_RETRY queue (Cloudflare Queues: durable, retried with
//      back-off, a dead-letter queue after max_retries), and the consumer below writes it again;
//   3. the Durable Object de-duplicates by the event's key, so a write that did land before its failure
//      was reported is not counted twice.
// Every failure is counted in guard_ledger_write_failures_total{stage}. The event keeps the instant it
// arrived (atMs), so a write that lands late is counted in the windows it belongs to.
import type { GuardEnv } from "../config/env.ts";
import type { Logger } from "../observability/log.ts";
import { metrics } from "../observability/metrics.ts";
import { retryDelayMs } from "../ledger/backoff.ts";
import type { BillableEvent, EventKind } from "../ledger/classify.ts";

/** One ledger write, as queued: plain data. */
export interface LedgerWrite {
  event: BillableEvent;
  idempotencyToken: string | null;
  atMs: number;
  /** The egress gate's reservation the status callback names (its own StatusCallback), if any. */
  reservationId?: string;
}

/** The queue message: a versioned envelope, so a later release can change the shape and still read this one. */
export interface LedgerQueueMessage extends LedgerWrite {
  v: 1;
}

/** A queue send that fails is tried this many times in all before the write is reported lost. */
const ENQUEUE_ATTEMPTS = 3;
/** Queue retry delays are whole seconds; the back-off (ledger/backoff.ts) is capped at five minutes. */
const MS_PER_S = 1000;

export interface AtLeastOnceDeps {
  record(write: LedgerWrite): Promise<unknown>;
  queue: Queue<LedgerQueueMessage>;
  logger: Logger;
}

/** Records `write` now, or hands it to the durable retry queue. Rejects only when the write is lost. */
export async function recordAtLeastOnce(write: LedgerWrite, deps: AtLeastOnceDeps): Promise<void> {
  try {
    await deps.record(write);
    return;
  } catch (error) {
    metrics.inc("guard_ledger_write_failures_total", { stage: "direct" });
    deps.logger.warn("ledger-write-deferred", { account: write.event.accountSid, event: write.event.kind, error: error instanceof Error ? deps.logger.redact(error.message) : "failed" });
  }
  let last: unknown;
  for (let attempt = 1; attempt <= ENQUEUE_ATTEMPTS; attempt++) {
    try {
      await deps.queue.send({ v: 1, ...write }, { contentType: "json" });
      return;
    } catch (error) {
      last = error;
      metrics.inc("guard_ledger_write_failures_total", { stage: "enqueue" });
    }
  }
  metrics.inc("guard_ledger_write_failures_total", { stage: "lost" });
  throw last;
}

const EVENT_KINDS: ReadonlySet<EventKind> = new Set(["inbound-message", "message-status", "inbound-call", "call-status"]);

/** The queued write, or null when the body is not one this release wrote. */
export function parseLedgerMessage(body: unknown): LedgerWrite | null {
  if (typeof body !== "object" || body === null) return null;
  const m = body as Partial<LedgerQueueMessage>;
  const e = m.event as Partial<BillableEvent> | undefined;
  if (m.v !== 1 || typeof m.atMs !== "number" || !Number.isFinite(m.atMs)) return null;
  if (m.idempotencyToken !== null && typeof m.idempotencyToken !== "string") return null;
  if (typeof e !== "object" || e === null || !EVENT_KINDS.has(e.kind as EventKind)) return null;
  for (const key of ["sid", "accountSid", "status", "dedupeKey", "countKey"] as const) if (typeof e[key] !== "string") return null;
  if (typeof e.billable !== "boolean" || typeof e.units !== "object" || e.units === null) return null;
  if (m.reservationId !== undefined && typeof m.reservationId !== "string") return null;
  return { event: e as BillableEvent, idempotencyToken: m.idempotencyToken ?? null, atMs: m.atMs, ...(m.reservationId !== undefined ? { reservationId: m.reservationId } : {}) };
}

/** The queue consumer: writes each message to its account's Durable Object; a failure retries that message alone. */
export async function consumeLedgerQueue(batch: MessageBatch<unknown>, env: GuardEnv, logger: Logger): Promise<void> {
  await Promise.all(
    batch.messages.map(async (message) => {
      const write = parseLedgerMessage(message.body);
      if (write === null) {
        // Not ours, or from an incompatible release: retrying cannot make it readable.
        logger.error("ledger-queue-unreadable", new Error("unreadable ledger queue message"), { id: message.id });
        message.ack();
        return;
      }
      try {
        await env.ACCOUNT_GUARD.getByName(write.event.accountSid).record(write.event, write.idempotencyToken, write.atMs, write.reservationId);
        message.ack();
      } catch (error) {
        metrics.inc("guard_ledger_write_failures_total", { stage: "retry" });
        logger.warn("ledger-queue-retry", { account: write.event.accountSid, attempts: message.attempts, error: error instanceof Error ? logger.redact(error.message) : "failed" });
        message.retry({ delaySeconds: Math.ceil(retryDelayMs(message.attempts, Math.random()) / MS_PER_S) });
      }
    }),
  );
}
