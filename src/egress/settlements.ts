// The gate's settlements, written to the account's Durable Object after the answer (gate.ts, step 5),
// without a round trip and a transaction of their own where another call can carry them:
//   - a settlement waits in this isolate's queue for the account for at most HOLD_MS;
//   - the next reservation of the same account takes whatever waits (`take`) and the Durable Object
//     applies it first, in the reservation's own transaction (one call, one commit for both);
//   - otherwise the account's writer, started by the first settlement that found none, writes what is
//     left after HOLD_MS in one call, then whatever came in meanwhile, batch by batch.
// A lone send is therefore settled HOLD_MS later than its answer, a send among others with the next one.
//
// Exactly once still: each settlement is applied by the Durable Object's pure transition, which is
// idempotent and order-free (src/ledger/reservations.ts), and is taken out of the queue by the one call
// that carries it; a call that failed hands its settlements back (`putBack`), and applying one twice
// (a call that failed after it committed) changes nothing. The writer's write is at least once (the gate
// passes breaker/ledger-queue.ts settleAtLeastOnce): a batch its call fails to write goes to the
// LEDGER_RETRY queue, whose consumer writes it again until it lands. The writer runs in the request context that
// started it (kept alive by its waitUntil); one that ended mid-write (its promise never settles) is
// noticed after STALE_WRITER_MS and the next settlement starts a new writer.
import type { Settlement } from "../ledger/reservations.ts";

export interface SettlementItem {
  reservationId: string;
  settlement: Settlement;
}

/** Writes one batch of an account's settlements (to its Durable Object, in one transaction). */
export type SettlementWrite = (items: SettlementItem[]) => Promise<unknown>;
/** Told of a batch whose write failed (with the gate's write: neither written nor queued, so lost). */
export type SettlementFailure = (error: unknown, items: SettlementItem[]) => void;

/**
 * How long a settlement waits for the account's next reservation to carry it: sends that overlap
 * (the load that needs the saving) come well within it; a lone one is settled this much later.
 */
export const HOLD_MS = 5;
/** A writer in flight longer than this belonged to a request context that ended (a write takes milliseconds). */
export const STALE_WRITER_MS = 30_000;
/** At most this many settlements in one call: one bounded transaction however far a writer fell behind. */
export const MAX_SETTLEMENTS_PER_WRITE = 64;

interface AccountQueue {
  items: SettlementItem[];
  /** When the current writer started (the queue's clock), or null when none runs. */
  writerSince: number | null;
}

export interface SettlementQueueOptions {
  clock?: () => number;
  /** Resolves after `ms` (the hold); tests pass their own. */
  wait?: (ms: number) => Promise<void>;
  holdMs?: number;
}

export class SettlementQueue {
  readonly #accounts = new Map<string, AccountQueue>();
  readonly #clock: () => number;
  readonly #wait: (ms: number) => Promise<void>;
  readonly #holdMs: number;

  constructor(options: SettlementQueueOptions = {}) {
    this.#clock = options.clock ?? (() => Date.now());
    this.#wait = options.wait ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#holdMs = options.holdMs ?? HOLD_MS;
  }

  /**
   * Queues one settlement. Returns the writer's promise when this call started the account's writer
   * (the caller hands it to waitUntil), or null when a running writer (or a reservation) will carry it.
   */
  add(sid: string, item: SettlementItem, write: SettlementWrite, failed: SettlementFailure): Promise<void> | null {
    return this.putBack(sid, [item], write, failed);
  }

  /** Hands settlements back (a call that was to carry them failed): as `add`, for several. */
  putBack(sid: string, items: readonly SettlementItem[], write: SettlementWrite, failed: SettlementFailure): Promise<void> | null {
    let queue = this.#accounts.get(sid);
    if (queue === undefined) {
      queue = { items: [], writerSince: null };
      this.#accounts.set(sid, queue);
    }
    queue.items.push(...items);
    const now = this.#clock();
    if (queue.writerSince !== null && now - queue.writerSince < STALE_WRITER_MS) return null;
    queue.writerSince = now;
    return this.#write(sid, queue, write, failed);
  }

  /** Takes what waits for the account (at most one call's worth), for its reservation to carry. */
  take(sid: string): SettlementItem[] {
    const queue = this.#accounts.get(sid);
    if (queue === undefined || queue.items.length === 0) return [];
    return queue.items.splice(0, MAX_SETTLEMENTS_PER_WRITE);
  }

  /** Settlements waiting for a call, over every account (tests). */
  get pending(): number {
    let n = 0;
    for (const queue of this.#accounts.values()) n += queue.items.length;
    return n;
  }

  async #write(sid: string, queue: AccountQueue, write: SettlementWrite, failed: SettlementFailure): Promise<void> {
    const mine = queue.writerSince;
    try {
      await this.#wait(this.#holdMs);
      while (queue.items.length > 0 && queue.writerSince === mine) {
        const batch = queue.items.splice(0, MAX_SETTLEMENTS_PER_WRITE);
        try {
          await write(batch);
        } catch (error) {
          failed(error, batch);
        }
      }
    } finally {
      // A newer writer took over (this one was presumed lost): the rest is its.
      if (queue.writerSince === mine) {
        queue.writerSince = null;
        if (queue.items.length === 0 && this.#accounts.get(sid) === queue) this.#accounts.delete(sid);
      }
    }
  }
}
