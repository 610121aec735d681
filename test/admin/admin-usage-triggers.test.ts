// Usage-trigger provisioning: the pure plan (create / keep / delete / skip), the executor against a
// fetch-mocked Twilio, and POST /admin/accounts/:sid/usage-triggers end to end (idempotent, audited).
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { GuardEnv } from "../../src/config/env.ts";
import { DEFAULT_POLICY, parsePolicy, type Policy } from "../../src/ledger/policy.ts";
import { createTwilioClient, type UsageTrigger } from "../../src/twilio/rest.ts";
import {
  TRIGGER_NAME_PREFIX,
  isGuardTrigger,
  planUsageTriggers,
  provisionUsageTriggers,
  ProvisioningError,
  triggerCallbackUrl,
  triggerName,
} from "../../src/admin/usage-triggers.ts";
import { adminCaller } from "../support/admin.ts";
import { TWILIO_API, mockOutbound, type Captured } from "../support/origin.ts";
import { PARENT_SID, PRIMARY_TOKEN, uniqueSid } from "../support/twilio.ts";

const CALLBACK = "https://guard.example.com/usage-trigger";

const policy = (input: unknown): Policy => parsePolicy(input);

let triggerCounter = 0;
function trigger(overrides: Partial<UsageTrigger> = {}): UsageTrigger {
  triggerCounter += 1;
  return {
    sid: `UT${triggerCounter.toString(16).padStart(32, "0")}`,
    friendlyName: "twilio-edge-guard day 50 USD",
    usageCategory: "totalprice",
    triggerBy: "price",
    triggerValue: "50",
    recurring: "daily",
    callbackUrl: CALLBACK,
    ...overrides,
  };
}

