// UTC window boundaries under load: events racing across 23:59:59.999 → 00:00:00.000 (a day end, a
// month end, a year end) are each counted in exactly one window, limits reset at the boundary, and a
// retry after midnight of an event first seen before it is not counted again in the new day. HTTP
// cannot make the clock cross midnight on demand, so this runs in workerd with an injected clock:
// createApp({ now }) per request, each request with its own fixed instant, all sent concurrently.
import { createExecutionContext, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TokenCache } from "../../src/accounts/token-cache.ts";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import type { Policy } from "../../src/ledger/policy.ts";
import { ORIGIN, TWILIO_API, fakeTwilio, mockOutbound, twiml, type FakeTwilio } from "../support/origin.ts";
import { PARENT_SID, inboundSms, messageStatus, signedForm, uniqueSid, type Params } from "../support/twilio.ts";
import { guard } from "../support/guard.ts";

const WORKER = "https://guard.example.com";
/** One token cache for every per-request app, as one isolate has: one Twilio lookup per subaccount. */
const tokenCache = new TokenCache();

// Instants derived from the real clock, always at least a month ahead of it: every alarm the ledger
// schedules relative to them (outbox, reconcile, prune: all at or after the injected instant) lies in the
// future, so the Durable Object's alarm, which runs on the real clock, never has ledger work due during
// the test and never prunes their windows. The alarm cannot take an injected clock. It may still fire on
// the real clock for work that is not the ledger's (the listing's summary push, a few seconds after an
// event): afterEach checks that no ledger work is due before the margin, and that running the alarm now,
// on the real clock, changes nothing the tests count (windows, remembered keys, priced Sids).
const TODAY = new Date(Date.now());
const YEAR = TODAY.getUTCFullYear();
const MONTH = TODAY.getUTCMonth();
/** 00:00:00.000 of the first day of the month after next. */
const MONTH_END = Date.UTC(YEAR, MONTH + 2, 1);
/** 00:00:00.000 of 1 January, the year after next. */
const YEAR_END = Date.UTC(YEAR + 2, 0, 1);
/** Midnight starting the 16th of the month after next. */
const MID_MONTH = Date.UTC(YEAR, MONTH + 2, 16);
/** Every ledger alarm (outbox, reconcile, prune) of these tests is at least this far ahead of the real clock. */
const ALARM_MARGIN_MS = 7 * 86_400_000;
/** The last instant of the old window. */
const LAST_MS = 1;

/** Window ids as the contract names them (UTC): minute:YYYY-MM-DDTHH:MM, hour:…THH, day:YYYY-MM-DD, month:YYYY-MM. */
function ids(atMs: number): { minute: string; hour: string; day: string; month: string } {
  const iso = new Date(atMs).toISOString();
  return { minute: `minute:${iso.slice(0, 16)}`, hour: `hour:${iso.slice(0, 13)}`, day: `day:${iso.slice(0, 10)}`, month: `month:${iso.slice(0, 7)}` };
}


let twilio: FakeTwilio;
let outbound: ReturnType<typeof mockOutbound>;
let lastSid: string | null = null;
afterEach(async () => {
  // The premise of the derived instants: the real-clock alarm never had ledger work to do during the test.
  if (lastSid !== null) {
    const sid = lastSid;
    lastSid = null;
    const due = await runInDurableObject(guard(sid), (_instance, state) => {
      const sql = state.storage.sql;
      const meta = (key: string) => sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value ?? null;
      const outbox = sql.exec<{ at: number | null }>("SELECT MIN(next_at_ms) AS at FROM outbox WHERE state = 'pending'").one().at;
      return [meta("prune_at"), meta("reconcile_at"), outbox].filter((t) => t !== null).map(Number);
    });
    for (const at of due) expect(at).toBeGreaterThan(Date.now() + ALARM_MARGIN_MS);
    // Whatever the alarm does on the real clock (the summary push) leaves the ledger as the test left it.
    const before = await ledgerState(sid);
    await runDurableObjectAlarm(guard(sid));
    expect(await ledgerState(sid)).toEqual(before);
  }
  outbound?.restore();
  vi.restoreAllMocks();
});

