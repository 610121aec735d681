// The REST egress gate inside workerd: the Worker's /twilio/* route with its Durable Objects, Twilio's API
// mocked with a fetch spy. The real twilio client drives it in test/node/egress.test.ts.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Router } from "itty-router";
import { createApp, EGRESS_ROUTE } from "../../src/app.ts";
import type { LedgerRetryMessage } from "../../src/breaker/ledger-queue.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { getConfig } from "../../src/config/config.ts";
import { AuthLimiter } from "../../src/egress/auth-limit.ts";
import { utf8 } from "../../src/util/encoding.ts";
import { addedFields, handleEgress, statusCallbackField, type EgressDeps, type EgressLedger } from "../../src/egress/gate.ts";
import { issueEgressKey } from "../../src/egress/keys.ts";
import { drainAlarms } from "../support/guard.ts";
import { Logger } from "../../src/observability/log.ts";
import { metrics } from "../../src/observability/metrics.ts";
import { sendFacts } from "../../src/egress/send.ts";
import { ReservationBatcher } from "../../src/egress/reservation-batches.ts";
import { SettlementQueue, type SettlementItem } from "../../src/egress/settlements.ts";
import { ALERTS, TWILIO_API, mockOutbound, type Captured } from "../support/origin.ts";
import { PARENT_SID, PRIMARY_TOKEN, messageStatus, signedForm, uniqueSid, basicAuth } from "../support/twilio.ts";
import { guard } from "../support/guard.ts";

const GUARD = "https://guard.example.com";
const US = "+14155552671";
const enforce = { ...env, EGRESS_MODE: "enforce" } as GuardEnv;
const reportOnly = { ...env, EGRESS_MODE: "report-only" } as GuardEnv;
const off = { ...env, EGRESS_MODE: "off" } as GuardEnv;


let outbound: ReturnType<typeof mockOutbound>;
let twilioAnswer: (req: Captured) => Response | Promise<Response>;
const created = () => new Response(JSON.stringify({ sid: uniqueSid("SM"), status: "queued", price: null }), { status: 201, headers: { "content-type": "application/json" } });

beforeEach(() => {
  twilioAnswer = created;
  outbound = mockOutbound([
    [TWILIO_API, (req) => twilioAnswer(req)],
    [ALERTS, () => new Response("ok")],
  ]);
});
afterEach(() => outbound.restore());

