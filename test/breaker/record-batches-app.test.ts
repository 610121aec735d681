// The Worker's webhook path with its ledger writes grouped per account (app.ts durableLedger over
// breaker/record-batches.ts): concurrent requests through createApp().fetch, in this test's request
// context (the workers pool's runner turns off cross-request promise resolution, so requests made
// through exports.default each get their own call: vitest.config.ts LEDGER_BATCHING).
import { createExecutionContext, createMessageBatch, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../../src/app.ts";
import { consumeLedgerQueue, type LedgerRetryMessage } from "../../src/breaker/ledger-queue.ts";
import { RecordBatcher } from "../../src/breaker/record-batches.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { Logger } from "../../src/observability/log.ts";
import { drainAlarms, guard, today } from "../support/guard.ts";
import { WORKER, subaccount } from "../support/money.ts";
import { ORIGIN, statusCalls, twilioWorld, type FakeTwilio } from "../support/origin.ts";
import { inboundSms, messageStatus, signedForm, uniqueSid, type Params } from "../support/twilio.ts";

let outbound: ReturnType<typeof twilioWorld>["outbound"];
let twilio: FakeTwilio;

afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

/** The environment with batching on, the account's Durable Object calls counted (and failing when told). */
function batchingEnv(options: { failCalls?: boolean; queue?: Queue<LedgerRetryMessage> } = {}) {
  const calls: Array<{ method: "recordEvent" | "recordBatch"; events: number }> = [];
  const base = env as GuardEnv;
  const namespace = {
    getByName(name: string) {
      const stub = base.ACCOUNT_GUARD.getByName(name);
      return {
        recordEvent(...args: Parameters<typeof stub.recordEvent>) {
          calls.push({ method: "recordEvent", events: 1 });
          return options.failCalls ? Promise.reject(new Error("Durable Object reset")) : stub.recordEvent(...args);
        },
        recordBatch(...args: Parameters<typeof stub.recordBatch>) {
          calls.push({ method: "recordBatch", events: args[1].length });
          return options.failCalls ? Promise.reject(new Error("Durable Object reset")) : stub.recordBatch(...args);
        },
      };
    },
  };
  const e = { ...base, LEDGER_BATCHING: "on", ACCOUNT_GUARD: namespace, ...(options.queue ? { LEDGER_RETRY: options.queue } : {}) } as unknown as GuardEnv;
  return { env: e, calls };
}

/** Sends every request at once through one app (one isolate's batcher), each in its own execution context. */
async function concurrently(app: ReturnType<typeof createApp>, e: GuardEnv, requests: Request[]): Promise<Response[]> {
  return Promise.all(
    requests.map(async (request) => {
      const ctx = createExecutionContext();
      const response = await app.fetch(request, e, ctx);
      await waitOnExecutionContext(ctx);
      return response;
    }),
  );
}

const sms = (token: string, params: Params) => signedForm(`${WORKER}/webhooks/sms`, params, { token });
const status = (token: string, params: Params) => signedForm(`${WORKER}/webhooks/status`, params, { token });

/** An app whose status hold ends when the test says so (no timer). */
function heldApp() {
  const hold = { end: () => {} };
  const app = createApp({ ledgerBatches: new RecordBatcher({ wait: () => new Promise<void>((resolve) => (hold.end = resolve)) }) });
  return { app, hold };
}

/** A queue binding that keeps what it is sent. */
function keepingQueue() {
  const sent: LedgerRetryMessage[] = [];
  return { sent, queue: { send: async (body: LedgerRetryMessage) => void sent.push(body) } as unknown as Queue<LedgerRetryMessage> };
}

describe("the webhook path with grouped ledger writes", () => {
  it("passes exactly 10 of 50 concurrent inbound SMS against a limit of 10, with one suspension, in fewer calls than events", async () => {
    ({ twilio, outbound } = twilioWorld());
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", events: 10 }] });
    const { env: e, calls } = batchingEnv();
    const responses = await concurrently(createApp(), e, await Promise.all(Array.from({ length: 50 }, () => sms(token, inboundSms(sid)))));
    expect(responses.map((r) => r.status)).toEqual(Array<number>(50).fill(200));
    expect(responses.filter((r) => r.headers.get("x-guard-breaker") === "open")).toHaveLength(40);
    expect(outbound.to(ORIGIN)).toHaveLength(10);
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(1);
    expect(await today(sid)).toMatchObject({ events: 50 });
    expect(calls.reduce((n, c) => n + c.events, 0)).toBe(50);
    expect(calls.length).toBeLessThan(50);
    expect(calls.some((c) => c.method === "recordBatch" && c.events > 1)).toBe(true);
  });

  it("counts an event once whether its repeats come in the same call or in later ones", async () => {
    ({ twilio, outbound } = twilioWorld());
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", events: 1000 }] });
    const { env: e } = batchingEnv();
    const app = createApp();
    const repeated = inboundSms(sid);
    const first = await concurrently(app, e, await Promise.all([...Array.from({ length: 5 }, () => sms(token, repeated)), ...Array.from({ length: 5 }, () => sms(token, inboundSms(sid)))]));
    const again = await concurrently(app, e, await Promise.all(Array.from({ length: 3 }, () => sms(token, repeated))));
    expect([...first, ...again].map((r) => r.status)).toEqual(Array<number>(13).fill(200));
    const duplicates = outbound.to(ORIGIN).filter((c) => c.headers.get("x-guard-duplicate") === "1");
    expect(duplicates).toHaveLength(4 + 3);
    expect(await today(sid)).toMatchObject({ events: 6 });
  });

  it("fails closed every inbound event of a call that fails (enforce mode), forwarding none", async () => {
    ({ twilio, outbound } = twilioWorld());
    const { sid, token } = await subaccount(twilio);
    const { env: e, calls } = batchingEnv({ failCalls: true });
    vi.spyOn(console, "log").mockImplementation(() => {});
    const responses = await concurrently(createApp(), e, await Promise.all(Array.from({ length: 6 }, () => sms(token, inboundSms(sid)))));
    expect(responses.map((r) => r.status)).toEqual(Array<number>(6).fill(500));
    expect(outbound.to(ORIGIN)).toHaveLength(0);
    expect(calls.length).toBeLessThan(6);
  });

  it("sends the status callbacks of a failed call to LEDGER_RETRY, one version-1 message each, and the consumer counts each once", async () => {
    ({ twilio, outbound } = twilioWorld());
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 100 }] });
    const { sent, queue } = keepingQueue();
    const { env: e, calls } = batchingEnv({ failCalls: true, queue });
    vi.spyOn(console, "log").mockImplementation(() => {});
    const callbacks = Array.from({ length: 4 }, () => messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-0.01", PriceUnit: "USD" }));
    const { app, hold } = heldApp();
    const answered = concurrently(app, e, await Promise.all(callbacks.map((p) => status(token, p))));
    await vi.waitFor(() => expect(outbound.to(ORIGIN)).toHaveLength(4));
    hold.end();
    const responses = await answered;
    expect(responses.map((r) => r.status)).toEqual(Array<number>(4).fill(200));
    expect(calls).toEqual([{ method: "recordBatch", events: 4 }]);
    expect(sent).toHaveLength(4);
    expect(sent.every((m) => m.v === 1)).toBe(true);
    // The consumer (any release's: version 1) writes each; a redelivery counts nothing twice.
    for (let round = 0; round < 2; round++) {
      const batch = createMessageBatch("twilio-edge-guard-ledger", sent.map((body, i) => ({ id: `m${round}-${i}`, timestamp: Date.now(), attempts: 1, body })));
      const ctx = createExecutionContext();
      await consumeLedgerQueue(batch, env as GuardEnv, new Logger());
      expect((await getQueueResult(batch, ctx)).explicitAcks).toHaveLength(4);
    }
    expect(await today(sid)).toMatchObject({ events: 4, usd: 0.04 });
  });

  it("writes held status callbacks in one call when the hold ends", async () => {
    ({ twilio, outbound } = twilioWorld());
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 100 }] });
    const { env: e, calls } = batchingEnv();
    const callbacks = Array.from({ length: 5 }, () => messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-0.02", PriceUnit: "USD" }));
    const { app, hold } = heldApp();
    const answered = concurrently(app, e, await Promise.all(callbacks.map((p) => status(token, p))));
    await vi.waitFor(() => expect(outbound.to(ORIGIN)).toHaveLength(5));
    expect(calls).toEqual([]);
    hold.end();
    await answered;
    expect(calls).toEqual([{ method: "recordBatch", events: 5 }]);
    expect(await today(sid)).toMatchObject({ events: 5, usd: 0.1 });
  });

  it("answers a lone inbound SMS without waiting for any timer (the status hold never ends here)", async () => {
    ({ twilio, outbound } = twilioWorld());
    const { sid, token } = await subaccount(twilio);
    const { env: e, calls } = batchingEnv();
    const app = createApp({ ledgerBatches: new RecordBatcher({ wait: () => new Promise<void>(() => {}) }) });
    const [response] = await concurrently(app, e, [await sms(token, inboundSms(sid))]);
    expect(response!.status).toBe(200);
    expect(calls).toEqual([{ method: "recordEvent", events: 1 }]);
    expect(await today(sid)).toMatchObject({ events: 1 });
    expect((await guard(sid).snapshot()).recentEvents).toHaveLength(1);
  });
});