/** What the tests count: every window row, the remembered keys and the priced Sids. */
async function ledgerState(sid: string): Promise<{ totals: Totals; seen: number; counted: number }> {
  const seenAndCounted = await runInDurableObject(guard(sid), (_instance, state) =>
    state.storage.sql.exec<{ seen: number; counted: number }>("SELECT (SELECT COUNT(*) FROM seen) AS seen, (SELECT COUNT(*) FROM counted) AS counted").one(),
  );
  return { totals: await totals(sid), ...seenAndCounted };
}

async function subaccount(policy: Partial<Policy>): Promise<{ sid: string; token: string }> {
  twilio = fakeTwilio(PARENT_SID);
  outbound = mockOutbound([
    [ORIGIN, () => twiml()],
    [TWILIO_API, (req) => twilio.responder(req)],
  ]);
  const sid = uniqueSid();
  lastSid = sid;
  const token = `token-of-${sid}`;
  twilio.subaccounts.set(sid, { token, status: "active", owner: PARENT_SID });
  // action "block": the breaker answers at the edge; no suspension traffic to wait for.
  await guard(sid).setPolicy(sid, { limits: [{ window: "day", events: 1000 }], warnAt: 0.99, action: "block", ...policy });
  return { sid, token };
}

/** One webhook, handled as if it arrived at `atMs` (the ledger's clock), with its waitUntil work done. */
async function at(atMs: number, params: Params, token: string, path = "/webhooks/sms"): Promise<Response> {
  const app = createApp({ now: () => atMs, tokenCache });
  const ctx = createExecutionContext();
  const response = await app.fetch(await signedForm(`${WORKER}${path}`, params, { token }), env as GuardEnv, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

type Totals = Record<string, { events: number; usdMicros: number }>;

async function totals(sid: string): Promise<Totals> {
  return runInDurableObject(guard(sid), (_instance, state) => {
    const out: Totals = {};
    for (const row of state.storage.sql.exec<{ window_id: string; events: number; usd_micros: number }>("SELECT window_id, events, usd_micros FROM totals").toArray()) {
      out[row.window_id] = { events: row.events, usdMicros: row.usd_micros };
    }
    return out;
  });
}

function eventsOf(t: Totals): Record<string, number> {
  return Object.fromEntries(Object.entries(t).map(([id, v]) => [id, v.events]));
}

/** `n` instants spread over the `spanMs` before `boundary` (the last at 23:59:59.999) or after it (the first at 00:00:00.000). */
function instants(boundary: number, n: number, side: "before" | "after", spanMs = 60): number[] {
  return Array.from({ length: n }, (_, i) => (side === "before" ? boundary - LAST_MS - Math.floor((i * spanMs) / n) : boundary + Math.floor((i * spanMs) / n)));
}

/** Interleaves two lists, so requests on both sides of the boundary are in flight together. */
function interleave<T>(a: T[], b: T[]): T[] {
  const out: T[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) out.push(a[i]!);
    if (i < b.length) out.push(b[i]!);
  }
  return out;
}

describe("UTC window boundaries under load", () => {
  it("month end: events racing across 23:59:59.999 land in exactly one minute, hour, day and month each", async () => {
    const PER_SIDE = 40;
    const { sid, token } = await subaccount({ limits: [{ window: "day", events: PER_SIDE }] });
    const before = instants(MONTH_END, PER_SIDE, "before");
    const after = instants(MONTH_END, PER_SIDE, "after");
    expect(new Date(before[0]!).toISOString()).toMatch(/T23:59:59\.999Z$/);
    expect(new Date(after[0]!).toISOString()).toMatch(/-01T00:00:00\.000Z$/);
    const old = ids(before[0]!);
    const next = ids(after[0]!);
    const answers = await Promise.all(interleave(before, after).map((t) => at(t, inboundSms(sid), token)));
    // A full day's limit on each side: nothing above it, so nothing blocked.
    expect(answers.filter((r) => r.headers.get("x-guard-breaker") !== null)).toHaveLength(0);
    expect(outbound.to(ORIGIN)).toHaveLength(2 * PER_SIDE);
    expect(eventsOf(await totals(sid))).toEqual({
      [old.minute]: PER_SIDE,
      [old.hour]: PER_SIDE,
      [old.day]: PER_SIDE,
      [old.month]: PER_SIDE,
      [next.minute]: PER_SIDE,
      [next.hour]: PER_SIDE,
      [next.day]: PER_SIDE,
      [next.month]: PER_SIDE,
    });
    expect(new Set([old.month, next.month]).size).toBe(2);
    // The new day is at its limit too: the next event takes it above and is blocked.
    const over = await at(MONTH_END + 100, inboundSms(sid), token);
    expect(over.headers.get("x-guard-breaker")).toBe("open");
    expect((await totals(sid))[next.day]!.events).toBe(PER_SIDE + 1);
  });

  it("year end: a per-minute limit resets at 00:00:00.000, and the event above it trips", async () => {
    const PER_MINUTE = 20;
    const { sid, token } = await subaccount({ limits: [{ window: "minute", events: PER_MINUTE }] });
    const answers = await Promise.all(
      interleave(instants(YEAR_END, PER_MINUTE, "before"), instants(YEAR_END, PER_MINUTE, "after")).map((t) => at(t, inboundSms(sid), token)),
    );
    expect(answers.filter((r) => r.headers.get("x-guard-breaker") !== null)).toHaveLength(0);
    const t = eventsOf(await totals(sid));
    const december = ids(YEAR_END - LAST_MS);
    const january = ids(YEAR_END);
    expect([december.minute, january.minute]).toEqual([`minute:${YEAR + 1}-12-31T23:59`, `minute:${YEAR + 2}-01-01T00:00`]);
    expect(t[december.minute]).toBe(PER_MINUTE);
    expect(t[january.minute]).toBe(PER_MINUTE);
    expect(t[december.month]).toBe(PER_MINUTE);
    expect(t[january.month]).toBe(PER_MINUTE);
    const over = await at(YEAR_END + 59_999, inboundSms(sid), token);
    expect(over.headers.get("x-guard-breaker")).toBe("open");
    expect(await over.text()).toBe("<Response/>");
  });

  it("retries across midnight: an event first seen before it is counted once, in the old day", async () => {
    const { sid, token } = await subaccount({ limits: [{ window: "day", events: 1000 }] });
    const events = Array.from({ length: 30 }, () => inboundSms(sid));
    await Promise.all(events.map((e, i) => at(MID_MONTH - LAST_MS - i, e, token)));
    // Twilio retries every one of them just after midnight, twice, concurrently.
    const retries = await Promise.all([...events, ...events].map((e, i) => at(MID_MONTH + (i % 7), e, token)));
    expect(retries.every((r) => r.status === 200)).toBe(true);
    const duplicates = outbound.to(ORIGIN).filter((hit) => hit.headers.get("x-guard-duplicate") === "1");
    expect(duplicates).toHaveLength(60);
    const t = eventsOf(await totals(sid));
    expect(t[ids(MID_MONTH - LAST_MS).day]).toBe(30);
    expect(t[ids(MID_MONTH).day] ?? 0).toBe(0);
  });

  it("status callbacks across midnight: a message is priced once, in the window of its first billable status", async () => {
    const { sid, token } = await subaccount({ limits: [{ window: "day", usd: 100 }] });
    const messages = Array.from({ length: 25 }, () => uniqueSid("SM"));
    await Promise.all(messages.map((m, i) => at(MID_MONTH - LAST_MS - i, messageStatus(sid, m, "sent", { NumSegments: "2" }), token, "/webhooks/status")));
    await Promise.all(messages.map((m, i) => at(MID_MONTH + i, messageStatus(sid, m, "delivered", { NumSegments: "2" }), token, "/webhooks/status")));
    const t = await totals(sid);
    expect(t[ids(MID_MONTH - LAST_MS).day]).toEqual({ events: 25, usdMicros: 25 * 2 * 8_300 });
    expect(t[ids(MID_MONTH).day] ?? { events: 0, usdMicros: 0 }).toEqual({ events: 0, usdMicros: 0 });
  });
});
