// The AccountGuard Durable Object and the webhook path in front of it: counting once, tripping once,
// suspending through the outbox until it sticks (across eviction), and the usage-trigger route.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { drainAlarms, guard } from "../support/guard.ts";
import { WORKER, send, subaccount } from "../support/money.ts";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import { SUMMARY_PUSH_INTERVAL_MS } from "../../src/accounts/summary.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { ALERTS, ORIGIN, TWILIO_API, mockOutbound, statusCalls, twilioError, twilioWorld, type FakeTwilio } from "../support/origin.ts";
import {
  PARENT_SID,
  callStatus,
  inboundCall,
  inboundSms,
  messageStatus,
  signedForm,
  uniqueSid,
  type Params,
} from "../support/twilio.ts";

let outbound: ReturnType<typeof mockOutbound>;
let twilio: FakeTwilio;
function setup(): void {
  ({ twilio, outbound } = twilioWorld());
}

function alertsFor(sid: string): Array<{ level: string; text: string }> {
  return outbound
    .to(ALERTS)
    .map((c) => JSON.parse(new TextDecoder().decode(c.body)) as { level: string; text: string; account: string })
    .filter((a) => a.account === sid);
}

function smsAlerts(): string[] {
  return outbound
    .calls.filter((c) => c.url.endsWith(`/Accounts/${PARENT_SID}/Messages.json`))
    .map((c) => new TextDecoder().decode(c.body));
}
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

describe("counting", () => {
  it("counts an inbound message once however often Twilio retries it", async () => {
    setup();
    const { sid, token } = await subaccount(twilio);
    const params = inboundSms(sid);
    const first = await send(params, token);
    const retry = await send(params, token);
    expect(first.status).toBe(200);
    expect(retry.status).toBe(200);
    const hits = outbound.to(ORIGIN);
    expect(hits).toHaveLength(2);
    expect(hits[0]!.headers.get("x-guard-duplicate")).toBeNull();
    expect(hits[1]!.headers.get("x-guard-duplicate")).toBe("1");
    const day = (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
    expect(day.events).toBe(1);
  });

  it("lets the unsigned I-Twilio-Idempotency-Token header decide nothing: two events with one token count twice", async () => {
    setup();
    const { sid, token } = await subaccount(twilio);
    await send(inboundSms(sid), token, "/webhooks/sms", { "I-Twilio-Idempotency-Token": "idem-1" });
    const again = await send(inboundSms(sid), token, "/webhooks/sms", { "I-Twilio-Idempotency-Token": "idem-1" });
    expect(again.status).toBe(200);
    expect(outbound.to(ORIGIN)[1]!.headers.get("x-guard-duplicate")).toBeNull();
    expect((await guard(sid).snapshot()).windows.find((w) => w.window === "day")!.events).toBe(2);
  });

  it("prices an outbound message once per MessageSid, from its first billable status", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 10 }] });
    const message = uniqueSid("SM");
    for (const status of ["queued", "sent", "delivered"]) await send(messageStatus(sid, message, status, { NumSegments: "2" }), token, "/webhooks/status");
    const snapshot = await runInDurableObject(guard(sid), (instance: AccountGuard) => instance.snapshot());
    const day = snapshot.windows.find((w) => w.window === "day")!;
    expect(day.events).toBe(1);
    expect(day.usd).toBeCloseTo(2 * 0.0083, 6);
  });

  it("uses Twilio's Price when the payload carries one", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 10 }] });
    await send(messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-0.07500", PriceUnit: "USD" }), token, "/webhooks/status");
    await vi.waitFor(async () => expect((await guard(sid).snapshot()).windows.find((w) => w.window === "day")!.usd).toBeCloseTo(0.075, 6));
  });

  it("settles an inbound call's one-minute reservation with its billed duration", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 10 }] });
    const call = inboundCall(sid);
    const callSid = call.find(([k]) => k === "CallSid")![1];
    await send(call, token, "/webhooks/voice");
    await send(callStatus(sid, callSid, "completed", { Direction: "inbound", Duration: "3", CallDuration: "150" }), token, "/webhooks/voice-status");
    await vi.waitFor(async () => {
      const day = (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
      expect(day.events).toBe(1);
      expect(day.usd).toBeCloseTo(3 * 0.014, 6);
    });
    // The completion is shown as what it is: the settlement of the call's reservation, not "not counted".
    const [completion, ringing] = (await guard(sid).snapshot()).recentEvents;
    expect(completion).toMatchObject({ status: "completed", counted: false, settled: true, blocked: false });
    expect(completion!.usd).toBeCloseTo(2 * 0.014, 6);
    expect(ringing).toMatchObject({ counted: true, settled: false });
  });
});

