// AccountGuard.recordBatch (the webhook path's group commit): a batch of events gives the same verdicts
// and leaves the same ledger as the same events recorded one by one with record(), in the same order;
// a duplicate within a batch is a duplicate, a trip inside a batch blocks what follows it once, and one
// event the object cannot record is answered `failed` alone while the others stand.
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import type { LedgerWrite } from "../../src/breaker/ledger-queue.ts";
import { MAX_RECORDS_PER_BATCH } from "../../src/breaker/record-batches.ts";
import { windowStart } from "../../src/ledger/windows.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { verdictBits, type RecordOutcome } from "../../src/ledger/port.ts";
import { guard, ledgerRows, quiesce } from "../support/guard.ts";
import { Seeded } from "../support/seeded.ts";
import { callStatus, inboundCall, inboundSms, messageStatus, uniqueSid, type Params } from "../support/twilio.ts";

/** Accounts this file's tests made: quiesced after each test (support/guard.ts quiesce). */
const made: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const sid of made.splice(0)) await quiesce(sid);
});

const POLICY = { limits: [{ window: "day" as const, events: 8 }, { window: "day" as const, usd: 0.5 }], warnAt: 0.5, action: "suspend" as const };

function event(params: Params): BillableEvent {
  const e = classifyWebhook(new Map(params));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

/** The parameters of one webhook, for any account: the same Sids whichever account it is sent for. */
type Script = Array<(account: string) => Params>;

/** A random mix of inbound messages and calls, status callbacks with and without Twilio's Price, and repeats. */
function script(rng: Seeded, length: number): Script {
  const steps: Script = [];
  for (let i = 0; i < length; i++) {
    const roll = rng.int(6);
    if (steps.length > 0 && roll === 0) {
      steps.push(rng.pick(steps)); // Twilio retrying an earlier webhook
    } else if (roll === 1) {
      const sid = uniqueSid("SM");
      steps.push((a) => inboundSms(a, { MessageSid: sid, SmsSid: sid, SmsMessageSid: sid }));
    } else if (roll === 2) {
      const sid = uniqueSid("CA");
      steps.push((a) => inboundCall(a, { CallSid: sid }));
    } else if (roll === 3) {
      const sid = uniqueSid("SM");
      const price: Record<string, string> = rng.chance(0.5) ? { Price: `-0.0${1 + rng.int(9)}`, PriceUnit: "USD" } : {};
      steps.push((a) => messageStatus(a, sid, "sent"));
      steps.push((a) => messageStatus(a, sid, "delivered", price));
    } else if (roll === 4) {
      const sid = uniqueSid("CA");
      const duration = String(30 + rng.int(200));
      steps.push((a) => callStatus(a, sid, "completed", { CallDuration: duration }));
    } else {
      const sid = uniqueSid("SM");
      const segments = String(1 + rng.int(3));
      steps.push((a) => inboundSms(a, { MessageSid: sid, SmsSid: sid, SmsMessageSid: sid, NumSegments: segments }));
    }
  }
  return steps;
}

function writes(account: string, steps: Script, startMs: number): LedgerWrite[] {
  return steps.map((step, i) => ({ event: event(step(account)), idempotencyToken: null, atMs: startMs + i * 1000 }));
}

async function account(): Promise<string> {
  const sid = uniqueSid();
  made.push(sid);
  await guard(sid).setPolicy(sid, POLICY);
  return sid;
}

/** `all` split into batches of 1 to `most` events, the split drawn from `rng`. */
function split<T>(all: T[], rng: Seeded, most: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < all.length; ) {
    const n = 1 + rng.int(most);
    batches.push(all.slice(i, i + n));
    i += n;
  }
  return batches;
}

describe("AccountGuard.recordEvent", () => {
  it("answers record()'s verdict as a number and leaves the same ledger (seeded scripts, across a trip)", async () => {
    for (const seed of [13, 29]) {
      const steps = script(new Seeded(seed), 24);
      const startMs = Date.now();
      const [one, other] = [await account(), await account()];
      const expected: number[] = [];
      for (const w of writes(one, steps, startMs)) expected.push(verdictBits(await guard(one).record(w.event, w.idempotencyToken, w.atMs)));
      const got: number[] = [];
      for (const w of writes(other, steps, startMs)) got.push(await guard(other).recordEvent(w.event, w.idempotencyToken, w.atMs));
      expect(got, `seed ${seed}`).toEqual(expected);
      // Duplicates (1) and blocked events (2) both among the answers.
      expect(new Set(got).size, `seed ${seed}`).toBeGreaterThan(2);
      const [a, b] = [await ledgerRows(one), await ledgerRows(other)];
      for (const key of Object.keys(a) as Array<keyof typeof a>) expect.soft(b[key], `seed ${seed}: ${key}`).toEqual(a[key]);
      expect(a.breaker, `seed ${seed}`).toBe("open");
    }
  });
});

