// The webhook path's group commit (src/breaker/record-batches.ts) in a real workerd, where one
// request can wait for a ledger call another request makes (cross-request promise resolution, on by
// the compatibility date; the workers test pool turns it off, so only here does the Worker group
// events across requests): concurrent events of one account share calls, and the verdicts and the
// ledger are what they would be one by one.
import { describe, expect, it } from "vitest";
import { SECRETS, dayEventsReach, e2eForFile, eventually, inboundSms, messageStatus, rawRequest, uniqueSid, type E2E } from "./e2e/harness.ts";

const LIMIT = 10;
const POLICY = JSON.stringify({ limits: [{ window: "day", events: LIMIT }], warnAt: 0.8, action: "suspend" });

let e2e: E2E;
e2eForFile({ vars: { GUARD_POLICY: POLICY } }, (started) => (e2e = started));

/** A counter's value in GET /admin/metrics (summed over its label sets). */
async function counter(name: string, labels = ""): Promise<number> {
  const answer = await rawRequest(e2e.base, { method: "GET", path: "/admin/metrics", headers: [["Authorization", `Bearer ${SECRETS.adminToken}`]] });
  let sum = 0;
  for (const line of answer.body.toString().split("\n")) {
    if (line.startsWith(`${name}{${labels}`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

describe("grouped ledger calls in workerd", () => {
  it(`50 concurrent inbound SMS against a limit of ${LIMIT}: exactly ${LIMIT} pass, one suspension, and calls carried several events`, async () => {
    const sub = e2e.subaccount();
    const answers = await Promise.all(Array.from({ length: 50 }, () => e2e.send(e2e.signedForm(sub, inboundSms(sub.sid)), 60_000)));
    const tally: Record<string, number> = {};
    for (const a of answers) tally[`${a.status} ${a.headers["x-guard-breaker"] ?? "closed"}`] = (tally[`${a.status} ${a.headers["x-guard-breaker"] ?? "closed"}`] ?? 0) + 1;
    expect(tally).toEqual({ "200 closed": LIMIT, "200 open": 50 - LIMIT });
    await dayEventsReach(e2e, sub.sid, 50);
    await eventually(() => expect(e2e.suspensions(sub.sid)).toBe(1), 25_000);
    // The isolate flushes its counters at most every 5 s, at the end of a request: poll with requests.
    await eventually(async () => {
      await rawRequest(e2e.base, { method: "GET", path: "/healthz" });
      const calls = await counter("guard_ledger_calls_total");
      const events = await counter("guard_ledger_call_events_total");
      expect(events).toBeGreaterThanOrEqual(50);
      expect(calls).toBeLessThan(events);
      // Some call carried more than one event (here typically: one lone call, then most of the rest in one).
      expect(calls - (await counter("guard_ledger_calls_total", 'events="1"'))).toBeGreaterThan(0);
    }, 20_000, 500);
  }, 90_000);

  it("concurrent status callbacks and their repeats are each counted once, and no request hangs or fails", async () => {
    const sub = e2e.subaccount();
    const callbacks = Array.from({ length: 8 }, () => messageStatus(sub.sid, uniqueSid("SM"), "delivered"));
    const requests = [...callbacks, ...callbacks].map((pairs) => e2e.signedForm(sub, pairs, { path: "/webhooks/status" }));
    const answers = await Promise.all(requests.map((r) => e2e.send(r, 60_000)));
    expect(answers.map((a) => a.status)).toEqual(Array<number>(16).fill(200));
    await dayEventsReach(e2e, sub.sid, 8);
    const day = (await e2e.account(sub.sid)).windows.find((w) => w.window === "day");
    expect(day?.events).toBe(8);
    const trouble = e2e.logs().filter((l) => /hung|different request|ledger-write-lost|did not end/.test(l.message));
    expect(trouble).toEqual([]);
  }, 90_000);
});