describe("planUsageTriggers", () => {
  it("creates one trigger per usd limit on a day or month window", () => {
    const plan = planUsageTriggers(policy({ limits: [{ window: "day", usd: 50 }, { window: "month", usd: 900.5 }] }), [], CALLBACK);
    expect(plan.create.map(({ limit: _limit, ...t }) => t)).toEqual([
      { friendlyName: "twilio-edge-guard day 50 USD", triggerValue: "50", recurring: "daily", callbackUrl: CALLBACK },
      { friendlyName: "twilio-edge-guard month 900.5 USD", triggerValue: "900.5", recurring: "monthly", callbackUrl: CALLBACK },
    ]);
    expect(plan.keep).toEqual([]);
    expect(plan.delete).toEqual([]);
    expect(plan.skipped).toEqual([]);
  });

  it("skips hour and minute windows and event limits, with a reason", () => {
    const plan = planUsageTriggers(
      policy({ limits: [{ window: "hour", usd: 10 }, { window: "minute", usd: 1 }, { window: "day", events: 100 }] }),
      [],
      CALLBACK,
    );
    expect(plan.create).toEqual([]);
    expect(plan.skipped.map((s) => [s.limit, s.reason])).toEqual([
      [{ window: "hour", usd: 10 }, expect.stringContaining("no hour recurrence")],
      [{ window: "minute", usd: 1 }, expect.stringContaining("no minute recurrence")],
      [{ window: "day", events: 100 }, expect.stringContaining("events")],
    ]);
  });

  it("keeps a matching trigger of ours, comparing amounts (Twilio may answer 50.0)", () => {
    const ours = trigger({ triggerValue: "50.00" });
    const plan = planUsageTriggers(DEFAULT_POLICY, [ours], CALLBACK);
    expect(plan.keep).toEqual([ours]);
    expect(plan.create).toEqual([]);
    expect(plan.delete).toEqual([]);
  });

  it("deletes and recreates a trigger of ours whose value differs (Twilio cannot update a value)", () => {
    const old = trigger({ friendlyName: "twilio-edge-guard day 40 USD", triggerValue: "40" });
    const plan = planUsageTriggers(DEFAULT_POLICY, [old], CALLBACK);
    expect(plan.create.map((c) => c.friendlyName)).toEqual(["twilio-edge-guard day 50 USD"]);
    expect(plan.delete).toEqual([{ trigger: old, reason: "value changed (40 → 50)" }]);
  });

  it("replaces ours when the callback moved, and removes ours the policy no longer has, and duplicates", () => {
    const moved = trigger({ callbackUrl: "https://old.example.com/usage-trigger" });
    const monthly = trigger({ friendlyName: "twilio-edge-guard month 500 USD", triggerValue: "500", recurring: "monthly" });
    const keep = trigger();
    const duplicate = trigger();
    const plan = planUsageTriggers(DEFAULT_POLICY, [moved, monthly, keep, duplicate], CALLBACK);
    expect(plan.keep).toEqual([keep]);
    expect(plan.create).toEqual([]);
    expect(plan.delete.map((d) => [d.trigger.sid, d.reason])).toEqual([
      [moved.sid, "callback URL or settings changed"],
      [monthly.sid, "no longer in the policy"],
      [duplicate.sid, "duplicate"],
    ]);
  });

  it("never touches triggers the guard did not create, even identical-looking ones", () => {
    const foreign = [
      trigger({ friendlyName: "my own alarm" }),
      trigger({ friendlyName: "twilio-edge-guardian day 50 USD" }),
      trigger({ friendlyName: "", triggerValue: "5" }),
    ];
    const plan = planUsageTriggers(policy({ limits: [] }), foreign, CALLBACK);
    expect(plan.delete).toEqual([]);
    const withLimit = planUsageTriggers(DEFAULT_POLICY, foreign, CALLBACK);
    expect(withLimit.keep).toEqual([]);
    expect(withLimit.create).toHaveLength(1);
    expect(withLimit.delete).toEqual([]);
  });

  it("does not keep a trigger of ours that watches something else (category, trigger-by, offset value)", () => {
    const others = [trigger({ usageCategory: "sms" }), trigger({ triggerBy: "count" }), trigger({ triggerValue: "+50" })];
    const plan = planUsageTriggers(DEFAULT_POLICY, others, CALLBACK);
    expect(plan.keep).toEqual([]);
    expect(plan.create).toHaveLength(1);
    expect(plan.delete).toHaveLength(3);
  });

  it("names triggers recognisably and knows its own", () => {
    expect(triggerName({ window: "day", usd: 12.5 })).toBe("twilio-edge-guard day 12.5 USD");
    expect(isGuardTrigger({ friendlyName: `${TRIGGER_NAME_PREFIX} day 1 USD` })).toBe(true);
    expect(isGuardTrigger({ friendlyName: TRIGGER_NAME_PREFIX })).toBe(false);
  });

  it("calls back PUBLIC_URL when set, else the request's origin", () => {
    expect(triggerCallbackUrl("https://public.example.com/guard", "https://worker.dev/admin/x")).toBe("https://public.example.com/guard/usage-trigger");
    expect(triggerCallbackUrl(null, "https://worker.dev:8443/admin/accounts/x/usage-triggers?y=1")).toBe("https://worker.dev:8443/usage-trigger");
  });
});

// ---------------------------------------------------------------- against a fetch-mocked Twilio

interface TriggerStandin {
  triggers: Map<string, UsageTrigger & { accountSid: string }>;
  failCreate: number;
  responder: (req: Captured) => Response;
}

function triggerStandin(): TriggerStandin {
  const state: TriggerStandin = { triggers: new Map(), failCreate: 0, responder: () => new Response() };
  const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const wire = (t: UsageTrigger & { accountSid: string }) => ({
    sid: t.sid,
    account_sid: t.accountSid,
    friendly_name: t.friendlyName,
    usage_category: t.usageCategory,
    trigger_by: t.triggerBy,
    // Twilio answers values with a decimal point, whatever was sent.
    trigger_value: Number(t.triggerValue).toFixed(1),
    recurring: t.recurring,
    callback_url: t.callbackUrl,
    callback_method: "POST",
  });
  state.responder = (req) => {
    const url = new URL(req.url);
    let m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Usage\/Triggers\.json$/.exec(url.pathname);
    if (m && req.method === "GET") {
      const mine = [...state.triggers.values()].filter((t) => t.accountSid === m![1]);
      return json({ usage_triggers: mine.map(wire), next_page_uri: null });
    }
    if (m && req.method === "POST") {
      if (state.failCreate > 0) {
        state.failCreate -= 1;
        return json({ code: 20500, message: "Internal Server Error", more_info: "", status: 500 }, 500);
      }
      const form = new URLSearchParams(new TextDecoder().decode(req.body));
      const sid = uniqueSid("UT");
      const t = {
        sid,
        accountSid: m[1]!,
        friendlyName: form.get("FriendlyName") ?? "",
        usageCategory: form.get("UsageCategory") ?? "",
        triggerBy: form.get("TriggerBy") ?? "",
        triggerValue: form.get("TriggerValue") ?? "",
        recurring: form.get("Recurring") ?? "",
        callbackUrl: form.get("CallbackUrl") ?? "",
      };
      state.triggers.set(sid, t);
      return json(wire(t), 201);
    }
    m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Usage\/Triggers\/(UT[0-9a-f]{32})\.json$/.exec(url.pathname);
    if (m && req.method === "DELETE") {
      return state.triggers.delete(m[2]!) ? new Response(null, { status: 204 }) : json({ code: 20404, message: "not found", status: 404 }, 404);
    }
    return json({ code: 20404, message: "not found", status: 404 }, 404);
  };
  return state;
}

