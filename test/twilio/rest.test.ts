import { afterEach, describe, expect, it, vi } from "vitest";
import {
  createTwilioClient,
  LIST_PAGE_SIZE,
  MAX_ACCOUNT_LIST_PAGES,
  MAX_LIST_PAGES,
  MAX_SMS_BODY_CHARS,
  TwilioRestError,
  type RestPurpose,
  type RestStatus,
  type TwilioRestConfig,
} from "../../src/twilio/rest.ts";

// Obviously fake credentials; the token is checked for never leaking into errors.
const PARENT = "AC00000000000000000000000000000001";
const TOKEN = "test-primary-token-not-a-secret";
const SUB = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CALL = "CAbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const TRIGGER = "UTcccccccccccccccccccccccccccccccc";
const BASE = "https://twilio.test";

// Enum values from Twilio's OpenAPI (twilio_api_v2010.json): account_enum_status, call_enum_status,
// call_enum_update_status, usage_trigger_enum_recurring, usage_trigger_enum_trigger_field, and the
// CreateUsageTrigger CallbackMethod enum.
const OAI = {
  accountStatus: ["active", "suspended", "closed"],
  callStatus: ["queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"],
  callUpdateStatus: ["canceled", "completed"],
  recurring: ["daily", "monthly", "yearly", "alltime"],
  triggerBy: ["count", "usage", "price"],
  httpMethod: ["GET", "POST"],
};

interface Seen {
  method: string;
  url: URL;
  headers: Headers;
  body: string | null;
  signal: AbortSignal | null;
}

type Reply = Response | Promise<Response> | (() => Response | Promise<Response>);

function json(status: number, body: unknown, statusText = ""): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    statusText,
    headers: { "content-type": "application/json" },
  });
}

/** A fake fetch answering from a queue (the last entry repeats) and recording every request. */
function fakeFetch(...replies: Reply[]) {
  const seen: Seen[] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    seen.push({
      method: init?.method ?? "GET",
      url: new URL(String(input)),
      headers: new Headers(init?.headers),
      body: typeof init?.body === "string" ? init.body : init?.body == null ? null : "<non-string>",
      signal: init?.signal ?? null,
    });
    const reply = replies.length > 1 ? replies.shift()! : replies[0]!;
    return typeof reply === "function" ? reply() : reply;
  });
  return { fetch: fn as unknown as typeof fetch, seen, fn };
}

function client(f: { fetch: typeof fetch }, extra: Partial<TwilioRestConfig> = {}) {
  return createTwilioClient({ apiBase: BASE, accountSid: PARENT, authToken: TOKEN, fetch: f.fetch, ...extra });
}

function account(sid: string, status = "active") {
  return {
    sid,
    status,
    owner_account_sid: PARENT,
    auth_token: "sub-token-not-a-secret",
    friendly_name: "tenant one",
    type: "Full",
    uri: `/2010-04-01/Accounts/${sid}.json`,
  };
}

function trigger(sid: string, extra: Record<string, unknown> = {}) {
  return {
    sid,
    account_sid: SUB,
    friendly_name: "guard day 50",
    usage_category: "totalprice",
    trigger_by: "price",
    trigger_value: "50",
    recurring: "daily",
    callback_url: "https://guard.test/usage-trigger",
    callback_method: "POST",
    ...extra,
  };
}

function form(body: string | null): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(body ?? ""));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("createTwilioClient config", () => {
  it("refuses a malformed parent Account SID", () => {
    expect(() => createTwilioClient({ apiBase: BASE, accountSid: "AC123", authToken: TOKEN })).toThrow(/parent Account SID/);
  });

  it("refuses an empty auth token", () => {
    expect(() => createTwilioClient({ apiBase: BASE, accountSid: PARENT, authToken: "" })).toThrow(/auth token/);
  });

  it("refuses an API base that is not a plain http(s) URL", () => {
    for (const apiBase of ["ftp://twilio.test", "https://u:p@twilio.test", "https://twilio.test/?x=1", "not a url"]) {
      expect(() => createTwilioClient({ apiBase, accountSid: PARENT, authToken: TOKEN })).toThrow(/API base/);
    }
  });

  it("refuses a non-positive timeout", () => {
    expect(() => createTwilioClient({ apiBase: BASE, accountSid: PARENT, authToken: TOKEN, timeoutMs: 0 })).toThrow(/timeout/);
  });
});

