// The admin API's calls (CONTRACT.md, "Admin API"): the account listing (keyset paging), the account
// page, policy (validated: 400 naming the field, nothing changed), trip, reset (with the reactivation
// outcome), and the audit trail each mutation leaves. Twilio REST is a fetch mock (fakeTwilio).
import { createExecutionContext, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { tokenFingerprint } from "../../src/admin/auth.ts";
import { generateSecretBase32 } from "../../src/admin/totp.ts";
import { ALERTS, TWILIO_API, fakeTwilio, mockOutbound, statusCalls, type FakeTwilio } from "../support/origin.ts";
import { PARENT_SID, uniqueSid } from "../support/twilio.ts";
import { TEST_ADMIN_TOKEN, WORKER, adminCaller, totpCodeAt } from "../support/admin.ts";
import { drainAlarms, guard } from "../support/guard.ts";

/** SIDs sharing a random prefix nobody else uses, so a page of the shared directory is predictable. */
function sidFamily(count: number): { sids: string[]; before: string } {
  const prefix = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
  const sids = Array.from({ length: count }, (_, i) => `AC${prefix}${(i + 1).toString(16).padStart(24, "0")}`);
  return { sids, before: `AC${prefix}${"0".repeat(24)}` };
}

async function register(sids: string[], atMs = Date.now()): Promise<void> {
  const directory = env.DIRECTORY.getByName("directory");
  for (const sid of sids) await directory.register(sid, false, atMs);
}

let twilio: FakeTwilio;
let outbound: ReturnType<typeof mockOutbound>;
function setupTwilio(): void {
  twilio = fakeTwilio(PARENT_SID);
  outbound = mockOutbound([
    [TWILIO_API, (req) => twilio.responder(req)],
    [ALERTS, () => new Response("ok")],
  ]);
}

afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

type Row = {
  sid: string;
  isParent: boolean;
  breaker: { state: string; suspension: string; reason: string | null };
  action: string;
  policySource: string;
  windows: Array<{ window: string; usd: number; events: number; limits: Array<{ usd?: number; events?: number; used: number }> }>;
};
type Listing = { accounts: Row[]; next: string | null; total: number; totpRequired: boolean };

describe("GET /admin/accounts", () => {
  it("lists accounts in SID order, a page at a time, with the cursor of the next page", async () => {
    const call = adminCaller();
    const { sids, before } = sidFamily(5);
    await register([...sids].reverse());
    const seen: string[] = [];
    let after = before;
    while (seen.length < 5) {
      const listing = (await (await call("GET", `/admin/accounts?limit=2&after=${after}`)).json()) as Listing;
      seen.push(...listing.accounts.map((a) => a.sid));
      if (seen.length < 5) {
        expect(listing.accounts.length).toBe(2);
        expect(listing.next).toBe(listing.accounts[1]!.sid);
        after = listing.next!;
      }
    }
    expect(seen.slice(0, 5)).toEqual(sids);
  });

  it("shows each account's breaker, suspension and spend per window against its limits", async () => {
    const call = adminCaller();
    const { sids, before } = sidFamily(2);
    const [quiet, tripped] = sids as [string, string];
    await guard(quiet).setPolicy(quiet, { limits: [{ window: "day", usd: 20 }, { window: "minute", events: 100 }], action: "block" });
    await guard(tripped).setPolicy(tripped, { limits: [{ window: "day", usd: 5 }], action: "block" });
    await guard(tripped).tripNow(tripped, "test trip");
    await register(sids);
    const listing = (await (await call("GET", `/admin/accounts?limit=2&after=${before}`)).json()) as Listing;
    const [a, b] = listing.accounts as [Row, Row];
    expect(a).toMatchObject({ sid: quiet, isParent: false, action: "block", policySource: "account", breaker: { state: "closed", suspension: "none" } });
    expect(b).toMatchObject({ sid: tripped, breaker: { state: "open", suspension: "none" } });
    const day = a.windows.find((w) => w.window === "day")!;
    expect(day).toMatchObject({ usd: 0, events: 0, limits: [{ usd: 20, used: 0 }] });
    expect(a.windows.find((w) => w.window === "minute")!.limits).toEqual([{ events: 100, used: 0 }]);
    expect(listing.total).toBeGreaterThanOrEqual(2);
    expect(listing.totpRequired).toBe(false);
  });

  it("defaults to 50 per page and refuses a limit above 500 or not a number, naming the parameter", async () => {
    const call = adminCaller();
    await register(sidFamily(1).sids);
    const listing = (await (await call("GET", "/admin/accounts")).json()) as Listing;
    expect(listing.accounts.length).toBeLessThanOrEqual(50);
    for (const query of ["limit=501", "limit=0", "limit=abc", "limit=-1", "after=nope"]) {
      const response = await call("GET", `/admin/accounts?${query}`);
      expect(response.status, query).toBe(400);
      expect(((await response.json()) as { field: string }).field).toBe(query.split("=")[0]);
    }
  });

  it("stays fast with 10,000 accounts: a page deep in the list costs one page of work", { timeout: 30_000 }, async () => {
    const call = adminCaller();
    const { sids, before } = sidFamily(10_000);
    await runInDurableObject(env.DIRECTORY.getByName("directory"), (_instance, state) => {
      state.storage.transactionSync(() => {
        for (const sid of sids) state.storage.sql.exec("INSERT OR IGNORE INTO accounts (sid, first_seen_at, is_parent) VALUES (?, ?, 0)", sid, 1);
      });
    });
    const started = Date.now();
    const deep = (await (await call("GET", `/admin/accounts?limit=50&after=${sids[9_000]}`)).json()) as Listing;
    const elapsed = Date.now() - started;
    expect(deep.accounts.map((a) => a.sid)).toEqual(sids.slice(9_001, 9_051));
    expect(deep.total).toBeGreaterThanOrEqual(10_000);
    // Generous for a loaded CI machine (~0.5 s here, most of it waking 50 fresh Durable Objects).
    expect(elapsed).toBeLessThan(5_000);
    const first = (await (await call("GET", `/admin/accounts?after=${before}`)).json()) as Listing;
    expect(first.accounts.map((a) => a.sid)).toEqual(sids.slice(0, 50));
    expect(first.next).toBe(sids[49]);
  });
});

describe("GET /admin/accounts/:sid", () => {
  it("answers the snapshot (state, windows, policy, events, trips, history) and the audit trail", async () => {
    const call = adminCaller();
    const sid = uniqueSid();
    await guard(sid).setPolicy(sid, { limits: [{ window: "day", usd: 7 }], action: "block" });
    await call("POST", `/admin/accounts/${sid}/trip`, { body: { reason: "looks like fraud" } });
    const response = await call("GET", `/admin/accounts/${sid}`);
    expect(response.status).toBe(200);
    const detail = (await response.json()) as {
      account: { sid: string; breaker: { state: string }; policy: { limits: unknown[] }; trips: Array<{ detail: string }>; history: unknown[]; recentEvents: unknown[]; windows: unknown[] };
      audit: Array<{ action: string }>;
    };
    expect(detail.account).toMatchObject({ sid, breaker: { state: "open" }, policy: { limits: [{ window: "day", usd: 7 }] } });
    expect(detail.account.trips[0]!.detail).toBe("looks like fraud");
    expect(detail.account.windows).toHaveLength(4);
    expect(Array.isArray(detail.account.recentEvents)).toBe(true);
    expect(detail.audit.map((e) => e.action)).toEqual(["trip"]);
  });

  it("answers 404 for an account the guard has recorded nothing about, 400 for a malformed SID", async () => {
    const call = adminCaller();
    expect((await call("GET", `/admin/accounts/${uniqueSid()}`)).status).toBe(404);
    for (const bad of ["AC123", `AC${"A".repeat(32)}`, `XX${"0".repeat(32)}`, `${uniqueSid()}0`]) {
      const response = await call("GET", `/admin/accounts/${bad}`);
      expect(response.status, bad).toBe(400);
      expect(await response.json()).toMatchObject({ error: "invalid-sid", field: "sid" });
    }
  });

  it("answers 405 with Allow for a wrong method, 404 for an unknown route", async () => {
    const call = adminCaller();
    const sid = uniqueSid();
    const wrong = await call("GET", `/admin/accounts/${sid}/trip`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
    expect((await call("DELETE", "/admin/accounts")).status).toBe(405);
    expect((await call("GET", `/admin/accounts/${sid}/nothing`)).status).toBe(404);
  });
});

describe("PUT /admin/accounts/:sid/policy", () => {
  it("sets the account's policy, normalised, and `null` returns it to GUARD_POLICY", async () => {
    const call = adminCaller();
    const sid = uniqueSid();
    const set = await call("PUT", `/admin/accounts/${sid}/policy`, { body: { limits: [{ window: "hour", usd: 3 }], action: "alert" } });
    expect(set.status).toBe(200);
    expect(await set.json()).toMatchObject({ account: { policySource: "account", policy: { limits: [{ window: "hour", usd: 3 }], action: "alert", warnAt: 0.8 } } });
    const cleared = await call("PUT", `/admin/accounts/${sid}/policy`, { body: "null" });
    expect(await cleared.json()).toMatchObject({ account: { policySource: "default" } });
  });

  it("refuses an invalid policy with 400 naming the field, and changes nothing (not even the TOTP code)", async () => {
    const secret = generateSecretBase32();
    const call = adminCaller({ totpSecret: secret });
    const sid = uniqueSid();
    const code = await totpCodeAt(secret, Date.now());
    const cases: Array<[unknown, string]> = [
      [{ limits: [{ window: "day", usd: -1 }] }, "limits[0].usd"],
      [{ limits: [{ window: "week", usd: 1 }] }, "limits[0].window"],
      [{ limits: [], action: "explode" }, "action"],
      [{ limits: [], warnAt: 2 }, "warnAt"],
      [{ limit: [] }, "limit"],
      ["{not json", "(json)"],
      ["", "(json)"],
    ];
    for (const [body, field] of cases) {
      const response = await call("PUT", `/admin/accounts/${sid}/policy`, { totp: code, body });
      expect(response.status, field).toBe(400);
      expect(await response.json()).toMatchObject({ field });
    }
    expect((await guard(sid).snapshot()).policySource).toBe("default");
    // The code was never consumed by the refused calls: it still works once.
    const ok = await call("PUT", `/admin/accounts/${sid}/policy`, { totp: code, body: { limits: [{ window: "day", events: 9 }] } });
    expect(ok.status).toBe(200);
    const detail = (await (await call("GET", `/admin/accounts/${sid}`)).json()) as { audit: Array<{ action: string; totp: boolean; before: unknown; after: unknown }> };
    expect(detail.audit).toHaveLength(1);
    expect(detail.audit[0]).toMatchObject({
      action: "policy",
      totp: true,
      before: { policySource: "default" },
      after: { policySource: "account", policy: { limits: [{ window: "day", events: 9 }] } },
    });
  });

  it("refuses a body over 64 KiB with 413", async () => {
    const response = await adminCaller()("PUT", `/admin/accounts/${uniqueSid()}/policy`, { body: JSON.stringify({ limits: [], pad: "x".repeat(70_000) }) });
    expect(response.status).toBe(413);
  });

  it("refuses a chunked body over 64 KiB without a content-length with 413, reading no further than the cap, and stores nothing", async () => {
    const sid = uniqueSid();
    const chunk = new TextEncoder().encode(" ".repeat(1024));
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += chunk.byteLength;
        if (pulled > 1024 * 1024) controller.close();
        else controller.enqueue(chunk);
      },
    });
    const app = createApp();
    const request = new Request(`${WORKER}/admin/accounts/${sid}/policy`, {
      method: "PUT",
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, "content-type": "application/json" },
      body: endless,
    });
    expect(request.headers.get("content-length")).toBeNull();
    const response = await app.fetch(request, { ...(env as GuardEnv), ADMIN_TOKEN: TEST_ADMIN_TOKEN }, createExecutionContext());
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: "body-too-large" });
    expect(pulled).toBeLessThan(64 * 1024 + 8 * 1024);
    // Nothing recorded: the account the refused call named is still unknown to the guard.
    expect((await adminCaller()("GET", `/admin/accounts/${sid}`)).status).toBe(404);
  });
});