async function call(path: string, init: { method?: string; auth?: string; form?: Record<string, string>; ip?: string } = {}, e: GuardEnv = enforce, app = createApp()): Promise<Response> {
  const headers: Record<string, string> = { "cf-connecting-ip": init.ip ?? "203.0.113.1" };
  if (init.auth !== undefined) headers.authorization = init.auth;
  if (init.form !== undefined) headers["content-type"] = "application/x-www-form-urlencoded";
  const ctx = createExecutionContext();
  const response = await app.fetch(
    new Request(`${GUARD}${path}`, { method: init.method ?? (init.form ? "POST" : "GET"), headers, ...(init.form ? { body: new URLSearchParams(init.form).toString() } : {}) }),
    e,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return response;
}

const messagesPath = (sid: string) => `/twilio/api.twilio.com/2010-04-01/Accounts/${sid}/Messages.json`;

/** A subaccount with a policy and an egress key; the directory knows nothing of it (keys need no token). */
async function account(policy: Record<string, unknown> = { limits: [{ window: "day", usd: 50 }] }) {
  const sid = uniqueSid();
  await guard(sid).setPolicy(sid, policy);
  const key = await issueEgressKey();
  await guard(sid).issueEgressKey(sid, key.id, key.hash);
  return { sid, key: key.key, auth: basicAuth(sid, key.key) };
}

async function dayTotals(sid: string) {
  const day = (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
  return { usd: day.usd, events: day.events };
}

/** The Worker as deployed, with the accounts' settlement calls (only those) failing: reservations go through. */
function failingSettlements(e: GuardEnv): GuardEnv {
  const getByName = (name: string) => {
    const real = env.ACCOUNT_GUARD.getByName(name);
    return { reserveSend: (req: Parameters<EgressLedger["reserveSend"]>[0]) => real.reserveSend(req), settleSends: () => Promise.reject(new Error("Durable Object unavailable")) };
  };
  return { ...e, ACCOUNT_GUARD: { getByName } as unknown as GuardEnv["ACCOUNT_GUARD"] };
}

/** A test that waits on the retry queue's consumer (Miniflare delivers a batch within about a second): its waitFor's bound, not the default 5 s. */
const QUEUE_TEST_TIMEOUT_MS = 20_000;

/** The states of the account's reservations, sorted. */
function reservationStates(sid: string): Promise<string[]> {
  return runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec<{ state: string }>("SELECT state FROM egress_reservations ORDER BY state").toArray().map((r) => r.state));
}

const sends = () => outbound.to(TWILIO_API).filter((c) => c.method === "POST" && c.url.endsWith("/Messages.json"));

describe("egress gate: what it refuses before anything is fetched", () => {
  it("answers 404 (Twilio-shaped) while EGRESS_MODE is off", async () => {
    const r = await call(messagesPath(PARENT_SID), { auth: basicAuth(PARENT_SID, PRIMARY_TOKEN), form: { To: US, Body: "x" } }, off);
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ code: 20404, status: 404 });
    expect(outbound.to(TWILIO_API)).toHaveLength(0);
  });
  it("answers a malformed setting through the error funnel: 500 naming it, nothing fetched", async () => {
    const r = await call(messagesPath(PARENT_SID), { auth: basicAuth(PARENT_SID, PRIMARY_TOKEN), form: { To: US, Body: "x" } }, { ...enforce, EGRESS_MODE: "bogus" });
    expect(r.status).toBe(500);
    expect(await r.json()).toMatchObject({ error: "config", setting: "EGRESS_MODE" });
    expect(outbound.to(TWILIO_API)).toHaveLength(0);
  });
  it("matches the gate route exactly as itty-router's /twilio/* (dispatched without the router)", () => {
    const itty = Router();
    itty.all("/twilio/*", () => new Response());
    expect(EGRESS_ROUTE.source).toBe(itty.routes[0]![1].source);
    expect(EGRESS_ROUTE.flags).toBe(itty.routes[0]![1].flags);
    for (const path of ["/twilio", "/twilio/", "/twilio/api.twilio.com/2010-04-01/Accounts.json"]) expect(EGRESS_ROUTE.test(path), path).toBe(true);
    for (const path of ["/twiliox", "/x/twilio/api.twilio.com", "/Twilio/api.twilio.com"]) expect(EGRESS_ROUTE.test(path), path).toBe(false);
  });
  it("routes /twilio (no host) to the gate too: refused as no Twilio host", async () => {
    const r = await call("/twilio", { auth: basicAuth(PARENT_SID, PRIMARY_TOKEN) });
    expect(r.status).toBe(403);
    expect(await r.json()).toMatchObject({ details: { reason: "host-not-allowed" } });
  });
  it("refuses a host that is not a Twilio product host", async () => {
    const r = await call("/twilio/evil.example.com/2010-04-01/Accounts.json", { auth: basicAuth(PARENT_SID, PRIMARY_TOKEN) });
    expect(r.status).toBe(403);
    expect(await r.json()).toMatchObject({ code: 20403, details: { reason: "host-not-allowed" } });
    expect(outbound.to(TWILIO_API)).toHaveLength(0);
  });
  it("answers 401 / 20003 to wrong credentials, without echoing them", async () => {
    const r = await call(messagesPath(PARENT_SID), { auth: basicAuth(PARENT_SID, "wrong-token-guess-123"), form: { To: US, Body: "x" }, ip: "198.51.100.7" });
    expect(r.status).toBe(401);
    const text = await r.text();
    expect(JSON.parse(text)).toMatchObject({ code: 20003, status: 401, more_info: "https://www.twilio.com/docs/errors/20003" });
    expect(text).not.toContain("wrong-token-guess-123");
    expect(outbound.to(TWILIO_API)).toHaveLength(0);
  });
  it("answers 401 when the path names another account than the credentials", async () => {
    const { key } = await account();
    const r = await call(messagesPath(uniqueSid()), { auth: basicAuth(PARENT_SID, key), form: { To: US, Body: "x" } });
    expect(r.status).toBe(401);
  });
  it("rate limits credential guessing per client address", async () => {
    const app = createApp();
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await call(messagesPath(PARENT_SID), { auth: basicAuth(PARENT_SID, `guess-${i}-xxxxxxxx`), form: { To: US }, ip: "192.0.2.99" }, enforce, app)).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
    // The limited address is refused even with the right token; another address is not.
    const limited = await call(messagesPath(PARENT_SID), { auth: basicAuth(PARENT_SID, PRIMARY_TOKEN), form: { To: US, Body: "x" }, ip: "192.0.2.99" }, enforce, app);
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toMatch(/^\d+$/);
    const other = await call(messagesPath(PARENT_SID), { auth: basicAuth(PARENT_SID, PRIMARY_TOKEN), form: { To: US, Body: "x" }, ip: "192.0.2.100" }, enforce, app);
    expect(other.status).toBe(201);
  });
  it("keeps an egress key to its account's messages and calls", async () => {
    const { sid, auth } = await account();
    for (const path of [`/2010-04-01/Accounts/${sid}.json`, `/2010-04-01/Accounts/${sid}/Keys.json`, "/2010-04-01/Accounts.json"]) {
      const r = await call(`/twilio/api.twilio.com${path}`, { auth, method: "POST", form: { Status: "active" } });
      expect(r.status, path).toBe(403);
      expect(await r.json(), path).toMatchObject({ code: 20403, details: { reason: "scope" } });
    }
    // Another product's path names no account: with the parent's credentials it would act as the parent.
    const verify = await call("/twilio/verify.twilio.com/v2/Services", { auth, method: "POST", form: { FriendlyName: "x" } });
    expect(verify.status).toBe(403);
    expect(outbound.to(TWILIO_API)).toHaveLength(0);
  });
  it("refuses a revoked egress key", async () => {
    const sid = uniqueSid();
    const key = await issueEgressKey();
    await guard(sid).issueEgressKey(sid, key.id, key.hash);
    expect(await guard(sid).revokeEgressKey(sid, key.id)).toBe(true);
    const r = await call(messagesPath(sid), { auth: basicAuth(sid, key.key), form: { To: US, Body: "x" } });
    expect(r.status).toBe(401);
    expect(outbound.to(TWILIO_API)).toHaveLength(0);
  });
});

