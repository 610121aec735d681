import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import twilio from "twilio";
import { createTwilioClient, TwilioRestError, type TwilioAccount, type TwilioClient } from "../../src/twilio/rest.ts";
import { startTwilioStandin, type TwilioStandin } from "../../dev/twilio-standin.ts";

// Obviously fake credentials.
const PARENT = "AC00000000000000000000000000000001";
const TOKEN = "test-primary-token-not-a-secret";
const CALLBACK = "https://guard.test/usage-trigger";

let standin: TwilioStandin;
let client: TwilioClient;

function clientFor(s: TwilioStandin, extra: { authToken?: string; accountSid?: string; timeoutMs?: number } = {}): TwilioClient {
  return createTwilioClient({ apiBase: s.url, accountSid: extra.accountSid ?? PARENT, authToken: extra.authToken ?? TOKEN, timeoutMs: extra.timeoutMs ?? 5_000 });
}

/** A raw request with the parent's credentials unless told otherwise. */
async function raw(method: string, path: string, opts: { form?: Record<string, string>; body?: string; contentType?: string; auth?: string | null } = {}) {
  const headers: Record<string, string> = {};
  const auth = opts.auth === undefined ? `${PARENT}:${TOKEN}` : opts.auth;
  if (auth !== null) headers.Authorization = `Basic ${Buffer.from(auth).toString("base64")}`;
  let body: string | undefined = opts.body;
  if (opts.form) {
    body = new URLSearchParams(opts.form).toString();
    headers["Content-Type"] = "application/x-www-form-urlencoded";
  }
  if (opts.contentType) headers["Content-Type"] = opts.contentType;
  const res = await fetch(`${standin.url}${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? (JSON.parse(text) as Record<string, unknown>) : null };
}

beforeEach(async () => {
  standin = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN });
  client = clientFor(standin);
});

afterEach(async () => {
  await standin.close();
});

describe("twilio stand-in: server", () => {
  it("listens on 127.0.0.1 with an ephemeral port", () => {
    expect(standin.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(standin.url.endsWith(":0")).toBe(false);
  });

  it("stops answering after close()", async () => {
    await standin.close();
    await expect(fetch(`${standin.url}/2010-04-01/Accounts/${PARENT}.json`)).rejects.toThrow();
  });

  it("delays every answer by latencyMs", async () => {
    const slow = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN, latencyMs: 60 });
    try {
      const started = performance.now();
      await clientFor(slow).fetchAccount(PARENT);
      expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    } finally {
      await slow.close();
    }
  });

  it("holds the parent account, owned by itself", () => {
    expect(standin.accounts.get(PARENT)).toMatchObject({ sid: PARENT, status: "active", ownerAccountSid: PARENT, authToken: TOKEN });
  });

  it("adds subaccounts under the parent with a fresh SID and token", () => {
    const a = standin.addSubaccount();
    const b = standin.addSubaccount({ friendlyName: "tenant b", authToken: "b-token" });
    expect(a.sid).toMatch(/^AC[0-9a-f]{32}$/);
    expect(a.sid).not.toBe(b.sid);
    expect(b.authToken).toBe("b-token");
    expect(standin.accounts.get(b.sid)).toMatchObject({ ownerAccountSid: PARENT, friendlyName: "tenant b", status: "active" });
  });
});

describe("twilio stand-in: accounts, through the client", () => {
  it("fetches a subaccount's auth token", async () => {
    const sub = standin.addSubaccount({ friendlyName: "t1" });
    expect(await client.fetchAccount(sub.sid)).toEqual({ sid: sub.sid, status: "active", ownerAccountSid: PARENT, authToken: sub.authToken, friendlyName: "t1" });
    expect(standin.violations).toEqual([]);
  });

  it("lists the parent and its subaccounts (GET /Accounts.json), paged by next_page_uri, with tokens and friendly names", async () => {
    const small = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN, maxPageSize: 2 });
    try {
      const subs = Array.from({ length: 4 }, (_, i) => small.addSubaccount({ friendlyName: `tenant ${i}` }));
      const foreign = small.addSubaccount();
      small.accounts.get(foreign.sid)!.ownerAccountSid = "AC" + "7".repeat(32);
      const listed: TwilioAccount[] = [];
      expect(await clientFor(small).walkAccounts((page) => void listed.push(...page))).toEqual({ complete: true, pages: 3 });
      expect(listed.map((a) => a.sid)).toEqual([PARENT, ...subs.map((s) => s.sid)]);
      for (const [i, sub] of subs.entries()) {
        expect(listed[i + 1]).toEqual({ sid: sub.sid, status: "active", ownerAccountSid: PARENT, authToken: sub.authToken, friendlyName: `tenant ${i}` });
      }
      // Five accounts in pages of two; the client asks for Twilio's largest page (1000).
      expect(small.requests.map((r) => r.purpose)).toEqual(["list-accounts", "list-accounts", "list-accounts"]);
      expect(small.requests[0]!.query).toEqual({ PageSize: "1000" });
      expect(small.requests[1]!.query).toMatchObject({ PageSize: "2", Page: "1" });
      standin.addSubaccount();
      standin.addSubaccount();
      const page = await raw("GET", "/2010-04-01/Accounts.json?PageSize=2");
      expect(page.json).toMatchObject({ accounts: [expect.objectContaining({ sid: PARENT, auth_token: TOKEN, friendly_name: expect.any(String) }), expect.anything()], page: 0, page_size: 2 });
      expect((page.json as { next_page_uri: string }).next_page_uri).toMatch(/^\/2010-04-01\/Accounts\.json\?/);
      expect(small.violations).toEqual([]);
      // A listing with a parameter Twilio does not document is a violation.
      expect(standin.violations).toEqual([]);
      await raw("GET", "/2010-04-01/Accounts.json?Foo=1");
      expect(standin.violations.length).toBeGreaterThan(0);
    } finally {
      await small.close();
    }
  });

  it("answers an unknown account with 404 20404, which the client maps to null", async () => {
    const unknown = "AC" + "9".repeat(32);
    expect(await client.fetchAccount(unknown)).toBeNull();
    const r = await raw("GET", `/2010-04-01/Accounts/${unknown}.json`);
    expect(r.status).toBe(404);
    expect(r.json).toEqual({ code: 20404, message: expect.stringContaining(unknown), more_info: "https://www.twilio.com/docs/errors/20404", status: 404 });
    expect(standin.violations).toEqual([]);
  });

  it("suspends and reactivates a subaccount", async () => {
    const sub = standin.addSubaccount();
    expect((await client.setAccountStatus(sub.sid, "suspended")).status).toBe("suspended");
    expect(standin.accounts.get(sub.sid)!.status).toBe("suspended");
    expect((await client.setAccountStatus(sub.sid, "active")).status).toBe("active");
    expect(standin.accounts.get(sub.sid)!.status).toBe("active");
    expect(standin.requests.map((r) => [r.method, r.purpose, r.form, r.basicUser, r.status])).toEqual([
      ["POST", "suspend", { Status: "suspended" }, PARENT, 200],
      ["POST", "reactivate", { Status: "active" }, PARENT, 200],
    ]);
    expect(standin.violations).toEqual([]);
  });

  it("refuses to suspend the parent with 400 21477 and records a violation", async () => {
    const r = await raw("POST", `/2010-04-01/Accounts/${PARENT}.json`, { form: { Status: "suspended" } });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: 21477, status: 400 });
    expect(standin.accounts.get(PARENT)!.status).toBe("active");
    expect(standin.violations).toEqual([`POST /2010-04-01/Accounts/${PARENT}.json: attempted to suspend or close the parent account (CONTRACT: never)`]);
  });

  it("keeps a closed account closed", async () => {
    const sub = standin.addSubaccount({ status: "closed" });
    const err = (await client.setAccountStatus(sub.sid, "active").catch((e: unknown) => e)) as TwilioRestError;
    expect(err).toBeInstanceOf(TwilioRestError);
    expect(err.status).toBe(400);
    expect(standin.accounts.get(sub.sid)!.status).toBe("closed");
  });

  it("answers wrong credentials with 401 20003 and records a violation", async () => {
    const sub = standin.addSubaccount();
    const bad = clientFor(standin, { authToken: "wrong-token" });
    const err = (await bad.fetchAccount(sub.sid).catch((e: unknown) => e)) as TwilioRestError;
    expect(err).toBeInstanceOf(TwilioRestError);
    expect(err.status).toBe(401);
    expect(err.code).toBe(20003);
    expect(err.retryable).toBe(false);
    expect(err.message).not.toContain("wrong-token");
    expect(standin.violations).toEqual([`GET /2010-04-01/Accounts/${sub.sid}.json: HTTP Basic credentials are not the parent's (user ${PARENT})`]);
  });

  it("refuses a subaccount's own credentials (CONTRACT: always the parent's)", async () => {
    const sub = standin.addSubaccount();
    const r = await raw("GET", `/2010-04-01/Accounts/${sub.sid}.json`, { auth: `${sub.sid}:${sub.authToken}` });
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toMatch(/^Basic /);
    expect(standin.requests[0]!.basicUser).toBe(sub.sid);
    expect(standin.violations[0]).toMatch(/not the parent's/);
  });

  it("refuses a request without credentials", async () => {
    const r = await raw("GET", `/2010-04-01/Accounts/${PARENT}.json`, { auth: null });
    expect(r.status).toBe(401);
    expect(standin.violations).toEqual([`GET /2010-04-01/Accounts/${PARENT}.json: no HTTP Basic credentials`]);
  });
});

