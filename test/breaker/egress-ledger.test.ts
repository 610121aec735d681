// The ledger side of the REST egress gate: reserveSend before a send is forwarded, settleSend with
// Twilio's answer. A send is counted once whatever order its answer and its status callbacks arrive in,
// racing sends never overshoot a limit, and a reservation never settled is taken back.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { RESERVATION_TTL_MS } from "../../src/breaker/account-guard.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { guard, today } from "../support/money.ts";
import { messageStatus, uniqueSid } from "../support/twilio.ts";

const ESTIMATE = 10_000; // 0.01 USD

async function account(limitUsd = 100, action: "suspend" | "alert" = "suspend"): Promise<string> {
  const sid = uniqueSid();
  await guard(sid).setPolicy(sid, { limits: [{ window: "day", usd: limitUsd }], action });
  return sid;
}

function delivered(sid: string, messageSid: string, price = "-0.0079"): BillableEvent {
  const e = classifyWebhook(new Map(messageStatus(sid, messageSid, "delivered", { Price: price, PriceUnit: "USD" })));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

describe("reserveSend and settleSend", () => {
  it("counts a created send once: the reservation, then its callback's real price", async () => {
    const sid = await account();
    const message = uniqueSid("SM");
    expect(await guard(sid).reserveSend(sid, "res-00000001", ESTIMATE)).toEqual({ ok: true });
    expect(await today(sid)).toMatchObject({ usd: 0.01, events: 1 });
    await guard(sid).settleSend(sid, "res-00000001", { countKey: `msg:${message}` });
    await guard(sid).record(delivered(sid, message), null);
    expect(await today(sid)).toMatchObject({ usd: 0.0079, events: 1 });
  });

  it("counts it once when the status callback overtakes the gate's answer", async () => {
    const sid = await account();
    const message = uniqueSid("SM");
    await guard(sid).reserveSend(sid, "res-00000002", ESTIMATE);
    await guard(sid).record(delivered(sid, message), null);
    await guard(sid).settleSend(sid, "res-00000002", { countKey: `msg:${message}` });
    expect(await today(sid)).toMatchObject({ usd: 0.0079, events: 1 });
  });

  it("takes back a send Twilio refused", async () => {
    const sid = await account();
    await guard(sid).reserveSend(sid, "res-00000003", ESTIMATE);
    await guard(sid).settleSend(sid, "res-00000003", { failed: true });
    expect(await today(sid)).toMatchObject({ usd: 0, events: 0 });
  });

  it("lets racing sends reach the limit and never overshoot it", async () => {
    const sid = await account(0.05);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => guard(sid).reserveSend(sid, `race-${String(i).padStart(4, "0")}`, ESTIMATE)));
    expect(answers.filter((a) => a.ok)).toHaveLength(5);
    expect(answers.find((a) => !a.ok)).toEqual({ ok: false, reason: "limit", limit: "day 0.05 USD" });
    expect((await today(sid)).usd).toBeCloseTo(0.05, 6);
  });

  it("refuses while the breaker is open, counting nothing", async () => {
    const sid = await account();
    await guard(sid).tripNow(sid, "drill");
    expect(await guard(sid).reserveSend(sid, "res-00000004", ESTIMATE)).toEqual({ ok: false, reason: "breaker-open" });
    expect((await today(sid)).events).toBe(0);
  });

  it("answers a repeated reservation ok without counting it twice", async () => {
    const sid = await account();
    await guard(sid).reserveSend(sid, "res-00000005", ESTIMATE);
    expect(await guard(sid).reserveSend(sid, "res-00000005", ESTIMATE)).toEqual({ ok: true });
    expect((await today(sid)).events).toBe(1);
  });

  it("takes back a reservation the gate never settled, once it is stale", async () => {
    const sid = await account();
    const now = Date.now();
    await guard(sid).reserveSend(sid, "res-00000006", ESTIMATE, now - RESERVATION_TTL_MS - 60_000);
    await guard(sid).reserveSend(sid, "res-00000007", ESTIMATE, now);
    await runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('prune_at', '0')"));
    // The alarm may already be running on its own (prune_at was due): wait for its outcome either way.
    await runDurableObjectAlarm(guard(sid));
    await vi.waitFor(async () => {
      const left = await runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec<{ k: string }>("SELECT count_key AS k FROM counted").toArray().map((r) => r.k));
      expect(left).toEqual(["res:res-00000007"]);
    });
    expect((await today(sid)).events).toBe(1);
  });

  it("refuses a countKey that is not a message or call Sid, and a malformed reservation id", async () => {
    const sid = await account();
    await guard(sid).reserveSend(sid, "res-00000008", ESTIMATE);
    expect(await guard(sid).settleSend(sid, "res-00000008", { countKey: "msg:../../x" })).toEqual({ ok: false, reason: "invalid-request" });
    expect(await guard(sid).reserveSend(sid, "../x", ESTIMATE)).toEqual({ ok: false, reason: "invalid-request" });
    expect(await guard(sid).settleSend(sid, "res-00000008", { failed: true })).toEqual({ ok: true, settled: true });
    expect(await guard(sid).settleSend(sid, "res-00000008", { failed: true })).toEqual({ ok: true, settled: false });
  });
});