describe("egress gate: forwarding a send", () => {
  it("forwards an egress key's send with the parent's credentials, adding a StatusCallback to the guard", async () => {
    const { sid, auth } = await account();
    const r = await call(messagesPath(sid), { auth, form: { To: US, From: "+15005550006", Body: "hello" } });
    expect(r.status).toBe(201);
    const [sent] = sends();
    expect(sent!.url).toBe(`${TWILIO_API}/2010-04-01/Accounts/${sid}/Messages.json`);
    expect(sent!.headers.get("authorization")).toBe(basicAuth(PARENT_SID, PRIMARY_TOKEN));
    const form = new URLSearchParams(new TextDecoder().decode(sent!.body));
    expect(form.get("Body")).toBe("hello");
    expect(form.get("StatusCallback")).toMatch(new RegExp(`^${GUARD}/webhooks/_guard/status/[0-9a-f-]{36}$`));
    expect(await dayTotals(sid)).toEqual({ usd: 0.0083, events: 1 });
    const keys = await guard(sid).listEgressKeys();
    expect(keys[0]!.lastUsedAt).not.toBeNull();
  });
  it("forwards the send's body as sent, with its StatusCallback appended as URLSearchParams encodes it", async () => {
    const { sid, auth } = await account();
    const original = new URLSearchParams({ To: US, From: "+15005550006", Body: "héllo & goodbye = 100% (ok)!" }).toString();
    const r = await call(messagesPath(sid), { auth, form: { To: US, From: "+15005550006", Body: "héllo & goodbye = 100% (ok)!" } });
    expect(r.status).toBe(201);
    expect(sends().at(-1)!.headers.get("content-type")).toBe("application/x-www-form-urlencoded");
    const body = new TextDecoder().decode(sends().at(-1)!.body);
    const id = body.split("%2F").at(-1)!;
    expect(body).toBe(`${original}&${new URLSearchParams({ StatusCallback: `${GUARD}/webhooks/_guard/status/${id}` })}`);
  });
  it("forwards a send without a Content-Type with none added, its body the same bytes", async () => {
    const { sid, auth } = await account();
    const ctx = createExecutionContext();
    const r = await createApp().fetch(new Request(`${GUARD}${messagesPath(sid)}`, { method: "POST", headers: { authorization: auth }, body: utf8("To=%2B14155552671&Body=sans%20type") }), enforce, ctx);
    await waitOnExecutionContext(ctx);
    expect(r.status).toBe(201);
    const sent = sends().at(-1)!;
    expect(sent.headers.get("content-type")).toBeNull();
    const body = new TextDecoder().decode(sent.body);
    expect(body).toMatch(/^To=%2B14155552671&Body=sans%20type&StatusCallback=/);
  });
  it("relays Twilio's status, body and headers, without those of the connection", async () => {
    const { sid, auth } = await account();
    const answer = JSON.stringify({ sid: uniqueSid("SM"), status: "queued", price: null });
    twilioAnswer = () => new Response(answer, {
      status: 201,
      headers: [["content-type", "application/json"], ["twilio-request-id", "RQ123"], ["x-home-region", "us1"], ["vary", "Accept"], ["vary", "Origin"], ["set-cookie", "a=b"], ["connection", "keep-alive"], ["keep-alive", "timeout=5"], ["upgrade", "h2c"]],
    });
    const r = await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } });
    expect(r.status).toBe(201);
    expect(await r.text()).toBe(answer);
    expect(r.headers.get("content-type")).toBe("application/json");
    expect(r.headers.get("twilio-request-id")).toBe("RQ123");
    expect(r.headers.get("x-home-region")).toBe("us1");
    expect(r.headers.get("vary")).toBe("Accept, Origin");
    for (const name of ["set-cookie", "connection", "keep-alive", "upgrade", "transfer-encoding", "content-encoding"]) expect(r.headers.has(name)).toBe(false);
  });
  it("forwards the account's own token unchanged and keeps the app's StatusCallback", async () => {
    const r = await call(messagesPath(PARENT_SID), { auth: basicAuth(PARENT_SID, PRIMARY_TOKEN), form: { To: US, Body: "x", StatusCallback: "https://app.test/cb" } });
    expect(r.status).toBe(201);
    const sent = sends().at(-1)!;
    expect(sent.headers.get("authorization")).toBe(basicAuth(PARENT_SID, PRIMARY_TOKEN));
    expect(new URLSearchParams(new TextDecoder().decode(sent.body)).getAll("StatusCallback")).toEqual(["https://app.test/cb"]);
  });
  it("sets TimeLimit on a call without one and reserves maxCallMinutes at the destination's rate", async () => {
    const { sid, auth } = await account({ limits: [{ window: "day", usd: 50 }], prices: { voice: { US: 0.014, "*": 0.4 } }, egress: { maxCallMinutes: 10 } });
    twilioAnswer = () => new Response(JSON.stringify({ sid: uniqueSid("CA"), status: "queued" }), { status: 201 });
    const r = await call(`/twilio/api.twilio.com/2010-04-01/Accounts/${sid}/Calls.json`, { auth, form: { To: "+37360123456", From: "+15005550006", Url: "https://app.test/twiml" } });
    expect(r.status).toBe(201);
    const sent = outbound.to(TWILIO_API).at(-1)!;
    expect(new URLSearchParams(new TextDecoder().decode(sent.body)).get("TimeLimit")).toBe("600");
    expect(await dayTotals(sid)).toEqual({ usd: 4, events: 1 });
  });
  it("relays Twilio's error and releases the reservation", async () => {
    const { sid, auth } = await account();
    twilioAnswer = () => new Response(JSON.stringify({ code: 21211, message: "Invalid 'To' Phone Number", more_info: "https://www.twilio.com/docs/errors/21211", status: 400 }), { status: 400 });
    const r = await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ code: 21211 });
    expect(await dayTotals(sid)).toEqual({ usd: 0, events: 0 });
  });
  it("binds a success to its Sid: the status callback does not count it again", async () => {
    const { sid, auth } = await account();
    const messageSid = uniqueSid("SM");
    twilioAnswer = () => new Response(JSON.stringify({ sid: messageSid, status: "queued", price: null }), { status: 201 });
    await call(messagesPath(sid), { auth, form: { To: US, Body: "x", StatusCallback: `${GUARD}/webhooks/status` } });
    // Its delivered status callback reaches the ledger as any status callback does.
    await guard(sid).record({ kind: "message-status", sid: messageSid, accountSid: sid, status: "delivered", dedupeKey: `${messageSid}:delivered`, countKey: `msg:${messageSid}`, units: { segments: 1, media: 0 }, billable: true }, null);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0083, events: 1 });
  });
  it("replaces the estimate with the price Twilio reports", async () => {
    const { sid, auth } = await account();
    const messageSid = uniqueSid("SM");
    twilioAnswer = () => new Response(JSON.stringify({ sid: messageSid, status: "queued", price: null }), { status: 201 });
    await call(messagesPath(sid), { auth, form: { To: US, Body: "a".repeat(200) } });
    expect(await dayTotals(sid)).toEqual({ usd: 0.0166, events: 1 });
    await guard(sid).record({ kind: "message-status", sid: messageSid, accountSid: sid, status: "sent", dedupeKey: `${messageSid}:sent`, countKey: `msg:${messageSid}`, units: { segments: 2, media: 0 }, billable: true, reportedPriceUsd: 0.0158 }, null);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0158, events: 1 });
  });
  it("settles every send of a burst once, its successes bound and its errors released, however the settlements were batched", async () => {
    const { sid, auth } = await account();
    let n = 0;
    twilioAnswer = () => (n++ % 3 === 2 ? new Response(JSON.stringify({ code: 21211, message: "Invalid 'To' Phone Number", status: 400 }), { status: 400 }) : created());
    const answers = await Promise.all(Array.from({ length: 12 }, () => call(messagesPath(sid), { auth, form: { To: US, Body: "x" } })));
    expect(answers.map((r) => r.status).sort()).toEqual([...Array(8).fill(201), ...Array(4).fill(400)]);
    const states = await runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM egress_reservations GROUP BY state ORDER BY state").toArray());
    expect(states.map((r) => ({ ...r }))).toEqual([{ state: "bound", n: 8 }, { state: "released", n: 4 }]);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0664, events: 8 });
  });
  it("lets the account's next reservation carry a settlement still held back, in its own Durable Object call", async () => {
    const { sid, auth } = await account();
    let endHold = () => {};
    const held = new SettlementQueue({ wait: () => new Promise<void>((resolve) => (endHold = resolve)) });
    const app = createApp({ egressSettlements: held });
    const send = async (body: string) => {
      const ctx = createExecutionContext();
      const response = await app.fetch(new Request(`${GUARD}${messagesPath(sid)}`, { method: "POST", headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ To: US, Body: body }).toString() }), enforce, ctx);
      return { response, ctx };
    };
    const first = await send("first");
    expect(first.response.status).toBe(201);
    const states = () => runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec<{ state: string }>("SELECT state FROM egress_reservations ORDER BY at_ms, state").toArray().map((r) => r.state));
    expect(await states()).toEqual(["held"]);
    const second = await send("second");
    expect(second.response.status).toBe(201);
    // The first send's hold has not ended: its settlement went with the second send's reservation.
    expect((await states()).sort()).toEqual(["bound", "held"]);
    expect(held.pending).toBe(1);
    endHold();
    await waitOnExecutionContext(first.ctx);
    await waitOnExecutionContext(second.ctx);
    expect(await states()).toEqual(["bound", "bound"]);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0166, events: 2 });
  });
  it("applies the settlements a reservation carries; one that fails blocks neither the reservation nor the others", async () => {
    const { sid } = await account();
    const send = sendFacts("message", new URLSearchParams({ To: US, Body: "x" }));
    const reserve = async (settle: SettlementItem[]) => {
      const answer = await guard(sid).reserveSend({ accountSid: sid, atMs: Date.now(), mode: "enforce", key: null, send, settle });
      if (!answer.ok) throw new Error(`refused: ${answer.refusal.reason}`);
      return answer.reservationId;
    };
    const [a, b] = [await reserve([]), await reserve([])];
    // A price that cannot be stored fails its own settlement; the release of b and the reservation c go through.
    const c = await reserve([{ reservationId: a, settlement: { type: "accepted", sid: uniqueSid("SM"), priceUsd: Number.NaN } }, { reservationId: b, settlement: { type: "rejected" } }]);
    const states = await runInDurableObject(guard(sid), (_i, state) => Object.fromEntries(state.storage.sql.exec<{ id: string; state: string; usd_micros: number }>("SELECT id, state, usd_micros FROM egress_reservations").toArray().map((r) => [r.id, [r.state, r.usd_micros]])));
    expect(states).toEqual({ [a]: ["held", 8300], [b]: ["released", 8300], [c]: ["held", 8300] });
    expect(await dayTotals(sid)).toEqual({ usd: 0.0166, events: 2 });
  });
  it("hands the settlements a failed reservation call carried back to the account's writer", async () => {
    const sid = uniqueSid();
    const key = await issueEgressKey();
    let endHold = () => {};
    const queue = new SettlementQueue({ wait: () => new Promise<void>((resolve) => (endHold = resolve)) });
    const waiting: SettlementItem = { reservationId: "00000000-0000-4000-8000-000000000001", settlement: { type: "rejected" } };
    const written: SettlementItem[][] = [];
    const pending: Array<Promise<unknown>> = [];
    const writer = queue.add(sid, waiting, async (items) => written.push(items), () => {});
    const carried: Array<SettlementItem[] | undefined> = [];
    const ledger: EgressLedger = {
      reserveSend: async (req) => {
        carried.push(req.settle);
        throw new Error("Durable Object reset");
      },
      settleSends: async (_sid, items) => void written.push(items),
      reserveSends: () => Promise.reject(new Error("a lone send is reserved with reserveSend")),
      checkEgressKey: async () => true,
    };
    const request = new Request(`${GUARD}${messagesPath(sid)}`, { method: "POST", headers: { authorization: basicAuth(sid, key.key), "content-type": "application/x-www-form-urlencoded" }, body: "To=%2B14155552671&Body=x" });
    const deps: EgressDeps = {
      config: getConfig(enforce), logger: new Logger(), mode: "enforce", now: Date.now, resolveTokens: async () => null, ledger: () => ledger,
      failures: { fail: () => Promise.reject(new Error("no credential failure here")) }, limiter: new AuthLimiter(), waitUntil: (p) => void pending.push(p), reservations: new ReservationBatcher(), settlements: queue,
      retryQueue: { send: () => Promise.reject(new Error("nothing is queued here")) } as unknown as Queue<LedgerRetryMessage>,
    };
    await expect(handleEgress(request, deps, {})).rejects.toThrow("Durable Object reset");
    expect(carried).toEqual([[waiting]]);
    await Promise.all(pending);
    endHold();
    await writer;
    expect(written).toEqual([[waiting]]);
  });
  it("queues on LEDGER_RETRY a settlement that neither the reservation carrying it nor the writer could write", async () => {
    const sid = uniqueSid();
    const key = await issueEgressKey();
    let endHold = () => {};
    const queue = new SettlementQueue({ wait: () => new Promise<void>((resolve) => (endHold = resolve)) });
    const messageSid = uniqueSid("SM");
    const reservations = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"];
    const carried: Array<SettlementItem[] | undefined> = [];
    const ledger: EgressLedger = {
      reserveSend: async (req) => {
        carried.push(req.settle);
        // The first send is reserved; the second call, carrying the first's settlement, fails.
        if (carried.length > 1) throw new Error("Durable Object reset");
        return { ok: true, reservationId: reservations[0]!, estimateUsd: 0.0083, setTimeLimitS: null, wouldRefuse: null, newCountry: false };
      },
      settleSends: () => Promise.reject(new Error("Durable Object overloaded")),
      reserveSends: () => Promise.reject(new Error("a lone send is reserved with reserveSend")),
      checkEgressKey: async () => true,
    };
    const queued: LedgerRetryMessage[] = [];
    const pending: Array<Promise<unknown>> = [];
    const deps: EgressDeps = {
      config: getConfig(enforce), logger: new Logger(), mode: "enforce", now: Date.now, resolveTokens: async () => null, ledger: () => ledger,
      failures: { fail: () => Promise.reject(new Error("no credential failure here")) }, limiter: new AuthLimiter(), waitUntil: (p) => void pending.push(p), reservations: new ReservationBatcher(), settlements: queue,
      retryQueue: { send: async (m: LedgerRetryMessage) => void queued.push(m) } as unknown as Queue<LedgerRetryMessage>,
      fetch: async () => new Response(JSON.stringify({ sid: messageSid, status: "queued", price: null }), { status: 201 }),
    };
    const request = () => new Request(`${GUARD}${messagesPath(sid)}`, { method: "POST", headers: { authorization: basicAuth(sid, key.key), "content-type": "application/x-www-form-urlencoded" }, body: "To=%2B14155552671&Body=x" });
    expect((await handleEgress(request(), deps, {})).status).toBe(201);
    await expect(handleEgress(request(), deps, {})).rejects.toThrow("Durable Object reset");
    const settlement: SettlementItem = { reservationId: reservations[0]!, settlement: { type: "accepted", sid: messageSid, priceUsd: null } };
    expect(carried).toEqual([undefined, [settlement]]);
    expect(queued).toEqual([]);
    endHold();
    await Promise.all(pending);
    expect(queued).toEqual([{ v: 2, kind: "settlements", accountSid: sid, items: [settlement], atMs: expect.any(Number) }]);
    expect(queue.pending).toBe(0);
  });
  it("settles through the retry queue's consumer when the Durable Object's settlement call fails: bound and released once", async () => {
    const { sid, auth } = await account();
    const inc = vi.spyOn(metrics, "inc");
    const broken = failingSettlements(enforce);
    let n = 0;
    twilioAnswer = () => (n++ === 0 ? created() : new Response(JSON.stringify({ code: 21211, message: "Invalid 'To' Phone Number", status: 400 }), { status: 400 }));
    const app = createApp();
    expect((await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } }, broken, app)).status).toBe(201);
    expect((await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } }, broken, app)).status).toBe(400);
    expect(inc).toHaveBeenCalledWith("guard_egress_settle_failures_total", { stage: "direct" });
    // The queue's consumer (this Worker's queue handler, run by Miniflare) writes them to the real object.
    await vi.waitFor(async () => expect(await reservationStates(sid)).toEqual(["bound", "released"]), { timeout: 15_000, interval: 100 });
    expect(await dayTotals(sid)).toEqual({ usd: 0.0083, events: 1 });
  }, QUEUE_TEST_TIMEOUT_MS);
  it("answers 409, never 5xx, when Twilio does not answer; the guard's status callback then binds it once", async () => {
    const { sid, auth } = await account();
    twilioAnswer = () => new Promise<Response>(() => {});
    const app = createApp({ upstreamTimeoutMs: 50 });
    const r = await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } }, enforce, app);
    expect(r.status).toBe(409);
    expect(await r.json()).toMatchObject({ code: 20409, details: { reason: "upstream-unknown" } });
    expect(await dayTotals(sid)).toEqual({ usd: 0.0083, events: 1 });
    // Twilio had accepted it: its status callback reaches the guard's own status path.
    const callback = new URLSearchParams(new TextDecoder().decode(sends().at(-1)!.body)).get("StatusCallback")!;
    const messageSid = uniqueSid("SM");
    const ctx = createExecutionContext();
    const answer = await createApp().fetch(await signedForm(callback, messageStatus(PARENT_SID, messageSid, "delivered", { AccountSid: PARENT_SID })), enforce, ctx);
    await waitOnExecutionContext(ctx);
    expect(answer.status).toBe(204);
    const reservationId = callback.split("/").at(-1)!;
    // The parent's callback above exercised the route; bind this account's reservation as its callback would.
    await guard(sid).record({ kind: "message-status", sid: messageSid, accountSid: sid, status: "delivered", dedupeKey: `${messageSid}:delivered`, countKey: `msg:${messageSid}`, units: { segments: 1, media: 0 }, billable: true }, null, Date.now(), reservationId);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0083, events: 1 });
  });
});

