// A stand-in for the user's origin app and for Twilio's REST API inside workerd: every outbound fetch
// the Worker makes goes through vi.spyOn(globalThis, "fetch"), recorded, answered by a route table.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { vi } from "vitest";
import { PARENT_SID } from "./twilio.ts";

/**
 * The GuardDirectory lists Twilio's accounts at most once a minute (src/accounts/directory.ts), so a
 * subaccount created during a test would stay unknown that long: adding one to the fake lets the
 * directory list again, as it would a minute later.
 */
export function relistSubaccounts(): Promise<void> {
  return runInDurableObject((env as unknown as { DIRECTORY: DurableObjectNamespace }).DIRECTORY.getByName("directory"), (_instance, state) => {
    state.storage.sql.exec("UPDATE listing SET attempted_at = 0");
  });
}

class RelistingMap<K, V> extends Map<K, V> {
  override set(key: K, value: V): this {
    super.set(key, value);
    void relistSubaccounts().catch(() => {});
    return this;
  }
}

export interface Captured {
  url: string;
  method: string;
  headers: Headers;
  body: Uint8Array;
}

export type Responder = (request: Captured) => Response | Promise<Response>;

export function mockOutbound(routes: Array<[prefix: string, responder: Responder]>) {
  const calls: Captured[] = [];
  const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const captured: Captured = {
      url: request.url,
      method: request.method,
      headers: request.headers,
      body: new Uint8Array(await request.arrayBuffer()),
    };
    calls.push(captured);
    const match = routes.find(([prefix]) => captured.url.startsWith(prefix));
    if (!match) throw new TypeError(`network: no route for ${captured.url}`);
    return match[1](captured);
  });
  return {
    calls,
    spy,
    to: (prefix: string) => calls.filter((c) => c.url.startsWith(prefix)),
    restore: () => spy.mockRestore(),
  };
}

export const ORIGIN = "https://origin.test";
export const TWILIO_API = "https://twilio.test";
export const ALERTS = "https://alerts.test";

export function twiml(body = "<Response><Message>ok</Message></Response>", status = 200): Response {
  return new Response(body, { status, headers: { "content-type": "text/xml" } });
}

/**
 * The usual outbound world of a workerd test: the origin answering TwiML, Twilio's REST API served by a
 * fresh fakeTwilio of the parent, and (unless `alerts: false`) the alert webhook accepting. The caller
 * restores `outbound` after the test.
 */
export function twilioWorld(options: { alerts?: boolean } = {}): { twilio: FakeTwilio; outbound: ReturnType<typeof mockOutbound> } {
  const twilio = fakeTwilio(PARENT_SID);
  const routes: Array<[string, Responder]> = [
    [ORIGIN, () => twiml()],
    [TWILIO_API, (req) => twilio.responder(req)],
  ];
  if (options.alerts !== false) routes.push([ALERTS, () => new Response("ok")]);
  return { twilio, outbound: mockOutbound(routes) };
}

/**
 * A small stateful Twilio REST stand-in for workerd tests (the Node e2e tests use the fuller
 * dev/twilio-standin.ts over HTTP). Accounts know their token and status; failures can be
 * queued per purpose; every call is in `calls` (through mockOutbound).
 */
export interface FakeTwilio {
  responder: Responder;
  subaccounts: Map<string, { token: string; status: string; owner: string }>;
  /** Queues failures; answers are descriptors because a Response made here cannot be used by a Durable Object. */
  failNext: (purpose: "suspend" | "reactivate" | "fetch-account" | "list-accounts" | "usage-today" | "alert-sms", ...answers: Array<TwilioErrorSpec | "network">) => void;
  /** The largest page the account list answers with (Twilio's is 1000); small values exercise paging. */
  setListPageSize: (size: number) => void;
  usageToday: Map<string, string>;
  inProgressCalls: Map<string, string[]>;
}