describe("request basics", () => {
  it("authenticates with the parent's AccountSid:AuthToken over HTTP Basic and asks for JSON", async () => {
    const f = fakeFetch(json(200, account(SUB)));
    await client(f).fetchAccount(SUB);
    const auth = f.seen[0]!.headers.get("authorization")!;
    expect(auth.startsWith("Basic ")).toBe(true);
    expect(atob(auth.slice("Basic ".length))).toBe(`${PARENT}:${TOKEN}`);
    expect(f.seen[0]!.headers.get("accept")).toBe("application/json");
  });

  it("uses the global fetch by default, looked up at call time", async () => {
    const c = createTwilioClient({ apiBase: BASE, accountSid: PARENT, authToken: TOKEN });
    const spy = vi.spyOn(globalThis, "fetch").mockResolvedValue(json(200, account(SUB)));
    await c.fetchAccount(SUB);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(String(spy.mock.calls[0]![0])).toBe(`${BASE}/2010-04-01/Accounts/${SUB}.json`);
  });

  it("keeps a path prefix of the API base and drops its trailing slash", async () => {
    const f = fakeFetch(json(200, account(SUB)));
    await client(f, { apiBase: "https://proxy.test/twilio/" }).fetchAccount(SUB);
    expect(f.seen[0]!.url.href).toBe(`https://proxy.test/twilio/2010-04-01/Accounts/${SUB}.json`);
  });

  it("passes an abort signal and does not follow redirects with the credentials", async () => {
    const f = fakeFetch(json(200, account(SUB)));
    await client(f).fetchAccount(SUB);
    expect(f.seen[0]!.signal).toBeInstanceOf(AbortSignal);
    const init = f.fn.mock.calls[0]![1]!;
    expect(init.redirect).toBe("manual");
  });
});

describe("fetchAccount", () => {
  it("GETs /2010-04-01/Accounts/{Sid}.json without a body", async () => {
    const f = fakeFetch(json(200, account(SUB)));
    await client(f).fetchAccount(SUB);
    expect(f.seen[0]!.method).toBe("GET");
    expect(f.seen[0]!.url.href).toBe(`${BASE}/2010-04-01/Accounts/${SUB}.json`);
    expect(f.seen[0]!.body).toBeNull();
    expect(f.seen[0]!.headers.get("content-type")).toBeNull();
  });

  it("maps the snake_case account to TwilioAccount", async () => {
    const f = fakeFetch(json(200, account(SUB, "suspended")));
    expect(await client(f).fetchAccount(SUB)).toEqual({
      sid: SUB,
      status: "suspended",
      ownerAccountSid: PARENT,
      authToken: "sub-token-not-a-secret",
      friendlyName: "tenant one",
    });
  });

  it("answers null on 404 (unknown SID)", async () => {
    const f = fakeFetch(json(404, { code: 20404, message: "not found", more_info: "https://www.twilio.com/docs/errors/20404", status: 404 }));
    expect(await client(f).fetchAccount(SUB)).toBeNull();
  });

  it("refuses an answer without an auth_token (an empty HMAC key would be forgeable)", async () => {
    const f = fakeFetch(json(200, { ...account(SUB), auth_token: "" }));
    const err = await rejection(client(f).fetchAccount(SUB));
    expect(err).toBeInstanceOf(TwilioRestError);
    expect((err as TwilioRestError).retryable).toBe(false);
  });

  it("refuses an account whose sid is not the one asked for", async () => {
    const f = fakeFetch(json(200, account("ACdddddddddddddddddddddddddddddddd")));
    await expect(client(f).fetchAccount(SUB)).rejects.toThrow(/sid does not match/);
  });

  it("refuses a status outside account_enum_status", async () => {
    const f = fakeFetch(json(200, account(SUB, "paused")));
    await expect(client(f).fetchAccount(SUB)).rejects.toThrow(/active\|suspended\|closed/);
  });
});

describe("setAccountStatus", () => {
  it("suspends with POST Status=suspended, form-encoded", async () => {
    const f = fakeFetch(json(200, account(SUB, "suspended")));
    const result = await client(f).setAccountStatus(SUB, "suspended");
    expect(f.seen[0]!.method).toBe("POST");
    expect(f.seen[0]!.url.href).toBe(`${BASE}/2010-04-01/Accounts/${SUB}.json`);
    expect(f.seen[0]!.headers.get("content-type")).toBe("application/x-www-form-urlencoded");
    expect(f.seen[0]!.body).toBe("Status=suspended");
    expect(result.status).toBe("suspended");
  });

  it("reactivates with Status=active, a value of account_enum_status", async () => {
    const f = fakeFetch(json(200, account(SUB, "active")));
    await client(f).setAccountStatus(SUB, "active");
    expect(form(f.seen[0]!.body)).toEqual({ Status: "active" });
    expect(OAI.accountStatus).toContain(form(f.seen[0]!.body).Status);
  });

  it("reports suspend and reactivate as separate purposes", async () => {
    const calls: RestPurpose[] = [];
    const f = fakeFetch(json(200, account(SUB, "suspended")), json(200, account(SUB, "active")));
    const c = client(f, { onCall: (purpose) => calls.push(purpose) });
    await c.setAccountStatus(SUB, "suspended");
    await c.setAccountStatus(SUB, "active");
    expect(calls).toEqual(["suspend", "reactivate"]);
  });

  it("refuses to suspend the parent account without calling Twilio", async () => {
    const f = fakeFetch(json(200, account(PARENT)));
    const err = await rejection(client(f).setAccountStatus(PARENT, "suspended"));
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(TwilioRestError);
    expect(f.fn).not.toHaveBeenCalled();
  });

  it("refuses a status other than suspended or active", async () => {
    const f = fakeFetch(json(200, account(SUB)));
    await expect(client(f).setAccountStatus(SUB, "closed" as "active")).rejects.toThrow(/invalid account status/);
    expect(f.fn).not.toHaveBeenCalled();
  });
});

