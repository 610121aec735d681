// The LEDGER_RETRY consumer: a queued status-callback write lands in its account's ledger once; a failed
// write retries that message with back-off; a message this release cannot read is acknowledged and logged.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { consumeLedgerQueue, parseLedgerMessage, type LedgerQueueMessage } from "../../src/breaker/ledger-queue.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { Logger } from "../../src/observability/log.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { guard, today } from "../support/guard.ts";
import { messageStatus, uniqueSid } from "../support/twilio.ts";

function delivered(sid: string, messageSid = uniqueSid("SM")): BillableEvent {
  const e = classifyWebhook(new Map(messageStatus(sid, messageSid, "delivered", { Price: "-0.10", PriceUnit: "USD" })));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

const QUEUE = "twilio-edge-guard-ledger";

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
