// The real price of a gate send, looked up from its Message or Call resource by the AccountGuard's alarm
// (src/breaker/price-lookup.ts): applied once to the windows of the send, surviving eviction, given up
// after the horizon. Twilio's API is the workerd stand-in (test/support/origin.ts); every lookup is
// checked against FetchMessage / FetchCall (GET, no body, the parent's HTTP Basic, JSON).
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_PENDING_PRICE_LOOKUPS, PRICE_LOOKUP_HORIZON_MS, PriceUnavailable, readPrice } from "../../src/breaker/price-lookup.ts";
import { sendFacts } from "../../src/egress/send.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { windowStart } from "../../src/ledger/windows.ts";
import { metrics } from "../../src/observability/metrics.ts";
import { guard } from "../support/guard.ts";
import { ALERTS, TWILIO_API, fakeTwilio, mockOutbound, type Captured } from "../support/origin.ts";
import { PARENT_SID, PRIMARY_TOKEN, callStatus, messageStatus, uniqueSid, type Params } from "../support/twilio.ts";

const US = "+14155552671";
const POLICY = { limits: [{ window: "day", usd: 50 }] };

/** What the stand-in's Message/Call resources answer as `price`, per Sid: one answer per lookup, the last repeating. */
const prices = new Map<string, Array<string | null>>();
let outbound: ReturnType<typeof mockOutbound>;

function resource(req: Captured): Response | null {
  const m = /\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/(Messages|Calls)\/((?:SM|CA)[0-9a-f]{32})\.json$/.exec(new URL(req.url).pathname);
  if (m === null || req.method !== "GET") return null;
  const queue = prices.get(m[3]!);
  if (queue === undefined) return new Response(JSON.stringify({ code: 20404, message: "not found", more_info: "", status: 404 }), { status: 404 });
  const price = queue.length > 1 ? queue.shift()! : queue[0]!;
  const status = m[2] === "Messages" ? "delivered" : "completed";
  return new Response(JSON.stringify({ sid: m[3], account_sid: m[1], status, price, price_unit: "USD" }), { status: 200, headers: { "content-type": "application/json" } });
}

beforeEach(() => {
  const twilio = fakeTwilio(PARENT_SID);
  outbound = mockOutbound([
    [TWILIO_API, (req) => resource(req) ?? twilio.responder(req)],
    [ALERTS, () => new Response("ok")],
  ]);
});
afterEach(() => {
  outbound.restore();
  vi.restoreAllMocks();
});