describe("walkAccounts", () => {
  const NEXT = "/2010-04-01/Accounts.json?PageSize=1000&Page=1&PageToken=PAabc";
  function accounts(sids: string[], next: string | null) {
    return json(200, { accounts: sids.map((sid) => account(sid)), next_page_uri: next, page: 0, page_size: LIST_PAGE_SIZE });
  }

  it("hands over each page before asking for the next, and says the listing is complete", async () => {
    const other = "AC" + "1".repeat(32);
    const f = fakeFetch(accounts([SUB, "ACnot-a-sid"], NEXT), accounts([other], null));
    const pages: Array<{ sids: string[]; requestsSoFar: number }> = [];
    const walked = await client(f).walkAccounts((page) => void pages.push({ sids: page.map((a) => a.sid), requestsSoFar: f.seen.length }));
    expect(walked).toEqual({ complete: true, pages: 2 });
    expect(pages).toEqual([{ sids: [SUB], requestsSoFar: 1 }, { sids: [other], requestsSoFar: 2 }]);
    expect(Object.fromEntries(f.seen[0]!.url.searchParams)).toEqual({ PageSize: "1000" });
    expect(f.seen[1]!.url.pathname + f.seen[1]!.url.search).toBe(NEXT);
  });

  it("stops at its bound (MAX_ACCOUNT_LIST_PAGES by default) and says the listing is incomplete", async () => {
    const f = fakeFetch(() => accounts([SUB], NEXT));
    let handed = 0;
    expect(await client(f).walkAccounts(() => void handed++, 3)).toEqual({ complete: false, pages: 3 });
    expect(handed).toBe(3);
    const g = fakeFetch(() => accounts([SUB], NEXT));
    expect(await client(g).walkAccounts(() => {})).toEqual({ complete: false, pages: MAX_ACCOUNT_LIST_PAGES });
    expect(g.fn).toHaveBeenCalledTimes(MAX_ACCOUNT_LIST_PAGES);
  });

  it("refuses a bound that is not a positive integer, asking nothing", async () => {
    const f = fakeFetch(accounts([SUB], null));
    for (const bound of [0, -1, 1.5, Number.NaN]) await expect(client(f).walkAccounts(() => {}, bound)).rejects.toThrow(/page bound/);
    expect(f.fn).not.toHaveBeenCalled();
  });

  it("fails when a page's consumer fails, asking for no further page", async () => {
    const f = fakeFetch(() => accounts([SUB], NEXT));
    await expect(client(f).walkAccounts(() => Promise.reject(new Error("storage full")))).rejects.toThrow("storage full");
    expect(f.fn).toHaveBeenCalledTimes(1);
  });
});

describe("listInProgressCalls", () => {
  function page(sids: string[], next: string | null) {
    return json(200, { calls: sids.map((sid) => ({ sid, status: "in-progress" })), next_page_uri: next, page: 0, page_size: LIST_PAGE_SIZE });
  }

  it("GETs Calls.json?Status=in-progress&PageSize=1000", async () => {
    const f = fakeFetch(page([CALL], null));
    expect(await client(f).listInProgressCalls(SUB)).toEqual([CALL]);
    expect(f.seen[0]!.method).toBe("GET");
    expect(f.seen[0]!.url.pathname).toBe(`/2010-04-01/Accounts/${SUB}/Calls.json`);
    expect(Object.fromEntries(f.seen[0]!.url.searchParams)).toEqual({ Status: "in-progress", PageSize: "1000" });
    expect(OAI.callStatus).toContain(f.seen[0]!.url.searchParams.get("Status"));
  });

  it("follows next_page_uri relative to the API base, prefix included", async () => {
    const second = "CA" + "1".repeat(32);
    const next = `/2010-04-01/Accounts/${SUB}/Calls.json?Status=in-progress&PageSize=1000&Page=1&PageToken=PAabc`;
    const f = fakeFetch(page([CALL], next), page([second], null));
    const sids = await client(f, { apiBase: "https://proxy.test/tw" }).listInProgressCalls(SUB);
    expect(sids).toEqual([CALL, second]);
    expect(f.seen[1]!.url.href).toBe(`https://proxy.test/tw${next}`);
    expect(f.seen[1]!.headers.get("authorization")).toBe(f.seen[0]!.headers.get("authorization"));
  });

  it("stops after MAX_LIST_PAGES pages even when next_page_uri loops", async () => {
    const next = `/2010-04-01/Accounts/${SUB}/Calls.json?Status=in-progress&PageSize=1000&Page=1`;
    const f = fakeFetch(() => page([CALL], next));
    const sids = await client(f).listInProgressCalls(SUB);
    expect(f.fn).toHaveBeenCalledTimes(MAX_LIST_PAGES);
    expect(sids).toHaveLength(MAX_LIST_PAGES);
  });

  it("refuses a next_page_uri that leaves the API base or the resource", async () => {
    for (const next of [
      "https://evil.test/2010-04-01/Accounts/x/Calls.json?Page=1",
      "//evil.test/2010-04-01/Calls.json?Page=1",
      `/2010-04-01/Accounts/${SUB}.json?Page=1`,
      `/2010-04-01/Accounts/${SUB}/Calls.json/../../x?Page=1`,
    ]) {
      const f = fakeFetch(page([CALL], next));
      const err = await rejection(client(f).listInProgressCalls(SUB));
      expect(err).toBeInstanceOf(TwilioRestError);
      expect((err as Error).message).toMatch(/next_page_uri/);
      expect(f.fn).toHaveBeenCalledTimes(1);
    }
  });

  it("skips list entries that are not Call SIDs", async () => {
    const f = fakeFetch(json(200, { calls: [{ sid: CALL }, { sid: "CA/../x" }, {}], next_page_uri: null }));
    expect(await client(f).listInProgressCalls(SUB)).toEqual([CALL]);
  });
});

