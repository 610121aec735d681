// The LEDGER_RETRY queue: a queued status-callback write or gate settlement batch lands in its account's
// ledger once; a failed write retries that message with back-off; a message this release cannot read is
// acknowledged and logged. The producers (recordAtLeastOnce, settleAtLeastOnce) queue only what failed.
import { createExecutionContext, createMessageBatch, getQueueResult, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  consumeLedgerQueue,
  parseLedgerMessage,
  parseRetryMessage,
  settleAtLeastOnce,
  type LedgerQueueMessage,
  type LedgerRetryMessage,
  type SettlementsQueueMessage,
} from "../../src/breaker/ledger-queue.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { sendFacts } from "../../src/egress/send.ts";
import { MAX_SETTLEMENTS_PER_WRITE, type SettlementItem } from "../../src/egress/settlements.ts";
import { Logger } from "../../src/observability/log.ts";
import { metrics } from "../../src/observability/metrics.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { guard, today } from "../support/guard.ts";
import { messageStatus, uniqueSid } from "../support/twilio.ts";

function delivered(sid: string, messageSid = uniqueSid("SM")): BillableEvent {
  const e = classifyWebhook(new Map(messageStatus(sid, messageSid, "delivered", { Price: "-0.10", PriceUnit: "USD" })));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

const QUEUE = "twilio-edge-guard-ledger";
const US = "+14155552671";

afterEach(() => vi.restoreAllMocks());

/** Runs the consumer over one batch of `bodies`; answers what it acknowledged and retried. */
async function consume(bodies: unknown[], e: GuardEnv = env as GuardEnv, attempts = 1) {
  const batch = createMessageBatch(QUEUE, bodies.map((body, i) => ({ id: `m${i}`, timestamp: Date.now(), attempts, body })));
  const ctx = createExecutionContext();
  await consumeLedgerQueue(batch, e, new Logger());
  const result = await getQueueResult(batch, ctx);
  return { acked: result.explicitAcks, retried: result.retryMessages.map((m) => m.msgId) };
}

/** An account with a day limit and `n` held reservations of one 1-segment US message (0.0083 USD each). */
async function reserved(n: number): Promise<{ sid: string; ids: string[] }> {
  const sid = uniqueSid();
  await guard(sid).setPolicy(sid, { limits: [{ window: "day", usd: 100 }] });
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const answer = await guard(sid).reserveSend({ accountSid: sid, atMs: Date.now(), mode: "enforce", key: null, send: sendFacts("message", new URLSearchParams({ To: US, Body: "x" })) });
    if (!answer.ok) throw new Error(`refused: ${answer.refusal.reason}`);
    ids.push(answer.reservationId);
  }
  return { sid, ids };
}

async function reservationStates(sid: string): Promise<Record<string, string>> {
  return runInDurableObject(guard(sid), (_i, state) =>
    Object.fromEntries(state.storage.sql.exec<{ id: string; state: string }>("SELECT id, state FROM egress_reservations").toArray().map((r) => [r.id, r.state])),
  );
}

function settlementsMessage(sid: string, items: SettlementItem[]): SettlementsQueueMessage {
  return { v: 2, kind: "settlements", accountSid: sid, items, atMs: Date.now() };
}

/** A queue binding that records what it is sent, failing the first `failures` sends. */
function recordingQueue(failures = 0) {
  const sent: LedgerRetryMessage[] = [];
  let left = failures;
  const queue = {
    send: async (body: LedgerRetryMessage) => {
      if (left > 0) {
        left--;
        throw new Error("queue unavailable");
      }
      sent.push(body);
    },
  } as unknown as Queue<LedgerRetryMessage>;
  return { sent, queue };
}

describe("consumeLedgerQueue", () => {
  it("writes each message once and acknowledges it; a redelivered message counts nothing twice", async () => {
    const sid = uniqueSid();
    await guard(sid).setPolicy(sid, { limits: [{ window: "day", usd: 100 }] });
    const body: LedgerQueueMessage = { v: 1, event: delivered(sid), idempotencyToken: null, atMs: Date.now() };
    for (const id of ["m1", "m1-again"]) {
      const batch = createMessageBatch(QUEUE, [{ id, timestamp: Date.now(), attempts: 1, body }]);
      const ctx = createExecutionContext();
      await consumeLedgerQueue(batch, env as GuardEnv, new Logger());
      expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual([id]);
    }
    expect(await today(sid)).toMatchObject({ usd: 0.1, events: 1 });
  });

  it("retries a message whose write fails", async () => {
    const sid = uniqueSid();
    const broken = { ...(env as GuardEnv), ACCOUNT_GUARD: { getByName: () => ({ record: () => Promise.reject(new Error("down")) }) } } as unknown as GuardEnv;
    const batch = createMessageBatch(QUEUE, [{ id: "m2", timestamp: Date.now(), attempts: 3, body: { v: 1, event: delivered(sid), idempotencyToken: null, atMs: Date.now() } }]);
    const ctx = createExecutionContext();
    await consumeLedgerQueue(batch, broken, new Logger());
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["m2"]);
  });

  it("acknowledges a message it cannot read rather than retrying it forever", async () => {
    const batch = createMessageBatch(QUEUE, [{ id: "m3", timestamp: Date.now(), attempts: 1, body: { v: 9 } }]);
    const ctx = createExecutionContext();
    await consumeLedgerQueue(batch, env as GuardEnv, new Logger());
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["m3"]);
  });
});