describe("AccountGuard.recordBatch", () => {
  it("gives the verdicts and leaves the ledger of the same events recorded one by one (seeded scripts)", async () => {
    for (const seed of [11, 23, 37, 41, 59]) {
      const rng = new Seeded(seed);
      const steps = script(rng, 24);
      const startMs = Date.now();
      const [one, many] = [await account(), await account()];

      const expected: RecordOutcome[] = [];
      for (const w of writes(one, steps, startMs)) expected.push(await guard(one).record(w.event, w.idempotencyToken, w.atMs));
      const got: RecordOutcome[] = [];
      for (const batch of split(writes(many, steps, startMs), rng, 7)) got.push(...(await guard(many).recordBatch(many, batch)));

      expect(got, `seed ${seed}`).toEqual(expected);
      const [a, b] = [await ledgerRows(one), await ledgerRows(many)];
      for (const key of Object.keys(a) as Array<keyof typeof a>) expect.soft(b[key], `seed ${seed}: ${key}`).toEqual(a[key]);
      // The scripts are long enough to cross the limits: the comparison covers a trip and blocked events.
      expect(a.breaker, `seed ${seed}`).toBe("open");
    }
  });

  it("counts a duplicate within a batch once, and answers it as a duplicate", async () => {
    const sid = await account();
    const sms = inboundSms(sid);
    const w: LedgerWrite = { event: event(sms), idempotencyToken: null, atMs: Date.now() };
    expect(await guard(sid).recordBatch(sid, [w, w, { ...w, atMs: w.atMs + 1 }])).toEqual([
      { duplicate: false, blocked: false },
      { duplicate: true, blocked: false },
      { duplicate: true, blocked: false },
    ]);
    // And across batches.
    expect(await guard(sid).recordBatch(sid, [w, { event: event(inboundSms(sid)), idempotencyToken: null, atMs: w.atMs }])).toEqual([
      { duplicate: true, blocked: false },
      { duplicate: false, blocked: false },
    ]);
    const day = (await guard(sid).snapshot()).windows.find((x) => x.window === "day")!;
    expect(day.events).toBe(2);
  });

  it("blocks the inbound events after the one that trips, with one trip and one suspension", async () => {
    const sid = await account();
    const now = Date.now();
    const batch = Array.from({ length: 12 }, (_, i): LedgerWrite => ({ event: event(inboundSms(sid)), idempotencyToken: null, atMs: now + i }));
    const verdicts = await guard(sid).recordBatch(sid, batch);
    // The 9th event crosses the 8-events limit: it and every one after it are blocked.
    expect(verdicts.map((v) => ("blocked" in v ? v.blocked : "failed"))).toEqual([...Array<boolean>(8).fill(false), ...Array<boolean>(4).fill(true)]);
    const state = await ledgerRows(sid);
    expect(state.trips).toHaveLength(1);
    expect(state.outbox.filter((r) => r.kind === "suspend")).toHaveLength(1);
  });

  it("answers `failed` for an event it cannot record, rolled back alone, and records the others", async () => {
    const sid = await account();
    const now = Date.now();
    const [a, bad, c] = [inboundSms(sid), inboundSms(sid), inboundSms(sid)].map((p, i): LedgerWrite => ({ event: event(p), idempotencyToken: null, atMs: now + i }));
    const outcomes = await runInDurableObject(guard(sid), async (instance: AccountGuard, state) => {
      const exec = state.storage.sql.exec.bind(state.storage.sql);
      // The bad event's first write lands, then its ledger entry fails: the savepoint must undo the first.
      const spy = vi.spyOn(state.storage.sql, "exec").mockImplementation((query: string, ...bindings: unknown[]) => {
        if (query.startsWith("INSERT OR REPLACE INTO counted") && bindings[0] === bad!.event.countKey) throw new Error("disk I/O error");
        return exec(query, ...bindings);
      });
      try {
        return await instance.recordBatch(sid, [a!, bad!, c!]);
      } finally {
        spy.mockRestore();
      }
    });
    expect(outcomes).toEqual([{ duplicate: false, blocked: false }, { failed: true }, { duplicate: false, blocked: false }]);
    const state = await ledgerRows(sid);
    expect(state.seen.map((r) => r.key)).toEqual([a!.event.dedupeKey, c!.event.dedupeKey].sort());
    expect(state.counted.map((r) => r.count_key)).toEqual([a!.event.countKey, c!.event.countKey].sort());
    expect(state.recent).toHaveLength(2);
    expect(state.totals.find((r) => r.window === "day")).toMatchObject({ events: 2 });
    // Recorded again (the retry a failed event gets), it is counted as new.
    expect(await guard(sid).record(bad!.event, null, bad!.atMs)).toEqual({ duplicate: false, blocked: false });
  });

  it("answers `failed` for a write of another account or of a shape no release makes, and records the others", async () => {
    const sid = await account();
    const other = uniqueSid();
    const now = Date.now();
    const good: LedgerWrite = { event: event(inboundSms(sid)), idempotencyToken: null, atMs: now };
    const foreign: LedgerWrite = { event: event(inboundSms(other)), idempotencyToken: null, atMs: now };
    const malformed = { event: { ...event(inboundSms(sid)), dedupeKey: 7 }, idempotencyToken: null, atMs: now } as unknown as LedgerWrite;
    expect(await guard(sid).recordBatch(sid, [foreign, good, malformed])).toEqual([{ failed: true }, { duplicate: false, blocked: false }, { failed: true }]);
    expect((await ledgerRows(sid)).seen.map((r) => r.key)).toEqual([good.event.dedupeKey]);
  });

  it("writes the window totals, the usage buckets and the recent events once per batch, as one by one would", async () => {
    const [one, many] = [await account(), await account()];
    // From half a minute before the end of the current hour, 2 s apart: the batch crosses minutes and an
    // hour (at most 9 window rows: one statement), and (more than RECENT_EVENTS_KEPT events) wraps the
    // recent-events ring within itself.
    const startMs = windowStart("hour", Date.now()) + 59.5 * 60_000;
    const steps: Script = Array.from({ length: MAX_RECORDS_PER_BATCH }, () => {
      const sid = uniqueSid("SM");
      return (a: string) => inboundSms(a, { MessageSid: sid, SmsSid: sid, SmsMessageSid: sid });
    });
    const batch = steps.map((step, i): LedgerWrite => ({ event: event(step(many)), idempotencyToken: null, atMs: startMs + i * 2_000 }));
    for (const step of steps.keys()) await guard(one).record(event(steps[step]!(one)), null, startMs + step * 2_000);
    const statements = await runInDurableObject(guard(many), async (instance: AccountGuard, state) => {
      const seen: string[] = [];
      const exec = state.storage.sql.exec.bind(state.storage.sql);
      vi.spyOn(state.storage.sql, "exec").mockImplementation((query: string, ...bindings: unknown[]) => {
        seen.push(query);
        return exec(query, ...bindings);
      });
      await instance.recordBatch(many, batch);
      return seen;
    });
    const writing = (table: string) => statements.filter((q) => new RegExp(`^INSERT (OR REPLACE )?INTO ${table} `).test(q)).length;
    expect(writing("totals")).toBe(1);
    expect(writing("usage_buckets")).toBe(1);
    // At most MAX_BOUND_PARAMETERS values a statement: 10 events of 10 columns each.
    expect(writing("recent_events")).toBe(Math.ceil(MAX_RECORDS_PER_BATCH / 10));
    const [a, b] = [await ledgerRows(one), await ledgerRows(many)];
    for (const key of ["totals", "buckets", "recent", "trips", "outbox", "warned"] as const) expect.soft(b[key], key).toEqual(a[key]);
    expect(a.buckets.filter((r) => r.grain === "hour")).toHaveLength(2);
  });

  it("takes a rolled-back event's totals and usage back with it, and the events after it count from there", async () => {
    const [one, many] = [await account(), await account()];
    const now = Date.now();
    const sms = Array.from({ length: 6 }, () => uniqueSid("SM"));
    const writesOf = (sid: string) => sms.map((m, i): LedgerWrite => ({ event: event(inboundSms(sid, { MessageSid: m, SmsSid: m, SmsMessageSid: m })), idempotencyToken: null, atMs: now + i }));
    const outcomes = await runInDurableObject(guard(many), async (instance: AccountGuard, state) => {
      const exec = state.storage.sql.exec.bind(state.storage.sql);
      // The 4th event reaches warnAt (half of 8 events a day): its warning fails after its totals and usage were added.
      let failed = false;
      vi.spyOn(state.storage.sql, "exec").mockImplementation((query: string, ...bindings: unknown[]) => {
        if (!failed && query.startsWith("INSERT OR IGNORE INTO warned")) {
          failed = true;
          throw new Error("disk I/O error");
        }
        return exec(query, ...bindings);
      });
      return instance.recordBatch(many, writesOf(many));
    });
    expect(outcomes.map((o) => "failed" in o)).toEqual([false, false, false, true, false, false]);
    // The same events without the failed one, one by one: the 5th event is the one that warns.
    for (const w of writesOf(one).filter((_, i) => i !== 3)) await guard(one).record(w.event, null, w.atMs);
    const [a, b] = [await ledgerRows(one), await ledgerRows(many)];
    for (const key of ["totals", "buckets", "recent", "counted", "warned", "outbox"] as const) expect.soft(b[key], key).toEqual(a[key]);
    expect(a.warned).toHaveLength(1);
  });

  it("refuses a batch larger than MAX_RECORDS_PER_BATCH, or empty, and records nothing", async () => {
    const sid = await account();
    const now = Date.now();
    const many = Array.from({ length: MAX_RECORDS_PER_BATCH + 1 }, (_, i): LedgerWrite => ({ event: event(inboundSms(sid)), idempotencyToken: null, atMs: now + i }));
    // Called on the instance: a rejected RPC would also be reported by workerd as uncaught.
    await runInDurableObject(guard(sid), async (instance: AccountGuard) => {
      await expect(instance.recordBatch(sid, many)).rejects.toThrow(/1 to 64 writes/);
      await expect(instance.recordBatch(sid, [])).rejects.toThrow(/1 to 64 writes/);
    });
    expect((await ledgerRows(sid)).seen).toEqual([]);
  });
});