describe("completeCall", () => {
  it("POSTs Calls/{CallSid}.json with Status=completed", async () => {
    const f = fakeFetch(json(200, { sid: CALL, status: "completed" }));
    await client(f).completeCall(SUB, CALL);
    expect(f.seen[0]!.method).toBe("POST");
    expect(f.seen[0]!.url.href).toBe(`${BASE}/2010-04-01/Accounts/${SUB}/Calls/${CALL}.json`);
    expect(f.seen[0]!.headers.get("content-type")).toBe("application/x-www-form-urlencoded");
    expect(form(f.seen[0]!.body)).toEqual({ Status: "completed" });
    expect(OAI.callUpdateStatus).toContain("completed");
  });

  it("treats 404 (the call is already gone) as done", async () => {
    const outcomes: string[] = [];
    const f = fakeFetch(json(404, { code: 20404, message: "not found", status: 404 }));
    await expect(client(f, { onCall: (_p, o, s) => outcomes.push(`${o}:${s}`) }).completeCall(SUB, CALL)).resolves.toBeUndefined();
    expect(outcomes).toEqual(["ok:404"]);
  });
});

describe("usage triggers", () => {
  it("lists with GET Usage/Triggers.json?PageSize=1000 and maps every trigger", async () => {
    const f = fakeFetch(json(200, { usage_triggers: [trigger(TRIGGER)], next_page_uri: null }));
    const list = await client(f).listUsageTriggers(SUB);
    expect(f.seen[0]!.url.pathname).toBe(`/2010-04-01/Accounts/${SUB}/Usage/Triggers.json`);
    expect(Object.fromEntries(f.seen[0]!.url.searchParams)).toEqual({ PageSize: "1000" });
    expect(list).toEqual([
      {
        sid: TRIGGER,
        friendlyName: "guard day 50",
        usageCategory: "totalprice",
        triggerBy: "price",
        triggerValue: "50",
        recurring: "daily",
        callbackUrl: "https://guard.test/usage-trigger",
      },
    ]);
  });

  it("pages through triggers", async () => {
    const other = "UT" + "2".repeat(32);
    const next = `/2010-04-01/Accounts/${SUB}/Usage/Triggers.json?PageSize=1000&Page=1&PageToken=PAx`;
    const f = fakeFetch(
      json(200, { usage_triggers: [trigger(TRIGGER)], next_page_uri: next }),
      json(200, { usage_triggers: [trigger(other, { recurring: null })], next_page_uri: null }),
    );
    const list = await client(f).listUsageTriggers(SUB);
    expect(list.map((t) => t.sid)).toEqual([TRIGGER, other]);
    expect(list[1]!.recurring).toBe("");
  });

  it("fails a trigger list entry without a valid UT sid", async () => {
    const f = fakeFetch(json(200, { usage_triggers: [trigger("UT123")], next_page_uri: null }));
    await expect(client(f).listUsageTriggers(SUB)).rejects.toBeInstanceOf(TwilioRestError);
  });

  it("creates with UsageCategory=totalprice, TriggerBy=price, CallbackMethod=POST and the given fields", async () => {
    const f = fakeFetch(json(201, trigger(TRIGGER, { trigger_value: "12.5", recurring: "monthly" })));
    const created = await client(f).createUsageTrigger(SUB, {
      friendlyName: "guard month 12.5",
      triggerValue: "12.5",
      recurring: "monthly",
      callbackUrl: "https://guard.test/usage-trigger",
    });
    expect(f.seen[0]!.method).toBe("POST");
    expect(f.seen[0]!.url.href).toBe(`${BASE}/2010-04-01/Accounts/${SUB}/Usage/Triggers.json`);
    expect(f.seen[0]!.headers.get("content-type")).toBe("application/x-www-form-urlencoded");
    const body = form(f.seen[0]!.body);
    expect(body).toEqual({
      UsageCategory: "totalprice",
      TriggerBy: "price",
      TriggerValue: "12.5",
      Recurring: "monthly",
      CallbackUrl: "https://guard.test/usage-trigger",
      CallbackMethod: "POST",
      FriendlyName: "guard month 12.5",
    });
    expect(OAI.triggerBy).toContain(body.TriggerBy);
    expect(OAI.recurring).toContain(body.Recurring);
    expect(OAI.httpMethod).toContain(body.CallbackMethod);
    expect(created.sid).toBe(TRIGGER);
  });

  it("percent-encodes an offset value's + as %2B (Twilio: 'urlencode a + as %2B')", async () => {
    const f = fakeFetch(json(201, trigger(TRIGGER)));
    await client(f).createUsageTrigger(SUB, { friendlyName: "x y", triggerValue: "+30", recurring: "daily", callbackUrl: "https://guard.test/usage-trigger?a=1&b=2" });
    expect(f.seen[0]!.body).toContain("TriggerValue=%2B30");
    expect(f.seen[0]!.body).toContain("CallbackUrl=https%3A%2F%2Fguard.test%2Fusage-trigger%3Fa%3D1%26b%3D2");
    expect(f.seen[0]!.body).toContain("FriendlyName=x+y");
    expect(form(f.seen[0]!.body).TriggerValue).toBe("+30");
  });

  it("refuses bad trigger input without calling Twilio", async () => {
    const f = fakeFetch(json(201, trigger(TRIGGER)));
    const c = client(f);
    const ok = { friendlyName: "g", triggerValue: "5", recurring: "daily" as const, callbackUrl: "https://guard.test/u" };
    await expect(c.createUsageTrigger(SUB, { ...ok, friendlyName: "x".repeat(65) })).rejects.toThrow(/friendlyName/);
    await expect(c.createUsageTrigger(SUB, { ...ok, triggerValue: "5 USD" })).rejects.toThrow(/value/);
    await expect(c.createUsageTrigger(SUB, { ...ok, recurring: "yearly" as "daily" })).rejects.toThrow(/recurring/);
    await expect(c.createUsageTrigger(SUB, { ...ok, callbackUrl: "javascript:alert(1)" })).rejects.toThrow(/callbackUrl/);
    expect(f.fn).not.toHaveBeenCalled();
  });

  it("deletes with DELETE Usage/Triggers/{Sid}.json and no body (204)", async () => {
    const f = fakeFetch(json(204, null));
    await client(f).deleteUsageTrigger(SUB, TRIGGER);
    expect(f.seen[0]!.method).toBe("DELETE");
    expect(f.seen[0]!.url.href).toBe(`${BASE}/2010-04-01/Accounts/${SUB}/Usage/Triggers/${TRIGGER}.json`);
    expect(f.seen[0]!.body).toBeNull();
  });

  it("treats 404 on delete (already deleted) as done", async () => {
    const f = fakeFetch(json(404, { code: 20404, message: "not found", status: 404 }));
    await expect(client(f).deleteUsageTrigger(SUB, TRIGGER)).resolves.toBeUndefined();
  });
});