describe("egress gate: a send Twilio never answered", () => {
  const hangingPost = (list: () => Response) => (req: Captured) => (req.method === "POST" ? new Promise<Response>(() => {}) : list());
  it("is bound to the message Twilio created, found in its Message list: counted once", async () => {
    const { sid, auth } = await account();
    const messageSid = uniqueSid("SM");
    twilioAnswer = hangingPost(() => new Response(JSON.stringify({
      messages: [
        { sid: uniqueSid("SM"), to: US, from: "+15005550006", body: "another text", date_created: new Date().toUTCString() },
        { sid: messageSid, to: US, from: "+15005550006", body: "lost answer", date_created: new Date().toUTCString() },
      ],
    }), { status: 200 }));
    const r = await call(messagesPath(sid), { auth, form: { To: US, From: "+15005550006", Body: "lost answer" } }, enforce, createApp({ upstreamTimeoutMs: 50 }));
    expect(r.status).toBe(409);
    const lookup = outbound.to(TWILIO_API).find((c) => c.method === "GET")!;
    expect(lookup.url).toBe(`${TWILIO_API}/2010-04-01/Accounts/${sid}/Messages.json?To=%2B14155552671&PageSize=20&From=%2B15005550006`);
    expect(lookup.headers.get("authorization")).toBe(basicAuth(PARENT_SID, PRIMARY_TOKEN));
    const reservation = await runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec<{ state: string; sid: string | null }>("SELECT state, sid FROM egress_reservations").one());
    expect(reservation).toEqual({ state: "bound", sid: messageSid });
    // Its status callback, wherever it goes, finds it counted.
    await guard(sid).record({ kind: "message-status", sid: messageSid, accountSid: sid, status: "delivered", dedupeKey: `${messageSid}:delivered`, countKey: `msg:${messageSid}`, units: { segments: 1, media: 0 }, billable: true }, null);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0083, events: 1 });
  });
  it("is bound from the Message list through the retry queue when its settlement call fails", async () => {
    const { sid, auth } = await account();
    const messageSid = uniqueSid("SM");
    twilioAnswer = hangingPost(() => new Response(JSON.stringify({ messages: [{ sid: messageSid, to: US, from: "+15005550006", body: "lost answer", date_created: new Date().toUTCString() }] }), { status: 200 }));
    const r = await call(messagesPath(sid), { auth, form: { To: US, From: "+15005550006", Body: "lost answer" } }, failingSettlements(enforce), createApp({ upstreamTimeoutMs: 50 }));
    expect(r.status).toBe(409);
    await vi.waitFor(async () => expect(await reservationStates(sid)).toEqual(["bound"]), { timeout: 15_000, interval: 100 });
    const bound = await runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec<{ sid: string | null }>("SELECT sid FROM egress_reservations").one().sid);
    expect(bound).toBe(messageSid);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0083, events: 1 });
  }, QUEUE_TEST_TIMEOUT_MS);
  it("once bound from the Message list, gets its real price looked up after its final status: counted once, at Twilio's price", async () => {
    const { sid, auth } = await account();
    const messageSid = uniqueSid("SM");
    const found = { sid: messageSid, to: US, from: "+15005550006", body: "lost answer", date_created: new Date().toUTCString() };
    twilioAnswer = (req) => {
      if (req.method === "POST") return new Promise<Response>(() => {});
      if (req.url.includes(`/Messages/${messageSid}.json`)) return new Response(JSON.stringify({ ...found, status: "delivered", price: "-0.0079", price_unit: "USD" }), { status: 200 });
      return new Response(JSON.stringify({ messages: [found] }), { status: 200 });
    };
    expect((await call(messagesPath(sid), { auth, form: { To: US, From: "+15005550006", Body: "lost answer" } }, enforce, createApp({ upstreamTimeoutMs: 50 }))).status).toBe(409);
    await guard(sid).record({ kind: "message-status", sid: messageSid, accountSid: sid, status: "delivered", dedupeKey: `${messageSid}:delivered`, countKey: `msg:${messageSid}`, units: { segments: 1, media: 0 }, billable: true }, null);
    await drainAlarms(sid);
    expect(outbound.to(TWILIO_API).filter((c) => c.method === "GET" && c.url.endsWith(`/Accounts/${sid}/Messages/${messageSid}.json`))).toHaveLength(1);
    expect(await dayTotals(sid)).toEqual({ usd: 0.0079, events: 1 });
  });
  it("is released when Twilio's Message list shows it was never created", async () => {
    const { sid, auth } = await account();
    twilioAnswer = hangingPost(() => new Response(JSON.stringify({ messages: [] }), { status: 200 }));
    const r = await call(messagesPath(sid), { auth, form: { To: US, From: "+15005550006", Body: "never made" } }, enforce, createApp({ upstreamTimeoutMs: 50 }));
    expect(r.status).toBe(409);
    expect(await dayTotals(sid)).toEqual({ usd: 0, events: 0 });
  });
});

