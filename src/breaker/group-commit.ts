// Group commit per account within an isolate: the lanes and their hand-over, shared by the webhook
// path's ledger writes (record-batches.ts) and the egress gate's reservations
// (src/egress/reservation-batches.ts). N items of one account that this isolate has at once cost one
// Durable Object call and one transaction instead of N; a lone item goes alone, as before.
//
// Per account, one call at a time from this isolate (a "lane"):
//   - an urgent item (its answer decides the request's answer) is sent at once when no call of its
//     account is in flight: no timer, nothing added to a lone item. While one is, it waits and goes in
//     the next call with everything else that arrived meanwhile (at most `maxPerCall`);
//   - a held item (bookkeeping after the answer) waits up to `holdMs` so that such items arriving
//     together share a call; an urgent item arriving meanwhile takes it along at once, and so does any
//     call in flight.
//
// Each call is made by a request whose item is in it, from its own request context (a Durable Object
// stub is an I/O object of the request that made it, and that request is alive: it waits for its
// item): the request that found the lane idle leads; when its call ends it hands the lane to the
// first item still waiting, whose request makes the next call (with its own `call`). The leader's
// call is kept alive by its request's waitUntil, so a client that disconnects does not strand the
// others' items. A leader whose call never ends (its request context died) is presumed lost after
// STALE_LEADER_MS.
//
// Failure: a call that fails (or answers a different number of outcomes) rejects each of its items;
// an outcome `answerOf` throws for (an item the Durable Object rolled back alone) rejects that item
// alone, the others standing.

/** Makes one call for `items` of one account, in order, answering one outcome per item. */
export type BatchCall<I, O> = (items: I[]) => Promise<O[]>;
/** The request's waitUntil: keeps the call it leads alive past its own answer. */
export type KeepAlive = (promise: Promise<unknown>) => void;

/** At most this many items in one call: one bounded transaction however many waited. */
export const MAX_ITEMS_PER_CALL = 64;
/** A leader whose call has not ended after this long belonged to a request context that died (a call takes milliseconds). */
export const STALE_LEADER_MS = 30_000;

interface Waiting<I, A> {
  item: I;
  resolve: (answer: A) => void;
  reject: (error: unknown) => void;
  /** Makes this item's request lead the lane's next call (from its own context). */
  lead: (token: object) => void;
}

interface Lane<I, A> {
  waiting: Waiting<I, A>[];
  /** The current leader's token, or null when no call is in flight or held. */
  leader: object | null;
  /** When the current leader took the lane (the batcher's clock). */
  since: number;
  /** The leader is holding items, not yet calling: an urgent item may take over. */
  holding: boolean;
}

export interface GroupCommitOptions {
  clock?: () => number;
  /** Resolves after `ms` (the hold); tests pass their own. */
  wait?: (ms: number) => Promise<void>;
  /** How long a held item waits for others (0: held items go at once). */
  holdMs?: number;
  /** Calls `fire` after `ms` unless the returned function is called first (the watchdog's timer); tests pass their own. */
  watch?: (ms: number, fire: () => void) => () => void;
}

export interface GroupCommitShape<I, O, A> {
  /** The lane (account) an item belongs to. */
  laneOf: (item: I) => string;
  /** An item's answer from its outcome; throws for an outcome that is a failure of that item alone. */
  answerOf: (outcome: O) => A;
  /** What a call that never ended fails its waiting items with. */
  lostCall: () => Error;
}

export class GroupCommit<I, O, A> {
  readonly #lanes = new Map<string, Lane<I, A>>();
  readonly #shape: GroupCommitShape<I, O, A>;
  readonly #clock: () => number;
  readonly #wait: (ms: number) => Promise<void>;
  readonly #holdMs: number;
  readonly #watch: (ms: number, fire: () => void) => () => void;

  constructor(shape: GroupCommitShape<I, O, A>, options: GroupCommitOptions = {}) {
    this.#shape = shape;
    this.#clock = options.clock ?? (() => Date.now());
    this.#wait = options.wait ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#holdMs = options.holdMs ?? 0;
    this.#watch = options.watch ?? ((ms, fire) => {
      const timer = setTimeout(fire, ms);
      return () => clearTimeout(timer);
    });
  }

  /** Items waiting for a call, over every account (tests). */
  get waiting(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.waiting.length;
    return n;
  }

  /** Adds one item: its answer, from a call made now (urgent, lane idle), after the hold, or right after the call in flight. */
  protected add(item: I, call: BatchCall<I, O>, keepAlive: KeepAlive, urgent: boolean): Promise<A> {
    const account = this.#shape.laneOf(item);
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
    const answer = new Promise<A>((resolve, reject) => {
      fail = reject;
      current.waiting.push({ item, resolve, reject, lead: turn });
    });
    void answer.then(() => (settled = true), () => (settled = true));
    void handedOver.then((token) => keepAlive(this.#lead(account, current, token, call, 0)));
    // The watchdog, for an item another request's call carries: a request waiting for a promise only
    // another request can settle has no I/O of its own, and workerd cancels such a request as hung; a
    // pending timer is its own I/O. It also fails the item (closed) if that call never ends. Started
    // and cleared in this request's context. A request whose own call is in flight needs none.
    const watch = () => {
      if (settled) return;
      const cancel = this.#watch(STALE_LEADER_MS, () => fail(this.#shape.lostCall()));
      void answer.then(cancel, cancel);
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
    return answer;
  }

  /** Makes one call (after the hold, for a held item), then hands the lane to the next waiting item. */
  async #lead(account: string, lane: Lane<I, A>, token: object, call: BatchCall<I, O>, holdMs: number, watch?: () => void): Promise<void> {
    if (holdMs > 0) {
      await this.#wait(holdMs);
      // An urgent item took the lane meanwhile (and this held one with it, if not yet sent).
      if (lane.leader !== token) {
        watch?.();
        return;
      }
      lane.holding = false;
    }
    const batch = lane.waiting.splice(0, MAX_ITEMS_PER_CALL);
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

  async #send(batch: Waiting<I, A>[], call: BatchCall<I, O>): Promise<void> {
    let outcomes: O[];
    try {
      outcomes = await call(batch.map((w) => w.item));
      if (outcomes.length !== batch.length) throw new Error(`the Durable Object answered ${outcomes.length} outcomes for ${batch.length} items`);
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    batch.forEach((w, i) => {
      try {
        w.resolve(this.#shape.answerOf(outcomes[i]!));
      } catch (error) {
        w.reject(error);
      }
    });
  }
}

/** A call's size as a bounded label: 1, 2-4, 5-16, 17-64. */
export function sizeLabel(n: number): string {
  return n === 1 ? "1" : n <= 4 ? "2-4" : n <= 16 ? "5-16" : "17-64";
}

/** How workerd's error for an RPC method the Durable Object does not have begins (its method named after). */
const MISSING_RPC_METHOD = "RPC receiver does not implement";

/**
 * The Durable Object has no such RPC method: it still runs the previous release (a deploy in progress),
 * which has no batch method; callers then go one by one with the method every release has.
 */
export function isMissingRpcMethod(error: unknown, method: string): boolean {
  if (!(error instanceof Error)) return false;
  const at = error.message.indexOf(MISSING_RPC_METHOD);
  return at >= 0 && error.message.indexOf(method, at + MISSING_RPC_METHOD.length) >= 0;
}
