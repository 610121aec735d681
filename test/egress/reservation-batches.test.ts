// The egress gate's group commit of reservations (src/egress/reservation-batches.ts over
// src/breaker/group-commit.ts): ReservationBatcher with scripted calls, reserveAll (reserveSend for one
// send, reserveSends for more, reserveSend one by one when the object has no reserveSends yet), and the
// Worker through it: concurrent sends through createApp().fetch in this test's request context (the
// workers pool's runner turns off cross-request promise resolution: vitest.config.ts LEDGER_BATCHING).
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { destinationOf } from "../../src/egress/destination.ts";
import { issueEgressKey } from "../../src/egress/keys.ts";
import type { ReserveAnswer, ReserveOutcome, ReserveRequest } from "../../src/egress/protocol.ts";
import { ReservationBatcher, ReservationFailed, reserveAll, type ReservingGuard } from "../../src/egress/reservation-batches.ts";
import { SettlementQueue, type SettlementItem } from "../../src/egress/settlements.ts";
import { manualWatch, scriptedBatchCalls, settle } from "../support/batches.ts";
import { guard } from "../support/guard.ts";
import { ALERTS, TWILIO_API, mockOutbound } from "../support/origin.ts";
import { basicAuth, uniqueSid } from "../support/twilio.ts";

const ACCOUNT = "AC00000000000000000000000000000001";

function req(n: number, account = ACCOUNT): ReserveRequest {
  return { accountSid: account, atMs: n, mode: "enforce", key: null, send: { kind: "message", channel: "sms", destination: destinationOf("+14155552671").destination, segments: 1, minutes: 0, mms: false, hasStatusCallback: true } };
}