describe("consumeLedgerQueue: the egress gate's settlements", () => {
  it("binds and releases the reservations a queued batch settles, and acknowledges it", async () => {
    const { sid, ids } = await reserved(2);
    const [a, b] = ids as [string, string];
    const message = settlementsMessage(sid, [{ reservationId: a, settlement: { type: "accepted", sid: uniqueSid("SM"), priceUsd: null } }, { reservationId: b, settlement: { type: "rejected" } }]);
    expect(await consume([message])).toEqual({ acked: ["m0"], retried: [] });
    expect(await reservationStates(sid)).toEqual({ [a]: "bound", [b]: "released" });
    expect(await today(sid)).toMatchObject({ usd: 0.0083, events: 1 });
  });

  it("applies a batch replayed twice once: the second delivery changes nothing", async () => {
    const { sid, ids } = await reserved(3);
    const [a, b, c] = ids as [string, string, string];
    const message = settlementsMessage(sid, [
      { reservationId: a, settlement: { type: "accepted", sid: uniqueSid("SM"), priceUsd: -0.02 } },
      { reservationId: b, settlement: { type: "rejected" } },
      { reservationId: c, settlement: { type: "unknown" } },
    ]);
    await consume([message]);
    const once = { states: await reservationStates(sid), day: await today(sid), snapshot: await guard(sid).snapshot() };
    expect(once.states).toEqual({ [a]: "bound", [b]: "released", [c]: "unknown" });
    expect(once.day).toMatchObject({ usd: 0.0283, events: 2 });
    expect(await consume([message, message])).toEqual({ acked: ["m0", "m1"], retried: [] });
    expect(await reservationStates(sid)).toEqual(once.states);
    expect((await guard(sid).snapshot()).windows).toEqual(once.snapshot.windows);
  });

  it("retries a batch whose write fails, counting the failure", async () => {
    const inc = vi.spyOn(metrics, "inc");
    const broken = { ...(env as GuardEnv), ACCOUNT_GUARD: { getByName: () => ({ settleSends: () => Promise.reject(new Error("down")) }) } } as unknown as GuardEnv;
    const message = settlementsMessage(uniqueSid(), [{ reservationId: crypto.randomUUID(), settlement: { type: "rejected" } }]);
    expect(await consume([message], broken, 3)).toEqual({ acked: [], retried: ["m0"] });
    expect(inc).toHaveBeenCalledWith("guard_egress_settle_failures_total", { stage: "retry" });
  });

  it("still consumes a status callback's version 1 message, in the same batch as a settlement batch", async () => {
    const { sid, ids } = await reserved(1);
    const v1: LedgerQueueMessage = { v: 1, event: delivered(sid), idempotencyToken: null, atMs: Date.now() };
    const v2 = settlementsMessage(sid, [{ reservationId: ids[0]!, settlement: { type: "rejected" } }]);
    expect(await consume([v1, v2])).toEqual({ acked: ["m0", "m1"], retried: [] });
    expect(await reservationStates(sid)).toEqual({ [ids[0]!]: "released" });
    expect(await today(sid)).toMatchObject({ usd: 0.1, events: 1 });
  });
});