describe("usageTodayUsd", () => {
  function records(...recs: Record<string, unknown>[]) {
    return json(200, { usage_records: recs, next_page_uri: null });
  }

  it("GETs Usage/Records/Today.json?Category=totalprice&IncludeSubaccounts=false (this account alone)", async () => {
    const f = fakeFetch(records({ category: "totalprice", price: "1.5", price_unit: "usd" }));
    await client(f).usageTodayUsd(SUB);
    expect(f.seen[0]!.method).toBe("GET");
    expect(f.seen[0]!.url.pathname).toBe(`/2010-04-01/Accounts/${SUB}/Usage/Records/Today.json`);
    expect(Object.fromEntries(f.seen[0]!.url.searchParams)).toEqual({ Category: "totalprice", IncludeSubaccounts: "false" });
  });

  it("reads a decimal-string price (what Twilio sends)", async () => {
    const f = fakeFetch(records({ category: "totalprice", price: "12.34", price_unit: "usd" }));
    expect(await client(f).usageTodayUsd(SUB)).toBe(12.34);
  });

  it("reads a numeric price (what the OpenAPI declares)", async () => {
    const f = fakeFetch(records({ category: "totalprice", price: 0.75, price_unit: "USD" }));
    expect(await client(f).usageTodayUsd(SUB)).toBe(0.75);
  });

  it("answers null without a totalprice record or with a null price", async () => {
    expect(await client(fakeFetch(records())).usageTodayUsd(SUB)).toBeNull();
    expect(await client(fakeFetch(records({ category: "sms", price: "3" }))).usageTodayUsd(SUB)).toBeNull();
    expect(await client(fakeFetch(records({ category: "totalprice", price: null }))).usageTodayUsd(SUB)).toBeNull();
  });

  it("answers null when the account is billed in another currency", async () => {
    const f = fakeFetch(records({ category: "totalprice", price: "9", price_unit: "eur" }));
    expect(await client(f).usageTodayUsd(SUB)).toBeNull();
  });

  it("fails on a price that is not a number", async () => {
    const f = fakeFetch(records({ category: "totalprice", price: "lots", price_unit: "usd" }));
    await expect(client(f).usageTodayUsd(SUB)).rejects.toThrow(/price/);
  });
});

