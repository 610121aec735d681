// The console's read side, driven with real signed webhooks on an injected clock: the usage history
// (GET /admin/accounts/:sid/usage, hour and day), the listing served from the light summary (search,
// sort, filter), the overview across accounts, and the refused-requests log (GET /admin/rejections).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TokenCache } from "../../src/accounts/token-cache.ts";
import { rejections } from "../../src/admin/rejections.ts";
import type { Policy } from "../../src/ledger/policy.ts";
import { adminCaller, uniqueIp, WORKER } from "../support/admin.ts";
import { viaApp } from "../support/app.ts";
import { subaccount as knownSubaccount } from "../support/money.ts";
import { mockOutbound, twilioWorld, type FakeTwilio } from "../support/origin.ts";
import { inboundSms, signedForm, uniqueSid, type Params } from "../support/twilio.ts";

const tokenCache = new TokenCache();
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** Five years ahead of the real clock (never a fixed date): alarms on the real clock never prune these windows. */
const Y = new Date().getUTCFullYear() + 5;
const T0 = Date.parse(`${Y}-06-15T10:20:00.000Z`);
/** How long a summary push (an AccountGuard's waitUntil) may take to land in the directory: polled, not slept. */
const PUSH_LANDS = { timeout: 5_000, interval: 10 };

let twilio: FakeTwilio;
let outbound: ReturnType<typeof mockOutbound>;
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

function setup(): void {
  ({ twilio, outbound } = twilioWorld({ alerts: false }));
}

/** A subaccount whose breaker answers at the edge ("block"), 1000 events a day unless the test says otherwise. */
function subaccount(policy: Partial<Policy>): Promise<{ sid: string; token: string }> {
  return knownSubaccount(twilio, { limits: [{ window: "day", events: 1000 }], action: "block", ...policy });
}

/** One webhook as if it arrived at `atMs`, with its after-the-answer work done. */
async function webhookAt(atMs: number, params: Params, token: string, ip = "198.51.100.7"): Promise<Response> {
  const request = await signedForm(`${WORKER}/webhooks/sms`, params, { token, headers: { "cf-connecting-ip": ip } });
  return viaApp(request, {}, { now: () => atMs, tokenCache });
}

type Point = { start: number; usd: number; events: number; blocked: number; trips: Array<{ at: number; reason: string }> };
type Series = { sid: string; by: string; from: number; to: number; limits: { usd: number | null; events: number | null }; points: Point[]; totals: Record<string, number> };

describe("GET /admin/accounts/:sid/usage", () => {
  it("answers spend and events per hour for 48 hours and per day for 90 days, with blocked events and the trip marked", async () => {
    setup();
    const { sid, token } = await subaccount({ limits: [{ window: "hour", events: 3 }, { window: "day", usd: 40 }], action: "block" });
    const yesterday = T0 - DAY;
    for (let i = 0; i < 2; i++) expect((await webhookAt(yesterday + i * 1000, inboundSms(sid), token)).status).toBe(200);
    // Today: three pass, the fourth trips the hour's limit (and is answered blocked), the fifth is blocked.
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await webhookAt(T0 + i * 1000, inboundSms(sid), token));
    expect(answers.map((r) => r.headers.get("x-guard-breaker"))).toEqual([null, null, null, "open", "open"]);

    const call = adminCaller({ now: () => T0 + 60_000 });
    const hourly = (await (await call("GET", `/admin/accounts/${sid}/usage?by=hour`)).json()) as Series;
    expect(hourly.points).toHaveLength(48);
    expect(hourly.limits).toEqual({ usd: null, events: 3 });
    const now = hourly.points[47]!;
    expect(now.start).toBe(Date.parse(`${Y}-06-15T10:00:00.000Z`));
    // Blocked inbound events still count (Twilio bills an inbound message the guard answered).
    expect(now).toMatchObject({ events: 5, blocked: 2 });
    expect(now.trips).toHaveLength(1);
    expect(now.trips[0]!.reason).toBe("limit hour 3 events");
    expect(hourly.points[23]).toMatchObject({ start: Date.parse(`${Y}-06-14T10:00:00.000Z`), events: 2, blocked: 0 });
    expect(hourly.points.filter((p) => p.events > 0)).toHaveLength(2);

    const daily = (await (await call("GET", `/admin/accounts/${sid}/usage?by=day`)).json()) as Series;
    expect(daily.points).toHaveLength(90);
    expect(daily.limits).toEqual({ usd: 40, events: null });
    expect(daily.points.slice(-2).map((p) => [p.events, p.blocked, p.trips.length])).toEqual([[2, 0, 0], [5, 2, 1]]);
    expect(daily.points[89]!.usd).toBeGreaterThan(0);
  });

  it("refuses another grain, naming the parameter", async () => {
    const response = await adminCaller()("GET", `/admin/accounts/${uniqueSid()}/usage?by=week`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ field: "by" });
  });

  it("keeps its buckets bounded: the prune drops hours older than 48 and days older than 90", async () => {
    setup();
    const { sid, token } = await subaccount({});
    await webhookAt(T0, inboundSms(sid), token);
    const stub = env.ACCOUNT_GUARD.getByName(sid);
    const count = await runInDurableObject(stub, (instance, state) => {
      const sql = state.storage.sql;
      for (let i = 1; i <= 200; i++) {
        sql.exec("INSERT OR IGNORE INTO usage_buckets (grain, start_ms, usd_micros, events, blocked) VALUES ('hour', ?, 1, 1, 0)", Date.now() - i * HOUR - (Date.now() % HOUR));
        sql.exec("INSERT OR IGNORE INTO usage_buckets (grain, start_ms, usd_micros, events, blocked) VALUES ('day', ?, 1, 1, 0)", Date.now() - i * DAY - (Date.now() % DAY));
      }
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('prune_at', '0')");
      void instance;
      return sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM usage_buckets WHERE start_ms < ?", Date.now()).one().n;
    });
    expect(count).toBe(400);
    await runInDurableObject(stub, (instance) => instance.alarm());
    const left = await runInDurableObject(stub, (_instance, state) =>
      state.storage.sql.exec<{ grain: string; n: number }>("SELECT grain, COUNT(*) AS n FROM usage_buckets WHERE start_ms < ? GROUP BY grain ORDER BY grain", Date.now()).toArray(),
    );
    // The past ones left are at most the retention minus the current bucket.
    expect(left).toEqual([{ grain: "day", n: 89 }, { grain: "hour", n: 47 }]);
  });
});