describe("settleAtLeastOnce", () => {
  const batchOf = (n: number): { accountSid: string; items: SettlementItem[]; atMs: number } => ({
    accountSid: uniqueSid(),
    items: Array.from({ length: n }, () => ({ reservationId: crypto.randomUUID(), settlement: { type: "rejected" } })),
    atMs: Date.now(),
  });

  it("writes the batch directly and queues nothing when the write succeeds", async () => {
    const { sent, queue } = recordingQueue();
    const written: unknown[] = [];
    await settleAtLeastOnce(batchOf(2), { settle: async (b) => void written.push(b), queue, logger: new Logger() });
    expect(written).toHaveLength(1);
    expect(sent).toEqual([]);
  });

  it("queues a batch whose write fails as version 2 messages of at most MAX_SETTLEMENTS_PER_WRITE each", async () => {
    const inc = vi.spyOn(metrics, "inc");
    const { sent, queue } = recordingQueue();
    const batch = batchOf(MAX_SETTLEMENTS_PER_WRITE + 1);
    await settleAtLeastOnce(batch, { settle: () => Promise.reject(new Error("Durable Object reset")), queue, logger: new Logger() });
    expect(inc).toHaveBeenCalledWith("guard_egress_settle_failures_total", { stage: "direct" });
    expect(sent).toEqual([
      { v: 2, kind: "settlements", accountSid: batch.accountSid, items: batch.items.slice(0, MAX_SETTLEMENTS_PER_WRITE), atMs: batch.atMs },
      { v: 2, kind: "settlements", accountSid: batch.accountSid, items: batch.items.slice(MAX_SETTLEMENTS_PER_WRITE), atMs: batch.atMs },
    ]);
    expect(sent.map((m) => parseRetryMessage(m))).toEqual(sent.map((m) => ({ kind: "settlements", batch: { accountSid: batch.accountSid, items: (m as SettlementsQueueMessage).items, atMs: batch.atMs } })));
  });

  it("tries a failed queue send again, and rejects, counted as lost, when every try failed", async () => {
    const inc = vi.spyOn(metrics, "inc");
    const flaky = recordingQueue(2);
    await settleAtLeastOnce(batchOf(1), { settle: () => Promise.reject(new Error("down")), queue: flaky.queue, logger: new Logger() });
    expect(flaky.sent).toHaveLength(1);
    const dead = recordingQueue(Number.POSITIVE_INFINITY);
    await expect(settleAtLeastOnce(batchOf(1), { settle: () => Promise.reject(new Error("down")), queue: dead.queue, logger: new Logger() })).rejects.toThrow("queue unavailable");
    expect(inc.mock.calls.filter(([name, labels]) => name === "guard_egress_settle_failures_total" && labels?.stage === "enqueue")).toHaveLength(2 + 3);
    expect(inc).toHaveBeenCalledWith("guard_egress_settle_failures_total", { stage: "lost" });
  });
});

describe("parseRetryMessage", () => {
  const sid = uniqueSid();
  const item = (settlement: unknown) => ({ reservationId: crypto.randomUUID(), settlement });

  it("reads both versions: a status callback's write (1) and a settlement batch (2)", () => {
    const write = { event: delivered(sid), idempotencyToken: null, atMs: 1 };
    expect(parseRetryMessage({ v: 1, ...write })).toEqual({ kind: "status", write });
    const items = [item({ type: "accepted", sid: uniqueSid("SM"), priceUsd: -0.01 }), item({ type: "sid-seen", sid: uniqueSid("CA") }), item({ type: "unknown" })];
    expect(parseRetryMessage({ v: 2, kind: "settlements", accountSid: sid, items, atMs: 1 })).toEqual({ kind: "settlements", batch: { accountSid: sid, items, atMs: 1 } });
  });

  it("refuses a settlement batch that is empty, too large, or not one the gate makes", () => {
    const ok = { v: 2, kind: "settlements", accountSid: sid, items: [item({ type: "rejected" })], atMs: 1 };
    expect(parseRetryMessage(ok)).not.toBeNull();
    for (const bad of [
      { ...ok, kind: "other" },
      { ...ok, v: 3 },
      { ...ok, accountSid: "AC-not-a-sid" },
      { ...ok, atMs: Number.NaN },
      { ...ok, items: [] },
      { ...ok, items: Array.from({ length: MAX_SETTLEMENTS_PER_WRITE + 1 }, () => item({ type: "rejected" })) },
      { ...ok, items: [item({ type: "refunded" })] },
      { ...ok, items: [item({ type: "accepted", sid: "not-a-sid" })] },
      { ...ok, items: [item({ type: "accepted", sid: uniqueSid("SM"), priceUsd: "0.01" })] },
      { ...ok, items: [{ reservationId: "r".repeat(65), settlement: { type: "rejected" } }] },
    ]) {
      expect(parseRetryMessage(bad)).toBeNull();
    }
  });
});

describe("parseLedgerMessage", () => {
  it("reads what recordAtLeastOnce sends, and refuses other shapes", () => {
    const sid = uniqueSid();
    const write = { event: delivered(sid), idempotencyToken: "idem", atMs: 1 };
    expect(parseLedgerMessage({ v: 1, ...write })).toEqual(write);
    expect(parseLedgerMessage({ v: 1, ...write, event: { ...write.event, kind: "other" } })).toBeNull();
    expect(parseLedgerMessage({ v: 1, ...write, atMs: "now" })).toBeNull();
    expect(parseLedgerMessage(null)).toBeNull();
  });
});