describe("the breaker", () => {
  it("lets the limit's worth of events through and blocks the one that crosses it", async () => {
    setup();
    const { sid, token } = await subaccount(twilio);
    const statuses: string[] = [];
    for (let i = 0; i < 6; i++) {
      const response = await send(inboundSms(sid), token);
      statuses.push(`${response.status}:${response.headers.get("x-guard-breaker") ?? "-"}:${await response.text()}`);
    }
    expect(statuses.slice(0, 5).every((s) => s.startsWith("200:-:<Response><Message>"))).toBe(true);
    expect(statuses[5]).toBe("200:open:<Response/>");
    expect(outbound.to(ORIGIN)).toHaveLength(5);
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.breaker.state).toBe("open");
    expect(snapshot.windows.find((w) => w.window === "day")!.events).toBe(6);
  });

  it("rejects inbound calls with busy TwiML while open, without calling the origin", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { action: "block" });
    await guard(sid).tripNow(sid, "test");
    const response = await send(inboundCall(sid), token, "/webhooks/voice");
    expect(response.headers.get("content-type")).toBe("text/xml");
    expect(response.headers.get("x-guard-breaker")).toBe("open");
    expect(await response.text()).toBe('<Response><Reject reason="busy"/></Response>');
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });

  it("still forwards status callbacks while open", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { action: "block" });
    await guard(sid).tripNow(sid, "test");
    const response = await send(messageStatus(sid, uniqueSid("SM"), "delivered"), token, "/webhooks/status");
    expect(response.status).toBe(200);
    expect(outbound.to(ORIGIN)).toHaveLength(1);
  });

  it("suspends a subaccount once, retrying through failures: three failures then success is four attempts", async () => {
    setup();
    const { sid, token } = await subaccount(twilio);
    twilio.failNext("suspend", twilioError(500, 20500), twilioError(429, 20429, "Too Many Requests"), "network");
    for (let i = 0; i < 6; i++) await send(inboundSms(sid), token);
    await drainAlarms(sid);
    const suspensions = statusCalls(outbound.calls, sid, "suspended");
    expect(suspensions).toHaveLength(4);
    expect(twilio.subaccounts.get(sid)!.status).toBe("suspended");
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.breaker.suspension).toBe("done");
    const attempts = snapshot.history.filter((h) => h.kind === "suspend");
    expect(attempts.map((a) => a.outcome).reverse()).toEqual(["retry", "retry", "retry", "done"]);
    // Every suspension request uses the parent's credentials (CONTRACT: Twilio requires them).
    for (const call of suspensions) expect(atob(call.headers.get("authorization")!.slice(6))).toBe(`${PARENT_SID}:${env.TWILIO_AUTH_TOKEN}`);
  });

  it("records a 4xx other than 429 as failed and does not retry it", async () => {
    setup();
    const { sid } = await subaccount(twilio);
    twilio.failNext("suspend", twilioError(403, 20003, "Permission denied"));
    await guard(sid).tripNow(sid, "test");
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(1);
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.breaker.suspension).toBe("failed");
    expect(snapshot.history.some((h) => h.kind === "suspend" && h.outcome === "failed")).toBe(true);
  });

  it("suspends after the object is evicted between the trip and its alarm", async () => {
    setup();
    const { sid } = await subaccount(twilio);
    // The first attempt fails, so the suspension waits in the outbox for a later alarm…
    twilio.failNext("suspend", "network");
    await guard(sid).tripNow(sid, "test");
    await vi.waitFor(async () => expect((await guard(sid).snapshot()).history.some((h) => h.kind === "suspend" && h.outcome === "retry")).toBe(true));
    // …and the object is evicted before that alarm: only durable storage is left.
    await evictDurableObject(guard(sid));
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(2);
    expect(twilio.subaccounts.get(sid)!.status).toBe("suspended");
    expect((await guard(sid).snapshot()).breaker.suspension).toBe("done");
  });

  it("200 concurrent requests crossing one limit make one suspension call", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", events: 20 }] });
    const requests = await Promise.all(Array.from({ length: 200 }, () => signedForm(`${WORKER}/webhooks/sms`, inboundSms(sid), { token })));
    const responses = await Promise.all(requests.map((r) => exports.default.fetch(r)));
    const blocked = responses.filter((r) => r.headers.get("x-guard-breaker") === "open");
    expect(blocked).toHaveLength(180);
    expect(outbound.to(ORIGIN)).toHaveLength(20);
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(1);
    expect((await guard(sid).snapshot()).windows.find((w) => w.window === "day")!.events).toBe(200);
  });

  it("ends the subaccount's in-progress calls after suspending it", async () => {
    setup();
    const { sid } = await subaccount(twilio);
    const live = [uniqueSid("CA"), uniqueSid("CA")];
    twilio.inProgressCalls.set(sid, [...live]);
    await guard(sid).tripNow(sid, "test");
    await drainAlarms(sid);
    for (const call of live) {
      const ended = outbound.calls.filter((c) => c.method === "POST" && c.url.endsWith(`/Calls/${call}.json`));
      expect(ended).toHaveLength(1);
      expect(new TextDecoder().decode(ended[0]!.body)).toBe("Status=completed");
    }
  });

  it("never suspends the parent account: it blocks at the edge and alerts", async () => {
    setup();
    await guard(PARENT_SID).setPolicy(PARENT_SID, { limits: [{ window: "day", events: 1 }], warnAt: 1, action: "suspend" });
    await send(inboundSms(PARENT_SID), env.TWILIO_AUTH_TOKEN);
    const second = await send(inboundSms(PARENT_SID), env.TWILIO_AUTH_TOKEN);
    expect(second.headers.get("x-guard-breaker")).toBe("open");
    await drainAlarms(PARENT_SID);
    expect(statusCalls(outbound.calls, PARENT_SID, "suspended")).toHaveLength(0);
    const snapshot = await guard(PARENT_SID).snapshot();
    expect(snapshot.breaker.suspension).toBe("none");
    expect(snapshot.isParent).toBe(true);
  });

  it("resets: closes the breaker and reactivates the subaccount it suspended", async () => {
    setup();
    const { sid, token } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "test");
    await drainAlarms(sid);
    const { reactivation, snapshot } = await guard(sid).reset(sid);
    expect(reactivation).toBe("done");
    expect(snapshot.breaker.state).toBe("closed");
    expect(twilio.subaccounts.get(sid)!.status).toBe("active");
    expect((await send(inboundSms(sid), token)).headers.get("x-guard-breaker")).toBeNull();
  });

  it("a reset before the alarm ran cancels the pending suspension", async () => {
    setup();
    const { sid } = await subaccount(twilio);
    await guard(sid).tripNow(sid, "test");
    await guard(sid).reset(sid);
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(0);
  });
});