describe("twilio stand-in: calls, triggers, usage, messages, through the client", () => {
  it("lists only in-progress calls of the account and completes them", async () => {
    const sub = standin.addSubaccount();
    const other = standin.addSubaccount();
    const live1 = standin.addCall(sub.sid);
    const live2 = standin.addCall(sub.sid);
    standin.addCall(sub.sid, { status: "ringing" });
    standin.addCall(other.sid);
    const sids = await client.listInProgressCalls(sub.sid);
    expect(new Set(sids)).toEqual(new Set([live1, live2]));
    for (const sid of sids) await client.completeCall(sub.sid, sid);
    expect(standin.calls.get(live1)!.status).toBe("completed");
    expect(await client.listInProgressCalls(sub.sid)).toEqual([]);
    expect(standin.requests[0]!.query).toEqual({ Status: "in-progress", PageSize: "1000" });
    expect(standin.violations).toEqual([]);
  });

  it("answers 404 for a call of another account, which completeCall treats as gone", async () => {
    const sub = standin.addSubaccount();
    const other = standin.addSubaccount();
    const call = standin.addCall(other.sid);
    await expect(client.completeCall(sub.sid, call)).resolves.toBeUndefined();
    expect(standin.requests[0]!.status).toBe(404);
    expect(standin.calls.get(call)!.status).toBe("in-progress");
  });

  it("pages like Twilio, and the client follows next_page_uri", async () => {
    const small = await startTwilioStandin({ parentSid: PARENT, parentToken: TOKEN, maxPageSize: 2 });
    try {
      const sub = small.addSubaccount();
      const made = Array.from({ length: 5 }, () => small.addCall(sub.sid));
      const sids = await clientFor(small).listInProgressCalls(sub.sid);
      expect(new Set(sids)).toEqual(new Set(made));
      expect(sids).toHaveLength(5);
      expect(small.requests).toHaveLength(3);
      expect(small.requests[1]!.query).toMatchObject({ Status: "in-progress", PageSize: "2", Page: "1", PageToken: "PA2" });
      expect(small.violations).toEqual([]);
    } finally {
      await small.close();
    }
  });

  it("creates, lists and deletes usage triggers", async () => {
    const sub = standin.addSubaccount();
    const created = await client.createUsageTrigger(sub.sid, { friendlyName: "guard day 50", triggerValue: "50", recurring: "daily", callbackUrl: CALLBACK });
    expect(created).toMatchObject({ usageCategory: "totalprice", triggerBy: "price", triggerValue: "50", recurring: "daily", callbackUrl: CALLBACK, friendlyName: "guard day 50" });
    expect(standin.triggers.get(created.sid)).toMatchObject({ accountSid: sub.sid, callbackMethod: "POST" });
    expect((await client.listUsageTriggers(sub.sid)).map((t) => t.sid)).toEqual([created.sid]);
    expect(await client.listUsageTriggers(standin.addSubaccount().sid)).toEqual([]);
    await client.deleteUsageTrigger(sub.sid, created.sid);
    expect(standin.triggers.size).toBe(0);
    await expect(client.deleteUsageTrigger(sub.sid, created.sid)).resolves.toBeUndefined();
    expect(standin.requests.at(-1)!.status).toBe(404);
    expect(standin.violations).toEqual([]);
  });

  it("resolves a +offset trigger value against today's price", async () => {
    const sub = standin.addSubaccount();
    standin.usage.set(sub.sid, 12.5);
    const created = await client.createUsageTrigger(sub.sid, { friendlyName: "g", triggerValue: "+30", recurring: "monthly", callbackUrl: CALLBACK });
    expect(created.triggerValue).toBe("42.5");
    expect(standin.requests[0]!.form.TriggerValue).toBe("+30");
  });

  it("reports today's totalprice, or no record when none was set", async () => {
    const sub = standin.addSubaccount();
    expect(await client.usageTodayUsd(sub.sid)).toBeNull();
    standin.usage.set(sub.sid, 12.34);
    expect(await client.usageTodayUsd(sub.sid)).toBe(12.34);
    const r = await raw("GET", `/2010-04-01/Accounts/${sub.sid}/Usage/Records/Today.json?Category=totalprice`);
    expect((r.json!.usage_records as Record<string, unknown>[])[0]).toMatchObject({ category: "totalprice", price: "12.34", price_unit: "usd", account_sid: sub.sid });
    expect(standin.violations).toEqual([]);
  });

  it("sends an SMS through the parent account", async () => {
    await client.sendSms("+15005550006", "+15551234567", "guard tripped");
    expect(standin.messages).toEqual([{ sid: expect.stringMatching(/^SM[0-9a-f]{32}$/), accountSid: PARENT, from: "+15005550006", to: "+15551234567", body: "guard tripped" }]);
    expect(standin.violations).toEqual([]);
  });

  it("answers a send's price (FetchMessage / FetchCall): null until Twilio fills it, then a negative decimal string", async () => {
    const sub = standin.addSubaccount();
    const call = standin.addCall(sub.sid, { status: "completed" });
    const created = await raw("POST", `/2010-04-01/Accounts/${sub.sid}/Messages.json`, { form: { To: "+15551234567", From: "+15005550006", Body: "x" } });
    const sms = String(created.json!.sid);
    expect(await client.fetchSendPrice(sub.sid, "message", sms)).toEqual({ usd: null, unit: "USD", status: "delivered" });
    standin.messages.find((m) => m.sid === sms)!.price = "-0.0158";
    standin.calls.get(call)!.price = "-0.028";
    expect(await client.fetchSendPrice(sub.sid, "message", sms)).toEqual({ usd: 0.0158, unit: "USD", status: "delivered" });
    expect(await client.fetchSendPrice(sub.sid, "call", call)).toEqual({ usd: 0.028, unit: "USD", status: "completed" });
    expect(await client.fetchSendPrice(PARENT, "message", sms)).toBeNull();
    expect(standin.requests.slice(1).map((r) => `${r.purpose} ${r.method} ${r.path}`)).toEqual([
      `fetch-price GET /2010-04-01/Accounts/${sub.sid}/Messages/${sms}.json`,
      `fetch-price GET /2010-04-01/Accounts/${sub.sid}/Messages/${sms}.json`,
      `fetch-price GET /2010-04-01/Accounts/${sub.sid}/Calls/${call}.json`,
      `fetch-price GET /2010-04-01/Accounts/${PARENT}/Messages/${sms}.json`,
    ]);
    expect(standin.violations).toEqual([]);
  });

  it("sees no violation in a full client session", async () => {
    const sub = standin.addSubaccount();
    standin.addCall(sub.sid);
    standin.usage.set(sub.sid, 3);
    await client.fetchAccount(sub.sid);
    const t = await client.createUsageTrigger(sub.sid, { friendlyName: "g", triggerValue: "10", recurring: "daily", callbackUrl: CALLBACK });
    await client.listUsageTriggers(sub.sid);
    await client.usageTodayUsd(sub.sid);
    await client.setAccountStatus(sub.sid, "suspended");
    for (const call of await client.listInProgressCalls(sub.sid)) await client.completeCall(sub.sid, call);
    await client.sendSms("+15005550006", "+15551234567", "x");
    await client.deleteUsageTrigger(sub.sid, t.sid);
    await client.setAccountStatus(sub.sid, "active");
    expect(standin.requests).toHaveLength(10);
    expect(standin.requests.every((r) => r.basicUser === PARENT)).toBe(true);
    expect(standin.violations).toEqual([]);
  });
});

