// Group commit of the webhook path's ledger writes, per account, within an isolate: N events of one
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
// Each call is made by a request whose event is in it, from its own request context (a Durable Object
// stub is an I/O object of the request that made it, and that request is alive: it waits for its
// event): the request that found the lane idle leads; when its call ends it hands the lane to the
// first event still waiting, whose request makes the next call. The leader's call is kept alive by
// its request's waitUntil, so a client that disconnects does not strand the others' events. A leader
// whose call never ends (its request context died) is presumed lost after STALE_LEADER_MS.
//
// Failure: a call that fails rejects each of its events (an inbound event fails closed, as a failed
// record() did; the port sends a status callback's write to LEDGER_RETRY, one version-1 message per
// event, which every release's consumer reads); an event the Durable Object could not record is
// answered `failed` alone and treated the same way, the others standing.
import type { RecordOutcome, RecordVerdict } from "../ledger/port.ts";
import type { LedgerWrite } from "./ledger-queue.ts";
import { metrics } from "../observability/metrics.ts";

/** Records `writes` of one account in order, in one call, answering one outcome per write. */
export type RecordCall = (writes: LedgerWrite[]) => Promise<RecordOutcome[]>;
/** The request's waitUntil: keeps the call it leads alive past its own answer. */
export type KeepAlive = (promise: Promise<unknown>) => void;

/**
 * How long a status callback waits for others of its account (or a call in flight) to share its
 * call: callbacks that overlap, the load that needs the saving, come well within it; a lone one is
 * written this much later, after its answer.
 */
export const HOLD_MS = 5;
/** At most this many events in one call: one bounded transaction however many waited. */
export const MAX_RECORDS_PER_BATCH = 64;
/** A leader whose call has not ended after this long belonged to a request context that died (a call takes milliseconds). */
export const STALE_LEADER_MS = 30_000;

interface Waiting {
  write: LedgerWrite;
  resolve: (verdict: RecordVerdict) => void;
  reject: (error: unknown) => void;
  /** Makes this event's request lead the lane's next call (from its own context). */
  lead: (token: object) => void;
}

interface Lane {
  waiting: Waiting[];
  /** The current leader's token, or null when no call is in flight or held. */
  leader: object | null;
  /** When the current leader took the lane (the batcher's clock). */
  since: number;
  /** The leader is holding status callbacks, not yet calling: an inbound event may take over. */
  holding: boolean;
}

export interface RecordBatcherOptions {
  clock?: () => number;
  /** Resolves after `ms` (the status hold); tests pass their own. */
  wait?: (ms: number) => Promise<void>;
  holdMs?: number;
  /** Calls `fire` after `ms` unless the returned function is called first (the watchdog's timer); tests pass their own. */
  watch?: (ms: number, fire: () => void) => () => void;
}

/** The failure of one event the Durable Object answered `failed` (rolled back alone). */
export class RecordFailed extends Error {
  constructor() {
    super("the account's ledger could not record this event");
    this.name = "RecordFailed";
  }
}

export class RecordBatcher {
  readonly #lanes = new Map<string, Lane>();
  readonly #clock: () => number;
  readonly #wait: (ms: number) => Promise<void>;
  readonly #holdMs: number;
  readonly #watch: (ms: number, fire: () => void) => () => void;

