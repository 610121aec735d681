// Issue 12's money paths, each pinned by the behaviour that was broken: effects fenced by their trip,
// calls settled to their outcome, durable status-callback writes, per-Sid pricing kept for the month,
// reconciliation that counts no dollar twice, confirmed REST effects, mid-call requests, storage bounds.
import { createExecutionContext, evictDurableObject, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { metrics } from "../../src/observability/metrics.ts";
import { createApp } from "../../src/app.ts";
import { COUNTED_GRACE_MS, TRIPS_KEPT, pruneAccount } from "../../src/breaker/prune.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { windowEnd, windowStart } from "../../src/ledger/windows.ts";
import { ALERTS, ORIGIN, TWILIO_API, fakeTwilio, mockOutbound, statusCalls, twiml, twilioError, type Captured, type FakeTwilio } from "../support/origin.ts";
import { drainAlarms, guard, reconcileNow, today } from "../support/guard.ts";
import { WORKER, gate, send, subaccount } from "../support/money.ts";
import { callStatus, inboundCall, messageStatus, signedForm, uniqueSid, type Params } from "../support/twilio.ts";
import { DIRECTORY_SCHEMA } from "../../src/accounts/directory.ts";

let outbound: ReturnType<typeof mockOutbound>;
let twilio: FakeTwilio;

/** The mocks; `intercept` may answer a Twilio request itself (return undefined to let the fake answer). */
function setup(intercept?: (req: Captured) => Response | undefined | Promise<Response | undefined>): void {
  twilio = fakeTwilio("AC00000000000000000000000000000001");
  outbound = mockOutbound([
    [ORIGIN, () => twiml()],
    [TWILIO_API, async (req) => (await intercept?.(req)) ?? twilio.responder(req)],
    [ALERTS, () => new Response("ok")],
  ]);
}

afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

function isStatusCall(req: Captured, sid: string, status: string): boolean {
  return req.method === "POST" && req.url.endsWith(`/Accounts/${sid}.json`) && new URLSearchParams(new TextDecoder().decode(req.body)).get("Status") === status;
}

function alertTexts(sid: string): string[] {
  return outbound
    .to(ALERTS)
    .map((c) => JSON.parse(new TextDecoder().decode(c.body)) as { text: string; account: string })
    .filter((a) => a.account === sid)
    .map((a) => a.text);
}

function event(params: Params): BillableEvent {
  const classified = classifyWebhook(new Map(params));
  if (classified.kind === "not-billable") throw new Error(classified.reason);
  return classified;
}

const ADMIN_TOKEN = "test-admin-token-for-money-paths";
const USD_POLICY = { limits: [{ window: "day" as const, usd: 100 }] };

describe("effects fenced by their trip", () => {
  it("a suspension in flight across a reset and a new trip leaves the account suspended, as the breaker says", async () => {
    const held = gate();
    let entered = false;
    let first = true;
    setup(async (req) => {
      if (first && req.method === "POST" && /\/Accounts\/AC[0-9a-f]{32}\.json$/.test(req.url)) {
        first = false;
        entered = true;
        await held.wait; // the first suspension reaches Twilio only when the test lets it
      }
      return undefined;
    });
    const { sid } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "first trip");
    const alarm = drainAlarms(sid);
    await vi.waitFor(() => expect(entered).toBe(true));
    const resetting = guard(sid).reset(sid);
    await guard(sid).tripNow(sid, "second trip");
    held.open();
    await resetting;
    await alarm;
    await drainAlarms(sid);

    expect(twilio.subaccounts.get(sid)!.status).toBe("suspended");
    const { breaker } = await guard(sid).snapshot();
    expect(breaker).toMatchObject({ state: "open", suspension: "done" });
    expect(statusCalls(outbound.calls, sid, "suspended").length).toBeGreaterThanOrEqual(1);
  });

  it("a suspension that lands after a reset is undone", async () => {
    const held = gate();
    let entered = false;
    setup(async (req) => {
      if (!entered && isStatusCall(req, req.url.match(/AC[0-9a-f]{32}/)![0], "suspended")) {
        entered = true;
        await held.wait;
      }
      return undefined;
    });
    const { sid } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "trip");
    const alarm = drainAlarms(sid);
    await vi.waitFor(() => expect(entered).toBe(true));
    const resetting = guard(sid).reset(sid);
    held.open();
    await Promise.all([alarm, resetting]);
    await drainAlarms(sid);
    expect(twilio.subaccounts.get(sid)!.status).toBe("active");
    expect((await guard(sid).snapshot()).breaker.state).toBe("closed");
  });
});

