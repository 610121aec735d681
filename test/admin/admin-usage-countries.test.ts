// GET /admin/accounts/:sid/usage by destination country (the pumping signal): sends made through the REST
// egress gate (workerd, Twilio mocked), per bucket and over the range, refusals counted as blocked, and
// every settlement (Twilio's error, a call's real minutes) moving the country figure once. And the
// account list's spend today, which counts those sends too.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import { classifyWebhook } from "../../src/ledger/classify.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { destinationOf } from "../../src/egress/destination.ts";
import { issueEgressKey } from "../../src/egress/keys.ts";
import { adminCaller, WORKER } from "../support/admin.ts";
import { ALERTS, TWILIO_API, mockOutbound } from "../support/origin.ts";
import { callStatus, messageStatus, uniqueSid } from "../support/twilio.ts";

const HOUR = 3_600_000;
/** Five years ahead of the real clock (never a fixed date): alarms on the real clock never prune these buckets. */
const T0 = Date.parse(`${new Date().getUTCFullYear() + 5}-06-15T10:20:00.000Z`);
const US = "+14155552671";
const GB = "+447400123456";
const MD = "+37360123456";
const enforce = { ...env, EGRESS_MODE: "enforce" } as GuardEnv;

type Country = { country: string; sends: number; usd: number; blocked: number };
type Series = { points: Array<{ start: number; usd: number; events: number; countries: Country[] }>; countries: Array<Country & { firstSentAt: number | null }> };

let outbound: ReturnType<typeof mockOutbound>;
/** Twilio's answer to the next send: created (with a new Sid) unless a test says otherwise. */
let twilioAnswer: () => Response;
const created = (prefix: "SM" | "CA") => () => new Response(JSON.stringify({ sid: uniqueSid(prefix), status: "queued", price: null }), { status: 201 });
beforeEach(() => {
  twilioAnswer = created("SM");
  outbound = mockOutbound([
    [TWILIO_API, () => twilioAnswer()],
    [ALERTS, () => new Response("ok")],
  ]);
});
afterEach(() => outbound.restore());

function guard(sid: string): DurableObjectStub<AccountGuard> {
  return env.ACCOUNT_GUARD.getByName(sid);
}

/** An account allowed to send to the US and the UK only, with an egress key; calls priced per country. */
async function account(): Promise<{ sid: string; auth: string }> {
  const sid = uniqueSid();
  await guard(sid).setPolicy(sid, {
    limits: [{ window: "day", usd: 50 }],
    prices: { sms: { US: 0.0083, GB: 0.04, "*": 0.1 }, voice: { GB: 0.1, "*": 0.4 } },
    egress: { countries: ["US", "GB"], maxCallMinutes: 10 },
  });
  const key = await issueEgressKey();
  await guard(sid).issueEgressKey(sid, key.id, key.hash);
  return { sid, auth: `Basic ${btoa(`${sid}:${key.key}`)}` };
}

/** One send through the gate at `atMs`, its settlement (after the answer) done. */
async function send(sid: string, auth: string, atMs: number, resource: "Messages" | "Calls", to: string): Promise<number> {
  const form: Record<string, string> = resource === "Messages" ? { To: to, From: "+15005550006", Body: "hello" } : { To: to, From: "+15005550006", Url: "https://app.test/twiml" };
  const ctx = createExecutionContext();
  const response = await createApp({ now: () => atMs }).fetch(
    new Request(`${WORKER}/twilio/api.twilio.com/2010-04-01/Accounts/${sid}/${resource}.json`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": "203.0.113.9" },
      body: new URLSearchParams(form).toString(),
    }),
    enforce,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return response.status;
}

async function usage(sid: string, by: "hour" | "day", atMs: number): Promise<Series> {
  const response = await adminCaller({ now: atMs })("GET", `/admin/accounts/${sid}/usage?by=${by}`);
  expect(response.status).toBe(200);
  return (await response.json()) as Series;
}