describe("alerts", () => {
  it("says today's spend and escapes payload text for Slack (a UsageTriggerSid cannot ping the channel)", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 1000 }] });
    await send(inboundSms(sid), token);
    await guard(sid).usageTrigger({
      accountSid: sid, idempotencyToken: `idem-${sid}`, usageTriggerSid: "<!channel> & <https://evil.example|click>", usageCategory: "totalprice",
      currentValue: 12.5, triggerValue: 10, dateFired: null,
    });
    await drainAlarms(sid);
    const [alert] = alertsFor(sid).filter((a) => a.level === "trip");
    expect(alert!.text).toContain("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;");
    expect(alert!.text).not.toMatch(/<!channel>|<https:/);
    expect(alert!.text).toMatch(/spend today 0\.\d{2} USD/);
  });

  it("alerts once on a trip, by webhook and by SMS from the parent account", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", events: 2 }] });
    for (let i = 0; i < 5; i++) await send(inboundSms(sid), token);
    await drainAlarms(sid);
    const trips = alertsFor(sid).filter((a) => a.level === "trip");
    expect(trips).toHaveLength(1);
    expect(trips[0]!.text).toContain(sid);
    const sms = smsAlerts().filter((body) => body.includes(sid));
    expect(sms).toHaveLength(1);
    const form = new URLSearchParams(sms[0]);
    expect(form.get("To")).toBe(env.ALERT_SMS_TO);
    expect(form.get("From")).toBe(env.ALERT_SMS_FROM);
  });

  it("warns once per limit and window when spend reaches warnAt", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", events: 10 }], warnAt: 0.5 });
    for (let i = 0; i < 8; i++) await send(inboundSms(sid), token);
    await drainAlarms(sid);
    const warnings = alertsFor(sid).filter((a) => a.level === "warn");
    expect(warnings).toHaveLength(1);
    expect(alertsFor(sid).filter((a) => a.level === "trip")).toHaveLength(0);
  });

  it("retries an alert whose receiver fails, and delivers it once", async () => {
    setup();
    let failures = 2;
    outbound.restore();
    outbound = mockOutbound([
      [TWILIO_API, (req) => twilio.responder(req)],
      [ALERTS, () => (failures-- > 0 ? new Response("down", { status: 503 }) : new Response("ok"))],
    ]);
    const { sid } = await subaccount(twilio, { action: "block" });
    await guard(sid).tripNow(sid, "test");
    await drainAlarms(sid);
    const delivered = (await guard(sid).snapshot()).history.filter((h) => h.kind === "alert-webhook");
    expect(delivered.map((h) => h.outcome).reverse()).toEqual(["retry", "retry", "done"]);
  });
});