describe("calls settled to their real outcome", () => {
  it.each(["busy", "no-answer", "canceled", "failed"])("a %s inbound call releases its one-minute reservation", async (status) => {
    setup();
    const { sid, token } = await subaccount(twilio, USD_POLICY);
    const call = inboundCall(sid);
    const callSid = call.find(([k]) => k === "CallSid")![1];
    await send(call, token, "/webhooks/voice");
    expect((await today(sid)).usd).toBeCloseTo(0.014, 6);
    await send(callStatus(sid, callSid, status, { Direction: "inbound" }), token, "/webhooks/voice-status");
    await vi.waitFor(async () => expect((await today(sid)).usd).toBe(0));
    const reserved = await runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec("SELECT * FROM counted WHERE settled = 0").toArray().length);
    expect(reserved).toBe(0);
  });
});

describe("status callbacks at least once", () => {
  it("a status callback whose ledger write fails is counted through the retry queue", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, USD_POLICY);
    const inc = vi.spyOn(metrics, "inc");
    // The Worker as deployed, with its Durable Object calls broken for this one request.
    const broken: GuardEnv = {
      ...(env as GuardEnv),
      ACCOUNT_GUARD: {
        getByName: () => ({ record: () => Promise.reject(new Error("Durable Object unavailable")) }),
      } as unknown as GuardEnv["ACCOUNT_GUARD"],
    };
    const ctx = createExecutionContext();
    const request = await signedForm(`${WORKER}/webhooks/status`, messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-0.50", PriceUnit: "USD" }), { token });
    const response = await createApp().fetch(request, broken, ctx);
    expect(response.status).toBe(200);
    await waitOnExecutionContext(ctx);
    expect(inc).toHaveBeenCalledWith("guard_ledger_write_failures_total", { stage: "direct" });
    // The queue's consumer (this Worker's queue handler, run by Miniflare) writes it to the real object.
    await vi.waitFor(async () => expect((await today(sid)).usd).toBeCloseTo(0.5, 6), { timeout: 15_000, interval: 100 });
  });
});

describe("per-Sid pricing kept for the month", () => {
  it("a late status three days on does not count the message again", async () => {
    setup();
    const { sid } = await subaccount(twilio, USD_POLICY);
    const start = windowStart("month", Date.now());
    const message = uniqueSid("SM");
    await guard(sid).record(event(messageStatus(sid, message, "delivered", { Price: "-0.25", PriceUnit: "USD" })), null, start + 3_600_000);
    const later = start + 3 * 86_400_000 + 3_600_000;
    await runInDurableObject(guard(sid), (_i, state) => pruneAccount(state.storage.sql, later));
    const verdict = await guard(sid).record(event(messageStatus(sid, message, "read", { Price: "-0.25", PriceUnit: "USD" })), null, later);
    expect(verdict.duplicate).toBe(false); // a new status, not a retry…
    const counted = await runInDurableObject(guard(sid), (_i, state) =>
      state.storage.sql.exec<{ usd: number; n: number }>("SELECT SUM(usd_micros) AS usd, COUNT(*) AS n FROM totals WHERE window = 'month'").one(),
    );
    expect(counted.usd).toBe(250_000); // …but the message is priced once
  });

  it("forgets a Sid once its month and the grace after it are over", async () => {
    setup();
    const { sid } = await subaccount(twilio, USD_POLICY);
    const start = windowStart("month", Date.now());
    const message = uniqueSid("SM");
    await guard(sid).record(event(messageStatus(sid, message, "delivered")), null, start + 3_600_000);
    const left = (at: number) =>
      runInDurableObject(guard(sid), (_i, state) => {
        pruneAccount(state.storage.sql, at);
        return state.storage.sql.exec("SELECT * FROM counted WHERE count_key = ?", `msg:${message}`).toArray().length;
      });
    expect(await left(windowEnd("month", start) + COUNTED_GRACE_MS - 1)).toBe(1);
    expect(await left(windowEnd("month", start) + COUNTED_GRACE_MS)).toBe(0);
  });
});