let outbound: ReturnType<typeof mockOutbound>;
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

function client() {
  return createTwilioClient({ apiBase: TWILIO_API, accountSid: PARENT_SID, authToken: PRIMARY_TOKEN });
}

const forms = (calls: Captured[], method: string) =>
  calls.filter((c) => c.method === method && c.url.includes("/Usage/Triggers")).map((c) => Object.fromEntries(new URLSearchParams(new TextDecoder().decode(c.body))));

describe("provisionUsageTriggers", () => {
  it("creates the triggers with the contract's parameters, then finds them all kept on a second run", async () => {
    const twilio = triggerStandin();
    outbound = mockOutbound([[TWILIO_API, (req) => twilio.responder(req)]]);
    const sid = uniqueSid();
    const p = policy({ limits: [{ window: "day", usd: 50 }, { window: "month", usd: 1000 }, { window: "hour", usd: 5 }] });
    const first = await provisionUsageTriggers(client(), sid, p, CALLBACK);
    expect(first.created.map((t) => t.friendlyName)).toEqual(["twilio-edge-guard day 50 USD", "twilio-edge-guard month 1000 USD"]);
    expect(first.skipped).toHaveLength(1);
    expect(forms(outbound.calls, "POST")).toEqual([
      { UsageCategory: "totalprice", TriggerBy: "price", TriggerValue: "50", Recurring: "daily", CallbackUrl: CALLBACK, CallbackMethod: "POST", FriendlyName: "twilio-edge-guard day 50 USD" },
      { UsageCategory: "totalprice", TriggerBy: "price", TriggerValue: "1000", Recurring: "monthly", CallbackUrl: CALLBACK, CallbackMethod: "POST", FriendlyName: "twilio-edge-guard month 1000 USD" },
    ]);
    const second = await provisionUsageTriggers(client(), sid, p, CALLBACK);
    expect(second.created).toEqual([]);
    expect(second.deleted).toEqual([]);
    expect(second.kept.map((t) => t.friendlyName).sort()).toEqual(["twilio-edge-guard day 50 USD", "twilio-edge-guard month 1000 USD"]);
    expect(forms(outbound.calls, "POST")).toHaveLength(2);
  });

  it("replaces a changed value (create first, then delete) and leaves foreign triggers alone", async () => {
    const twilio = triggerStandin();
    outbound = mockOutbound([[TWILIO_API, (req) => twilio.responder(req)]]);
    const sid = uniqueSid();
    const foreign = { ...trigger({ friendlyName: "finance team alarm", triggerValue: "50" }), sid: uniqueSid("UT"), accountSid: sid };
    twilio.triggers.set(foreign.sid, foreign);
    await provisionUsageTriggers(client(), sid, policy({ limits: [{ window: "day", usd: 40 }] }), CALLBACK);
    const report = await provisionUsageTriggers(client(), sid, policy({ limits: [{ window: "day", usd: 60 }] }), CALLBACK);
    expect(report.created.map((t) => t.friendlyName)).toEqual(["twilio-edge-guard day 60 USD"]);
    expect(report.deleted.map((t) => [t.friendlyName, t.reason])).toEqual([["twilio-edge-guard day 40 USD", "value changed (40.0 → 60)"]]);
    const methods = outbound.calls.filter((c) => c.method !== "GET").map((c) => c.method);
    expect(methods.slice(-2)).toEqual(["POST", "DELETE"]);
    expect([...twilio.triggers.values()].map((t) => t.friendlyName).sort()).toEqual(["finance team alarm", "twilio-edge-guard day 60 USD"]);
  });

  it("stops at a REST failure without deleting anything, reporting what was done", async () => {
    const twilio = triggerStandin();
    outbound = mockOutbound([[TWILIO_API, (req) => twilio.responder(req)]]);
    const sid = uniqueSid();
    await provisionUsageTriggers(client(), sid, policy({ limits: [{ window: "day", usd: 40 }] }), CALLBACK);
    twilio.failCreate = 1;
    const error = await provisionUsageTriggers(client(), sid, policy({ limits: [{ window: "day", usd: 60 }] }), CALLBACK).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as ProvisioningError).partial).toMatchObject({ created: [], deleted: [] });
    expect([...twilio.triggers.values()].map((t) => t.friendlyName)).toEqual(["twilio-edge-guard day 40 USD"]);
  });
});