describe("GET /admin/accounts/:sid/usage: sends by destination country", () => {
  it("answers each bucket's sends per country, refusals as blocked, and the total over the range", async () => {
    const { sid, auth } = await account();
    const earlier = T0 - 3 * HOUR;
    expect(await send(sid, auth, earlier, "Messages", US)).toBe(201);
    const statuses = [];
    for (const to of [US, US, GB, MD, MD]) statuses.push(await send(sid, auth, T0 + statuses.length * 1000, "Messages", to));
    expect(statuses).toEqual([201, 201, 201, 400, 400]);

    const hourly = await usage(sid, "hour", T0 + 60_000);
    expect(hourly.points.at(-1)!.countries).toEqual([
      { country: "US", sends: 2, usd: 0.0166, blocked: 0 },
      { country: "GB", sends: 1, usd: 0.04, blocked: 0 },
      { country: "MD", sends: 0, usd: 0, blocked: 2 },
    ]);
    expect(hourly.points.at(-4)!.countries).toEqual([{ country: "US", sends: 1, usd: 0.0083, blocked: 0 }]);
    expect(hourly.points.filter((p) => p.countries.length > 0)).toHaveLength(2);
    expect(hourly.countries).toEqual([
      { country: "US", sends: 3, usd: 0.0249, blocked: 0, firstSentAt: earlier },
      { country: "GB", sends: 1, usd: 0.04, blocked: 0, firstSentAt: T0 + 2000 },
      { country: "MD", sends: 0, usd: 0, blocked: 2, firstSentAt: null },
    ]);
    const daily = await usage(sid, "day", T0 + 60_000);
    expect(daily.points.at(-1)!.countries.map((c) => [c.country, c.sends, c.blocked])).toEqual([["US", 3, 0], ["GB", 1, 0], ["MD", 0, 2]]);
  });

  it("gives a send back to its country when Twilio answers an error (the reservation is released)", async () => {
    const { sid, auth } = await account();
    expect(await send(sid, auth, T0, "Messages", GB)).toBe(201);
    twilioAnswer = () => new Response(JSON.stringify({ code: 21610, message: "Attempt to send to unsubscribed recipient", status: 400 }), { status: 400 });
    expect(await send(sid, auth, T0 + 1000, "Messages", GB)).toBe(400);
    const hourly = await usage(sid, "hour", T0 + 60_000);
    expect(hourly.points.at(-1)!.countries).toEqual([{ country: "GB", sends: 1, usd: 0.04, blocked: 0 }]);
    expect((await usage(sid, "day", T0 + 60_000)).countries).toMatchObject([{ country: "GB", sends: 1, usd: 0.04 }]);
  });

  it("moves a call's country figure from its reserved minutes to the minutes it lasted, once", async () => {
    const { sid, auth } = await account();
    const callSid = uniqueSid("CA");
    twilioAnswer = () => new Response(JSON.stringify({ sid: callSid, status: "queued" }), { status: 201 });
    expect(await send(sid, auth, T0, "Calls", GB)).toBe(201);
    // Reserved at maxCallMinutes (10) × 0.1 USD.
    expect((await usage(sid, "hour", T0 + 1000)).countries).toMatchObject([{ country: "GB", sends: 1, usd: 1 }]);
    const completed = classifyWebhook(new Map(callStatus(sid, callSid, "completed", { CallDuration: "95" })));
    if (completed.kind === "not-billable") throw new Error(completed.reason);
    for (let i = 0; i < 2; i++) await guard(sid).record(completed, null, T0 + 2 * HOUR); // a retry changes nothing
    const hourly = await usage(sid, "hour", T0 + 2 * HOUR);
    expect(hourly.points.at(-3)!.countries).toEqual([{ country: "GB", sends: 1, usd: 0.2, blocked: 0 }]);
    expect(hourly.countries).toMatchObject([{ country: "GB", sends: 1, usd: 0.2 }]);
  });

  it("keeps a send in its country, at the counted price, when its status callback counted it before Twilio's answer settled it", async () => {
    const { sid } = await account();
    const messageSid = uniqueSid("SM");
    const facts = { kind: "message" as const, channel: "sms" as const, destination: destinationOf(GB).destination, segments: 1, minutes: 0, mms: false, hasStatusCallback: true };
    const reserved = await guard(sid).reserveSend({ accountSid: sid, atMs: T0, mode: "enforce", key: null, send: facts });
    if (!reserved.ok) throw new Error(reserved.refusal.reason);
    // The app's own StatusCallback (no reservation named) reaches the ledger first, with the real price.
    const delivered = classifyWebhook(new Map(messageStatus(sid, messageSid, "delivered", { Price: "-0.05", PriceUnit: "USD" })));
    if (delivered.kind === "not-billable") throw new Error(delivered.reason);
    await guard(sid).record(delivered, null, T0 + 1000);
    for (let i = 0; i < 2; i++) await guard(sid).settleSend(sid, reserved.reservationId, { type: "accepted", sid: messageSid }, T0 + 2000);
    const hourly = await usage(sid, "hour", T0 + 60_000);
    expect(hourly.countries).toMatchObject([{ country: "GB", sends: 1, usd: 0.05, blocked: 0 }]);
    // The bucket counts it once too: the callback's event, the reservation released.
    expect(hourly.points.at(-1)).toMatchObject({ events: 1, usd: 0.05 });
  });

  it("answers no countries for an account that never sent through the gate", async () => {
    const hourly = await usage(uniqueSid(), "hour", T0);
    expect(hourly.countries).toEqual([]);
    expect(hourly.points.every((p) => p.countries.length === 0)).toBe(true);
  });
});

describe("GET /admin/accounts: the egress gate's sends", () => {
  it("shows the gate's sends in the account list's spend today, as it does webhooks'", async () => {
    const { sid, auth } = await account();
    expect(await send(sid, auth, T0, "Messages", GB)).toBe(201);
    type Row = { sid: string; spendTodayUsd: number; eventsToday: number };
    const listed = async () => ((await (await adminCaller({ now: T0 + 1000 })("GET", `/admin/accounts?q=${sid}`)).json()) as { accounts: Row[] }).accounts[0];
    // The push reaches the directory after the answer: wait for it (bounded), never for a fixed time.
    for (let i = 0; i < 200 && (await listed())?.eventsToday !== 1; i++) await scheduler.wait(10);
    expect(await listed()).toMatchObject({ sid, spendTodayUsd: 0.04, eventsToday: 1 });
  });
});