describe("twilio stand-in: failNext", () => {
  it("answers the next matching purpose with a Twilio error, then behaves again", async () => {
    const sub = standin.addSubaccount();
    standin.failNext("suspend", { status: 429, code: 20429 });
    const err = (await client.setAccountStatus(sub.sid, "suspended").catch((e: unknown) => e)) as TwilioRestError;
    expect(err.status).toBe(429);
    expect(err.code).toBe(20429);
    expect(err.retryable).toBe(true);
    expect(err.message).toBe("Twilio REST suspend failed: 429 (20429) Too Many Requests");
    expect(standin.accounts.get(sub.sid)!.status).toBe("active");
    expect(standin.requests[0]).toMatchObject({ injected: true, status: 429, purpose: "suspend" });
    await client.setAccountStatus(sub.sid, "suspended");
    expect(standin.accounts.get(sub.sid)!.status).toBe("suspended");
  });

  it("fails as many times as asked and leaves other purposes alone", async () => {
    const sub = standin.addSubaccount();
    standin.failNext("usage-today", { status: 503 }, 2);
    await expect(client.fetchAccount(sub.sid)).resolves.not.toBeNull();
    await expect(client.usageTodayUsd(sub.sid)).rejects.toMatchObject({ status: 503, retryable: true });
    await expect(client.usageTodayUsd(sub.sid)).rejects.toMatchObject({ status: 503 });
    await expect(client.usageTodayUsd(sub.sid)).resolves.toBeNull();
  });

  it("matches with a predicate over the recorded request", async () => {
    const a = standin.addSubaccount();
    const b = standin.addSubaccount();
    standin.failNext((r) => r.path.includes(b.sid), { status: 500, code: 20500, message: "boom" });
    await expect(client.fetchAccount(a.sid)).resolves.not.toBeNull();
    await expect(client.fetchAccount(b.sid)).rejects.toMatchObject({ status: 500, code: 20500, message: "Twilio REST fetch-account failed: 500 (20500) boom" });
  });

  it("hangs until the client times out, and close() still returns", async () => {
    const sub = standin.addSubaccount();
    standin.failNext("end-call", "hang");
    const call = standin.addCall(sub.sid);
    const err = (await clientFor(standin, { timeoutMs: 100 })
      .completeCall(sub.sid, call)
      .catch((e: unknown) => e)) as TwilioRestError;
    expect(err.status).toBe("timeout");
    expect(err.retryable).toBe(true);
    expect(standin.requests[0]!.status).toBe("hang");
    expect(standin.calls.get(call)!.status).toBe("in-progress");
  });

  it("closes promptly while a request hangs", async () => {
    const sub = standin.addSubaccount();
    standin.failNext("fetch-account", "hang");
    const pending = clientFor(standin, { timeoutMs: 5_000 }).fetchAccount(sub.sid).catch((e: unknown) => e);
    await vi.waitFor(() => expect(standin.requests).not.toHaveLength(0), { timeout: 5_000, interval: 5 });
    const started = Date.now();
    await standin.close();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(((await pending) as TwilioRestError).status).toBe("network");
  });

  it("drops the connection for a network failure", async () => {
    const sub = standin.addSubaccount();
    standin.failNext("list-triggers", "drop");
    await expect(client.listUsageTriggers(sub.sid)).rejects.toMatchObject({ status: "network", retryable: true });
  });
});

