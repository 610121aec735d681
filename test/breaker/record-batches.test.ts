// RecordBatcher (the webhook path's group commit per account and isolate) with scripted calls and an
// injected hold, and recordCall (record() for one event, recordBatch() for more, record() one by one
// when the object has no recordBatch yet). The Worker through it: test/breaker/record-batches-app.test.ts.
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LedgerWrite } from "../../src/breaker/ledger-queue.ts";
import { MAX_RECORDS_PER_BATCH, RecordBatcher, RecordFailed, STALE_LEADER_MS, recordCall, type RecordingGuard } from "../../src/breaker/record-batches.ts";
import type { BillableEvent } from "../../src/ledger/classify.ts";
import type { RecordOutcome, RecordVerdict } from "../../src/ledger/port.ts";
import { metrics } from "../../src/observability/metrics.ts";
import { manualWatch, scriptedBatchCalls, settle } from "../support/batches.ts";

afterEach(() => vi.restoreAllMocks());

const ACCOUNT = "AC00000000000000000000000000000001";
const OTHER = "AC00000000000000000000000000000002";

function write(n: number, account = ACCOUNT): LedgerWrite {
  const sid = `SM${String(n).padStart(32, "0")}`;
  const event = { kind: "inbound-message", sid, accountSid: account, status: "received", dedupeKey: `${sid}:received`, countKey: `msg:${sid}`, billable: true, units: { segments: 1 } } as unknown as BillableEvent;
  return { event, idempotencyToken: null, atMs: n };
}

const ok: RecordVerdict = { duplicate: false, blocked: false };

/** Calls that stay in flight until the test answers them (every event ok unless told), recording every batch. */
const scriptedCalls = () => scriptedBatchCalls<LedgerWrite, RecordOutcome>(() => ok);

/** A hold that ends when the test says so. */
function manualHold() {
  const ends: Array<() => void> = [];
  return { wait: () => new Promise<void>((resolve) => ends.push(resolve)), end: () => ends.shift()!(), get waiting() { return ends.length; } };
}

const kept: Promise<unknown>[] = [];
const keepAlive = (p: Promise<unknown>) => void kept.push(p);
const never = () => new Promise<void>(() => {});

