// The AccountGuard keeps the usage buckets' country figures it read or wrote (account-guard.ts
// #moveCountry: no SELECT per send), a few buckets at most. Storage stays the truth: sends spread over
// more hours than it keeps, settled in another order, and a prune between them, leave every bucket's
// figures as storage alone would (the sends of each hour, less the ones Twilio refused: a country at zero is not listed).
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { destinationOf } from "../../src/egress/destination.ts";
import type { ReserveRequest } from "../../src/egress/protocol.ts";
import type { SendFacts } from "../../src/egress/send.ts";
import { windowStart } from "../../src/ledger/windows.ts";
import { guard, quiesce } from "../support/guard.ts";
import { uniqueSid } from "../support/twilio.ts";

const HOUR_MS = 3_600_000;
/** More hours than the copy keeps (8 buckets). */
const HOURS = 12;
const US = "+14155552671";
const GB = "+447400123456";

const made: string[] = [];
afterEach(async () => {
  for (const sid of made.splice(0)) await quiesce(sid);
});

function facts(to: string): SendFacts {
  return { kind: "message", channel: "sms", destination: destinationOf(to).destination, segments: 1, minutes: 0, mms: false, hasStatusCallback: true };
}

/** Each hour bucket's sends by country, from the usage answer (oldest first, buckets with any). */
async function hourly(sid: string, atMs: number): Promise<Array<[number, Record<string, number>]>> {
  const usage = await guard(sid).usage("hour", atMs);
  return usage.points.filter((p) => p.countries.length > 0).map((p) => [p.start, Object.fromEntries(p.countries.map((c) => [c.country, c.sends]))]);
}

describe("the AccountGuard's copy of the buckets' country figures", () => {
  it("leaves each bucket's figures right over more hours than it keeps, settled in another order, across a prune", async () => {
    const sid = uniqueSid();
    made.push(sid);
    const stub = guard(sid);
    await stub.setPolicy(sid, { limits: [{ window: "day", usd: 100 }] });
    const now = windowStart("hour", Date.now()) + 1000;
    const hours = Array.from({ length: HOURS }, (_, k) => now - (HOURS - 1 - k) * HOUR_MS);
    const refused: string[] = [];
    for (const at of hours) {
      for (const to of [US, GB, US]) {
        const answer = await stub.reserveSend({ accountSid: sid, atMs: at, mode: "enforce", key: null, send: facts(to) } satisfies ReserveRequest);
        if (!answer.ok) throw new Error(answer.refusal.reason);
        if (to === GB) refused.push(answer.reservationId);
      }
    }
    // Twilio refuses each hour's GB send: released from the oldest bucket's figures to the newest, alternating.
    const order = refused.flatMap((id, i) => (i % 2 === 0 ? [id] : [])).concat(refused.filter((_, i) => i % 2 === 1).reverse());
    for (const [i, id] of order.entries()) {
      await stub.settleSends(sid, [{ reservationId: id, settlement: { type: "rejected" } }], now + i);
      if (i === HOURS / 2) {
        await runInDurableObject(stub, (_i, state) => state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('prune_at', '0')"));
        await runDurableObjectAlarm(stub);
      }
    }
    const expected = hours.map((at): [number, Record<string, number>] => [windowStart("hour", at), { US: 2 }]);
    expect(await hourly(sid, now)).toEqual(expected);
    // The day buckets (each send's other bucket, kept while the hours changed) add up the same.
    expect((await stub.usage("day", now)).countries.map((c) => [c.country, c.sends])).toEqual([["US", 2 * HOURS]]);
    // A send after all that lands on the figures storage holds.
    await stub.reserveSend({ accountSid: sid, atMs: now + 5000, mode: "enforce", key: null, send: facts(GB) });
    expect((await hourly(sid, now)).at(-1)).toEqual([windowStart("hour", now), { US: 2, GB: 1 }]);
  });
});
