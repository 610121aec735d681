import { describe, expect, it } from "vitest";
import { MAX_SETTLEMENTS_PER_WRITE, SettlementQueue, STALE_WRITER_MS, type SettlementItem } from "../../src/egress/settlements.ts";

const ACCOUNT = "AC00000000000000000000000000000001";
const OTHER = "AC00000000000000000000000000000002";

function item(n: number): SettlementItem {
  return { reservationId: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`, settlement: { type: "rejected" } };
}

/** Writes that stay in flight until released, recording every batch they were given. */
function gatedWrites() {
  const batches: SettlementItem[][] = [];
  const releases: Array<(fail?: Error) => void> = [];
  const write = (items: SettlementItem[]) => {
    batches.push(items);
    return new Promise<void>((resolve, reject) => releases.push((fail) => (fail ? reject(fail) : resolve())));
  };
  return { batches, write, release: (i: number, fail?: Error) => releases[i]!(fail) };
}

/** A hold that ends when the test says so. */
function manualHold() {
  const ends: Array<() => void> = [];
  return { wait: () => new Promise<void>((resolve) => ends.push(resolve)), end: () => ends.shift()!() };
}

/** Lets every pending promise continuation run (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

const ignore = () => {};
const noHold = { clock: () => 0, wait: () => Promise.resolve() };

describe("SettlementQueue", () => {
  it("writes a lone settlement when the hold ends, and hands back the writer for waitUntil", async () => {
    const hold = manualHold();
    const queue = new SettlementQueue({ clock: () => 0, wait: hold.wait });
    const w = gatedWrites();
    const writer = queue.add(ACCOUNT, item(1), w.write, ignore);
    expect(writer).not.toBeNull();
    await settle();
    expect(w.batches).toEqual([]);
    hold.end();
    await settle();
    expect(w.batches).toEqual([[item(1)]]);
    w.release(0);
    await writer;
    expect(queue.pending).toBe(0);
  });

  it("lets the account's next reservation take what waits, so the writer has nothing left to write", async () => {
    const hold = manualHold();
    const queue = new SettlementQueue({ clock: () => 0, wait: hold.wait });
    const w = gatedWrites();
    const writer = queue.add(ACCOUNT, item(1), w.write, ignore);
    expect(queue.add(ACCOUNT, item(2), w.write, ignore)).toBeNull();
    expect(queue.take(OTHER)).toEqual([]);
    expect(queue.take(ACCOUNT)).toEqual([item(1), item(2)]);
    expect(queue.take(ACCOUNT)).toEqual([]);
    hold.end();
    await writer;
    expect(w.batches).toEqual([]);
  });

  it("takes at most one call's worth for a reservation", () => {
    const queue = new SettlementQueue({ clock: () => 0, wait: manualHold().wait });
    const w = gatedWrites();
    for (let n = 0; n <= MAX_SETTLEMENTS_PER_WRITE; n++) queue.add(ACCOUNT, item(n), w.write, ignore);
    expect(queue.take(ACCOUNT)).toHaveLength(MAX_SETTLEMENTS_PER_WRITE);
    expect(queue.pending).toBe(1);
  });

  it("carries settlements that arrive during a write in the next write, without a writer of their own", async () => {
    const queue = new SettlementQueue(noHold);
    const w = gatedWrites();
    const writer = queue.add(ACCOUNT, item(1), w.write, ignore);
    await settle();
    expect(queue.add(ACCOUNT, item(2), w.write, ignore)).toBeNull();
    expect(queue.add(ACCOUNT, item(3), w.write, ignore)).toBeNull();
    w.release(0);
    await settle();
    expect(w.batches).toEqual([[item(1)], [item(2), item(3)]]);
    w.release(1);
    await writer;
    expect(queue.pending).toBe(0);
  });

  it("writes settlements handed back by a failed reservation, starting a writer when none runs", async () => {
    const queue = new SettlementQueue(noHold);
    const w = gatedWrites();
    const writer = queue.putBack(ACCOUNT, [item(1), item(2)], w.write, ignore);
    expect(writer).not.toBeNull();
    await settle();
    expect(w.batches).toEqual([[item(1), item(2)]]);
    w.release(0);
    await writer;
  });

  it("starts a new writer after the previous one finished", async () => {
    const queue = new SettlementQueue(noHold);
    const w = gatedWrites();
    const first = queue.add(ACCOUNT, item(1), w.write, ignore);
    await settle();
    w.release(0);
    await first;
    const second = queue.add(ACCOUNT, item(2), w.write, ignore);
    expect(second).not.toBeNull();
    await settle();
    expect(w.batches).toEqual([[item(1)], [item(2)]]);
    w.release(1);
    await second;
  });

  it("keeps accounts apart: each has its own writer", async () => {
    const queue = new SettlementQueue(noHold);
    const w = gatedWrites();
    expect(queue.add(ACCOUNT, item(1), w.write, ignore)).not.toBeNull();
    expect(queue.add(OTHER, item(2), w.write, ignore)).not.toBeNull();
    await settle();
    expect(w.batches).toEqual([[item(1)], [item(2)]]);
  });

  it("reports a batch whose write failed and goes on with the next one", async () => {
    const queue = new SettlementQueue(noHold);
    const w = gatedWrites();
    const failures: Array<{ error: unknown; items: SettlementItem[] }> = [];
    const writer = queue.add(ACCOUNT, item(1), w.write, (error, items) => failures.push({ error, items }));
    await settle();
    queue.add(ACCOUNT, item(2), w.write, ignore);
    const boom = new Error("Durable Object overloaded");
    w.release(0, boom);
    await settle();
    expect(failures).toEqual([{ error: boom, items: [item(1)] }]);
    expect(w.batches).toEqual([[item(1)], [item(2)]]);
    w.release(1);
    await writer;
  });

  it("writes at most MAX_SETTLEMENTS_PER_WRITE in one batch", async () => {
    const queue = new SettlementQueue(noHold);
    const w = gatedWrites();
    const writer = queue.add(ACCOUNT, item(0), w.write, ignore);
    for (let n = 1; n <= MAX_SETTLEMENTS_PER_WRITE; n++) queue.add(ACCOUNT, item(n), w.write, ignore);
    await settle();
    w.release(0);
    await settle();
    w.release(1);
    await writer;
    expect(w.batches.map((b) => b.length)).toEqual([MAX_SETTLEMENTS_PER_WRITE, 1]);
  });

  it("replaces a writer presumed lost (its request context ended mid-write), and the old one writes no more", async () => {
    let now = 0;
    const queue = new SettlementQueue({ clock: () => now, wait: () => Promise.resolve() });
    const w = gatedWrites();
    queue.add(ACCOUNT, item(1), w.write, ignore);
    await settle();
    expect(queue.add(ACCOUNT, item(2), w.write, ignore)).toBeNull();
    now += STALE_WRITER_MS;
    const replacement = queue.add(ACCOUNT, item(3), w.write, ignore);
    expect(replacement).not.toBeNull();
    await settle();
    expect(w.batches).toEqual([[item(1)], [item(2), item(3)]]);
    w.release(0);
    w.release(1);
    await replacement;
    await settle();
    expect(w.batches).toHaveLength(2);
    expect(queue.pending).toBe(0);
  });
});