describe("fetchSendPrice", () => {
  const SM = "SMdddddddddddddddddddddddddddddddd";
  const resource = (sid: string, price: unknown, unit: unknown = "USD", status = "delivered") => json(200, { sid, account_sid: SUB, status, price, price_unit: unit });

  it("GETs Messages/{MessageSid}.json (FetchMessage) and Calls/{CallSid}.json (FetchCall), without a body", async () => {
    const f = fakeFetch(resource(SM, "-0.0158"), resource(CALL, "-0.028", "USD", "completed"));
    expect(await client(f).fetchSendPrice(SUB, "message", SM)).toEqual({ usd: 0.0158, unit: "USD", status: "delivered" });
    expect(await client(f).fetchSendPrice(SUB, "call", CALL)).toEqual({ usd: 0.028, unit: "USD", status: "completed" });
    expect(f.seen.map((s) => `${s.method} ${s.url.pathname}${s.url.search}`)).toEqual([
      `GET /2010-04-01/Accounts/${SUB}/Messages/${SM}.json`,
      `GET /2010-04-01/Accounts/${SUB}/Calls/${CALL}.json`,
    ]);
    expect(f.seen.every((s) => s.body === null)).toBe(true);
  });

  it("answers a null price while Twilio has not filled it, with the resource's status", async () => {
    expect(await client(fakeFetch(resource(SM, null, null, "sent"))).fetchSendPrice(SUB, "message", SM)).toEqual({ usd: null, unit: null, status: "sent" });
  });

  it("answers null on 404, and fails on an answer about another resource", async () => {
    expect(await client(fakeFetch(json(404, { code: 20404, message: "not found", status: 404 }))).fetchSendPrice(SUB, "message", SM)).toBeNull();
    await expect(client(fakeFetch(resource(`SM${"e".repeat(32)}`, "-1"))).fetchSendPrice(SUB, "message", SM)).rejects.toThrow(/sid does not match/);
  });

  it("refuses a Sid of the wrong kind without calling Twilio", async () => {
    const f = fakeFetch(resource(SM, null));
    await expect(client(f).fetchSendPrice(SUB, "call", SM)).rejects.toThrow(/invalid Call SID/);
    await expect(client(f).fetchSendPrice(SUB, "message", CALL)).rejects.toThrow(/invalid Message SID/);
    expect(f.seen).toHaveLength(0);
  });
});

describe("sendSms", () => {
  it("POSTs the parent's Messages.json with To, From and Body", async () => {
    const f = fakeFetch(json(201, { sid: "SM" + "e".repeat(32), status: "queued" }));
    await client(f).sendSms("+15005550006", "+15551234567", "guard: AC… tripped & suspended");
    expect(f.seen[0]!.method).toBe("POST");
    expect(f.seen[0]!.url.href).toBe(`${BASE}/2010-04-01/Accounts/${PARENT}/Messages.json`);
    expect(f.seen[0]!.headers.get("content-type")).toBe("application/x-www-form-urlencoded");
    expect(form(f.seen[0]!.body)).toEqual({ To: "+15551234567", From: "+15005550006", Body: "guard: AC… tripped & suspended" });
    expect(f.seen[0]!.body).toContain("To=%2B15551234567");
  });

  it("truncates the body to Twilio's 1600-character limit", async () => {
    const f = fakeFetch(json(201, {}));
    await client(f).sendSms("+15005550006", "+15551234567", "x".repeat(2000));
    expect(form(f.seen[0]!.body).Body).toHaveLength(MAX_SMS_BODY_CHARS);
  });

  it("refuses an empty To or From", async () => {
    const f = fakeFetch(json(201, {}));
    await expect(client(f).sendSms("", "+15551234567", "x")).rejects.toThrow(/From/);
    await expect(client(f).sendSms("+15005550006", "", "x")).rejects.toThrow(/To/);
    expect(f.fn).not.toHaveBeenCalled();
  });
});

describe("SID validation", () => {
  const forgedAccounts = [
    "AC123",
    `${SUB}/Calls`,
    `${SUB}.json?x=`,
    "../../../evil",
    `AC${"g".repeat(32)}`,
    ` ${SUB}`,
    `${SUB}\n`,
    "",
  ];

  it("refuses forged Account SIDs with a plain Error and no request, in every call", async () => {
    const f = fakeFetch(json(200, {}));
    const c = client(f);
    for (const sid of forgedAccounts) {
      const calls: Promise<unknown>[] = [
        c.fetchAccount(sid),
        c.setAccountStatus(sid, "suspended"),
        c.listInProgressCalls(sid),
        c.completeCall(sid, CALL),
        c.listUsageTriggers(sid),
        c.createUsageTrigger(sid, { friendlyName: "g", triggerValue: "1", recurring: "daily", callbackUrl: "https://g.test/u" }),
        c.deleteUsageTrigger(sid, TRIGGER),
        c.usageTodayUsd(sid),
      ];
      for (const call of calls) {
        const err = await rejection(call);
        expect(err).toBeInstanceOf(Error);
        expect(err).not.toBeInstanceOf(TwilioRestError);
        expect((err as Error).message).toMatch(/invalid Account SID/);
      }
    }
    expect(f.fn).not.toHaveBeenCalled();
  });

  it("refuses forged Call and Usage Trigger SIDs", async () => {
    const f = fakeFetch(json(200, {}));
    const c = client(f);
    await expect(c.completeCall(SUB, `${CALL}/../../x`)).rejects.toThrow(/invalid Call SID/);
    await expect(c.completeCall(SUB, TRIGGER)).rejects.toThrow(/invalid Call SID/);
    await expect(c.deleteUsageTrigger(SUB, "UT%2F..")).rejects.toThrow(/invalid Usage Trigger SID/);
    await expect(c.deleteUsageTrigger(SUB, CALL)).rejects.toThrow(/invalid Usage Trigger SID/);
    expect(f.fn).not.toHaveBeenCalled();
  });

  it("does not echo the forged value in the error", async () => {
    const err = await rejection(client(fakeFetch(json(200, {}))).fetchAccount("AC<script>"));
    expect((err as Error).message).not.toContain("<script>");
  });
});