describe("RecordBatcher: inbound events", () => {
  it("sends a lone inbound event at once, with no timer (the hold never ends here)", async () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    const verdict = batcher.record(write(1), c.call, keepAlive);
    expect(c.batches).toEqual([[write(1)]]);
    c.answer(0, [{ duplicate: true, blocked: false }]);
    expect(await verdict).toEqual({ duplicate: true, blocked: false });
    expect(batcher.waiting).toBe(0);
  });

  it("sends the events that arrive while a call is in flight together in the next call, in order, each its own verdict", async () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    const first = batcher.record(write(1), c.call, keepAlive);
    const later = [2, 3, 4].map((n) => batcher.record(write(n), c.call, keepAlive));
    expect(c.batches).toHaveLength(1);
    c.answer(0);
    await first;
    await settle();
    expect(c.batches).toEqual([[write(1)], [write(2), write(3), write(4)]]);
    c.answer(1, [ok, { duplicate: true, blocked: false }, { duplicate: false, blocked: true }]);
    expect(await Promise.all(later)).toEqual([ok, { duplicate: true, blocked: false }, { duplicate: false, blocked: true }]);
  });

  it("makes each call with the call function of a request in it (the next leader's own)", async () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const [a, b] = [scriptedCalls(), scriptedCalls()];
    const first = batcher.record(write(1), a.call, keepAlive);
    const second = batcher.record(write(2), b.call, keepAlive);
    a.answer(0);
    await first;
    await settle();
    expect(a.batches).toEqual([[write(1)]]);
    expect(b.batches).toEqual([[write(2)]]);
    b.answer(0);
    expect(await second).toEqual(ok);
  });

  it("keeps accounts apart: each has its own call in flight", () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    void batcher.record(write(1), c.call, keepAlive);
    void batcher.record(write(2, OTHER), c.call, keepAlive);
    expect(c.batches).toEqual([[write(1)], [write(2, OTHER)]]);
  });

  it("sends at most MAX_RECORDS_PER_BATCH events in one call", async () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    void batcher.record(write(0), c.call, keepAlive);
    for (let n = 1; n <= MAX_RECORDS_PER_BATCH + 1; n++) void batcher.record(write(n), c.call, keepAlive);
    c.answer(0);
    await settle();
    c.answer(1);
    await settle();
    expect(c.batches.map((b) => b.length)).toEqual([1, MAX_RECORDS_PER_BATCH, 1]);
  });

  it("fails every event of a call that fails, and goes on with the next call", async () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    void batcher.record(write(1), c.call, keepAlive).catch(() => {});
    const failing = [2, 3].map((n) => batcher.record(write(n), c.call, keepAlive));
    c.answer(0);
    await settle();
    const after = batcher.record(write(4), c.call, keepAlive);
    const down = new Error("Durable Object reset");
    c.answer(1, down);
    for (const p of failing) await expect(p).rejects.toBe(down);
    await settle();
    expect(c.batches).toEqual([[write(1)], [write(2), write(3)], [write(4)]]);
    c.answer(2);
    expect(await after).toEqual(ok);
  });

  it("fails only the event the object answered `failed`", async () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    void batcher.record(write(1), c.call, keepAlive);
    const [a, b, d] = [2, 3, 4].map((n) => batcher.record(write(n), c.call, keepAlive));
    c.answer(0);
    await settle();
    c.answer(1, [ok, { failed: true }, ok]);
    expect(await a).toEqual(ok);
    await expect(b).rejects.toBeInstanceOf(RecordFailed);
    expect(await d).toEqual(ok);
  });

  it("fails the events of a call that answers the wrong number of outcomes", async () => {
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    const verdict = batcher.record(write(1), c.call, keepAlive);
    c.answer(0, []);
    await expect(verdict).rejects.toThrow(/0 outcomes for 1 items/);
  });

  it("watches only an event another request's call carries: cleared once answered, failing it if that call never ends", async () => {
    const w = manualWatch();
    const batcher = new RecordBatcher({ wait: never, watch: w.watch });
    const c = scriptedCalls();
    const leading = batcher.record(write(1), c.call, keepAlive);
    expect(w.watches).toHaveLength(0);
    const carried = batcher.record(write(2), c.call, keepAlive);
    expect(w.watches).toHaveLength(1);
    c.answer(0);
    await leading;
    await settle();
    c.answer(1);
    await carried;
    await settle();
    expect(w.watches[0]!.cancelled).toBe(true);
    const stuck = [3, 4].map((n) => batcher.record(write(n), c.call, keepAlive));
    w.watches[1]!.fire();
    await expect(stuck[1]).rejects.toThrow(/did not end/);
  });

  it("watches a held status callback that an inbound event's call took along, once its hold ends", async () => {
    const w = manualWatch();
    const hold = manualHold();
    const batcher = new RecordBatcher({ wait: hold.wait, watch: w.watch });
    const c = scriptedCalls();
    const status = batcher.recordStatus(write(1), c.call, keepAlive);
    void batcher.record(write(2), c.call, keepAlive);
    expect(w.watches).toHaveLength(0);
    hold.end();
    await settle();
    expect(w.watches).toHaveLength(1);
    c.answer(0);
    await status;
    await settle();
    expect(w.watches[0]!.cancelled).toBe(true);
  });

  it("lets a new event lead when the call in flight is presumed lost (its request context died)", async () => {
    let now = 0;
    const batcher = new RecordBatcher({ clock: () => now, wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    void batcher.record(write(1), c.call, keepAlive).catch(() => {});
    void batcher.record(write(2), c.call, keepAlive).catch(() => {});
    expect(c.batches).toHaveLength(1);
    now += STALE_LEADER_MS;
    const fresh = batcher.record(write(3), c.call, keepAlive);
    expect(c.batches).toEqual([[write(1)], [write(2), write(3)]]);
    c.answer(1);
    expect(await fresh).toEqual(ok);
    // The lost call ending late hands nothing over: the lane is the newer leader's.
    c.answer(0);
    await settle();
    expect(c.batches).toHaveLength(2);
  });

  it("hands each call it leads to the request's waitUntil", async () => {
    const kept: Promise<unknown>[] = [];
    const batcher = new RecordBatcher({ wait: never, watch: manualWatch().watch });
    const c = scriptedCalls();
    void batcher.record(write(1), c.call, (p) => void kept.push(p));
    void batcher.record(write(2), c.call, (p) => void kept.push(p));
    expect(kept).toHaveLength(1);
    c.answer(0);
    await settle();
    expect(kept).toHaveLength(2);
    c.answer(1);
    await Promise.all(kept);
  });
});

describe("RecordBatcher: status callbacks", () => {
  it("holds a status callback until the hold ends, with the others that came meanwhile in one call", async () => {
    const hold = manualHold();
    const batcher = new RecordBatcher({ wait: hold.wait, watch: manualWatch().watch });
    const c = scriptedCalls();
    const written = [1, 2, 3].map((n) => batcher.recordStatus(write(n), c.call, keepAlive));
    await settle();
    expect(c.batches).toEqual([]);
    hold.end();
    await settle();
    expect(c.batches).toEqual([[write(1), write(2), write(3)]]);
    c.answer(0);
    await Promise.all(written);
  });

  it("lets an inbound event take the held status callbacks along at once; the hold's end then sends nothing", async () => {
    const hold = manualHold();
    const batcher = new RecordBatcher({ wait: hold.wait, watch: manualWatch().watch });
    const c = scriptedCalls();
    const status = batcher.recordStatus(write(1), c.call, keepAlive);
    const inbound = batcher.record(write(2), c.call, keepAlive);
    expect(c.batches).toEqual([[write(1), write(2)]]);
    c.answer(0);
    expect(await inbound).toEqual(ok);
    await status;
    hold.end();
    await settle();
    expect(c.batches).toHaveLength(1);
  });

  it("sends a status callback that arrives during a call with the next call, without a hold of its own", async () => {
    const hold = manualHold();
    const batcher = new RecordBatcher({ wait: hold.wait, watch: manualWatch().watch });
    const c = scriptedCalls();
    void batcher.record(write(1), c.call, keepAlive);
    const status = batcher.recordStatus(write(2), c.call, keepAlive);
    c.answer(0);
    await settle();
    expect(hold.waiting).toBe(0);
    expect(c.batches).toEqual([[write(1)], [write(2)]]);
    c.answer(1);
    await status;
  });

  it("rejects a status callback whose call failed (the port then queues it)", async () => {
    const hold = manualHold();
    const batcher = new RecordBatcher({ wait: hold.wait, watch: manualWatch().watch });
    const c = scriptedCalls();
    const written = [1, 2].map((n) => batcher.recordStatus(write(n), c.call, keepAlive));
    hold.end();
    await settle();
    c.answer(0, [ok, { failed: true }]);
    await written[0];
    await expect(written[1]).rejects.toBeInstanceOf(RecordFailed);
  });
});

