// Group commit of the webhook path's ledger writes, per account, within an isolate (the lanes and their
// hand-over: group-commit.ts, shared with the egress gate's reservations): N events of one
// account cost one Durable Object call and one transaction (AccountGuard.recordBatch) instead of N.
// The call and its commit are the largest part of the path's cost (docs/benchmarks.md), whatever the
// statements are. How many events share a call depends on how many of one account's events this isolate
// has at once: under load on a hot account, many; a lone event goes alone, as before.
//
// Per account, one call at a time from this isolate (a "lane"):
//   - an inbound event (its verdict decides the answer) is sent at once when no call of its account is
//     in flight: no timer, nothing added to a lone event. While one is, it waits and goes in the next
//     call with everything else that arrived meanwhile;
//   - a status callback (bookkeeping after the answer) is held up to HOLD_MS, as the egress gate's
//     settlements are (src/egress/settlements.ts), so that status callbacks arriving together share a
//     call; an inbound event arriving meanwhile takes it along at once, and so does any call in flight.
// The Durable Object records a batch's events in the order they arrived, each by the same code as
// record(), so every verdict is what the events recorded one after the other would have got.
//
// Each call is made by a request whose event is in it, from its own request context, and handed over
// to the next waiting event's request (group-commit.ts).
//
// Failure: a call that fails rejects each of its events (an inbound event fails closed, as a failed
// record() did; the port sends a status callback's write to LEDGER_RETRY, one version-1 message per
// event, which every release's consumer reads); an event the Durable Object could not record is
// answered `failed` alone and treated the same way, the others standing.
import { verdictFromBits, type RecordOutcome, type RecordVerdict, type VerdictBits } from "../ledger/port.ts";
import type { LedgerWrite } from "./ledger-queue.ts";
import { metrics } from "../observability/metrics.ts";
import { GroupCommit, MAX_ITEMS_PER_CALL, isMissingRpcMethod, sizeLabel, type BatchCall, type GroupCommitOptions, type KeepAlive } from "./group-commit.ts";

export { STALE_LEADER_MS, type KeepAlive } from "./group-commit.ts";

/** Records `writes` of one account in order, in one call, answering one outcome per write. */
export type RecordCall = BatchCall<LedgerWrite, RecordOutcome>;

/**
 * How long a status callback waits for others of its account (or a call in flight) to share its
 * call: callbacks that overlap, the load that needs the saving, come well within it; a lone one is
 * written this much later, after its answer.
 */
export const HOLD_MS = 5;
/** At most this many events in one call: one bounded transaction however many waited. */
export const MAX_RECORDS_PER_BATCH = MAX_ITEMS_PER_CALL;

export type RecordBatcherOptions = GroupCommitOptions;

/** The failure of one event the Durable Object answered `failed` (rolled back alone). */
export class RecordFailed extends Error {
  constructor() {
    super("the account's ledger could not record this event");
    this.name = "RecordFailed";
  }
}

/** The webhook path's lanes (group-commit.ts): inbound events urgent, status callbacks held HOLD_MS. */
export class RecordBatcher extends GroupCommit<LedgerWrite, RecordOutcome, RecordVerdict> {
  constructor(options: RecordBatcherOptions = {}) {
    super(
      { laneOf: (w) => w.event.accountSid, answerOf: verdictOf, lostCall: () => new Error("the account's ledger call did not end") },
      { ...options, holdMs: options.holdMs ?? HOLD_MS },
    );
  }

  /** An inbound event: its verdict, from a call made now or, if one is in flight, right after it. */
  record(write: LedgerWrite, call: RecordCall, keepAlive: KeepAlive): Promise<RecordVerdict> {
    return this.add(write, call, keepAlive, true);
  }

  /** A status callback: resolves once written (held up to HOLD_MS to share a call); rejects if its write failed. */
  async recordStatus(write: LedgerWrite, call: RecordCall, keepAlive: KeepAlive): Promise<void> {
    await this.add(write, call, keepAlive, false);
  }
}

/** An event's verdict, or its failure (RecordFailed) when the Durable Object could not record it. */
export function verdictOf(outcome: RecordOutcome): RecordVerdict {
  if ("failed" in outcome) throw new RecordFailed();
  return { duplicate: outcome.duplicate, blocked: outcome.blocked };
}

/** The account's Durable Object as a RecordCall needs it (AccountGuard's recordEvent, record and recordBatch). */
export interface RecordingGuard {
  recordEvent(event: LedgerWrite["event"], idempotencyToken: string | null, atMs?: number, reservationId?: string): Promise<VerdictBits>;
  record(event: LedgerWrite["event"], idempotencyToken: string | null, atMs?: number, reservationId?: string): Promise<RecordVerdict>;
  recordBatch(sid: string, writes: LedgerWrite[]): Promise<RecordOutcome[]>;
}

/**
 * The call to an account's Durable Object: a lone event with recordEvent() (record() answering a number,
 * cheaper for the runtime than an object), more with recordBatch(). During a deploy the object may
 * still run the previous release, which has no recordEvent: a lone event then goes with record(),
 * what every release has (the failed call ran nothing). An object older still, without recordBatch,
 * gets several events one after the other with record(), in order.
 */
export function recordCall(account: string, guard: () => RecordingGuard): RecordCall {
  const old = async (g: RecordingGuard, w: LedgerWrite): Promise<RecordVerdict> => {
    const v = await g.record(w.event, w.idempotencyToken, w.atMs, w.reservationId);
    return { duplicate: v.duplicate, blocked: v.blocked };
  };
  const one = async (g: RecordingGuard, w: LedgerWrite): Promise<RecordVerdict> => {
    let bits: VerdictBits;
    try {
      bits = await g.recordEvent(w.event, w.idempotencyToken, w.atMs, w.reservationId);
    } catch (error) {
      if (!isMissingRpcMethod(error, "recordEvent")) throw error;
      return old(g, w);
    }
    return verdictFromBits(bits);
  };
  return async (writes) => {
    metrics.inc("guard_ledger_calls_total", { events: sizeLabel(writes.length) });
    metrics.inc("guard_ledger_call_events_total", {}, writes.length);
    const g = guard();
    if (writes.length === 1) return [await one(g, writes[0]!)];
    try {
      return await g.recordBatch(account, writes);
    } catch (error) {
      if (!isMissingRpcMethod(error, "recordBatch")) throw error;
      const outcomes: RecordOutcome[] = [];
      for (const w of writes) outcomes.push(await old(g, w).catch((): RecordOutcome => ({ failed: true })));
      return outcomes;
    }
  };
}