describe("reconciliation counts no dollar twice", () => {
  it("10 USD counted, Twilio at 15, five late 1 USD callbacks: the day ends at 15, both figures shown", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, USD_POLICY);
    await send(messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-10.00", PriceUnit: "USD" }), token, "/webhooks/status");
    await vi.waitFor(async () => expect((await today(sid)).usd).toBeCloseTo(10, 6));
    twilio.usageToday.set(sid, "15.00");
    await reconcileNow(sid);
    expect(await today(sid)).toMatchObject({ usd: 15, countedUsd: 10, twilioUsd: 15 });
    for (let i = 0; i < 5; i++) await send(messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-1.00", PriceUnit: "USD" }), token, "/webhooks/status");
    await vi.waitFor(async () => expect((await today(sid)).countedUsd).toBeCloseTo(15, 6));
    expect(await today(sid)).toMatchObject({ usd: 15, twilioUsd: 15 });
    const month = (await guard(sid).snapshot()).windows.find((w) => w.window === "month")!;
    expect(month.usd).toBeCloseTo(15, 6);
    // The operator's account view shows both figures.
    const response = await createApp().fetch(
      new Request(`${WORKER}/admin/accounts/${sid}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
      { ...(env as GuardEnv), ADMIN_TOKEN },
      createExecutionContext(),
    );
    const view = (await response.json()) as { account: { windows: Array<{ window: string; usd: number; countedUsd: number; twilioUsd: number | null }> } };
    expect(view.account.windows.find((w) => w.window === "day")).toMatchObject({ usd: 15, countedUsd: 15, twilioUsd: 15 });
  });

  it("spend beyond Twilio's figure still counts", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, USD_POLICY);
    await send(messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-10.00", PriceUnit: "USD" }), token, "/webhooks/status");
    await vi.waitFor(async () => expect((await today(sid)).usd).toBeCloseTo(10, 6));
    twilio.usageToday.set(sid, "12.00");
    await reconcileNow(sid);
    await send(messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-5.00", PriceUnit: "USD" }), token, "/webhooks/status");
    await vi.waitFor(async () => expect(await today(sid)).toMatchObject({ usd: 15, countedUsd: 15, twilioUsd: 12 }));
  });
});

describe("REST effects confirmed by Twilio's answer", () => {
  it("retries a suspension answered 200 with an unreadable body until the answer shows suspended", async () => {
    let html = 1;
    setup((req) => {
      if (html > 0 && req.method === "POST" && /\/Accounts\/AC[0-9a-f]{32}\.json$/.test(req.url)) {
        html -= 1;
        return new Response("<html>maintenance</html>", { status: 200, headers: { "content-type": "text/html" } });
      }
      return undefined;
    });
    const { sid } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "drill");
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(2);
    expect(twilio.subaccounts.get(sid)!.status).toBe("suspended");
    expect((await guard(sid).snapshot()).breaker).toMatchObject({ state: "open", suspension: "done" });
  });

  it("retries a suspension Twilio answers with another status", async () => {
    let wrong = 1;
    setup((req) => {
      const sid = req.url.match(/Accounts\/(AC[0-9a-f]{32})\.json$/)?.[1];
      if (wrong > 0 && sid !== undefined && req.method === "POST") {
        wrong -= 1;
        return new Response(JSON.stringify({ sid, status: "active", owner_account_sid: "x", auth_token: "t", friendly_name: "" }), { status: 200 });
      }
      return undefined;
    });
    const { sid } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "drill");
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(2);
    expect((await guard(sid).snapshot()).breaker.suspension).toBe("done");
  });

  it("alerts when a reactivation after a reset is given up", async () => {
    setup();
    const { sid } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "drill");
    await drainAlarms(sid);
    twilio.failNext("reactivate", twilioError(403, 20005, "Forbidden"));
    const { reactivation } = await guard(sid).reset(sid);
    expect(reactivation).toBe("failed");
    await drainAlarms(sid);
    expect(alertTexts(sid).some((t) => /reactivation FAILED/.test(t))).toBe(true);
  });
});

describe("mid-call requests", () => {
  it("forwards a Gather action unmarked, uncounted, and not rejected while the breaker is open", async () => {
    setup();
    const { sid, token } = await subaccount(twilio);
    const call = inboundCall(sid);
    const callSid = call.find(([k]) => k === "CallSid")![1];
    await send(call, token, "/webhooks/voice");
    await guard(sid).tripNow(sid, "drill");
    for (const digits of ["1", "2"]) {
      const gather = inboundCall(sid, { CallSid: callSid, CallStatus: "in-progress", Digits: digits });
      const response = await send(gather, token, "/webhooks/voice/gather");
      expect(response.headers.get("x-guard-breaker")).toBeNull();
      expect(await response.text()).not.toContain("Reject");
    }
    const hits = outbound.to(ORIGIN).filter((c) => c.url.endsWith("/voice/gather"));
    expect(hits).toHaveLength(2);
    expect(hits.map((h) => h.headers.get("x-guard-duplicate"))).toEqual([null, null]);
    expect((await today(sid)).events).toBe(1);
  });
});

describe("storage bounds", () => {
  it("keeps the newest closed trips and every open one", async () => {
    setup();
    const { sid } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "open now");
    const kept = await runInDurableObject(guard(sid), (_i, state) => {
      const sql = state.storage.sql;
      for (let i = 0; i < TRIPS_KEPT + 50; i++) sql.exec("INSERT INTO trips VALUES (?, ?, 'operator', 'old', ?)", `old-${i}`, i, i + 1);
      pruneAccount(sql, Date.now());
      return {
        closed: sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM trips WHERE closed_at IS NOT NULL").one().n,
        open: sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM trips WHERE closed_at IS NULL").one().n,
        oldest: sql.exec<{ t: string }>("SELECT trip_id AS t FROM trips WHERE closed_at IS NOT NULL ORDER BY opened_at LIMIT 1").one().t,
      };
    });
    expect(kept).toEqual({ closed: TRIPS_KEPT, open: 1, oldest: "old-50" });
  });

  it("migrates a directory written before versioning: the per-SID lookup tables (and their forged rows) go, registrations stay", async () => {
    setup();
    const sid = uniqueSid();
    const name = `old-directory-${sid}`;
    const directory = env.DIRECTORY.getByName(name);
    const now = Date.now();
    await runInDurableObject(directory, (_i, state) => {
      const sql = state.storage.sql;
      for (const table of ["meta", "tokens", "lookups", "accounts", "subaccounts", "listing", "account_summary"]) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      sql.exec(`
        CREATE TABLE tokens (sid TEXT PRIMARY KEY, token TEXT, fetched_at INTEGER NOT NULL, negative_until INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE lookups (minute INTEGER PRIMARY KEY, count INTEGER NOT NULL);
        CREATE TABLE accounts (sid TEXT PRIMARY KEY, first_seen_at INTEGER NOT NULL, is_parent INTEGER NOT NULL);
      `);
      sql.exec("INSERT INTO tokens VALUES ('ACforged-negative-row', NULL, ?, ?)", now, now + 3_600_000);
      sql.exec("INSERT INTO accounts VALUES (?, ?, 0)", sid, now);
    });
    await evictDurableObject(directory);
    expect((await directory.listAccounts({ limit: 10 })).accounts.map((a) => a.sid)).toEqual([sid]);
    const tables = await runInDurableObject(directory, (_i, state) => ({
      names: state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").toArray().map((t) => t.name),
      schema: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").one().value,
    }));
    expect(tables.names).toEqual(expect.arrayContaining(["accounts", "account_summary", "listing", "subaccounts"]));
    expect(tables.names).not.toContain("tokens");
    expect(tables.names).not.toContain("lookups");
    expect(tables.schema).toBe(String(DIRECTORY_SCHEMA.version));
  });

  it("the usage series and egress keys of an account never written are empty, and create no storage", async () => {
    setup();
    const sid = uniqueSid();
    const series = await guard(sid).usage("hour");
    expect(series.totals).toEqual({ usd: 0, events: 0, blocked: 0, trips: 0 });
    expect(await guard(sid).listEgressKeys()).toEqual([]);
    const tables = await runInDurableObject(guard(sid), (_i, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE name IN ('meta', 'usage_buckets', 'egress_keys')").one().n,
    );
    expect(tables).toBe(0);
  });

  it("an admin read of an unknown SID answers 404 and leaves no Durable Object storage behind", async () => {
    setup();
    const sid = uniqueSid();
    const adminEnv: GuardEnv = { ...(env as GuardEnv), ADMIN_TOKEN };
    const response = await createApp().fetch(
      new Request(`${WORKER}/admin/accounts/${sid}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
      adminEnv,
      createExecutionContext(),
    );
    expect(response.status).toBe(404);
    const size = await runInDurableObject(guard(sid), (_i, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'meta' OR name = 'totals'").one().n,
    );
    expect(size).toBe(0);
  });
});
