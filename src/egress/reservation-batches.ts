// Group commit of the egress gate's reservations, per account, within an isolate (the lanes and their
// hand-over: src/breaker/group-commit.ts, shared with the webhook path's ledger writes). The one
// Durable Object call per send is most of the gate's own cost, and most of the long-lived garbage in
// its isolate (docs/benchmarks.md, section 6): sends of one account that this isolate has at once
// share a call (AccountGuard.reserveSends) and a transaction.
//
// A reservation decides its send's answer, so it is never held: a lone send calls at once, as before
// (reserveSend, what every release has). While a reservation call of the account is in flight from this
// isolate, the account's sends wait and go together in the next call (at most MAX_ITEMS_PER_CALL), with
// the settlements the queue holds for the account (settlements.ts), as a lone reservation carries them.
// The Durable Object reserves them in the order they arrived, each by reserveSend's code, so every
// answer is what the sends reserved one after the other would have got (a budget of 10 forwards 10).
//
// Failure, fail closed: a call that fails refuses every send in it as a failed reservation is refused
// (nothing is forwarded), and hands the settlements it carried back to the queue (gate.ts); a send
// the Durable Object rolled back alone (`failed`) is refused alone.
import { GroupCommit, isMissingRpcMethod, sizeLabel, type BatchCall, type GroupCommitOptions, type KeepAlive } from "../breaker/group-commit.ts";
import { metrics } from "../observability/metrics.ts";
import type { ReserveAnswer, ReserveOutcome, ReserveRequest } from "./protocol.ts";
import type { SettlementItem } from "./settlements.ts";

/** Reserves `reqs` of one account in order, in one call, answering one outcome per send. */
export type ReserveCall = BatchCall<ReserveRequest, ReserveOutcome>;

/** A send the Durable Object could not reserve (rolled back alone): refused, as a failed reservation call. */
export class ReservationFailed extends Error {
  constructor() {
    super("the account's guard could not reserve this send");
    this.name = "ReservationFailed";
  }
}

function answerOf(outcome: ReserveOutcome): ReserveAnswer {
  if ("failed" in outcome) throw new ReservationFailed();
  return outcome;
}

/** The gate's lanes: every reservation urgent (no hold, no timer on a send's path). */
export class ReservationBatcher extends GroupCommit<ReserveRequest, ReserveOutcome, ReserveAnswer> {
  constructor(options: Omit<GroupCommitOptions, "holdMs" | "wait"> = {}) {
    super({ laneOf: (req) => req.accountSid, answerOf, lostCall: () => new Error("the account's reservation call did not end") }, options);
  }

  /** A send's reservation: from a call made now or, if one of its account is in flight, right after it. */
  reserve(req: ReserveRequest, call: ReserveCall, keepAlive: KeepAlive): Promise<ReserveAnswer> {
    return this.add(req, call, keepAlive, true);
  }
}

/** The account's Durable Object as the reservation call needs it (AccountGuard's reserveSend and reserveSends). */
export interface ReservingGuard {
  reserveSend(req: ReserveRequest): Promise<ReserveAnswer>;
  reserveSends(sid: string, reqs: ReserveRequest[], settle?: SettlementItem[]): Promise<ReserveOutcome[]>;
}

/**
 * One reservation call carrying `settle`: a lone send with reserveSend() (what every release has),
 * more with reserveSends(). During a deploy the object may still run the previous release, which has
 * no reserveSends: the sends are then reserved one after the other with reserveSend(), in order, the
 * first carrying the settlements (if it fails, the whole call fails, so they are handed back).
 */
export async function reserveAll(guard: ReservingGuard, account: string, reqs: ReserveRequest[], settle: SettlementItem[]): Promise<ReserveOutcome[]> {
  metrics.inc("guard_egress_reserve_calls_total", { sends: sizeLabel(reqs.length) });
  metrics.inc("guard_egress_reserve_call_sends_total", {}, reqs.length);
  const carrying = (req: ReserveRequest): ReserveRequest => (settle.length === 0 ? req : { ...req, settle });
  if (reqs.length === 1) return [await guard.reserveSend(carrying(reqs[0]!))];
  try {
    return await guard.reserveSends(account, reqs, settle);
  } catch (error) {
    if (!isMissingRpcMethod(error, "reserveSends")) throw error;
    const outcomes: ReserveOutcome[] = [await guard.reserveSend(carrying(reqs[0]!))];
    for (const req of reqs.slice(1)) outcomes.push(await guard.reserveSend(req).catch((): ReserveOutcome => ({ failed: true })));
    return outcomes;
  }
}