export function fakeTwilio(parentSid: string): FakeTwilio {
  const subaccounts = new RelistingMap<string, { token: string; status: string; owner: string }>();
  const failures = new Map<string, Array<TwilioErrorSpec | "network">>();
  const usageToday = new Map<string, string>();
  const inProgressCalls = new Map<string, string[]>();
  let listPageSize = 1000;
  const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const notFound = () => json({ code: 20404, message: "The requested resource was not found", more_info: "https://www.twilio.com/docs/errors/20404", status: 404 }, 404);
  const injected = (purpose: string) => {
    const queue = failures.get(purpose);
    const next = queue?.shift();
    if (next === "network") throw new TypeError("network down");
    return next === undefined ? undefined : twilioErrorResponse(next);
  };
  const responder: Responder = (req) => {
    const url = new URL(req.url);
    const path = url.pathname;
    const form = new URLSearchParams(new TextDecoder().decode(req.body));
    if (path === "/2010-04-01/Accounts.json" && req.method === "GET") {
      // The parent and its subaccounts, paged as Twilio pages (PageSize, next_page_uri relative to the API).
      const fail = injected("list-accounts");
      if (fail) return fail;
      const size = Math.min(Number(url.searchParams.get("PageSize") ?? 50), listPageSize);
      const page = Number(url.searchParams.get("Page") ?? 0);
      const all = [
        { sid: parentSid, status: "active", owner_account_sid: parentSid, auth_token: "parent-token-in-listing", friendly_name: "parent" },
        ...[...subaccounts].map(([sid, a]) => ({ sid, status: a.status, owner_account_sid: a.owner, auth_token: a.token, friendly_name: `name of ${sid}` })),
      ];
      const items = all.slice(page * size, (page + 1) * size);
      const next = (page + 1) * size < all.length ? `/2010-04-01/Accounts.json?PageSize=${size}&Page=${page + 1}` : null;
      return json({ accounts: items, page, page_size: size, next_page_uri: next, uri: `${path}${url.search}` });
    }
    let m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\.json$/.exec(path);
    if (m) {
      const sid = m[1]!;
      const account = subaccounts.get(sid);
      if (req.method === "GET") {
        const fail = injected("fetch-account");
        if (fail) return fail;
        if (!account) return notFound();
        return json({ sid, status: account.status, owner_account_sid: account.owner, auth_token: account.token, friendly_name: sid });
      }
      const status = form.get("Status");
      const purpose = status === "suspended" ? "suspend" : "reactivate";
      const fail = injected(purpose);
      if (fail) return fail;
      if (sid === parentSid) return json({ code: 21477, message: "Cannot suspend the parent account", more_info: "", status: 400 }, 400);
      if (!account) return notFound();
      account.status = status ?? account.status;
      return json({ sid, status: account.status, owner_account_sid: account.owner, auth_token: account.token, friendly_name: sid });
    }
    m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Calls\.json$/.exec(path);
    if (m) {
      const calls = (inProgressCalls.get(m[1]!) ?? []).map((sid) => ({ sid, status: "in-progress" }));
      return json({ calls, next_page_uri: null });
    }
    m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Calls\/(CA[0-9a-f]{32})\.json$/.exec(path);
    if (m) {
      const list = inProgressCalls.get(m[1]!) ?? [];
      inProgressCalls.set(m[1]!, list.filter((c) => c !== m![2]));
      return json({ sid: m[2], status: "completed" });
    }
    m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Usage\/Records\/Today\.json$/.exec(path);
    if (m) {
      const fail = injected("usage-today");
      if (fail) return fail;
      const price = usageToday.get(m[1]!);
      return json({ usage_records: price === undefined ? [] : [{ category: "totalprice", price, price_unit: "usd" }], next_page_uri: null });
    }
    m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Messages\.json$/.exec(path);
    if (m) {
      const fail = injected("alert-sms");
      if (fail) return fail;
      return json({ sid: "SM" + "0".repeat(32), status: "queued" }, 201);
    }
    return notFound();
  };
  return {
    responder,
    subaccounts,
    usageToday,
    inProgressCalls,
    failNext: (purpose, ...answers) => failures.set(purpose, [...(failures.get(purpose) ?? []), ...answers]),
    setListPageSize: (size) => {
      listPageSize = size;
    },
  };
}

export interface TwilioErrorSpec {
  status: number;
  code: number;
  message: string;
}

export function twilioError(status: number, code: number, message = "error"): TwilioErrorSpec {
  return { status, code, message };
}

function twilioErrorResponse({ status, code, message }: TwilioErrorSpec): Response {
  return new Response(JSON.stringify({ code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** Form bodies of the REST calls that set an account's Status. */
export function statusCalls(calls: Captured[], sid: string, status: "suspended" | "active"): Captured[] {
  return calls.filter(
    (c) => c.method === "POST" && c.url.endsWith(`/Accounts/${sid}.json`) && new URLSearchParams(new TextDecoder().decode(c.body)).get("Status") === status,
  );
}
