// At-least-once ledger writes that run after the answer, into the exactly-once ledger. Two kinds:
//   - a status callback, forwarded first and recorded after the answer (its bookkeeping decides nothing),
//     so Twilio, which got its 200, will never retry it: a failed write would be spend silently uncounted;
//   - a batch of the egress gate's settlements (src/egress/settlements.ts), written after Twilio's answer
//     was relayed: a lost bind lets the send's status callback count it again, a lost release keeps
//     budget reserved that Twilio never spent.
// So:
//   1. the write goes straight to the account's Durable Object (the usual case: one RPC);
//   2. if that fails, it is sent to the LEDGER_RETRY queue (Cloudflare Queues: durable, retried with
//      back-off, a dead-letter queue after max_retries), and the consumer below writes it again;
//   3. the Durable Object makes a second write change nothing (a status callback is de-duplicated by its
//      event's key; a settlement that does not apply to its reservation's state is a no-op), so a write
//      that did land before its failure was reported is not counted twice.
// Failures are counted in guard_ledger_write_failures_total{stage} (status callbacks) and
// guard_egress_settle_failures_total{stage} (settlements). A status callback keeps the instant it
// arrived (atMs), so a write that lands late is counted in the windows it belongs to; a settlement moves
// the windows of its reservation's own instant.
//
// Messages are versioned envelopes: v 1 is a status callback's write (still what recordAtLeastOnce
// sends, so the release before this one, which knows only v 1, reads them while a deploy runs both);
// v 2 carries a `kind`, today only "settlements".
import type { GuardEnv } from "../config/env.ts";
import type { Logger } from "../observability/log.ts";
import { metrics } from "../observability/metrics.ts";
import { retryDelayMs } from "../ledger/backoff.ts";
import type { BillableEvent, EventKind } from "../ledger/classify.ts";
import type { Settlement } from "../ledger/reservations.ts";
import { MAX_SETTLEMENTS_PER_WRITE, type SettlementItem } from "../egress/settlements.ts";
import { ACCOUNT_SID, SEND_SID } from "../twilio/sids.ts";
import { RESERVATION_ID } from "../egress/protocol.ts";

/** One ledger write, as queued: plain data. */
export interface LedgerWrite {
  event: BillableEvent;
  idempotencyToken: string | null;
  atMs: number;
  /** The egress gate's reservation the status callback names (its own StatusCallback), if any. */
  reservationId?: string;
}

/** The queue message of a status callback's write: a versioned envelope (version 1). */
export interface LedgerQueueMessage extends LedgerWrite {
  v: 1;
}

/** One account's gate settlements, written in one Durable Object call (settleSends). */
export interface SettlementBatch {
  accountSid: string;
  /** At most MAX_SETTLEMENTS_PER_WRITE: one bounded transaction, and a message far below the queue's 128 KB. */
  items: SettlementItem[];
  /** When the gate settled them (passed to settleSends as its clock, as the direct write does). */
  atMs: number;
}

/** The queue message of a settlement batch (version 2). */
export interface SettlementsQueueMessage extends SettlementBatch {
  v: 2;
  kind: "settlements";
}

/** Everything LEDGER_RETRY carries. */
export type LedgerRetryMessage = LedgerQueueMessage | SettlementsQueueMessage;

/** A queue send that fails is tried this many times in all before the write is reported lost. */
const ENQUEUE_ATTEMPTS = 3;
/** Queue retry delays are whole seconds; the back-off (ledger/backoff.ts) is capped at five minutes. */
const MS_PER_S = 1000;

export interface AtLeastOnceDeps {
  record(write: LedgerWrite): Promise<unknown>;
  queue: Queue<LedgerRetryMessage>;
  logger: Logger;
}

function reason(error: unknown, logger: Logger): string {
  return error instanceof Error ? logger.redact(error.message) : "failed";
}

/** How one kind of write reports its failures: its counter, and its log line when deferred to the queue. */
interface WriteKind {
  counter: "guard_ledger_write_failures_total" | "guard_egress_settle_failures_total";
  deferred: string;
  fields: Record<string, string | number>;
}

/**
 * `direct()`, or else `messages` sent to the queue, each tried ENQUEUE_ATTEMPTS times. Rejects (with the
 * first lost message's last error) only when a message could not be queued.
 */