describe("TwilioRestError", () => {
  it("parses a 429 with code 20429 into a retryable error", async () => {
    const f = fakeFetch(json(429, { code: 20429, message: "Too Many Requests", more_info: "https://www.twilio.com/docs/errors/20429", status: 429 }));
    const err = (await rejection(client(f).setAccountStatus(SUB, "suspended"))) as TwilioRestError;
    expect(err).toBeInstanceOf(TwilioRestError);
    expect(err.message).toBe("Twilio REST suspend failed: 429 (20429) Too Many Requests");
    expect(err.purpose).toBe("suspend");
    expect(err.status).toBe(429);
    expect(err.code).toBe(20429);
    expect(err.moreInfo).toBe("https://www.twilio.com/docs/errors/20429");
    expect(err.retryable).toBe(true);
    expect(err.name).toBe("TwilioRestError");
  });

  it("makes a 500 retryable", async () => {
    const f = fakeFetch(json(500, { code: 20500, message: "Internal Server Error", status: 500 }));
    const err = (await rejection(client(f).listUsageTriggers(SUB))) as TwilioRestError;
    expect(err.status).toBe(500);
    expect(err.code).toBe(20500);
    expect(err.retryable).toBe(true);
    expect(err.message).toBe("Twilio REST list-triggers failed: 500 (20500) Internal Server Error");
  });

  it("makes a 503 with a non-JSON body retryable and uses the status text", async () => {
    const f = fakeFetch(new Response("<html>upstream down</html>", { status: 503, statusText: "Service Unavailable" }));
    const err = (await rejection(client(f).usageTodayUsd(SUB))) as TwilioRestError;
    expect(err.status).toBe(503);
    expect(err.code).toBeUndefined();
    expect(err.retryable).toBe(true);
    expect(err.message).toBe("Twilio REST usage-today failed: 503 Service Unavailable");
  });

  it("makes a 404 on a status update a permanent error with Twilio's code", async () => {
    const f = fakeFetch(json(404, { code: 20404, message: "The requested resource was not found", more_info: "https://www.twilio.com/docs/errors/20404", status: 404 }));
    const err = (await rejection(client(f).setAccountStatus(SUB, "suspended"))) as TwilioRestError;
    expect(err.status).toBe(404);
    expect(err.code).toBe(20404);
    expect(err.retryable).toBe(false);
  });

  it("makes a 401 (20003, bad credentials) permanent", async () => {
    const f = fakeFetch(json(401, { code: 20003, message: "Authenticate", more_info: "https://www.twilio.com/docs/errors/20003", status: 401 }));
    const err = (await rejection(client(f).fetchAccount(SUB))) as TwilioRestError;
    expect(err.status).toBe(401);
    expect(err.code).toBe(20003);
    expect(err.retryable).toBe(false);
    expect(err.message).toBe("Twilio REST fetch-account failed: 401 (20003) Authenticate");
  });

  it("makes a 400 (21477, suspending a parent) permanent", async () => {
    const f = fakeFetch(json(400, { code: 21477, message: "Cannot suspend a parent account", status: 400 }));
    const err = (await rejection(client(f).setAccountStatus(SUB, "suspended"))) as TwilioRestError;
    expect(err.code).toBe(21477);
    expect(err.retryable).toBe(false);
  });

  it("times out a hung call with status 'timeout', retryable, and aborts the fetch", async () => {
    let aborted = false;
    const f = fakeFetch(
      () =>
        new Promise<Response>((_, reject) => {
          const signal = f.seen.at(-1)!.signal!;
          signal.addEventListener("abort", () => {
            aborted = true;
            reject(signal.reason);
          });
        }),
    );
    const err = (await rejection(client(f, { timeoutMs: 20 }).setAccountStatus(SUB, "suspended"))) as TwilioRestError;
    expect(err).toBeInstanceOf(TwilioRestError);
    expect(err.status).toBe("timeout");
    expect(err.retryable).toBe(true);
    expect(err.message).toBe("Twilio REST suspend failed: timeout no answer within 20 ms");
    expect(aborted).toBe(true);
  });

  it("times out even when fetch ignores the abort signal", async () => {
    const f = fakeFetch(() => new Promise<Response>(() => {}));
    const err = (await rejection(client(f, { timeoutMs: 20 }).fetchAccount(SUB))) as TwilioRestError;
    expect(err.status).toBe("timeout");
  });

  it("times out a body that never finishes", async () => {
    const stalled = new ReadableStream<Uint8Array>({ start() {} });
    const f = fakeFetch(new Response(stalled, { status: 200 }));
    const err = (await rejection(client(f, { timeoutMs: 20 }).fetchAccount(SUB))) as TwilioRestError;
    expect(err.status).toBe("timeout");
  });

  it("turns a rejected fetch into status 'network', retryable", async () => {
    const f = fakeFetch(() => Promise.reject(new TypeError("connection refused")));
    const err = (await rejection(client(f).completeCall(SUB, CALL))) as TwilioRestError;
    expect(err.status).toBe("network");
    expect(err.retryable).toBe(true);
    expect(err.message).toBe("Twilio REST end-call failed: network connection refused");
  });

  it("makes an unusable 2xx body a permanent error, marked unconfirmed (the call may have acted)", async () => {
    const f = fakeFetch(new Response("<html>captive portal</html>", { status: 200 }));
    const err = (await rejection(client(f).fetchAccount(SUB))) as TwilioRestError;
    expect(err.status).toBe(200);
    expect(err.retryable).toBe(false);
    expect(err.unconfirmed).toBe(true);
    expect(err.message).toMatch(/not JSON/);
  });

  it("makes a 408 retryable, as the outbox's classifier does", async () => {
    const f = fakeFetch(json(408, { code: 20408, message: "Request Timeout", status: 408 }));
    const err = (await rejection(client(f).setAccountStatus(SUB, "suspended"))) as TwilioRestError;
    expect(err.retryable).toBe(true);
    expect(err.unconfirmed).toBe(false);
  });

  it("makes Twilio code 20429 retryable whatever the HTTP status", async () => {
    const f = fakeFetch(json(400, { code: 20429, message: "Too Many Requests", status: 400 }));
    const err = (await rejection(client(f).setAccountStatus(SUB, "suspended"))) as TwilioRestError;
    expect(err.retryable).toBe(true);
  });

  it("never puts the token or the Authorization header in messages, even when a server echoes them", async () => {
    const basic = btoa(`${PARENT}:${TOKEN}`);
    const echo = `bad token ${TOKEN}; header was Basic ${basic}`;
    const replies: Reply[] = [
      json(401, { code: 20003, message: echo, more_info: `https://x.test/?t=${TOKEN}`, status: 401 }),
      new Response(echo, { status: 500, statusText: "oops" }),
      () => Promise.reject(new TypeError(echo)),
    ];
    for (const reply of replies) {
      const err = (await rejection(client(fakeFetch(reply)).fetchAccount(SUB))) as TwilioRestError;
      const everything = `${err.message} ${err.moreInfo ?? ""} ${err.stack ?? ""} ${JSON.stringify(err)}`;
      expect(everything).not.toContain(TOKEN);
      expect(everything).not.toContain(basic);
    }
  });

  it("caps a long Twilio message", async () => {
    const f = fakeFetch(json(400, { code: 21211, message: "m".repeat(5000), status: 400 }));
    const err = (await rejection(client(f).sendSms("+15005550006", "+1", "x"))) as TwilioRestError;
    expect(err.message.length).toBeLessThan(300);
  });
});

