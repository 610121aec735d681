// AccountGuard.reserveSends (the egress gate's group commit): a batch of reservations gives the answers
// and leaves the ledger of the same reservations made one by one with reserveSend(), in the same order
// (the limits, the pumping rules, the refusals, one trip and its one suspension and alert); the
// settlements a batch carries are applied first; one send the object cannot reserve fails alone.
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import { MAX_RECORDS_PER_BATCH } from "../../src/breaker/record-batches.ts";
import { destinationOf } from "../../src/egress/destination.ts";
import type { ReserveAnswer, ReserveOutcome, ReserveRequest } from "../../src/egress/protocol.ts";
import type { SendFacts } from "../../src/egress/send.ts";
import { windowStart } from "../../src/ledger/windows.ts";
import { guard, ledgerRows, quiesce } from "../support/guard.ts";
import { Seeded } from "../support/seeded.ts";
import { uniqueSid } from "../support/twilio.ts";

/** Accounts this file's tests made: quiesced after each test (support/guard.ts quiesce). */
const made: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const sid of made.splice(0)) await quiesce(sid);
});

const POLICY = {
  limits: [{ window: "day" as const, events: 10 }],
  warnAt: 0.5,
  action: "suspend" as const,
  egress: { countries: ["US", "GB"], perDestination: { window: "hour" as const, max: 3 } },
};
const NUMBERS = ["+14155552671", "+14155552672", "+14155552673", "+447400123456", "+37360123456"];

function facts(to: string, kind: "message" | "call" = "message"): SendFacts {
  return { kind, channel: kind === "call" ? "voice" : "sms", destination: destinationOf(to).destination, segments: 1, minutes: kind === "call" ? null : 0, mms: false, hasStatusCallback: true };
}

async function account(): Promise<string> {
  const sid = uniqueSid();
  made.push(sid);
  await guard(sid).setPolicy(sid, POLICY);
  return sid;
}

/** `n` sends of `sid` to numbers drawn from `rng` (a repeat number meets the per-destination rule, MD the country rule). */
function sends(sid: string, rng: Seeded, n: number, startMs: number): ReserveRequest[] {
  return Array.from({ length: n }, (_, i): ReserveRequest => {
    const to = rng.pick(NUMBERS);
    return { accountSid: sid, atMs: startMs + i, mode: "enforce", key: null, send: facts(to, rng.chance(0.2) ? "call" : "message") };
  });
}

/** An answer without its reservation id (random by nature). */
function comparable(outcome: ReserveOutcome): unknown {
  return "ok" in outcome && outcome.ok ? { ...outcome, reservationId: "id" } : outcome;
}