describe("/usage-trigger", () => {
  async function fire(sid: string, token: string, idempotencyToken: string): Promise<Response> {
    const params: Params = [
      ["AccountSid", sid],
      ["UsageTriggerSid", uniqueSid("UT")],
      ["DateFired", new Date().toUTCString()],
      ["Recurring", "daily"],
      ["UsageCategory", "totalprice"],
      ["TriggerBy", "price"],
      ["TriggerValue", "50.00"],
      ["CurrentValue", "50.12"],
      ["IdempotencyToken", idempotencyToken],
    ];
    return exports.default.fetch(await signedForm(`${WORKER}/usage-trigger`, params, { token }));
  }

  it("trips the account once per IdempotencyToken", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 50 }] });
    const first = await fire(sid, token, "idem-trigger-1");
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ tripped: true, duplicate: false });
    const retry = await fire(sid, token, "idem-trigger-1");
    expect(await retry.json()).toMatchObject({ tripped: false, duplicate: true });
    await drainAlarms(sid);
    expect(statusCalls(outbound.calls, sid, "suspended")).toHaveLength(1);
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.trips).toHaveLength(1);
    expect(snapshot.trips[0]!.reason).toBe("usage-trigger");
    expect(snapshot.trips[0]!.detail).toContain("50.12");
  });

  it("refuses an unsigned trigger without tripping", async () => {
    setup();
    const { sid } = await subaccount(twilio);
    const response = await fire(sid, "wrong-token", "idem-x");
    expect(response.status).toBe(403);
    expect((await guard(sid).snapshot()).breaker.state).toBe("closed");
  });
});

describe("reconciliation", () => {
  it("raises the day's spend to Twilio's figure and trips when that crosses a limit", async () => {
    setup();
    const { sid, token } = await subaccount(twilio, { limits: [{ window: "day", usd: 1 }] });
    await send(inboundSms(sid), token);
    twilio.usageToday.set(sid, "1.25");
    await runInDurableObject(guard(sid), (_i, state) => {
      state.storage.sql.exec("UPDATE meta SET value = '0' WHERE key = 'reconcile_at'");
    });
    await runDurableObjectAlarm(guard(sid));
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.windows.find((w) => w.window === "day")!.usd).toBeCloseTo(1.25, 6);
    expect(snapshot.breaker.state).toBe("open");
    const poll = outbound.calls.find((c) => c.url.includes(`/Accounts/${sid}/Usage/Records/Today.json`));
    expect(new URL(poll!.url).searchParams.get("Category")).toBe("totalprice");
  });
});