describe("POST /admin/accounts/:sid/trip and /reset", () => {
  it("trips with the operator's reason, suspends through REST, and reset reactivates: reactivation done", async () => {
    setupTwilio();
    const call = adminCaller();
    const sid = uniqueSid();
    twilio.subaccounts.set(sid, { token: "t", status: "active", owner: PARENT_SID });
    const trip = await call("POST", `/admin/accounts/${sid}/trip`, { body: { reason: "runaway loop" } });
    expect(trip.status).toBe(200);
    expect(await trip.json()).toMatchObject({ tripped: true, account: { breaker: { state: "open", suspension: "pending", reason: "operator" } } });
    await drainAlarms(sid);
    expect(twilio.subaccounts.get(sid)!.status).toBe("suspended");
    const again = await call("POST", `/admin/accounts/${sid}/trip`);
    expect(await again.json()).toMatchObject({ tripped: false });

    const reset = await call("POST", `/admin/accounts/${sid}/reset`);
    expect(reset.status).toBe(200);
    expect(await reset.json()).toMatchObject({ reactivation: "done", account: { breaker: { state: "closed" } } });
    expect(twilio.subaccounts.get(sid)!.status).toBe("active");
    expect(statusCalls(outbound.calls, sid, "active")).toHaveLength(1);
  });

  it("reports reactivation not-needed when the guard suspended nothing, and retrying when Twilio fails", async () => {
    setupTwilio();
    const call = adminCaller();
    const blockOnly = uniqueSid();
    await guard(blockOnly).setPolicy(blockOnly, { limits: [], action: "block" });
    await call("POST", `/admin/accounts/${blockOnly}/trip`);
    expect(await (await call("POST", `/admin/accounts/${blockOnly}/reset`)).json()).toMatchObject({ reactivation: "not-needed" });

    const flaky = uniqueSid();
    twilio.subaccounts.set(flaky, { token: "t", status: "active", owner: PARENT_SID });
    await call("POST", `/admin/accounts/${flaky}/trip`);
    await drainAlarms(flaky);
    twilio.failNext("reactivate", { status: 503, code: 20503, message: "Service unavailable" });
    expect(await (await call("POST", `/admin/accounts/${flaky}/reset`)).json()).toMatchObject({ reactivation: "retrying" });
    // The retry lands now, not from an alarm firing after this file has ended (its log would outlive the run).
    await drainAlarms(flaky);
    expect(twilio.subaccounts.get(flaky)!.status).toBe("active");
  });

  it("refuses a malformed trip body with 400 naming the field", async () => {
    const call = adminCaller();
    const sid = uniqueSid();
    for (const [body, field] of [
      [{ reason: 5 }, "reason"],
      [{ reason: "x".repeat(201) }, "reason"],
      [{ reason: "ok", extra: 1 }, "extra"],
      ["[1]", "(json)"],
      ["nope", "(json)"],
    ] as Array<[unknown, string]>) {
      const response = await call("POST", `/admin/accounts/${sid}/trip`, { body });
      expect(response.status, field).toBe(400);
      expect(await response.json()).toMatchObject({ field });
    }
    expect((await guard(sid).snapshot()).breaker.state).toBe("closed");
  });
});