describe("egress gate: rules and limits", () => {
  it("refuses a destination country the policy does not allow (400 / 21408)", async () => {
    const { sid, auth } = await account({ limits: [], egress: { countries: ["US"] } });
    const r = await call(messagesPath(sid), { auth, form: { To: "+37360123456", Body: "x" } });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ code: 21408, status: 400, details: { reason: "country" } });
    expect(sends()).toHaveLength(0);
  });
  it("refuses past perDestination with 429 / 20429 and Retry-After", async () => {
    const { sid, auth } = await account({ limits: [], egress: { perDestination: { window: "hour", max: 2 } } });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } })).status);
    expect(statuses).toEqual([201, 201, 429]);
    const r = await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } });
    expect(r.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await r.json()).toMatchObject({ code: 20429, details: { reason: "per-destination" } });
    expect((await call(messagesPath(sid), { auth, form: { To: "+14155552672", Body: "x" } })).status).toBe(201);
  });
  it("refuses past perPrefix: a block of adjacent numbers", async () => {
    const { sid, auth } = await account({ limits: [], egress: { perPrefix: { window: "hour", max: 2, digits: 2 } } });
    const statuses = [];
    for (const to of ["+14155552601", "+14155552602", "+14155552603"]) statuses.push((await call(messagesPath(sid), { auth, form: { To: to, Body: "x" } })).status);
    expect(statuses).toEqual([201, 201, 429]);
  });
  it("refuses the send that would cross a limit with 403 / 20403, trips the breaker and alerts", async () => {
    const { sid, auth } = await account({ limits: [{ window: "day", events: 2 }], action: "block" });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(messagesPath(sid), { auth, form: { To: US, Body: `x${i}` } })).status);
    expect(statuses).toEqual([201, 201, 403]);
    expect(sends()).toHaveLength(2);
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.breaker.state).toBe("open");
    const alerts = await runInDurableObject(guard(sid), (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE kind LIKE 'alert%' AND payload LIKE '%OPEN%'").one().n);
    expect(alerts).toBeGreaterThan(0);
    const open = await call(messagesPath(sid), { auth, form: { To: US, Body: "y" } });
    expect(await open.json()).toMatchObject({ code: 20403, details: { reason: "breaker-open" } });
  });
  it("report-only forwards what enforce would refuse, and says so", async () => {
    const { sid, auth } = await account({ limits: [], egress: { countries: ["US"] } });
    const r = await call(messagesPath(sid), { auth, form: { To: "+37360123456", Body: "x" } }, reportOnly);
    expect(r.status).toBe(201);
    expect(sends()).toHaveLength(1);
  });
  it("forwards reads unchanged and does not count them", async () => {
    const { sid, auth } = await account();
    twilioAnswer = () => new Response(JSON.stringify({ messages: [] }), { status: 200 });
    const r = await call(`/twilio/api.twilio.com/2010-04-01/Accounts/${sid}/Messages.json?PageSize=20`, { auth });
    expect(r.status).toBe(200);
    expect(outbound.to(TWILIO_API).at(-1)!.url).toBe(`${TWILIO_API}/2010-04-01/Accounts/${sid}/Messages.json?PageSize=20`);
    expect(await dayTotals(sid)).toEqual({ usd: 0, events: 0 });
  });
  it("logs and alerts the account's first send to a country", async () => {
    const { sid, auth } = await account({ limits: [] });
    await call(messagesPath(sid), { auth, form: { To: US, Body: "x" } });
    await call(messagesPath(sid), { auth, form: { To: "+14155552672", Body: "x" } });
    await call(messagesPath(sid), { auth, form: { To: "+37360123456", Body: "x" } });
    const alerts = await runInDurableObject(guard(sid), (_i, state) =>
      state.storage.sql.exec<{ payload: string }>("SELECT payload FROM outbox WHERE kind = 'alert-webhook'").toArray().map((r) => (JSON.parse(r.payload) as { message: string }).message),
    );
    expect(alerts).toEqual(["first send through the egress gate to US (sms)", "first send through the egress gate to MD (sms)"]);
  });
  it("answers Twilio's callbacks on the guard's own status path without an ORIGIN_URL, and refuses unsigned ones", async () => {
    const noOrigin = { ...enforce, ORIGIN_URL: "", GUARD_MODE: "report-only" } as GuardEnv;
    const url = `${GUARD}/webhooks/_guard/status/00000000-0000-4000-8000-000000000000`;
    const params = messageStatus(PARENT_SID, uniqueSid("SM"), "delivered");
    const answer = async (request: Request) => {
      const ctx = createExecutionContext();
      const response = await createApp().fetch(request, noOrigin, ctx);
      await waitOnExecutionContext(ctx);
      return response.status;
    };
    expect(await answer(await signedForm(url, params))).toBe(204);
    expect(await answer(await signedForm(url, params, { token: "not-the-token" }))).toBe(403);
  });
});

