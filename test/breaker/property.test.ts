// A property test of one AccountGuard: seeded random interleavings of events (messages, calls, their
// statuses in any order), duplicates, operator trips and resets, limit trips, alarms, and Twilio REST
// outcomes (5xx, 429, network errors, 200 with an unreadable body, answers arriving late and out of
// order), run partly concurrently. After each run, with the outbox drained:
//   - every event is counted once: the windows hold exactly the model's events and dollars;
//   - the account's status at Twilio (the mock's) matches the breaker: suspended iff open and done;
//   - no reservation outlives its call: every call that ended has a settled entry.
// A failing run prints its seed; PROPERTY_SEED=<n> in the shell replays one (see below).
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { ALERTS, TWILIO_API, fakeTwilio, mockOutbound, twilioError, type FakeTwilio } from "../support/origin.ts";
import { drainAlarms, guard } from "../support/guard.ts";
import { subaccount } from "../support/money.ts";
import { Seeded } from "../support/seeded.ts";
import { callStatus, inboundCall, inboundSms, messageStatus, uniqueSid, type Params } from "../support/twilio.ts";

const RUNS = 12;
const OPS_PER_RUN = 40;
const RESERVED_MICROS = 14_000; // one minute at the policy's voiceMinute

interface Model {
  /** countKey → micro-USD the ledger must hold for it once everything has arrived. */
  expected: Map<string, number>;
  calls: Array<{ sid: string; ended: boolean; final: number; terminal: Params; ringing: Params }>;
  sent: Params[];
}

function billable(params: Params): BillableEvent | null {
  const e = classifyWebhook(new Map(params));
  return e.kind === "not-billable" ? null : e;
}

let outbound: ReturnType<typeof mockOutbound>;
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