async function atLeastOnce(direct: () => Promise<unknown>, messages: readonly LedgerRetryMessage[], queue: Queue<LedgerRetryMessage>, logger: Logger, kind: WriteKind): Promise<void> {
  try {
    await direct();
    return;
  } catch (error) {
    metrics.inc(kind.counter, { stage: "direct" });
    logger.warn(kind.deferred, { ...kind.fields, error: reason(error, logger) });
  }
  let lost: { error: unknown } | null = null;
  for (const message of messages) {
    for (let attempt = 1; attempt <= ENQUEUE_ATTEMPTS; attempt++) {
      try {
        await queue.send(message, { contentType: "json" });
        break;
      } catch (error) {
        metrics.inc(kind.counter, { stage: "enqueue" });
        if (attempt === ENQUEUE_ATTEMPTS) {
          metrics.inc(kind.counter, { stage: "lost" });
          lost ??= { error };
        }
      }
    }
  }
  if (lost !== null) throw lost.error;
}

/** Records `write` now, or hands it to the durable retry queue. Rejects only when the write is lost. */
export function recordAtLeastOnce(write: LedgerWrite, deps: AtLeastOnceDeps): Promise<void> {
  return atLeastOnce(() => deps.record(write), [{ v: 1, ...write }], deps.queue, deps.logger, {
    counter: "guard_ledger_write_failures_total",
    deferred: "ledger-write-deferred",
    fields: { account: write.event.accountSid, event: write.event.kind },
  });
}

export interface SettleAtLeastOnceDeps {
  settle(batch: SettlementBatch): Promise<unknown>;
  queue: Queue<LedgerRetryMessage>;
  logger: Logger;
}

/**
 * Writes a batch of the gate's settlements now, or hands it to the durable retry queue (one message per
 * MAX_SETTLEMENTS_PER_WRITE). Rejects only when some of it is lost (neither written nor queued).
 */
export function settleAtLeastOnce(batch: SettlementBatch, deps: SettleAtLeastOnceDeps): Promise<void> {
  const messages: SettlementsQueueMessage[] = [];
  for (let i = 0; i < batch.items.length; i += MAX_SETTLEMENTS_PER_WRITE) {
    messages.push({ v: 2, kind: "settlements", accountSid: batch.accountSid, items: batch.items.slice(i, i + MAX_SETTLEMENTS_PER_WRITE), atMs: batch.atMs });
  }
  return atLeastOnce(() => deps.settle(batch), messages, deps.queue, deps.logger, {
    counter: "guard_egress_settle_failures_total",
    deferred: "egress-settle-deferred",
    fields: { account: batch.accountSid, settlements: batch.items.length },
  });
}

const EVENT_KINDS: ReadonlySet<EventKind> = new Set(["inbound-message", "message-status", "inbound-call", "call-status"]);

/** A status callback's queued write (version 1), or null when the body is not one. */
export function parseLedgerMessage(body: unknown): LedgerWrite | null {
  if (typeof body !== "object" || body === null || (body as { v?: unknown }).v !== 1) return null;
  return parseLedgerWrite(body);
}

/**
 * A ledger write as the Worker makes it (the queue's version 1 without its `v`, and each write of
 * AccountGuard.recordBatch), or null when `body` is not one.
 */
export function parseLedgerWrite(body: unknown): LedgerWrite | null {
  if (typeof body !== "object" || body === null) return null;
  const m = body as Partial<LedgerWrite>;
  const e = m.event as Partial<BillableEvent> | undefined;
  if (typeof m.atMs !== "number" || !Number.isFinite(m.atMs)) return null;
  if (m.idempotencyToken !== null && typeof m.idempotencyToken !== "string") return null;
  if (typeof e !== "object" || e === null || !EVENT_KINDS.has(e.kind as EventKind)) return null;
  for (const key of ["sid", "accountSid", "status", "dedupeKey", "countKey"] as const) if (typeof e[key] !== "string") return null;
  if (typeof e.billable !== "boolean" || typeof e.units !== "object" || e.units === null) return null;
  if (m.reservationId !== undefined && typeof m.reservationId !== "string") return null;
  return { event: e as BillableEvent, idempotencyToken: m.idempotencyToken ?? null, atMs: m.atMs, ...(m.reservationId !== undefined ? { reservationId: m.reservationId } : {}) };
}

