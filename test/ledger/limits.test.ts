import { describe, expect, it } from "vitest";
import { CLOSED_BREAKER, applyEvent, breakerBlocks, resetBreaker, tripBreaker, type WindowTotals } from "../../src/ledger/limits.ts";
import { parsePolicy } from "../../src/ledger/policy.ts";
import { windowId } from "../../src/ledger/windows.ts";

const NOW = Date.parse("2026-11-28T12:00:00Z");
const policy = (limits: unknown[], warnAt = 0.8) => parsePolicy({ limits, warnAt });

function run(p: ReturnType<typeof policy>, n: number, add = { usdMicros: 0, events: 1 }, now = NOW) {
  let totals: WindowTotals[] = [];
  const results = [];
  for (let i = 0; i < n; i++) {
    const evaluation = applyEvent(p, totals, now, add);
    totals = evaluation.totals;
    results.push(evaluation);
  }
  return results;
}

describe("applyEvent", () => {
  it("lets `events: 20` pass twenty events and crosses on the 21st", () => {
    const results = run(policy([{ window: "day", events: 20 }]), 21);
    expect(results.slice(0, 20).every((r) => r.crossed === null)).toBe(true);
    expect(results[20]!.crossed).toEqual({ window: "day", events: 20 });
  });

  it("does not trip when spend equals a usd limit exactly, only above it", () => {
    const p = policy([{ window: "day", usd: 1 }]);
    const reach = applyEvent(p, [], NOW, { usdMicros: 1_000_000, events: 1 });
    expect(reach.crossed).toBeNull();
    const above = applyEvent(p, reach.totals, NOW, { usdMicros: 1, events: 1 });
    expect(above.crossed).toEqual({ window: "day", usd: 1 });
  });

  it("warns once, on the event that reaches warnAt", () => {
    const results = run(policy([{ window: "day", events: 10 }], 0.5), 9);
    const warned = results.map((r, i) => (r.warnings.length > 0 ? i + 1 : 0)).filter(Boolean);
    expect(warned).toEqual([5]);
    expect(results[4]!.warnings[0]).toEqual({ limit: { window: "day", events: 10 }, windowId: windowId("day", NOW) });
  });

  it("starts a new window empty: yesterday's totals do not count today", () => {
    const p = policy([{ window: "day", events: 2 }]);
    const yesterday: WindowTotals[] = [{ window: "day", windowId: windowId("day", NOW - 86_400_000), usdMicros: 0, events: 100 }];
    const evaluation = applyEvent(p, yesterday, NOW, { usdMicros: 0, events: 1 });
    expect(evaluation.crossed).toBeNull();
    expect(evaluation.totals.find((t) => t.window === "day")).toMatchObject({ windowId: windowId("day", NOW), events: 1 });
  });

  it("evaluates every window at once and reports the first limit crossed", () => {
    const p = policy([{ window: "day", events: 100 }, { window: "minute", events: 2 }]);
    const results = run(p, 3);
    expect(results[2]!.crossed).toEqual({ window: "minute", events: 2 });
  });
});

describe("breaker transitions", () => {
  const trip = { reason: "limit", nowMs: NOW, tripId: "t1" };

  it("suspends a subaccount and alerts when the action is suspend", () => {
    const { breaker, effects } = tripBreaker(CLOSED_BREAKER, { ...trip, action: "suspend", isParent: false });
    expect(breaker).toMatchObject({ state: "open", suspension: "pending", tripId: "t1" });
    expect(effects).toEqual([{ type: "suspend" }, { type: "alert", level: "trip" }]);
    expect(breakerBlocks(breaker)).toBe(true);
  });

  it("never suspends the parent account: it blocks and alerts", () => {
    const { breaker, effects } = tripBreaker(CLOSED_BREAKER, { ...trip, action: "suspend", isParent: true });
    expect(breaker.suspension).toBe("none");
    expect(effects).toEqual([{ type: "alert", level: "trip" }]);
    expect(breakerBlocks(breaker)).toBe(true);
  });

  it("blocks without suspending when the action is block", () => {
    const { breaker, effects } = tripBreaker(CLOSED_BREAKER, { ...trip, action: "block", isParent: false });
    expect([breaker.suspension, breakerBlocks(breaker), effects]).toEqual(["none", true, [{ type: "alert", level: "trip" }]]);
  });

  it("only notifies when the action is alert: open, but not blocking", () => {
    const { breaker } = tripBreaker(CLOSED_BREAKER, { ...trip, action: "alert", isParent: false });
    expect(breaker.state).toBe("open");
    expect(breakerBlocks(breaker)).toBe(false);
  });

  it("opening an open breaker changes nothing and has no effects", () => {
    const open = tripBreaker(CLOSED_BREAKER, { ...trip, action: "suspend", isParent: false }).breaker;
    const again = tripBreaker(open, { ...trip, tripId: "t2", action: "suspend", isParent: false });
    expect(again.breaker).toBe(open);
    expect(again.effects).toEqual([]);
  });

  it("reset reactivates only when a suspension was done or may have reached Twilio", () => {
    for (const [suspension, reactivate] of [["done", true], ["failed", true], ["pending", false], ["none", false]] as const) {
      const { breaker, effects } = resetBreaker({ state: "open", suspension }, { nowMs: NOW });
      expect(breaker).toEqual(CLOSED_BREAKER);
      expect(effects).toEqual(reactivate ? [{ type: "reactivate" }] : []);
    }
  });
});
