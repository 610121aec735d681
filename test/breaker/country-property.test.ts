// A property test of the usage buckets' sends by destination country (src/ledger/countries.ts) in one
// AccountGuard: seeded random interleavings of sends through the egress gate (messages and calls to
// allowed and refused countries) and their outcomes in any order (Twilio's answer, no answer, the
// guard's own status callback naming the reservation, the app's callback overtaking Twilio's answer, a
// reported price, a call's completion), with retries and alarms. Once every send has its final outcome:
//   - the country figures and the bucket move together: their sends add up to the bucket's events and
//     their spend to the bucket's spend (every correction went to both, once);
//   - each country holds one send per send Twilio created there, and every refusal as blocked.
// A failing run names its seed.
import { runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { Settlement } from "../../src/ledger/reservations.ts";
import { classifyWebhook } from "../../src/ledger/classify.ts";
import { windowStart } from "../../src/ledger/windows.ts";
import { destinationOf } from "../../src/egress/destination.ts";
import type { SendFacts } from "../../src/egress/send.ts";
import { ALERTS, mockOutbound } from "../support/origin.ts";
import { guard } from "../support/guard.ts";
import { Seeded } from "../support/seeded.ts";
import { callStatus, messageStatus, uniqueSid, type Params } from "../support/twilio.ts";

const RUNS = 8;
const OPS_PER_RUN = 40;
const TO: Record<string, string> = { US: "+14155552671", GB: "+447400123456", FR: "+33612345678", MD: "+37360123456" };
const ALLOWED = ["US", "GB", "FR"];

interface Send {
  id: string;
  kind: "message" | "call";
  country: string;
  /** The Sid Twilio gives it when it creates it; whether it does is decided up front (its truth). */
  sid: string;
  created: boolean;
}

let outbound: ReturnType<typeof mockOutbound> | undefined;
afterEach(() => outbound?.restore());

async function run(seed: number): Promise<void> {
  const rng = new Seeded(seed);
  outbound = mockOutbound([[ALERTS, () => new Response("ok")]]);
  const account = uniqueSid();
  const stub = guard(account);
  await stub.setPolicy(account, {
    limits: [{ window: "day", usd: 10_000 }],
    action: "alert",
    prices: { sms: { US: 0.0083, GB: 0.04, "*": 0.1 }, voice: { US: 0.014, GB: 0.1, "*": 0.4 } },
    egress: { countries: ALLOWED, maxCallMinutes: 10 },
  });
  // Every instant of the run falls in one hour bucket, whatever the real time.
  const hour = windowStart("hour", Date.now());
  let tick = 1000;
  const at = () => hour + tick++;
  const sends: Send[] = [];
  let refused = 0;
  const done: Array<() => Promise<unknown>> = [];

  const record = (params: Params, reservationId?: string) => {
    const event = classifyWebhook(new Map(params));
    if (event.kind === "not-billable") throw new Error(event.reason);
    return stub.record(event, null, at(), reservationId);
  };
  const callback = (s: Send, withReservation: boolean) => {
    const params = s.kind === "message"
      ? messageStatus(account, s.sid, rng.pick(["sent", "delivered"]), rng.chance(0.5) ? { Price: `-0.0${1 + rng.int(9)}`, PriceUnit: "USD" } : {})
      : callStatus(account, s.sid, "completed", { CallDuration: String(1 + rng.int(900)) });
    return () => record(params, withReservation ? s.id : undefined);
  };
  const settle = (s: Send, settlement: Settlement) => () => stub.settleSend(account, s.id, settlement, at());

  const ops: Array<() => (() => Promise<unknown>) | null> = [
    // A send through the gate: reserved (or refused), its truth decided.
    () => async () => {
      const kind = rng.pick(["message", "call"] as const);
      const country = rng.pick(Object.keys(TO));
      const facts: SendFacts = { kind, channel: kind === "call" ? "voice" : "sms", destination: destinationOf(TO[country]!).destination, segments: 1, minutes: kind === "call" ? null : 0, mms: false, hasStatusCallback: true };
      const answer = await stub.reserveSend({ accountSid: account, atMs: at(), mode: "enforce", key: null, send: facts });
      if (!answer.ok) {
        refused += 1;
        return;
      }
      sends.push({ id: answer.reservationId, kind, country, sid: uniqueSid(kind === "call" ? "CA" : "SM"), created: rng.chance(0.75) });
    },
    // Twilio's answer (or none) for a send.
    () => {
      if (sends.length === 0) return null;
      const s = rng.pick(sends);
      if (!s.created) return settle(s, rng.chance(0.7) ? { type: "rejected" } : { type: "unknown" });
      return settle(s, rng.pick<Settlement>([{ type: "accepted", sid: s.sid }, { type: "accepted", sid: s.sid, priceUsd: -(1 + rng.int(50)) / 1000 }, { type: "unknown" }, { type: "sid-seen", sid: s.sid }]));
    },
    // A status callback of a created send: the guard's own (naming the reservation) or the app's.
    () => {
      const created = sends.filter((s) => s.created);
      return created.length === 0 ? null : callback(rng.pick(created), rng.chance(0.5));
    },
    // A retry of anything already done.
    () => (done.length === 0 ? null : rng.pick(done)),
    () => () => runDurableObjectAlarm(stub),
  ];

  for (let i = 0; i < OPS_PER_RUN; i++) {
    const op = rng.pick(ops)();
    if (op === null) continue;
    await op();
    done.push(op);
  }
  // Every send gets its final outcome; every call that was created ends.
  for (const s of sends) {
    await settle(s, s.created ? { type: "accepted", sid: s.sid } : { type: "rejected" })();
    if (s.created && s.kind === "call") await callback(s, false)();
  }

  const series = await stub.usage("hour", hour + tick);
  const bucket = series.points.at(-1)!;
  const label = `seed ${seed}`;
  const sum = (key: "sends" | "usd" | "blocked") => bucket.countries.reduce((total, c) => total + c[key], 0);
  expect(sum("sends"), label).toBe(bucket.events);
  expect(Math.round(sum("usd") * 1e6), label).toBe(Math.round(bucket.usd * 1e6));
  expect(sum("blocked"), label).toBe(refused);
  for (const country of Object.keys(TO)) {
    const line = bucket.countries.find((c) => c.country === country);
    expect(line?.sends ?? 0, `${label}: ${country}`).toBe(sends.filter((s) => s.created && s.country === country).length);
  }
  outbound.restore();
}

describe("sends by destination country under random interleavings", () => {
  it(`moves with the bucket, once, over ${RUNS} seeded runs of ${OPS_PER_RUN} operations`, async () => {
    for (let seed = 1; seed <= RUNS; seed++) await run(seed);
  }, 120_000);
});