function event(params: Params): BillableEvent {
  const e = classifyWebhook(Object.fromEntries(params));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

/** A send the gate reserved and Twilio accepted without a price (settled at the estimate). */
async function gateSend(kind: "message" | "call", form: Record<string, string>, atMs = Date.now()): Promise<{ sid: string; sendSid: string }> {
  const sid = uniqueSid();
  await guard(sid).setPolicy(sid, POLICY);
  const answer = await guard(sid).reserveSend({ accountSid: sid, atMs, mode: "enforce", key: null, send: sendFacts(kind, new URLSearchParams(form)) });
  if (!answer.ok) throw new Error(answer.refusal.reason);
  const sendSid = uniqueSid(kind === "message" ? "SM" : "CA");
  await guard(sid).settleSend(sid, answer.reservationId, { type: "accepted", sid: sendSid, priceUsd: null }, atMs);
  return { sid, sendSid };
}

const twoSegments = { To: US, From: "+15005550006", Body: "a".repeat(200) };

async function day(sid: string) {
  const w = (await guard(sid).snapshot()).windows.find((x) => x.window === "day")!;
  return { usd: w.usd, events: w.events };
}

async function lookupRows(sid: string) {
  return runInDurableObject(guard(sid), (_i, state) =>
    state.storage.sql.exec<{ state: string; attempts: number; payload: string }>("SELECT state, attempts, payload FROM outbox WHERE kind = 'price-lookup' ORDER BY id").toArray(),
  );
}

/** Makes the pending lookups due and runs the alarm once: one attempt each. */
async function lookOnce(sid: string): Promise<void> {
  await runInDurableObject(guard(sid), (_i, state) => {
    state.storage.sql.exec("UPDATE outbox SET next_at_ms = 0 WHERE state = 'pending'");
  });
  await runDurableObjectAlarm(guard(sid));
}

const lookups = (sendSid: string) => outbound.to(TWILIO_API).filter((c) => c.url.includes(sendSid));

/** FetchMessage / FetchCall as twilio_api_v2010.json documents them, with the parent's credentials. */
function expectFetchShape(calls: Captured[], path: string): void {
  expect(calls.length).toBeGreaterThan(0);
  for (const c of calls) {
    expect(c.method).toBe("GET");
    expect(c.url).toBe(`${TWILIO_API}${path}`);
    expect(c.body.byteLength).toBe(0);
    expect(c.headers.get("authorization")).toBe(`Basic ${btoa(`${PARENT_SID}:${PRIMARY_TOKEN}`)}`);
    expect(c.headers.get("accept")).toBe("application/json");
  }
}

describe("price lookup: a message settled at its estimate", () => {
  it("looks the price up until Twilio fills it, and moves the day's spend from the estimate to the real price once", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    expect(await day(sid)).toEqual({ usd: 0.0166, events: 1 });
    prices.set(sendSid, [null, null, "-0.0158"]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    expect(await lookupRows(sid)).toHaveLength(1);

    await lookOnce(sid);
    await lookOnce(sid);
    expect(await day(sid)).toEqual({ usd: 0.0166, events: 1 });
    expect((await lookupRows(sid))[0]).toMatchObject({ state: "pending", attempts: 2 });
    await lookOnce(sid);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    expect((await lookupRows(sid))[0]).toMatchObject({ state: "done", attempts: 3 });

    // Nothing is left to look up, and another alarm changes nothing.
    await lookOnce(sid);
    expect(lookups(sendSid)).toHaveLength(3);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    expectFetchShape(lookups(sendSid), `/2010-04-01/Accounts/${sid}/Messages/${sendSid}.json`);
  });
  it("corrects the UTC day the send was counted in, not the day its price arrived", async () => {
    const today = windowStart("day", Date.now());
    const { sid, sendSid } = await gateSend("message", twoSegments, today - 3_600_000);
    prices.set(sendSid, ["-0.0158"]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    await lookOnce(sid);
    const days = await runInDurableObject(guard(sid), (_i, state) => ({
      totals: state.storage.sql.exec<{ start_ms: number; usd_micros: number }>("SELECT start_ms, usd_micros FROM totals WHERE window = 'day' ORDER BY start_ms").toArray(),
      buckets: state.storage.sql.exec<{ start_ms: number; usd_micros: number }>("SELECT start_ms, usd_micros FROM usage_buckets WHERE grain = 'day' ORDER BY start_ms").toArray(),
    }));
    const yesterday = { start_ms: windowStart("day", today - 1), usd_micros: 15_800 };
    expect(days.totals.filter((d) => d.usd_micros !== 0)).toEqual([yesterday]);
    expect(days.buckets.filter((d) => d.usd_micros !== 0)).toEqual([yesterday]);
  });
  it("queues one lookup per Sid however many billed statuses arrive", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    await guard(sid).record(event(messageStatus(sid, sendSid, "sent")), null);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    expect(await lookupRows(sid)).toHaveLength(1);
  });
  it("survives eviction between lookups, and applies the price once", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    prices.set(sendSid, [null, "-0.0158"]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    await lookOnce(sid);
    await evictDurableObject(guard(sid));
    await lookOnce(sid);
    await evictDurableObject(guard(sid));
    await lookOnce(sid);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    expect(lookups(sendSid)).toHaveLength(2);
  });
  it("applies a price found twice (a run repeated after eviction) once", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    prices.set(sendSid, ["-0.0158"]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    // The row is run again as if the object had been evicted after applying the price, before marking it done.
    await lookOnce(sid);
    // Spied before the row is made due: an alarm the runtime fires on its own in between (under load)
    // would otherwise run the lookup before the spy exists.
    const inc = vi.spyOn(metrics, "inc");
    await runInDurableObject(guard(sid), (_i, state) => {
      state.storage.sql.exec("UPDATE outbox SET state = 'pending', next_at_ms = 0 WHERE kind = 'price-lookup'");
    });
    await lookOnce(sid);
    expect(inc).toHaveBeenCalledWith("guard_price_lookups_total", { outcome: "unchanged" });
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
  });
});

describe("price lookup: sends by destination country", () => {
  it("moves the country's spend with the day's, from the estimate to the real price", async () => {
    const atMs = Date.now();
    const { sid, sendSid } = await gateSend("message", twoSegments, atMs);
    prices.set(sendSid, ["-0.0158"]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    const us = async () => (await guard(sid).usage("day", atMs)).countries.find((c) => c.country === "US");
    expect(await us()).toMatchObject({ sends: 1, usd: 0.0166 });
    await lookOnce(sid);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    expect(await us()).toMatchObject({ sends: 1, usd: 0.0158 });
  });
});

describe("price lookup: the accounts listing", () => {
  it("gets the corrected day's spend after the alarm applied a price", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    prices.set(sendSid, ["-0.0158"]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    await lookOnce(sid);
    const listed = () =>
      runInDurableObject(env.DIRECTORY.getByName("directory"), (_i, state) =>
        state.storage.sql.exec<{ spend_micros: number }>("SELECT spend_micros FROM account_summary WHERE sid = ?", sid).toArray()[0]?.spend_micros,
      );
    // The push is sent after the alarm (waitUntil): each read lets it land, a bounded number of times.
    let spend = await listed();
    for (let i = 0; i < 50 && spend !== 15_800; i++) spend = await listed();
    expect(spend).toBe(15_800);
  });
});

describe("price lookup: when the price comes another way", () => {
  it("queues no lookup when the status callback carries the Price", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered", { Price: "-0.0158", PriceUnit: "USD" })), null);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    expect(await lookupRows(sid)).toHaveLength(0);
  });
  it("applies nothing more when a callback's Price came after the lookup was queued", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    prices.set(sendSid, ["-0.0158"]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "sent")), null);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered", { Price: "-0.0158", PriceUnit: "USD" })), null);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    await lookOnce(sid);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    expect((await lookupRows(sid))[0]).toMatchObject({ state: "done" });
  });
  it("queues none for a send whose price Twilio's create answer carried", async () => {
    const sid = uniqueSid();
    await guard(sid).setPolicy(sid, POLICY);
    const answer = await guard(sid).reserveSend({ accountSid: sid, atMs: Date.now(), mode: "enforce", key: null, send: sendFacts("message", new URLSearchParams(twoSegments)) });
    if (!answer.ok) throw new Error("refused");
    const sendSid = uniqueSid("SM");
    await guard(sid).settleSend(sid, answer.reservationId, { type: "accepted", sid: sendSid, priceUsd: -0.0158 });
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    expect(await day(sid)).toEqual({ usd: 0.0158, events: 1 });
    expect(await lookupRows(sid)).toHaveLength(0);
  });
  it("looks up nothing for a message the gate did not send", async () => {
    const sid = uniqueSid();
    await guard(sid).setPolicy(sid, POLICY);
    await guard(sid).record(event(messageStatus(sid, uniqueSid("SM"), "delivered")), null);
    expect(await lookupRows(sid)).toHaveLength(0);
  });
});