describe("audit trail", () => {
  it("records every mutation: when, which call, account, token fingerprint (never the token), TOTP, before/after, outcome", async () => {
    setupTwilio();
    const secret = generateSecretBase32();
    const call = adminCaller({ totpSecret: secret });
    const sid = uniqueSid();
    const now = Date.now();
    await guard(sid).setPolicy(sid, { limits: [], action: "block" });
    const started = Date.now();
    expect((await call("POST", `/admin/accounts/${sid}/trip`, { totp: await totpCodeAt(secret, now - 30_000), body: { reason: "audit me" } })).status).toBe(200);
    expect((await call("POST", `/admin/accounts/${sid}/reset`, { totp: await totpCodeAt(secret, now) })).status).toBe(200);
    const response = await call("GET", `/admin/accounts/${sid}`);
    const raw = await response.text();
    expect(raw).not.toContain(TEST_ADMIN_TOKEN);
    const { audit } = JSON.parse(raw) as { audit: Array<Record<string, unknown>> };
    const fingerprint = await tokenFingerprint(TEST_ADMIN_TOKEN);
    expect(audit).toHaveLength(2);
    expect(audit[0]).toMatchObject({
      action: "reset",
      call: "POST /admin/accounts/:sid/reset",
      account: sid,
      tokenFingerprint: fingerprint,
      totp: true,
      before: { state: "open" },
      after: { state: "closed", reactivation: "not-needed" },
      outcome: "ok",
    });
    expect(audit[1]).toMatchObject({
      action: "trip",
      call: "POST /admin/accounts/:sid/trip",
      tokenFingerprint: fingerprint,
      before: { state: "closed" },
      after: { state: "open", reason: "operator" },
      outcome: "ok",
      detail: "breaker opened: audit me",
    });
    expect(audit[1]!.atMs as number).toBeGreaterThanOrEqual(started - 1);
    expect(fingerprint).toMatch(/^[0-9a-f]{12}$/);
  });

  it("records a failed mutation's outcome too", async () => {
    setupTwilio();
    const call = adminCaller();
    const sid = uniqueSid();
    // No trigger routes in fakeTwilio: listing the account's triggers answers 404.
    const response = await call("POST", `/admin/accounts/${sid}/usage-triggers`);
    expect(response.status).toBe(502);
    const { audit } = (await (await call("GET", `/admin/accounts/${sid}`)).json()) as { audit: Array<{ action: string; outcome: string; totp: boolean }> };
    expect(audit[0]).toMatchObject({ action: "usage-triggers", outcome: "error", totp: false });
  });
});