type Listed = { sid: string; friendlyName: string | null; breaker: { state: string } | null; spendTodayUsd: number; eventsToday: number; warned: boolean; lastActivityAt: number | null };
type Listing = { accounts: Listed[]; total: number; next: string | null; nextOffset: number | null };

describe("the account listing, from the light summary", () => {
  it("sorts by spend, state and last activity, filters open and warned, and searches by SID", async () => {
    setup();
    const quiet = await subaccount({ limits: [{ window: "day", events: 100 }] });
    const busy = await subaccount({ limits: [{ window: "day", events: 100 }] });
    const warned = await subaccount({ limits: [{ window: "day", events: 5 }], warnAt: 0.5 });
    const open = await subaccount({ limits: [{ window: "day", events: 1 }] });
    await webhookAt(T0, inboundSms(quiet.sid), quiet.token);
    for (let i = 0; i < 4; i++) await webhookAt(T0 + 1_000 + i, inboundSms(busy.sid), busy.token);
    for (let i = 0; i < 3; i++) await webhookAt(T0 + 2_000 + i, inboundSms(warned.sid), warned.token);
    for (let i = 0; i < 2; i++) await webhookAt(T0 + 3_000 + i, inboundSms(open.sid), open.token);
    // Summaries are pushed after the answer; the last ones of a burst by the trailing push.
    const sids = [quiet.sid, busy.sid, warned.sid, open.sid];
    for (const sid of sids) await env.ACCOUNT_GUARD.getByName(sid).summary(T0 + 10_000);

    const call = adminCaller({ now: () => T0 + 10_000 });
    const mine = (rows: Listed[]) => rows.filter((r) => sids.includes(r.sid)).map((r) => r.sid);
    const list = async (query: string) => (await (await call("GET", `/admin/accounts?limit=500&${query}`)).json()) as Listing;

    // The pushes land after each object's answer (its waitUntil): wait for the listing to show them.
    const bySpend = await vi.waitFor(async () => {
      const page = await list("sort=spend");
      expect(mine(page.accounts)).toEqual([busy.sid, warned.sid, open.sid, quiet.sid]);
      return page;
    }, PUSH_LANDS);
    const busyRow = bySpend.accounts.find((r) => r.sid === busy.sid)!;
    expect(busyRow).toMatchObject({ eventsToday: 4, breaker: { state: "closed" }, lastActivityAt: T0 + 1_003 });
    expect(busyRow.spendTodayUsd).toBeGreaterThan(0);
    expect(mine((await list("sort=state")).accounts)[0]).toBe(open.sid);
    expect(mine((await list("sort=activity")).accounts)).toEqual([open.sid, warned.sid, busy.sid, quiet.sid]);
    expect(mine((await list("filter=open")).accounts)).toEqual([open.sid]);
    expect(mine((await list("filter=warned")).accounts)).toEqual([warned.sid]);
    const found = await list(`q=${warned.sid.slice(0, 20).toUpperCase()}`);
    expect(found.accounts.map((r) => r.sid)).toContain(warned.sid);
    expect(found.accounts.every((r) => r.sid.startsWith(warned.sid.slice(0, 20)))).toBe(true);
    expect((await list(`q=${warned.sid.slice(-10)}`)).accounts.map((r) => r.sid)).toEqual([warned.sid]);
  });

  it("gets the last figures of a burst: the first event pushes at once, the rest by the trailing push from the alarm", async () => {
    setup();
    const { sid, token } = await subaccount({ limits: [{ window: "day", events: 100 }] });
    for (let i = 0; i < 4; i++) await webhookAt(T0 + i, inboundSms(sid), token);
    const listed = async () => {
      const page = (await (await adminCaller({ now: () => T0 + 100 })("GET", `/admin/accounts?q=${sid}`)).json()) as Listing;
      return page.accounts[0]?.eventsToday ?? 0;
    };
    await vi.waitFor(async () => expect(await listed()).toBe(1), PUSH_LANDS);
    const stub = env.ACCOUNT_GUARD.getByName(sid);
    const due = await runInDurableObject(stub, (_instance, state) => {
      const at = state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'summary_at'").one().value;
      state.storage.sql.exec("UPDATE meta SET value = '0' WHERE key = 'summary_at'");
      return Number(at);
    });
    expect(due).toBeGreaterThan(0);
    await runInDurableObject(stub, (instance) => instance.alarm());
    await vi.waitFor(async () => expect(await listed()).toBe(4), PUSH_LANDS);
  });

  it("searches friendly names learned from Twilio's listing, and shows them", async () => {
    const sid = uniqueSid();
    const directory = env.DIRECTORY.getByName("directory");
    await directory.register(sid, false, Date.now());
    const name = `Customer ${crypto.randomUUID().slice(0, 8)} 100%_done`;
    await directory.putFriendlyNames([{ sid, friendlyName: name }]);
    const call = adminCaller();
    const listing = (await (await call("GET", `/admin/accounts?q=${encodeURIComponent(name.slice(9, 17))}`)).json()) as Listing;
    expect(listing.accounts.map((r) => [r.sid, r.friendlyName])).toEqual([[sid, name]]);
    // % and _ are literal, not wildcards.
    expect(((await (await call("GET", "/admin/accounts?q=%25_d")).json()) as Listing).accounts.map((r) => r.sid)).toContain(sid);
    expect(((await (await call("GET", "/admin/accounts?q=zz%25zz")).json()) as Listing).accounts).toEqual([]);
  });

  it("refuses an unknown sort or filter, naming the parameter", async () => {
    const call = adminCaller();
    for (const query of ["sort=cost", "filter=closed", "offset=-1", `q=${"x".repeat(65)}`]) {
      const response = await call("GET", `/admin/accounts?${query}`);
      expect(response.status, query).toBe(400);
      expect(((await response.json()) as { field: string }).field).toBe(query.split("=")[0]);
    }
  });

  it("serves 10,000 summarised accounts sorted by spend in one query, not a snapshot per row", { timeout: 30_000 }, async () => {
    const prefix = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
    const day = Date.UTC(Y, 8, 1);
    await runInDurableObject(env.DIRECTORY.getByName("directory"), (_instance, state) => {
      state.storage.transactionSync(() => {
        for (let i = 0; i < 10_000; i++) {
          const sid = `AC${prefix}${(i + 1).toString(16).padStart(24, "0")}`;
          state.storage.sql.exec("INSERT OR IGNORE INTO accounts (sid, first_seen_at, is_parent) VALUES (?, 1, 0)", sid);
          state.storage.sql.exec(
            `INSERT OR REPLACE INTO account_summary (sid, is_parent, state, suspension, action, day_start_ms, spend_micros, events, warned_until_ms, max_used, last_activity_ms, rev)
             VALUES (?, 0, ?, 'none', 'block', ?, ?, 1, 0, 0.1, ?, 1)`,
            sid, i % 100 === 0 ? "open" : "closed", day, i * 1_000, day + i,
          );
        }
      });
    });
    const call = adminCaller({ now: () => day + HOUR });
    const started = Date.now();
    const page = (await (await call("GET", `/admin/accounts?sort=spend&limit=50&q=AC${prefix}`)).json()) as Listing;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(page.total).toBe(10_000);
    expect(page.accounts).toHaveLength(50);
    expect(page.accounts[0]!.spendTodayUsd).toBe(9.999);
    expect(page.nextOffset).toBe(50);
    const open = (await (await call("GET", `/admin/accounts?filter=open&limit=500&q=AC${prefix}`)).json()) as Listing;
    expect(open.total).toBe(100);
    // No account was asked for anything: a row answered by its AccountGuard would carry a fresh push (rev > 1).
    await new Promise((resolve) => setTimeout(resolve, 50));
    const asked = await runInDurableObject(env.DIRECTORY.getByName("directory"), (_instance, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM account_summary WHERE sid LIKE ? AND rev > 1", `AC${prefix}%`).one().n,
    );
    expect(asked).toBe(0);
  });
});

describe("GET /admin/overview", () => {
  it("sums today's spend, counts warned and open accounts, and names the top spenders", async () => {
    setup();
    const day = Date.parse(`${Y}-07-01T08:00:00.000Z`);
    const a = await subaccount({ limits: [{ window: "day", events: 1 }] });
    await webhookAt(day, inboundSms(a.sid), a.token);
    await webhookAt(day + 1, inboundSms(a.sid), a.token);
    await env.ACCOUNT_GUARD.getByName(a.sid).summary(day + 2);
    type Overview = { open: number; accounts: number; spendTodayUsd: number; topSpenders: Array<{ sid: string; state: string }>; day: string };
    // The push lands after the object's answer: wait until the overview has the account.
    const overview = await vi.waitFor(async () => {
      const o = (await (await adminCaller({ now: () => day + 10 })("GET", "/admin/overview")).json()) as Overview;
      expect(o.topSpenders.map((t) => t.sid)).toContain(a.sid);
      return o;
    }, PUSH_LANDS);
    expect(overview.day).toBe(`${Y}-07-01`);
    expect(overview.open).toBeGreaterThanOrEqual(1);
    expect(overview.spendTodayUsd).toBeGreaterThan(0);
    expect(overview.topSpenders.map((t) => t.sid)).toContain(a.sid);
    expect(overview.topSpenders.find((t) => t.sid === a.sid)!.state).toBe("open");
  });
});

type RejectionList = { rejections: Array<Record<string, unknown>>; dropped: number; kept: number };

describe("GET /admin/rejections", () => {
  it("lists refused webhooks and admin calls: time, route, reason, client, account; no body, query or secret", async () => {
    setup();
    const { sid } = await subaccount({});
    const ip = uniqueIp();
    const at = Date.parse(`${Y}-08-01T12:00:00.000Z`);
    const forged = await webhookAt(at, inboundSms(sid, { Body: "secret body text" }), "not-the-token", ip);
    expect(forged.status).toBe(403);
    const call = adminCaller({ now: () => at + 1 });
    expect((await call("GET", "/admin/accounts?token=leaked-in-a-query", { token: "junk-token-value", ip })).status).toBe(401);
    await rejections.settled();
    const list = (await (await call("GET", "/admin/rejections?limit=50")).json()) as RejectionList;
    const mine = list.rejections.filter((r) => r.client === ip);
    expect(mine.map((r) => [r.route, r.status, r.reason])).toEqual([
      ["admin", 401, "token-invalid"],
      ["webhooks", 403, expect.stringMatching(/signature/)],
    ]);
    expect(mine[1]).toMatchObject({ atMs: at, method: "POST", path: "/webhooks/sms", account: sid });
    expect(mine[0]).toMatchObject({ path: "/admin/accounts", account: null });
    const text = JSON.stringify(list);
    for (const secret of ["secret body text", "junk-token-value", "leaked-in-a-query", "not-the-token"]) expect(text).not.toContain(secret);
    expect(list.kept).toBe(1_000);
  });

  it("keeps a bounded ring: the newest 1,000, oldest overwritten", async () => {
    const gate = env.ADMIN_GATE.getByName("rejections");
    const entries = Array.from({ length: 1_200 }, (_, i) => ({ atMs: i, route: "webhooks", method: "POST", path: `/webhooks/${i}`, status: 403, reason: "bad-signature", client: "ring-test", account: null }));
    await gate.addRejections({ entries: entries.slice(0, 600), dropped: 0 });
    await gate.addRejections({ entries: entries.slice(600), dropped: 3 });
    const rows = await runInDurableObject(gate, (_instance, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM rejections").one().n);
    expect(rows).toBeLessThanOrEqual(1_000);
    const newest = await gate.rejections(2);
    expect(newest.rejections.map((r) => r.path)).toEqual(["/webhooks/1199", "/webhooks/1198"]);
    expect(newest.dropped).toBeGreaterThanOrEqual(3);
  });

  it("cuts long paths and drops query strings before storing", async () => {
    const gate = env.ADMIN_GATE.getByName("rejections");
    await gate.addRejections({ entries: [{ atMs: 1, route: "webhooks", method: "POST", path: `/webhooks/${"a".repeat(500)}?AuthToken=x`, status: 403, reason: "r", client: "cut-test", account: "not-a-sid" }], dropped: 0 });
    const [row] = (await gate.rejections(1)).rejections;
    expect(row!.path.length).toBeLessThanOrEqual(161);
    expect(row!.path).not.toContain("AuthToken");
    expect(row!.account).toBeNull();
  });
});