describe("recordCall", () => {
  /** An AccountGuard stand-in recording how it was called. */
  function fakeGuard(options: { batch?: "missing" | Error; event?: "missing" | Error; bits?: number; fail?: number } = {}) {
    const calls: string[] = [];
    const guard: RecordingGuard = {
      async recordEvent(event) {
        if (options.event === "missing") throw new TypeError('The RPC receiver does not implement the method "recordEvent".');
        if (options.event instanceof Error) throw options.event;
        calls.push(`event ${event.sid.slice(-1)}`);
        return options.bits ?? 0;
      },
      async record(event) {
        calls.push(`record ${event.sid.slice(-1)}`);
        if (options.fail !== undefined && event.sid.endsWith(String(options.fail))) throw new Error("down");
        return { duplicate: false, blocked: false };
      },
      async recordBatch(sid, writes) {
        if (options.batch === "missing") throw new TypeError('The RPC receiver does not implement the method "recordBatch".');
        if (options.batch instanceof Error) throw options.batch;
        calls.push(`batch ${sid} ${writes.length}`);
        return writes.map(() => ok);
      },
    };
    return { guard, calls };
  }

  it("records a lone event with recordEvent(), its verdict answered as a number", async () => {
    const g = fakeGuard({ bits: 3 });
    expect(await recordCall(ACCOUNT, () => g.guard)([write(1)])).toEqual([{ duplicate: true, blocked: true }]);
    expect(g.calls).toEqual(["event 1"]);
  });

  it("records a lone event with record(), what every release has, when the object has no recordEvent (the previous release)", async () => {
    const g = fakeGuard({ event: "missing" });
    expect(await recordCall(ACCOUNT, () => g.guard)([write(1)])).toEqual([ok]);
    expect(g.calls).toEqual(["record 1"]);
  });

  it("passes any other failure of recordEvent on, without a second call", async () => {
    const down = new Error("Durable Object reset");
    const g = fakeGuard({ event: down });
    await expect(recordCall(ACCOUNT, () => g.guard)([write(1)])).rejects.toBe(down);
    expect(g.calls).toEqual([]);
  });

  it("fails a lone event whose answer is not a verdict", async () => {
    const g = fakeGuard({ bits: 4 });
    await expect(recordCall(ACCOUNT, () => g.guard)([write(1)])).rejects.toBeInstanceOf(TypeError);
  });

  it("records several with one recordBatch()", async () => {
    const g = fakeGuard();
    expect(await recordCall(ACCOUNT, () => g.guard)([write(1), write(2)])).toEqual([ok, ok]);
    expect(g.calls).toEqual([`batch ${ACCOUNT} 2`]);
  });

  it("counts each call by its size, and the events it carried", async () => {
    const inc = vi.spyOn(metrics, "inc");
    const g = fakeGuard();
    const call = recordCall(ACCOUNT, () => g.guard);
    for (const n of [1, 3, 5, 17]) await call(Array.from({ length: n }, (_, i) => write(i)));
    expect(inc.mock.calls.filter(([name]) => name === "guard_ledger_calls_total").map(([, labels]) => labels)).toEqual([{ events: "1" }, { events: "2-4" }, { events: "5-16" }, { events: "17-64" }]);
    expect(inc.mock.calls.filter(([name]) => name === "guard_ledger_call_events_total").map(([, , n]) => n)).toEqual([1, 3, 5, 17]);
  });

  it("records them one by one, in order, when the object has no recordBatch (the previous release), failing only the one that failed", async () => {
    const g = fakeGuard({ batch: "missing", fail: 2 });
    expect(await recordCall(ACCOUNT, () => g.guard)([write(1), write(2), write(3)])).toEqual([ok, { failed: true }, ok]);
    expect(g.calls).toEqual(["record 1", "record 2", "record 3"]);
  });

  it("passes any other failure of recordBatch on", async () => {
    const down = new Error("Durable Object reset");
    const g = fakeGuard({ batch: down });
    await expect(recordCall(ACCOUNT, () => g.guard)([write(1), write(2)])).rejects.toBe(down);
    expect(g.calls).toEqual([]);
  });
});