/** A settlement as the gate makes it (gate.ts settlementOf, lookup.ts), or null. */
function parseSettlement(body: unknown): Settlement | null {
  if (typeof body !== "object" || body === null) return null;
  const s = body as { type?: unknown; sid?: unknown; priceUsd?: unknown };
  switch (s.type) {
    case "rejected":
    case "unknown":
      return { type: s.type };
    case "sid-seen":
      return typeof s.sid === "string" && SEND_SID.test(s.sid) ? { type: "sid-seen", sid: s.sid } : null;
    case "accepted": {
      if (typeof s.sid !== "string" || !SEND_SID.test(s.sid)) return null;
      if (s.priceUsd === undefined || s.priceUsd === null) return { type: "accepted", sid: s.sid, priceUsd: null };
      return typeof s.priceUsd === "number" && Number.isFinite(s.priceUsd) ? { type: "accepted", sid: s.sid, priceUsd: s.priceUsd } : null;
    }
    default:
      return null;
  }
}

/** A settlement batch (version 2), or null when the body is not one this release wrote. */
export function parseSettlementsMessage(body: unknown): SettlementBatch | null {
  if (typeof body !== "object" || body === null) return null;
  const m = body as Partial<Record<keyof SettlementsQueueMessage, unknown>>;
  if (m.v !== 2 || m.kind !== "settlements") return null;
  if (typeof m.accountSid !== "string" || !ACCOUNT_SID.test(m.accountSid)) return null;
  if (typeof m.atMs !== "number" || !Number.isFinite(m.atMs)) return null;
  if (!Array.isArray(m.items) || m.items.length === 0 || m.items.length > MAX_SETTLEMENTS_PER_WRITE) return null;
  const items: SettlementItem[] = [];
  for (const raw of m.items as unknown[]) {
    if (typeof raw !== "object" || raw === null) return null;
    const { reservationId, settlement } = raw as { reservationId?: unknown; settlement?: unknown };
    if (typeof reservationId !== "string" || !RESERVATION_ID.test(reservationId)) return null;
    const parsed = parseSettlement(settlement);
    if (parsed === null) return null;
    items.push({ reservationId, settlement: parsed });
  }
  return { accountSid: m.accountSid, items, atMs: m.atMs };
}

/** What a queue message asks for, or null when it is not one this release can read. */
export type QueuedWrite = { kind: "status"; write: LedgerWrite } | { kind: "settlements"; batch: SettlementBatch };

export function parseRetryMessage(body: unknown): QueuedWrite | null {
  const write = parseLedgerMessage(body);
  if (write !== null) return { kind: "status", write };
  const batch = parseSettlementsMessage(body);
  return batch === null ? null : { kind: "settlements", batch };
}

/** Applies one queued write to its account's Durable Object. */
function apply(queued: QueuedWrite, env: GuardEnv): Promise<unknown> {
  if (queued.kind === "status") {
    const { write } = queued;
    return env.ACCOUNT_GUARD.getByName(write.event.accountSid).record(write.event, write.idempotencyToken, write.atMs, write.reservationId);
  }
  const { batch } = queued;
  return env.ACCOUNT_GUARD.getByName(batch.accountSid).settleSends(batch.accountSid, batch.items, batch.atMs);
}

/** The queue consumer: writes each message to its account's Durable Object; a failure retries that message alone. */
export async function consumeLedgerQueue(batch: MessageBatch<unknown>, env: GuardEnv, logger: Logger): Promise<void> {
  await Promise.all(
    batch.messages.map(async (message) => {
      const queued = parseRetryMessage(message.body);
      if (queued === null) {
        // Not ours, or from an incompatible release: retrying cannot make it readable.
        logger.error("ledger-queue-unreadable", new Error("unreadable ledger queue message"), { id: message.id });
        message.ack();
        return;
      }
      try {
        await apply(queued, env);
        message.ack();
      } catch (error) {
        const account = queued.kind === "status" ? queued.write.event.accountSid : queued.batch.accountSid;
        if (queued.kind === "status") metrics.inc("guard_ledger_write_failures_total", { stage: "retry" });
        else metrics.inc("guard_egress_settle_failures_total", { stage: "retry" });
        logger.warn("ledger-queue-retry", { account, kind: queued.kind, attempts: message.attempts, error: reason(error, logger) });
        message.retry({ delaySeconds: Math.ceil(retryDelayMs(message.attempts, Math.random()) / MS_PER_S) });
      }
    }),
  );
}