describe("housekeeping", () => {
  it("prunes windows older than the previous one, and old de-duplication keys", async () => {
    setup();
    const { sid, token } = await subaccount(twilio);
    await send(inboundSms(sid), token);
    const old = Date.UTC(2020, 0, 1);
    await runInDurableObject(guard(sid), (_instance, state) => {
      state.storage.sql.exec("INSERT INTO totals (window, window_id, start_ms, usd_micros, events) VALUES ('day', 'day:2020-01-01', ?, 5, 5)", old);
      state.storage.sql.exec("INSERT INTO seen (key, at_ms) VALUES ('SMold:received', ?)", old);
      state.storage.sql.exec("UPDATE meta SET value = '0' WHERE key = 'prune_at'");
      state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('prune_at', '0')");
    });
    await runDurableObjectAlarm(guard(sid));
    const left = await runInDurableObject(guard(sid), (_instance, state) => ({
      oldDay: state.storage.sql.exec("SELECT * FROM totals WHERE window_id = 'day:2020-01-01'").toArray().length,
      today: state.storage.sql.exec("SELECT * FROM totals WHERE window = 'day'").toArray().length,
      oldKey: state.storage.sql.exec("SELECT * FROM seen WHERE key = 'SMold:received'").toArray().length,
    }));
    expect(left).toEqual({ oldDay: 0, today: 1, oldKey: 0 });
  });
});

describe("the listing's summary across evictions", () => {
  function event(params: Params): BillableEvent {
    const e = classifyWebhook(Object.fromEntries(params));
    if (e.kind === "not-billable") throw new Error(e.reason);
    return e;
  }
  /** The events today the directory's listing holds for the account (0 before its first push). */
  const listed = (sid: string) =>
    runInDurableObject(env.DIRECTORY.getByName("directory"), (_instance, state) =>
      state.storage.sql.exec<{ events: number }>("SELECT events FROM account_summary WHERE sid = ?", sid).toArray()[0]?.events ?? 0,
    );
  const summaryDue = (sid: string) =>
    runInDurableObject(guard(sid), (_instance, state) =>
      state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'summary_at'").toArray()[0]?.value ?? null,
    );
  const PUSH_LANDS = { timeout: 5_000, interval: 20 };

  it("a new instance does not push again what the evicted one pushed within the interval; the alarm brings the latest figure", async () => {
    const sid = uniqueSid();
    const t = Date.now();
    await guard(sid).record(event(inboundSms(sid)), null, t);
    await vi.waitFor(async () => expect(await listed(sid)).toBe(1), PUSH_LANDS);
    expect(await summaryDue(sid)).toBeNull();
    await evictDurableObject(guard(sid));
    // The next event a second later lands on a new instance: it leaves its figure to the trailing push.
    await guard(sid).record(event(inboundSms(sid)), null, t + 1_000);
    const due = await summaryDue(sid);
    expect(due).not.toBeNull();
    expect(Number(due)).toBeLessThanOrEqual(Date.now() + SUMMARY_PUSH_INTERVAL_MS);
    // The alarm at that time pushes the account's latest figures.
    await runInDurableObject(guard(sid), (_instance, state) => state.storage.sql.exec("UPDATE meta SET value = '0' WHERE key = 'summary_at'"));
    await runDurableObjectAlarm(guard(sid));
    await vi.waitFor(async () => expect(await listed(sid)).toBe(2), PUSH_LANDS);
    expect(await summaryDue(sid)).toBeNull();
  });

  it("a new instance pushes its first event at once when the account was quiet for longer than the interval", async () => {
    const sid = uniqueSid();
    const t = Date.now();
    await guard(sid).record(event(inboundSms(sid)), null, t - 2 * SUMMARY_PUSH_INTERVAL_MS);
    await vi.waitFor(async () => expect(await listed(sid)).toBe(1), PUSH_LANDS);
    await evictDurableObject(guard(sid));
    await guard(sid).record(event(inboundSms(sid)), null, t);
    expect(await summaryDue(sid)).toBeNull();
    await vi.waitFor(async () => expect(await listed(sid)).toBe(2), PUSH_LANDS);
  });
});
