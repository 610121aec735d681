// UTC window boundaries under load: events racing across 23:59:59.999 → 00:00:00.000 (a day end, a
// month end, a year end) are each counted in exactly one window, limits reset at the boundary, and a
// retry after midnight of an event first seen before it is not counted again in the new day. HTTP
// cannot make the clock cross midnight on demand, so this runs in workerd with an injected clock:
// createApp({ now }) per request, each request with its own fixed instant, all sent concurrently.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TokenCache } from "../../src/accounts/token-cache.ts";
import { createApp } from "../../src/app.ts";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import type { Policy } from "../../src/ledger/policy.ts";
import { windowEnd, windowId } from "../../src/ledger/windows.ts";
import { ORIGIN, TWILIO_API, fakeTwilio, mockOutbound, twiml, type FakeTwilio } from "../support/origin.ts";
import { PARENT_SID, inboundSms, messageStatus, signedForm, uniqueSid, type Params } from "../support/twilio.ts";

const WORKER = "https://guard.example.com";
/** One token cache for every per-request app, as one isolate has: one Twilio lookup per subaccount. */
const tokenCache = new TokenCache();

// Future instants: alarms the ledger schedules relative to them never fire during the test, and no
// pruning (which runs on the real clock) can touch their windows.
// Derived from the clock, never written down: a fixed date would become a past one.
const NOW = Date.now();
const YEAR_END = Date.UTC(new Date(NOW).getUTCFullYear() + 1, 0, 1);
/** The next month end that is not also the year end (so the two cases stay distinct). */
const MONTH_END = windowEnd("month", NOW) === YEAR_END ? windowEnd("month", YEAR_END) : windowEnd("month", NOW);
/** A day boundary that is no month end: the 16th of the month after MONTH_END. */
const MID_MONTH = MONTH_END + 15 * 86_400_000;
/** The last instant of the old window. */
const LAST_MS = 1;

function guard(sid: string): DurableObjectStub<AccountGuard> {
  return env.ACCOUNT_GUARD.getByName(sid);
}

let twilio: FakeTwilio;
let outbound: ReturnType<typeof mockOutbound>;
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

async function subaccount(policy: Partial<Policy>): Promise<{ sid: string; token: string }> {
  twilio = fakeTwilio(PARENT_SID);
  outbound = mockOutbound([
    [ORIGIN, () => twiml()],
    [TWILIO_API, (req) => twilio.responder(req)],
  ]);
  const sid = uniqueSid();
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
    expect(new Date(before[0]!).toISOString()).toBe(new Date(MONTH_END - 1).toISOString());
    expect(new Date(after[0]!).toISOString()).toBe(new Date(MONTH_END).toISOString());
    const answers = await Promise.all(interleave(before, after).map((t) => at(t, inboundSms(sid), token)));
    // A full day's limit on each side: nothing above it, so nothing blocked.
    expect(answers.filter((r) => r.headers.get("x-guard-breaker") !== null)).toHaveLength(0);
    expect(outbound.to(ORIGIN)).toHaveLength(2 * PER_SIDE);
    expect(eventsOf(await totals(sid))).toEqual({
      [windowId("minute", MONTH_END - 1)]: PER_SIDE,
      [windowId("hour", MONTH_END - 1)]: PER_SIDE,
      [windowId("day", MONTH_END - 1)]: PER_SIDE,
      [windowId("month", MONTH_END - 1)]: PER_SIDE,
      [windowId("minute", MONTH_END)]: PER_SIDE,
      [windowId("hour", MONTH_END)]: PER_SIDE,
      [windowId("day", MONTH_END)]: PER_SIDE,
      [windowId("month", MONTH_END)]: PER_SIDE,
    });
    // The new day is at its limit too: the next event takes it above and is blocked.
    const next = await at(MONTH_END + 100, inboundSms(sid), token);
    expect(next.headers.get("x-guard-breaker")).toBe("open");
    expect((await totals(sid))[windowId("day", MONTH_END)]!.events).toBe(PER_SIDE + 1);
  });

  it("year end: a per-minute limit resets at 00:00:00.000, and the event above it trips", async () => {
    const PER_MINUTE = 20;
    const { sid, token } = await subaccount({ limits: [{ window: "minute", events: PER_MINUTE }] });
    const answers = await Promise.all(
      interleave(instants(YEAR_END, PER_MINUTE, "before"), instants(YEAR_END, PER_MINUTE, "after")).map((t) => at(t, inboundSms(sid), token)),
    );
    expect(answers.filter((r) => r.headers.get("x-guard-breaker") !== null)).toHaveLength(0);
    const t = eventsOf(await totals(sid));
    expect(t[windowId("minute", YEAR_END - 1)]).toBe(PER_MINUTE);
    expect(t[windowId("minute", YEAR_END)]).toBe(PER_MINUTE);
    expect(t[windowId("month", YEAR_END - 1)]).toBe(PER_MINUTE);
    expect(t[windowId("month", YEAR_END)]).toBe(PER_MINUTE);
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
    expect(t[windowId("day", MID_MONTH - 1)]).toBe(30);
    expect(t[windowId("day", MID_MONTH)] ?? 0).toBe(0);
  });

  it("status callbacks across midnight: a message is priced once, in the window of its first billable status", async () => {
    const { sid, token } = await subaccount({ limits: [{ window: "day", usd: 100 }] });
    const messages = Array.from({ length: 25 }, () => uniqueSid("SM"));
    await Promise.all(messages.map((m, i) => at(MID_MONTH - LAST_MS - i, messageStatus(sid, m, "sent", { NumSegments: "2" }), token, "/webhooks/status")));
    await Promise.all(messages.map((m, i) => at(MID_MONTH + i, messageStatus(sid, m, "delivered", { NumSegments: "2" }), token, "/webhooks/status")));
    const t = await totals(sid);
    expect(t[windowId("day", MID_MONTH - 1)]).toEqual({ events: 25, usdMicros: 25 * 2 * 8_300 });
    expect(t[windowId("day", MID_MONTH)] ?? { events: 0, usdMicros: 0 }).toEqual({ events: 0, usdMicros: 0 });
  });
});