  constructor(options: RecordBatcherOptions = {}) {
    this.#clock = options.clock ?? (() => Date.now());
    this.#wait = options.wait ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#holdMs = options.holdMs ?? HOLD_MS;
    this.#watch = options.watch ?? ((ms, fire) => {
      const timer = setTimeout(fire, ms);
      return () => clearTimeout(timer);
    });
  }

  /** An inbound event: its verdict, from a call made now or, if one is in flight, right after it. */
  record(write: LedgerWrite, call: RecordCall, keepAlive: KeepAlive): Promise<RecordVerdict> {
    return this.#add(write, call, keepAlive, true);
  }

  /** A status callback: resolves once written (held up to HOLD_MS to share a call); rejects if its write failed. */
  async recordStatus(write: LedgerWrite, call: RecordCall, keepAlive: KeepAlive): Promise<void> {
    await this.#add(write, call, keepAlive, false);
  }

  /** Events waiting for a call, over every account (tests). */
  get waiting(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.waiting.length;
    return n;
  }

  #add(write: LedgerWrite, call: RecordCall, keepAlive: KeepAlive, urgent: boolean): Promise<RecordVerdict> {
    const account = write.event.accountSid;
    let lane = this.#lanes.get(account);
    if (lane === undefined) {
      lane = { waiting: [], leader: null, since: 0, holding: false };
      this.#lanes.set(account, lane);
    }
    const current = lane;
    let turn!: (token: object) => void;
    // Created here, so that when a leader in another request hands over the lane, the next call is
    // made in this request's context.
    const handedOver = new Promise<object>((resolve) => (turn = resolve));
    let fail!: (error: unknown) => void;
    let settled = false;
    const verdict = new Promise<RecordVerdict>((resolve, reject) => {
      fail = reject;
      current.waiting.push({ write, resolve, reject, lead: turn });
    });
    void verdict.then(() => (settled = true), () => (settled = true));
    void handedOver.then((token) => keepAlive(this.#lead(account, current, token, call, 0)));
    // The watchdog, for an event another request's call carries: a request waiting for a promise only
    // another request can settle has no I/O of its own, and workerd cancels such a request as hung; a
    // pending timer is its own I/O. It also fails the event (closed) if that call never ends. Started
    // and cleared in this request's context. A request whose own call is in flight needs none.
    const watch = () => {
      if (settled) return;
      const cancel = this.#watch(STALE_LEADER_MS, () => fail(new Error("the account's ledger call did not end")));
      void verdict.then(cancel, cancel);
    };
    const now = this.#clock();
    const lost = lane.leader !== null && now - lane.since >= STALE_LEADER_MS;
    if (lane.leader === null || lost || (urgent && lane.holding)) {
      const token = {};
      lane.leader = token;
      lane.since = now;
      lane.holding = !urgent;
      keepAlive(this.#lead(account, lane, token, call, urgent ? 0 : this.#holdMs, watch));
    } else {
      watch();
    }
    return verdict;
  }

  /** Makes one call (after the hold, for a status callback), then hands the lane to the next waiting event. */
  async #lead(account: string, lane: Lane, token: object, call: RecordCall, holdMs: number, watch?: () => void): Promise<void> {
    if (holdMs > 0) {
      await this.#wait(holdMs);
      // An inbound event took the lane meanwhile (and this status callback with it, if not yet written).
      if (lane.leader !== token) {
        watch?.();
        return;
      }
      lane.holding = false;
    }
    const batch = lane.waiting.splice(0, MAX_RECORDS_PER_BATCH);
    if (batch.length > 0) await this.#send(batch, call);
    // Presumed lost and replaced while calling: the lane is the newer leader's.
    if (lane.leader !== token) return;
    const next = lane.waiting[0];
    if (next === undefined) {
      lane.leader = null;
      if (this.#lanes.get(account) === lane) this.#lanes.delete(account);
      return;
    }
    const successor = {};
    lane.leader = successor;
    lane.since = this.#clock();
    next.lead(successor);
  }

  async #send(batch: Waiting[], call: RecordCall): Promise<void> {
    let outcomes: RecordOutcome[];
    try {
      outcomes = await call(batch.map((w) => w.write));
      if (outcomes.length !== batch.length) throw new Error(`the ledger answered ${outcomes.length} outcomes for ${batch.length} events`);
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    batch.forEach((w, i) => {
      try {
        w.resolve(verdictOf(outcomes[i]!));
      } catch (error) {
        w.reject(error);
      }
    });
  }
}

/** An event's verdict, or its failure (RecordFailed) when the Durable Object could not record it. */
export function verdictOf(outcome: RecordOutcome): RecordVerdict {
  if ("failed" in outcome) throw new RecordFailed();
  return { duplicate: outcome.duplicate, blocked: outcome.blocked };
}

/** A call's size as a bounded label: 1, 2-4, 5-16, 17-64. */
function sizeLabel(n: number): string {
  return n === 1 ? "1" : n <= 4 ? "2-4" : n <= 16 ? "5-16" : "17-64";
}

/** The account's Durable Object as a RecordCall needs it (AccountGuard's record and recordBatch). */
export interface RecordingGuard {
  record(event: LedgerWrite["event"], idempotencyToken: string | null, atMs?: number, reservationId?: string): Promise<RecordVerdict>;
  recordBatch(sid: string, writes: LedgerWrite[]): Promise<RecordOutcome[]>;
}

/** workerd's error for an RPC method the object does not have (a Durable Object still on the previous release). */
const MISSING_METHOD = /RPC receiver does not implement.*recordBatch/;

/**
 * The call to an account's Durable Object: a lone event with record() (what every release has), more
 * with recordBatch(). During a deploy the object may still run the previous release, which has no
 * recordBatch: the events are then recorded one after the other with record(), in order.
 */
export function recordCall(account: string, guard: () => RecordingGuard): RecordCall {
  const one = async (g: RecordingGuard, w: LedgerWrite): Promise<RecordVerdict> => {
    const v = await g.record(w.event, w.idempotencyToken, w.atMs, w.reservationId);
    return { duplicate: v.duplicate, blocked: v.blocked };
  };
  return async (writes) => {
    metrics.inc("guard_ledger_calls_total", { events: sizeLabel(writes.length) });
    metrics.inc("guard_ledger_call_events_total", {}, writes.length);
    const g = guard();
    if (writes.length === 1) return [await one(g, writes[0]!)];
    try {
      return await g.recordBatch(account, writes);
    } catch (error) {
      if (!(error instanceof Error) || !MISSING_METHOD.test(error.message)) throw error;
      const outcomes: RecordOutcome[] = [];
      for (const w of writes) outcomes.push(await one(g, w).catch((): RecordOutcome => ({ failed: true })));
      return outcomes;
    }
  };
}