async function run(seed: number): Promise<void> {
  const rng = new Seeded(seed);
  const twilio: FakeTwilio = fakeTwilio("AC00000000000000000000000000000001");
  let unreadable = 0;
  outbound = mockOutbound([
    [TWILIO_API, async (req) => {
      // Answers arrive late and out of order, so alarms, resets and trips interleave with REST calls.
      await new Promise((resolve) => setTimeout(resolve, rng.int(3)));
      if (unreadable > 0 && req.method === "POST" && /\/Accounts\/AC[0-9a-f]{32}\.json$/.test(req.url)) {
        unreadable -= 1;
        return new Response("<html>bad gateway</html>", { status: 200 });
      }
      return twilio.responder(req);
    }],
    [ALERTS, () => new Response("ok")],
  ]);
  const { sid } = await subaccount(twilio, {
    limits: [{ window: "day", events: 1 + rng.int(12) }],
    action: "suspend",
    prices: { smsSegment: 0.0083, mms: 0.022, voiceMinute: 0.014 },
  });
  const model: Model = { expected: new Map(), calls: [], sent: [] };
  const record = (params: Params) => {
    model.sent.push(params);
    const e = billable(params);
    return e === null ? Promise.resolve() : guard(sid).record(e, null);
  };

  const ops: Array<() => Promise<unknown>> = [
    () => {
      // An inbound message's webhook carries no Price of its own (classify.ts): one segment at the policy's price.
      const params = inboundSms(sid, { Price: "-0.0100", PriceUnit: "USD" });
      model.expected.set(`msg:${params.find(([k]) => k === "MessageSid")![1]}`, 8_300);
      return record(params);
    },
    () => {
      const message = uniqueSid("SM");
      const price = (1 + rng.int(9)) * 1_000;
      model.expected.set(`msg:${message}`, price);
      const statuses = ["queued", "sent", "delivered", "read"].filter(() => rng.chance(0.7));
      if (!statuses.some((s) => s !== "queued")) statuses.push("delivered");
      return Promise.all(statuses.map((s) => record(messageStatus(sid, message, s, { Price: `-${(price / 1e6).toFixed(6)}`, PriceUnit: "USD" }))));
    },
    () => {
      const ringing = inboundCall(sid);
      const callSid = ringing.find(([k]) => k === "CallSid")![1];
      const completed = rng.chance(0.5);
      const final = completed ? (1 + rng.int(5)) * 10_000 : 0;
      const terminal = completed
        ? callStatus(sid, callSid, "completed", { Direction: "inbound", Duration: "1", Price: `-${(final / 1e6).toFixed(6)}`, PriceUnit: "USD" })
        : callStatus(sid, callSid, rng.pick(["busy", "no-answer", "canceled", "failed"]), { Direction: "inbound" });
      model.calls.push({ sid: callSid, ended: false, final, terminal, ringing });
      model.expected.set(`call:${callSid}`, RESERVED_MICROS);
      return record(ringing);
    },
    () => {
      const open = model.calls.filter((c) => !c.ended);
      if (open.length === 0) return Promise.resolve();
      const call = rng.pick(open);
      call.ended = true;
      model.expected.set(`call:${call.sid}`, call.final);
      return record(call.terminal);
    },
    () => (model.sent.length === 0 ? Promise.resolve() : record(rng.pick(model.sent))), // a Twilio retry
    () => guard(sid).tripNow(sid, "property trip"),
    () => guard(sid).reset(sid),
    () => runDurableObjectAlarm(guard(sid)),
    () => {
      const kind = rng.pick(["suspend", "reactivate"] as const);
      const answer = rng.pick([twilioError(500, 20500), twilioError(429, 20429), twilioError(503, 20503), "network", "unreadable"] as const);
      if (answer === "unreadable") unreadable += 1;
      else twilio.failNext(kind, answer);
      return Promise.resolve();
    },
  ];

  for (let i = 0; i < OPS_PER_RUN; ) {
    // One to three operations at once: their awaits interleave inside the Durable Object.
    const group = Array.from({ length: 1 + rng.int(3) }, () => rng.pick(ops));
    i += group.length;
    await Promise.all(group.map((op) => op()));
  }
  // Every call ends (a call's completion callback may also have come before its Voice URL request).
  for (const call of model.calls.filter((c) => !c.ended)) {
    call.ended = true;
    model.expected.set(`call:${call.sid}`, call.final);
    await record(call.terminal);
  }
  unreadable = 0;
  await drainAlarms(sid, 60);

  const state = await runInDurableObject(guard(sid), (_i, s) => ({
    totals: s.storage.sql.exec<{ usd: number | null; events: number | null }>("SELECT SUM(usd_micros) AS usd, SUM(events) AS events FROM totals WHERE window = 'month'").one(),
    entries: new Map(s.storage.sql.exec<{ count_key: string; usd_micros: number; settled: number }>("SELECT count_key, usd_micros, settled FROM counted").toArray().map((r) => [r.count_key, r])),
  }));
  const snapshot = await guard(sid).snapshot();
  const label = `seed ${seed}`;
  // Every event counted once: each Sid's entry holds its price, and the windows add up to them.
  for (const [key, micros] of model.expected) expect(state.entries.get(key)?.usd_micros, `${label}: ${key}`).toBe(micros);
  expect(state.totals.usd ?? 0, label).toBe([...model.expected.values()].reduce((a, b) => a + b, 0));
  expect(state.totals.events ?? 0, label).toBe(model.expected.size);
  // No reservation outlives its call.
  expect([...state.entries.values()].filter((e) => e.settled === 0).map((e) => e.count_key), label).toEqual([]);
  // Twilio's view of the account matches the breaker once the outbox has drained.
  const suspended = snapshot.breaker.state === "open" && snapshot.breaker.suspension !== "none";
  if (suspended) expect(snapshot.breaker.suspension, label).toBe("done");
  expect(twilio.subaccounts.get(sid)!.status, label).toBe(suspended ? "suspended" : "active");
  outbound.restore();
}

describe("AccountGuard under random interleavings", () => {
  it(`keeps its invariants over ${RUNS} seeded runs of ${OPS_PER_RUN} operations`, async () => {
    for (let seed = 1; seed <= RUNS; seed++) await run(seed);
  }, 120_000);
});