describe("twilio stand-in: shape checks", () => {
  let sub: { sid: string; authToken: string };
  beforeEach(() => {
    sub = standin.addSubaccount();
  });

  it("flags a JSON body on a POST and answers as if no parameter came", async () => {
    const r = await raw("POST", `/2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json`, {
      body: JSON.stringify({ UsageCategory: "totalprice", TriggerValue: "5", CallbackUrl: CALLBACK }),
      contentType: "application/json",
    });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ status: 400, more_info: expect.stringMatching(/^https:\/\/www\.twilio\.com\/docs\/errors\//) });
    expect(standin.violations).toContain(`POST /2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json: Content-Type "application/json" is not application/x-www-form-urlencoded`);
    expect(standin.violations).toContain(`POST /2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json: required parameter CallbackUrl missing`);
  });

  it("flags an account Status outside account_enum_status and changes nothing", async () => {
    const r = await raw("POST", `/2010-04-01/Accounts/${sub.sid}.json`, { form: { Status: "paused" } });
    expect(r.status).toBe(400);
    expect(standin.accounts.get(sub.sid)!.status).toBe("active");
    expect(standin.violations).toEqual([`POST /2010-04-01/Accounts/${sub.sid}.json: Status="paused" not one of active|suspended|closed`]);
  });

  it("flags trigger enums outside the OpenAPI (Recurring, TriggerBy, CallbackMethod)", async () => {
    const r = await raw("POST", `/2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json`, {
      form: { UsageCategory: "totalprice", TriggerValue: "5", CallbackUrl: CALLBACK, Recurring: "weekly", TriggerBy: "cost", CallbackMethod: "PUT" },
    });
    expect(r.status).toBe(400);
    expect(standin.triggers.size).toBe(0);
    expect(standin.violations).toEqual([
      `POST /2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json: Recurring="weekly" not one of daily|monthly|yearly|alltime`,
      `POST /2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json: TriggerBy="cost" not one of count|usage|price`,
      `POST /2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json: CallbackMethod="PUT" not one of GET|POST`,
    ]);
  });

  it("flags a call update Status outside call_enum_update_status", async () => {
    const call = standin.addCall(sub.sid);
    const r = await raw("POST", `/2010-04-01/Accounts/${sub.sid}/Calls/${call}.json`, { form: { Status: "hangup" } });
    expect(r.status).toBe(400);
    expect(standin.violations[0]).toMatch(/Status="hangup" not one of canceled\|completed/);
  });

  it("flags a misspelt parameter (Twilio ignores it with warning 20001) yet answers", async () => {
    const r = await raw("GET", `/2010-04-01/Accounts/${sub.sid}/Calls.json?status=in-progress`);
    expect(r.status).toBe(200);
    expect(standin.violations).toEqual([`GET /2010-04-01/Accounts/${sub.sid}/Calls.json: unknown parameter status (warning 20001)`]);
  });

  it("flags a PageSize above 1000 with 20007", async () => {
    const r = await raw("GET", `/2010-04-01/Accounts/${sub.sid}/Usage/Triggers.json?PageSize=5000`);
    expect(r.status).toBe(400);
    expect(standin.violations[0]).toMatch(/PageSize="5000" is outside 1\.\.1000/);
  });

  it("flags an unknown endpoint and a missing .json suffix with 404", async () => {
    expect((await raw("GET", `/2010-04-01/Accounts/${sub.sid}/Recordings.json`)).status).toBe(404);
    expect((await raw("GET", `/2010-04-01/Accounts/${sub.sid}`)).status).toBe(404);
    expect(standin.violations).toHaveLength(2);
    expect(standin.violations[0]).toMatch(/no such endpoint/);
  });

  it("flags a method the endpoint does not have with 405", async () => {
    const r = await raw("DELETE", `/2010-04-01/Accounts/${sub.sid}.json`);
    expect(r.status).toBe(405);
    expect(r.json).toMatchObject({ code: 20004 });
    expect(standin.violations[0]).toMatch(/method not allowed/);
  });

  it("flags SIDs that do not match their pattern", async () => {
    expect((await raw("GET", "/2010-04-01/Accounts/AC123.json")).status).toBe(404);
    expect((await raw("POST", `/2010-04-01/Accounts/${sub.sid}/Calls/CAxyz.json`, { form: { Status: "completed" } })).status).toBe(404);
    expect((await raw("DELETE", `/2010-04-01/Accounts/${sub.sid}/Usage/Triggers/${"CA" + "0".repeat(32)}.json`)).status).toBe(404);
    expect(standin.violations.map((v) => v.replace(/^.*: /, ""))).toEqual([
      'AccountSid "AC123" does not match ^AC[0-9a-f]{32}$',
      'Sid "CAxyz" does not match ^CA[0-9a-fA-F]{32}$',
      `Sid "CA${"0".repeat(32)}" does not match ^UT[0-9a-fA-F]{32}$`,
    ]);
  });

  it("flags a message without To, with a bad number, or without a body", async () => {
    const path = `/2010-04-01/Accounts/${PARENT}/Messages.json`;
    expect((await raw("POST", path, { form: { From: "+15005550006", Body: "x" } })).json).toMatchObject({ code: 21604 });
    expect((await raw("POST", path, { form: { To: "5551234", From: "+15005550006", Body: "x" } })).json).toMatchObject({ code: 21211 });
    expect((await raw("POST", path, { form: { To: "+15551234567", From: "+15005550006" } })).json).toMatchObject({ code: 21602 });
    expect((await raw("POST", path, { form: { To: "+15551234567", Body: "x" } })).json).toMatchObject({ code: 21603 });
    expect(standin.messages).toEqual([]);
    expect(standin.violations).toHaveLength(4);
  });

  it("flags a body on DELETE, a query on POST and a repeated parameter", async () => {
    await raw("DELETE", `/2010-04-01/Accounts/${sub.sid}/Usage/Triggers/UT${"0".repeat(32)}.json`, { body: "x=1", contentType: "application/x-www-form-urlencoded" });
    await raw("POST", `/2010-04-01/Accounts/${sub.sid}.json?Status=suspended`, { form: { Status: "active" } });
    await raw("POST", `/2010-04-01/Accounts/${sub.sid}.json`, { body: "Status=active&Status=suspended", contentType: "application/x-www-form-urlencoded" });
    expect(standin.violations.map((v) => v.replace(/^.*: /, ""))).toEqual([
      "DELETE with a request body",
      "POST parameters belong in the form body, not the query",
      "parameter Status given more than once",
    ]);
  });

  it("records every request with method, path, query, form and basic user, never the password", async () => {
    await raw("POST", `/2010-04-01/Accounts/${sub.sid}/Calls.json?x=1`, { form: { To: "+1555" } });
    expect(standin.requests).toEqual([
      {
        method: "POST",
        path: `/2010-04-01/Accounts/${sub.sid}/Calls.json`,
        query: { x: "1" },
        form: { To: "+1555" },
        basicUser: PARENT,
        contentType: "application/x-www-form-urlencoded",
        purpose: "unknown",
        // CreateCall without From (required) and with a query: refused as Twilio would.
        status: 400,
        injected: false,
      },
    ]);
    expect(JSON.stringify(standin.requests)).not.toContain(TOKEN);
  });
});

describe("twilio stand-in: the official twilio SDK", () => {
  // The SDK's own requests must pass the shape checks and its parsers must read the stand-in's answers:
  // evidence that the stand-in speaks Twilio's dialect, not just our client's.
  function sdk(s: TwilioStandin) {
    const inner = new twilio.RequestClient();
    const httpClient = {
      request: (o: { uri: string }) => inner.request({ ...(o as Parameters<typeof inner.request>[0]), uri: o.uri.replace("https://api.twilio.com", s.url) }),
    } as unknown as InstanceType<typeof twilio.RequestClient>;
    return twilio(PARENT, TOKEN, { httpClient });
  }

  it("drives every endpoint without a violation", async () => {
    const sub = standin.addSubaccount({ friendlyName: "sdk tenant" });
    const call = standin.addCall(sub.sid);
    standin.usage.set(sub.sid, 7.25);
    const t = sdk(standin);
    const api = t.api.v2010;

    const fetched = await api.accounts(sub.sid).fetch();
    expect(fetched.authToken).toBe(sub.authToken);
    expect(fetched.ownerAccountSid).toBe(PARENT);
    expect((await api.accounts(sub.sid).update({ status: "suspended" })).status).toBe("suspended");

    const live = await api.accounts(sub.sid).calls.list({ status: "in-progress" });
    expect(live.map((c) => c.sid)).toEqual([call]);
    expect((await api.accounts(sub.sid).calls(call).update({ status: "completed" })).status).toBe("completed");

    const trig = await api.accounts(sub.sid).usage.triggers.create({
      usageCategory: "totalprice",
      triggerValue: "20",
      triggerBy: "price",
      recurring: "daily",
      callbackUrl: CALLBACK,
      callbackMethod: "POST",
      friendlyName: "sdk trigger",
    });
    expect(trig.sid).toMatch(/^UT/);
    expect((await api.accounts(sub.sid).usage.triggers.list()).map((x) => x.sid)).toEqual([trig.sid]);
    expect(await api.accounts(sub.sid).usage.triggers(trig.sid).remove()).toBe(true);

    const today = await api.accounts(sub.sid).usage.records.today.list({ category: "totalprice" });
    expect(today).toHaveLength(1);
    expect(Number(today[0]!.price)).toBe(7.25);

    const msg = await t.messages.create({ to: "+15551234567", from: "+15005550006", body: "sdk" });
    expect(msg.sid).toMatch(/^SM/);
    standin.messages.at(-1)!.price = "-0.0079";
    expect((await t.messages(msg.sid).fetch()).price).toBe("-0.0079");
    expect((await api.accounts(sub.sid).calls(call).fetch()).priceUnit).toBe("USD");

    expect(standin.violations).toEqual([]);
    expect(standin.requests.map((r) => r.purpose)).toEqual([
      "fetch-account",
      "suspend",
      "list-calls",
      "end-call",
      "create-trigger",
      "list-triggers",
      "delete-trigger",
      "usage-today",
      "alert-sms",
      "fetch-price",
      "fetch-price",
    ]);
  });

  it("surfaces the stand-in's errors as the SDK's RestException with Twilio's fields", async () => {
    const err = (await sdk(standin)
      .api.v2010.accounts("AC" + "9".repeat(32))
      .fetch()
      .catch((e: unknown) => e)) as { status: number; code: number; moreInfo: string };
    expect(err.status).toBe(404);
    expect(err.code).toBe(20404);
    expect(err.moreInfo).toBe("https://www.twilio.com/docs/errors/20404");
  });
});