describe("POST /admin/accounts/:sid/usage-triggers", () => {
  const adminApp = (vars: Partial<GuardEnv> = {}) => adminCaller({ vars });

  it("mirrors the account's policy, calls back the request's origin, is idempotent, and is audited", async () => {
    const twilio = triggerStandin();
    outbound = mockOutbound([[TWILIO_API, (req) => twilio.responder(req)]]);
    const call = adminApp();
    const sid = uniqueSid();
    await env.ACCOUNT_GUARD.getByName(sid).setPolicy(sid, { limits: [{ window: "day", usd: 25 }, { window: "minute", events: 60 }] });
    const first = await call("POST", `/admin/accounts/${sid}/usage-triggers`, { host: "https://edge.example.net" });
    expect(first.status).toBe(200);
    const report = (await first.json()) as { created: Array<{ callbackUrl: string; friendlyName: string }>; kept: unknown[]; deleted: unknown[]; skipped: Array<{ reason: string }> };
    expect(report.created).toMatchObject([{ friendlyName: "twilio-edge-guard day 25 USD", callbackUrl: "https://edge.example.net/usage-trigger" }]);
    expect(report.skipped).toHaveLength(1);
    const again = (await (await call("POST", `/admin/accounts/${sid}/usage-triggers`, { host: "https://edge.example.net" })).json()) as typeof report;
    expect(again).toMatchObject({ created: [], deleted: [], kept: [{ friendlyName: "twilio-edge-guard day 25 USD" }] });
    const { audit } = (await (await call("GET", `/admin/accounts/${sid}`)).json()) as { audit: Array<{ action: string; outcome: string; detail: string }> };
    expect(audit.map((e) => [e.action, e.outcome, e.detail])).toEqual([
      ["usage-triggers", "ok", "0 created, 1 kept, 0 deleted, 1 skipped"],
      ["usage-triggers", "ok", "1 created, 0 kept, 0 deleted, 1 skipped"],
    ]);
  });

  it("uses PUBLIC_URL for the callback when it is set", async () => {
    const twilio = triggerStandin();
    outbound = mockOutbound([[TWILIO_API, (req) => twilio.responder(req)]]);
    const sid = uniqueSid();
    const response = await adminApp({ PUBLIC_URL: "https://public.example.org/twilio" })("POST", `/admin/accounts/${sid}/usage-triggers`);
    expect(await response.json()).toMatchObject({ created: [{ callbackUrl: "https://public.example.org/twilio/usage-trigger" }] });
  });

  it("answers 502 with the partial report when Twilio fails", async () => {
    const twilio = triggerStandin();
    twilio.failCreate = 1;
    outbound = mockOutbound([[TWILIO_API, (req) => twilio.responder(req)]]);
    const response = await adminApp()("POST", `/admin/accounts/${uniqueSid()}/usage-triggers`);
    expect(response.status).toBe(502);
    expect(await response.json()).toMatchObject({ error: "twilio-rest-failed", created: [], kept: [], deleted: [] });
  });
});