describe("AccountGuard.reserveSends", () => {
  it("gives the answers and leaves the ledger of the same reservations made one by one (seeded)", async () => {
    // Every instant of a run falls in one hour bucket, whatever the real time.
    const startMs = windowStart("hour", Date.now()) + 1000;
    for (const seed of [3, 17, 29]) {
      const [one, many] = [await account(), await account()];
      const expected: ReserveOutcome[] = [];
      for (const req of sends(one, new Seeded(seed), 30, startMs)) expected.push(await guard(one).reserveSend(req));
      const rng = new Seeded(seed);
      const all = sends(many, rng, 30, startMs);
      const got: ReserveOutcome[] = [];
      for (let i = 0; i < all.length; ) {
        const n = 1 + rng.int(9);
        got.push(...(await guard(many).reserveSends(many, all.slice(i, i + n))));
        i += n;
      }
      expect(got.map(comparable), `seed ${seed}`).toEqual(expected.map(comparable));
      const [a, b] = [await ledgerRows(one), await ledgerRows(many)];
      for (const key of Object.keys(a) as Array<keyof typeof a>) expect.soft(b[key], `seed ${seed}: ${key}`).toEqual(a[key]);
      // The comparison covers a trip (one suspension and one alert queued) and each refusal's reason.
      expect(a.breaker, `seed ${seed}`).toBe("open");
      expect(a.trips, `seed ${seed}`).toHaveLength(1);
      const reasons = new Set(expected.map((o) => ("ok" in o && !o.ok ? o.refusal.reason : "ok")));
      expect([...reasons].sort(), `seed ${seed}`).toEqual(expect.arrayContaining(["breaker-open", "country", "ok", "per-destination"]));
    }
  });

  it("50 sends in one batch against a budget of 10: exactly 10 reserved, the rest refused in order, one trip", async () => {
    const sid = uniqueSid();
    made.push(sid);
    await guard(sid).setPolicy(sid, { limits: [{ window: "day", events: 10 }], action: "block" });
    const startMs = Date.now();
    const reqs = Array.from({ length: 50 }, (_, i): ReserveRequest => ({ accountSid: sid, atMs: startMs + i, mode: "enforce", key: null, send: facts(`+1415555${2000 + i}`) }));
    const outcomes = await guard(sid).reserveSends(sid, reqs);
    expect(outcomes.slice(0, 10).every((o) => "ok" in o && o.ok)).toBe(true);
    // The send that would cross the limit trips the breaker; the ones after it meet the open breaker.
    expect(outcomes.slice(10).map((o) => ("ok" in o && !o.ok ? o.refusal.reason : "?"))).toEqual(["limit", ...Array<string>(39).fill("breaker-open")]);
    expect((await ledgerRows(sid)).trips).toHaveLength(1);
  });

  it("applies the settlements it carries first: a released reservation frees its budget for the batch", async () => {
    const sid = uniqueSid();
    made.push(sid);
    await guard(sid).setPolicy(sid, { limits: [{ window: "day", events: 1 }], action: "block" });
    const startMs = Date.now();
    const first = (await guard(sid).reserveSend({ accountSid: sid, atMs: startMs, mode: "enforce", key: null, send: facts(NUMBERS[0]!) })) as Extract<ReserveAnswer, { ok: true }>;
    expect(first.ok).toBe(true);
    const next = { accountSid: sid, atMs: startMs + 1, mode: "enforce" as const, key: null, send: facts(NUMBERS[1]!) };
    const outcomes = await guard(sid).reserveSends(sid, [next, { ...next, atMs: startMs + 2 }], [{ reservationId: first.reservationId, settlement: { type: "rejected" } }]);
    expect(outcomes.map((o) => "ok" in o && o.ok)).toEqual([true, false]);
  });

  it("answers `failed` for a send it cannot reserve (rolled back alone) and reserves the others", async () => {
    const sid = await account();
    const startMs = windowStart("hour", Date.now()) + 1000;
    const good = (i: number): ReserveRequest => ({ accountSid: sid, atMs: startMs + i, mode: "enforce", key: null, send: facts(NUMBERS[i]!) });
    const broken = { ...good(1), send: null } as unknown as ReserveRequest;
    const other = { ...good(2), accountSid: uniqueSid() };
    const outcomes = await guard(sid).reserveSends(sid, [good(0), broken, other, good(2)]);
    expect(outcomes.map((o) => ("failed" in o ? "failed" : o.ok))).toEqual([true, "failed", "failed", true]);
    const rows = await ledgerRows(sid);
    expect(rows.reservations).toHaveLength(2);
    expect(rows.totals.find((t) => t.window === "day")?.events).toBe(2);
  });

  it("refuses a batch that is empty, larger than MAX_RECORDS_PER_BATCH or of no account, and reserves nothing", async () => {
    const sid = await account();
    const req: ReserveRequest = { accountSid: sid, atMs: Date.now(), mode: "enforce", key: null, send: facts(NUMBERS[0]!) };
    // Called on the instance: a rejected RPC would also be reported by workerd as uncaught.
    await runInDurableObject(guard(sid), async (instance: AccountGuard) => {
      await expect(instance.reserveSends(sid, [])).rejects.toThrow(/1 to 64/);
      await expect(instance.reserveSends(sid, Array<ReserveRequest>(MAX_RECORDS_PER_BATCH + 1).fill(req))).rejects.toThrow(/1 to 64/);
      await expect(instance.reserveSends("not-an-account", [req])).rejects.toThrow(/AccountSid/);
    });
    expect((await ledgerRows(sid)).reservations).toEqual([]);
  });
});