describe("onCall", () => {
  it("reports each HTTP request with its purpose, outcome and status", async () => {
    const events: [RestPurpose, string, RestStatus][] = [];
    const next = `/2010-04-01/Accounts/${SUB}/Calls.json?Status=in-progress&PageSize=1000&Page=1`;
    const f = fakeFetch(
      json(200, { calls: [{ sid: CALL }], next_page_uri: next }),
      json(200, { calls: [], next_page_uri: null }),
      json(429, { code: 20429, message: "Too Many Requests", status: 429 }),
      () => Promise.reject(new TypeError("down")),
    );
    const c = client(f, { onCall: (p, o, s) => events.push([p, o, s]) });
    await c.listInProgressCalls(SUB);
    await rejection(c.sendSms("+15005550006", "+15551234567", "x"));
    await rejection(c.usageTodayUsd(SUB));
    expect(events).toEqual([
      ["list-calls", "ok", 200],
      ["list-calls", "ok", 200],
      ["alert-sms", "error", 429],
      ["usage-today", "error", "network"],
    ]);
  });

  it("reports a timeout as status 'timeout'", async () => {
    const events: RestStatus[] = [];
    const f = fakeFetch(() => new Promise<Response>(() => {}));
    await rejection(client(f, { timeoutMs: 10, onCall: (_p, _o, s) => events.push(s) }).fetchAccount(SUB));
    expect(events).toEqual(["timeout"]);
  });

  it("ignores a throwing onCall", async () => {
    const f = fakeFetch(json(200, account(SUB)));
    const c = client(f, {
      onCall: () => {
        throw new Error("metrics broke");
      },
    });
    expect((await c.fetchAccount(SUB))?.sid).toBe(SUB);
  });
});