function allowed(n: number): Extract<ReserveAnswer, { ok: true }> {
  return { ok: true, reservationId: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`, estimateUsd: 0.0083, setTimeLimitS: null, wouldRefuse: null, newCountry: false };
}
const refused: ReserveAnswer = { ok: false, refusal: { reason: "limit", detail: "over" } };

const scriptedCalls = () => scriptedBatchCalls<ReserveRequest, ReserveOutcome>((r) => allowed(r.atMs));
const kept: Promise<unknown>[] = [];
const keepAlive = (p: Promise<unknown>) => void kept.push(p);

describe("ReservationBatcher", () => {
  it("calls at once for a lone send: no timer, no watchdog", async () => {
    const w = manualWatch();
    const batcher = new ReservationBatcher({ watch: w.watch });
    const c = scriptedCalls();
    const answer = batcher.reserve(req(1), c.call, keepAlive);
    expect(c.batches).toEqual([[req(1)]]);
    expect(w.watches).toEqual([]);
    c.answer(0);
    expect(await answer).toEqual(allowed(1));
    expect(batcher.waiting).toBe(0);
  });

  it("sends the reservations that arrive while a call is in flight together in the next call, in order, each its own answer", async () => {
    const batcher = new ReservationBatcher({ watch: manualWatch().watch });
    const c = scriptedCalls();
    const first = batcher.reserve(req(1), c.call, keepAlive);
    const later = [2, 3, 4].map((n) => batcher.reserve(req(n), c.call, keepAlive));
    expect(c.batches).toHaveLength(1);
    c.answer(0);
    await first;
    await settle();
    expect(c.batches).toEqual([[req(1)], [req(2), req(3), req(4)]]);
    c.answer(1, [allowed(2), refused, refused]);
    expect(await Promise.all(later)).toEqual([allowed(2), refused, refused]);
  });

  it("sends at most 64 reservations in one call", async () => {
    const batcher = new ReservationBatcher({ watch: manualWatch().watch });
    const c = scriptedCalls();
    for (let n = 1; n <= 66; n++) void batcher.reserve(req(n), c.call, keepAlive);
    c.answer(0);
    await settle();
    c.answer(1);
    await settle();
    expect(c.batches.map((b) => b.length)).toEqual([1, 64, 1]);
  });

  it("fails every send of a call that fails, and the next call goes on", async () => {
    const batcher = new ReservationBatcher({ watch: manualWatch().watch });
    const c = scriptedCalls();
    const first = batcher.reserve(req(1), c.call, keepAlive);
    const during = [2, 3].map((n) => batcher.reserve(req(n), c.call, keepAlive));
    c.answer(0, new Error("Durable Object reset"));
    await expect(first).rejects.toThrow("Durable Object reset");
    await settle();
    c.answer(1, new Error("Durable Object reset"));
    for (const d of during) await expect(d).rejects.toThrow("Durable Object reset");
    const after = batcher.reserve(req(4), c.call, keepAlive);
    expect(c.batches).toHaveLength(3);
    c.answer(2);
    expect(await after).toEqual(allowed(4));
  });

  it("fails alone a send the object answered `failed`", async () => {
    const batcher = new ReservationBatcher({ watch: manualWatch().watch });
    const c = scriptedCalls();
    const first = batcher.reserve(req(1), c.call, keepAlive);
    const during = [2, 3].map((n) => batcher.reserve(req(n), c.call, keepAlive));
    c.answer(0);
    await first;
    await settle();
    c.answer(1, [{ failed: true }, allowed(3)]);
    await expect(during[0]).rejects.toBeInstanceOf(ReservationFailed);
    expect(await during[1]).toEqual(allowed(3));
  });
});

describe("reserveAll", () => {
  const carried: SettlementItem[] = [{ reservationId: allowed(9).reservationId, settlement: { type: "rejected" } }];

  function guardOf(options: { batch?: "missing" | "ok" } = {}) {
    const calls: string[] = [];
    const g: ReservingGuard = {
      reserveSend: async (r) => {
        calls.push(`one ${r.atMs} ${r.settle?.length ?? 0}`);
        return allowed(r.atMs);
      },
      reserveSends: async (_sid, reqs, settle) => {
        calls.push(`batch ${reqs.map((r) => r.atMs).join(",")} ${settle?.length ?? 0}`);
        if (options.batch === "missing") throw new TypeError("The RPC receiver does not implement the method \"reserveSends\".");
        return reqs.map((r) => allowed(r.atMs));
      },
    };
    return { g, calls };
  }

  it("reserves a lone send with reserveSend, carrying the settlements", async () => {
    const { g, calls } = guardOf();
    expect(await reserveAll(g, ACCOUNT, [req(1)], carried)).toEqual([allowed(1)]);
    expect(calls).toEqual(["one 1 1"]);
  });

  it("reserves several with one reserveSends, carrying the settlements", async () => {
    const { g, calls } = guardOf();
    expect(await reserveAll(g, ACCOUNT, [req(1), req(2)], carried)).toEqual([allowed(1), allowed(2)]);
    expect(calls).toEqual(["batch 1,2 1"]);
  });

  it("falls back to reserveSend one by one, in order, on an object of the previous release", async () => {
    const { g, calls } = guardOf({ batch: "missing" });
    expect(await reserveAll(g, ACCOUNT, [req(1), req(2), req(3)], carried)).toEqual([allowed(1), allowed(2), allowed(3)]);
    expect(calls).toEqual(["batch 1,2,3 1", "one 1 1", "one 2 0", "one 3 0"]);
  });
});

describe("the Worker's reservations grouped per account (createApp, one request context)", () => {
  let outbound: ReturnType<typeof mockOutbound>;
  beforeEach(() => {
    outbound = mockOutbound([
      [TWILIO_API, () => new Response(JSON.stringify({ sid: uniqueSid("SM"), status: "queued", price: null }), { status: 201, headers: { "content-type": "application/json" } })],
      [ALERTS, () => new Response("ok")],
    ]);
  });
  afterEach(() => {
    outbound.restore();
    vi.restoreAllMocks();
  });

  /** The environment with batching on and the accounts' reservation calls counted (and failing while told). */
  function batchingEnv() {
    const calls: number[] = [];
    const state = { failing: false };
    const base = env as GuardEnv;
    const getByName = (name: string) => {
      const stub = base.ACCOUNT_GUARD.getByName(name);
      // Fails after a real round trip to the object, as a reset would: other sends arrive meanwhile.
      const failed = () => stub.snapshot().then(() => Promise.reject(new Error("Durable Object reset")));
      return {
        reserveSend: (r: ReserveRequest) => (calls.push(1), state.failing ? failed() : stub.reserveSend(r)),
        reserveSends: (sid: string, reqs: ReserveRequest[], settle?: SettlementItem[]) => (calls.push(reqs.length), state.failing ? failed() : stub.reserveSends(sid, reqs, settle)),
        settleSends: (...args: Parameters<typeof stub.settleSends>) => stub.settleSends(...args),
        checkEgressKey: (...args: Parameters<typeof stub.checkEgressKey>) => stub.checkEgressKey(...args),
      };
    };
    const e = { ...base, EGRESS_MODE: "enforce", LEDGER_BATCHING: "on", ACCOUNT_GUARD: { getByName } } as unknown as GuardEnv;
    return { env: e, calls, state };
  }

  async function account(policy: Record<string, unknown>) {
    const sid = uniqueSid();
    await guard(sid).setPolicy(sid, policy);
    const key = await issueEgressKey();
    await guard(sid).issueEgressKey(sid, key.id, key.hash);
    return { sid, auth: basicAuth(sid, key.key) };
  }

  /** Execution contexts whose waitUntil work is awaited at the end of the test (a held settlement writer's). */
  let contexts: ExecutionContext[] = [];
  afterEach(async () => {
    await Promise.all(contexts.map((ctx) => waitOnExecutionContext(ctx)));
    contexts = [];
  });

  /** `n` sends of the account at once through one app (one isolate's batcher), each in its own execution context (awaited unless `later`). */
  function sendAll(app: ReturnType<typeof createApp>, e: GuardEnv, a: { sid: string; auth: string }, n: number, later = false): Promise<number[]> {
    return Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const ctx = createExecutionContext();
        const request = new Request(`https://guard.example.com/twilio/api.twilio.com/2010-04-01/Accounts/${a.sid}/Messages.json`, {
          method: "POST",
          headers: { authorization: a.auth, "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": "203.0.113.1" },
          body: new URLSearchParams({ To: `+1415555${2000 + i}`, Body: `race ${i}` }).toString(),
        });
        const response = await app.fetch(request, e, ctx);
        if (later) contexts.push(ctx);
        else await waitOnExecutionContext(ctx);
        return response.status;
      }),
    );
  }

  /** The account's sends that reached Twilio (the guard's own alert texts go from the parent). */
  const forwarded = (sid: string) => outbound.to(TWILIO_API).filter((c) => c.method === "POST" && c.url.endsWith(`/Accounts/${sid}/Messages.json`)).length;

  it("50 concurrent sends against a budget of 10: exactly 10 forwarded, in fewer calls than sends", async () => {
    const a = await account({ limits: [{ window: "day", events: 10 }], action: "block" });
    const { env: e, calls } = batchingEnv();
    const statuses = await sendAll(createApp(), e, a, 50);
    expect(statuses.filter((s) => s === 201)).toHaveLength(10);
    expect(statuses.filter((s) => s === 403)).toHaveLength(40);
    expect(forwarded(a.sid)).toBe(10);
    expect(calls.reduce((x, y) => x + y, 0)).toBe(50);
    expect(calls.length).toBeLessThan(50);
    expect((await guard(a.sid).snapshot()).windows.find((w) => w.window === "day")!.events).toBe(10);
  });

  it("a failed call refuses every send in it (nothing forwarded) and hands the settlements it carried back", async () => {
    const a = await account({ limits: [{ window: "day", usd: 50 }] });
    const { env: e, calls, state } = batchingEnv();
    let endHold = () => {};
    const settlements = new SettlementQueue({ wait: () => new Promise<void>((resolve) => (endHold = resolve)) });
    const app = createApp({ egressSettlements: settlements });
    expect(await sendAll(app, e, a, 1, true)).toEqual([201]);
    expect(settlements.pending).toBe(1);
    state.failing = true;
    const statuses = await sendAll(app, e, a, 5, true);
    expect(statuses).toEqual(Array<number>(5).fill(500));
    expect(calls.length).toBeLessThan(1 + 5);
    expect(forwarded(a.sid)).toBe(1);
    // The first send's settlement was carried by the failed call and handed back: the writer writes it.
    expect(settlements.pending).toBe(1);
    state.failing = false;
    endHold();
    await vi.waitFor(() => expect(settlements.pending).toBe(0));
    expect((await guard(a.sid).snapshot()).windows.find((w) => w.window === "day")!.events).toBe(1);
  });
});