describe("price lookup: a call", () => {
  it("looks up a completed call's price from its Call resource and replaces what its minutes were counted at", async () => {
    const { sid, sendSid } = await gateSend("call", { To: US, From: "+15005550006", Url: "https://app.test/twiml" });
    prices.set(sendSid, ["-0.028"]);
    await guard(sid).record(event(callStatus(sid, sendSid, "completed", { CallDuration: "95" })), null);
    expect(await lookupRows(sid)).toHaveLength(1);
    await lookOnce(sid);
    expect(await day(sid)).toEqual({ usd: 0.028, events: 1 });
    expectFetchShape(lookups(sendSid), `/2010-04-01/Accounts/${sid}/Calls/${sendSid}.json`);
  });
});

describe("price lookup: bounds", () => {
  it("gives up after the horizon: logged and counted, the send keeps its estimate", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    prices.set(sendSid, [null]);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    await lookOnce(sid);
    // The lookup was queued a horizon ago: the next attempt without a price is the last.
    await runInDurableObject(guard(sid), (_i, state) => {
      const since = Date.now() - PRICE_LOOKUP_HORIZON_MS;
      state.storage.sql.exec("UPDATE outbox SET payload = json_set(payload, '$.since', ?) WHERE kind = 'price-lookup'", since);
    });
    const warn = vi.spyOn(console, "warn");
    const inc = vi.spyOn(metrics, "inc");
    await lookOnce(sid);
    expect((await lookupRows(sid))[0]).toMatchObject({ state: "failed", attempts: 2 });
    expect(inc).toHaveBeenCalledWith("guard_price_lookups_total", { outcome: "given-up" });
    const line = warn.mock.calls.map((c) => JSON.parse(String(c[0])) as Record<string, unknown>).find((l) => l.event === "price-lookup-given-up");
    expect(line).toMatchObject({ account: sid, sid: sendSid, kind: "message", attempts: 2 });
    expect(await day(sid)).toEqual({ usd: 0.0166, events: 1 });
    await lookOnce(sid);
    expect(lookups(sendSid)).toHaveLength(2);
  });
  it("gives up at once when Twilio has no such message (404)", async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    await lookOnce(sid);
    expect((await lookupRows(sid))[0]).toMatchObject({ state: "failed", attempts: 1 });
    expect(await day(sid)).toEqual({ usd: 0.0166, events: 1 });
  });
  it(`queues no more than ${MAX_PENDING_PRICE_LOOKUPS} lookups per account: past that the send keeps its estimate, logged and counted`, async () => {
    const { sid, sendSid } = await gateSend("message", twoSegments);
    await runInDurableObject(guard(sid), (_i, state) => {
      for (let i = 0; i < MAX_PENDING_PRICE_LOOKUPS; i++) {
        state.storage.sql.exec("INSERT INTO outbox (trip_id, kind, payload, attempts, next_at_ms, state) VALUES ('', 'price-lookup', '{}', 0, ?, 'pending')", Date.now() + 3_600_000);
      }
    });
    const inc = vi.spyOn(metrics, "inc");
    await guard(sid).record(event(messageStatus(sid, sendSid, "delivered")), null);
    expect(inc).toHaveBeenCalledWith("guard_price_lookups_total", { outcome: "over-bound" });
    expect(await lookupRows(sid)).toHaveLength(MAX_PENDING_PRICE_LOOKUPS);
    // Once room is back, a later status of it queues its lookup.
    await runInDurableObject(guard(sid), (_i, state) => {
      state.storage.sql.exec("DELETE FROM outbox WHERE kind = 'price-lookup' AND payload = '{}'");
    });
    await guard(sid).record(event(messageStatus(sid, sendSid, "read")), null);
    expect(await lookupRows(sid)).toHaveLength(1);
  });
});

describe("readPrice", () => {
  it("gives the USD amount, or says why there is none and whether to look again", () => {
    expect(readPrice({ usd: 0.0158, unit: "USD", status: "delivered" })).toBe(0.0158);
    expect(readPrice({ usd: 0.0158, unit: "usd", status: "delivered" })).toBe(0.0158);
    const reasons = [null, { usd: null, unit: null, status: "sent" }, { usd: 0.01, unit: "EUR", status: "delivered" }].map((found) => {
      try {
        readPrice(found);
        return null;
      } catch (error) {
        return error instanceof PriceUnavailable ? error.permanent : error;
      }
    });
    expect(reasons).toEqual([true, false, true]);
  });
});