describe("egress gate: the fields it adds to a send", () => {
  const id = "0b7e6c2a-5d4f-4e1a-9c3b-2f6d8e0a1b4c";
  const bases = ["https://guard.example.com", "http://127.0.0.1:8787", "https://guard.example.com/base path", "https://gu.example/ä~!*'()&=+%;,"];
  it("encodes its StatusCallback exactly as URLSearchParams does, whatever the base", () => {
    for (const base of bases) {
      expect(statusCallbackField(base, id)).toBe(new URLSearchParams({ StatusCallback: `${base}/webhooks/_guard/status/${id}` }).toString());
      // Again: the encoded base is kept, and a second base replaces it.
      expect(statusCallbackField(base, id)).toBe(new URLSearchParams({ StatusCallback: `${base}/webhooks/_guard/status/${id}` }).toString());
    }
  });
  it("encodes an id that is not a reservation id as URLSearchParams does too", () => {
    expect(statusCallbackField(bases[0]!, "a b&c")).toBe(new URLSearchParams({ StatusCallback: `${bases[0]}/webhooks/_guard/status/a b&c` }).toString());
  });
  it("adds StatusCallback then TimeLimit, either, or nothing", () => {
    const callback = statusCallbackField(bases[0]!, id);
    const expected = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
    const url = `${bases[0]}/webhooks/_guard/status/${id}`;
    expect(addedFields(callback, 600)).toBe(expected({ StatusCallback: url, TimeLimit: "600" }));
    expect(addedFields(callback, null)).toBe(expected({ StatusCallback: url }));
    expect(addedFields(null, 3600)).toBe(expected({ TimeLimit: "3600" }));
    expect(addedFields(null, null)).toBe("");
  });
});
