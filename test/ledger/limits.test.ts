import { describe, expect, it } from "vitest";
import {
  CLOSED_BREAKER,
  applyEvent,
  breakerBlocks,
  limitLabel,
  reset,
  suspensionResult,
  reactivationResult,
  effectCurrent,
  trip,
  warnThreshold,
  warningAlert,
  warningKey,
  type Breaker,
  type Evaluation,
  type TripInput,
  type WindowTotals,
} from "../../src/ledger/limits.ts";
import { parsePolicy, type Policy } from "../../src/ledger/policy.ts";
import { windowId } from "../../src/ledger/windows.ts";

const NOW = Date.parse("2026-11-28T12:00:00Z");
const ONE_EVENT = { usdMicros: 0, events: 1 };
const policy = (limits: unknown[], warnAt = 0.8): Policy => parsePolicy({ limits, warnAt });

/** Applies `n` identical events in turn, as the Durable Object does, returning every evaluation. */
function run(p: Policy, n: number, add = ONE_EVENT, now = NOW, start: WindowTotals[] = []): Evaluation[] {
  let totals = start;
  const results: Evaluation[] = [];
  for (let i = 0; i < n; i++) {
    const evaluation = applyEvent(p, totals, now, add);
    totals = evaluation.totals;
    results.push(evaluation);
  }
  return results;
}

const dayTotals = (e: Evaluation) => e.totals.find((t) => t.window === "day")!;

describe("applyEvent: crossing", () => {
  it("lets `events: 20` pass twenty events", () => {
    expect(run(policy([{ window: "day", events: 20 }]), 20).every((r) => r.crossed === null)).toBe(true);
  });

  it("crosses `events: 20` on the 21st event", () => {
    expect(run(policy([{ window: "day", events: 20 }]), 21)[20]!.crossed).toEqual({ window: "day", events: 20 });
  });

  it("counts the crossing event in the totals", () => {
    expect(dayTotals(run(policy([{ window: "day", events: 20 }]), 21)[20]!).events).toBe(21);
  });

  it("does not cross when spend equals a usd limit exactly", () => {
    expect(applyEvent(policy([{ window: "day", usd: 1 }]), [], NOW, { usdMicros: 1_000_000, events: 1 }).crossed).toBeNull();
  });

  it("crosses a usd limit one micro-dollar above it", () => {
    const reach = applyEvent(policy([{ window: "day", usd: 1 }]), [], NOW, { usdMicros: 1_000_000, events: 1 });
    expect(applyEvent(policy([{ window: "day", usd: 1 }]), reach.totals, NOW, { usdMicros: 1, events: 1 }).crossed).toEqual({ window: "day", usd: 1 });
  });

  it("compares a fractional usd limit exactly in micro-dollars", () => {
    const p = policy([{ window: "hour", usd: 0.0249 }]);
    expect(run(p, 4, { usdMicros: 8300, events: 1 }).map((r) => r.crossed !== null)).toEqual([false, false, false, true]);
  });

  it("reports the first crossed limit in policy order, with its index", () => {
    const p = policy([{ window: "day", events: 100 }, { window: "minute", events: 2 }, { window: "hour", events: 2 }]);
    expect(run(p, 3)[2]).toMatchObject({ crossed: { window: "minute", events: 2 }, crossedIndex: 1 });
  });

  it("crosses a window that is already above its limit again when the event adds to it", () => {
    const p = policy([{ window: "day", events: 2 }]);
    const over: WindowTotals[] = [{ window: "day", windowId: windowId("day", NOW), usdMicros: 0, events: 5 }];
    expect(applyEvent(p, over, NOW, ONE_EVENT).crossed).toEqual({ window: "day", events: 2 });
  });

  it("does not cross on an event that adds nothing to what the limit counts", () => {
    const p = policy([{ window: "day", events: 2 }]);
    const over: WindowTotals[] = [{ window: "day", windowId: windowId("day", NOW), usdMicros: 0, events: 5 }];
    expect(applyEvent(p, over, NOW, { usdMicros: 500, events: 0 }).crossed).toBeNull();
  });

  it("does not cross on a negative settlement", () => {
    const p = policy([{ window: "day", usd: 0.01 }]);
    const over: WindowTotals[] = [{ window: "day", windowId: windowId("day", NOW), usdMicros: 50_000, events: 1 }];
    expect(applyEvent(p, over, NOW, { usdMicros: -14_000, events: 0 }).crossed).toBeNull();
  });

  it("never crosses with no limits", () => {
    expect(run(policy([]), 50, { usdMicros: 1_000_000_000, events: 1 }).some((r) => r.crossed !== null)).toBe(false);
  });

  it("refuses an addition that is not integer micro-dollars", () => {
    expect(() => applyEvent(policy([]), [], NOW, { usdMicros: 0.5, events: 1 })).toThrow(RangeError);
  });
});

describe("applyEvent: totals and windows", () => {
  it("returns the totals of every window kind, current at nowMs", () => {
    const totals = applyEvent(policy([]), [], NOW, { usdMicros: 8300, events: 1 }).totals;
    expect(totals).toEqual(["minute", "hour", "day", "month"].map((w) => ({ window: w, windowId: windowId(w as "day", NOW), usdMicros: 8300, events: 1 })));
  });

  it("adds to the current window's totals", () => {
    const current: WindowTotals[] = [{ window: "day", windowId: windowId("day", NOW), usdMicros: 100, events: 3 }];
    expect(dayTotals(applyEvent(policy([]), current, NOW, { usdMicros: 50, events: 1 }))).toMatchObject({ usdMicros: 150, events: 4 });
  });

  it("starts a new day empty at UTC midnight: yesterday's totals do not count", () => {
    const midnight = Date.parse("2026-11-29T00:00:00.000Z");
    const yesterday: WindowTotals[] = [{ window: "day", windowId: windowId("day", midnight - 1), usdMicros: 0, events: 100 }];
    const evaluation = applyEvent(policy([{ window: "day", events: 2 }]), yesterday, midnight, ONE_EVENT);
    expect([evaluation.crossed, dayTotals(evaluation)]).toEqual([null, { window: "day", windowId: "day:2026-11-29", usdMicros: 0, events: 1 }]);
  });

  it("starts a new month empty on the 1st", () => {
    const newYear = Date.parse("2027-01-01T00:00:00.000Z");
    const december: WindowTotals[] = [{ window: "month", windowId: "month:2026-12", usdMicros: 900_000_000, events: 10 }];
    const evaluation = applyEvent(policy([{ window: "month", usd: 100 }]), december, newYear, { usdMicros: 8300, events: 1 });
    expect([evaluation.crossed, evaluation.totals.find((t) => t.window === "month")]).toEqual([null, { window: "month", windowId: "month:2027-01", usdMicros: 8300, events: 1 }]);
  });

  it("keeps counting the month across a day rollover", () => {
    const midnight = Date.parse("2026-11-29T00:00:00.000Z");
    const first = applyEvent(policy([]), [], midnight - 1, ONE_EVENT);
    const second = applyEvent(policy([]), first.totals, midnight, ONE_EVENT);
    expect([dayTotals(second).events, second.totals.find((t) => t.window === "month")!.events]).toEqual([1, 2]);
  });

  it("never takes a total below zero (a refund landing in a new window)", () => {
    expect(dayTotals(applyEvent(policy([]), [], NOW, { usdMicros: -14_000, events: 0 })).usdMicros).toBe(0);
  });
});

describe("applyEvent: warnings", () => {
  it("warns on the event that reaches warnAt, and only on that one", () => {
    const warned = run(policy([{ window: "day", events: 10 }], 0.5), 10).map((r, i) => (r.warnings.length > 0 ? i + 1 : 0)).filter(Boolean);
    expect(warned).toEqual([5]);
  });

  it("names the limit, its index and the window in a warning", () => {
    expect(run(policy([{ window: "hour", events: 1000 }, { window: "day", events: 10 }], 0.5), 5)[4]!.warnings).toEqual([
      { limit: { window: "day", events: 10 }, limitIndex: 1, windowId: windowId("day", NOW) },
    ]);
  });

  it("warns when an event passes warnAt without landing on it", () => {
    const p = policy([{ window: "day", usd: 1 }], 0.8);
    expect(run(p, 2, { usdMicros: 500_000, events: 1 })[1]!.warnings).toHaveLength(1);
  });

  it("warns at exactly warnAt despite float noise (100 × 0.07 = 7.000000000000001 warns on the 7th)", () => {
    const warned = run(policy([{ window: "day", events: 100 }], 0.07), 8).findIndex((r) => r.warnings.length > 0);
    expect(warned + 1).toBe(7);
  });

  it("warns again in the next window", () => {
    const p = policy([{ window: "minute", events: 2 }], 0.5);
    const first = applyEvent(p, [], NOW, ONE_EVENT);
    expect(applyEvent(p, first.totals, NOW + 60_000, ONE_EVENT).warnings).toHaveLength(1);
  });

  it("warns at warnAt 1 when the limit is reached, before it is crossed", () => {
    const results = run(policy([{ window: "day", events: 3 }], 1), 4);
    expect(results.map((r) => [r.warnings.length, r.crossed !== null])).toEqual([[0, false], [0, false], [1, false], [0, true]]);
  });

  it("does not warn for a limit the same event crosses (the trip alert says more)", () => {
    expect(applyEvent(policy([{ window: "day", usd: 1 }]), [], NOW, { usdMicros: 2_000_000, events: 1 }).warnings).toEqual([]);
  });

  it("warns once per limit when two limits reach warnAt on one event", () => {
    const p = policy([{ window: "day", events: 10 }, { window: "hour", events: 10 }], 0.5);
    expect(run(p, 5)[4]!.warnings.map((w) => w.limitIndex)).toEqual([0, 1]);
  });
});

describe("warnThreshold", () => {
  it("is the smallest total at or above warnAt of the limit, in the limit's unit", () => {
    expect([warnThreshold({ window: "day", usd: 50 }, 0.8), warnThreshold({ window: "day", events: 7 }, 0.5)]).toEqual([40_000_000, 4]);
  });

  it("is at least 1", () => {
    expect(warnThreshold({ window: "day", events: 1 }, 0.01)).toBe(1);
  });
});

describe("warningKey", () => {
  it("is `${limitIndex}:${windowId}`", () => {
    expect(warningKey(2, "day:2026-11-28")).toBe("2:day:2026-11-28");
  });
});

describe("limitLabel", () => {
  it("names usd and events limits", () => {
    expect([limitLabel({ window: "day", usd: 50 }), limitLabel({ window: "minute", events: 120 })]).toEqual(["day 50 USD", "minute 120 events"]);
  });
});

const TRIP: TripInput = { reason: "limit day 50 USD", nowMs: NOW, action: "suspend", isParent: false, tripId: "t1" };
const opened = (input: Partial<TripInput> = {}): Breaker => trip(CLOSED_BREAKER, { ...TRIP, ...input }).breaker;

describe("trip", () => {
  it("opens a subaccount's breaker with a pending suspension when the action is suspend", () => {
    expect(trip(CLOSED_BREAKER, TRIP).breaker).toEqual({ state: "open", suspension: "pending", reason: TRIP.reason, openedAt: NOW, tripId: "t1", action: "suspend" });
  });

  it("asks for a suspension and a trip alert when the action is suspend", () => {
    expect(trip(CLOSED_BREAKER, TRIP).effects).toEqual([{ type: "suspend" }, { type: "alert", level: "trip", reason: TRIP.reason }]);
  });

  it("never suspends the parent account: suspension none, alert only", () => {
    const { breaker, effects } = trip(CLOSED_BREAKER, { ...TRIP, isParent: true });
    expect([breaker.suspension, effects]).toEqual(["none", [{ type: "alert", level: "trip", reason: TRIP.reason }]]);
  });

  it("blocks the parent account at the edge", () => {
    expect(breakerBlocks(opened({ isParent: true }))).toBe(true);
  });

  it("blocks without suspending when the action is block", () => {
    const { breaker, effects } = trip(CLOSED_BREAKER, { ...TRIP, action: "block" });
    expect([breaker.suspension, breakerBlocks(breaker), effects.map((e) => e.type)]).toEqual(["none", true, ["alert"]]);
  });

  it("only notifies when the action is alert: open (one alert per trip) but not blocking", () => {
    const { breaker, effects } = trip(CLOSED_BREAKER, { ...TRIP, action: "alert" });
    expect([breaker.state, breaker.suspension, breakerBlocks(breaker), effects.map((e) => e.type)]).toEqual(["open", "none", false, ["alert"]]);
  });

  it("is a no-op on an open breaker: same breaker, no effects (one suspension per trip)", () => {
    const open = opened();
    const again = trip(open, { ...TRIP, tripId: "t2", nowMs: NOW + 1 });
    expect([again.breaker, again.effects]).toEqual([open, []]);
  });

  it("is still a no-op on an open breaker whose suspension is done", () => {
    const done = suspensionResult(opened(), "done").breaker;
    expect(trip(done, TRIP).effects).toEqual([]);
  });

});

describe("reset", () => {
  it.each([
    ["done", true],
    ["pending", true],
    ["failed", true],
    ["none", false],
  ] as const)("closes a breaker whose suspension is %s (reactivate: %s)", (suspension, reactivate) => {
    const { breaker, effects } = reset({ ...opened(), suspension }, { nowMs: NOW });
    expect([breaker, effects]).toEqual([CLOSED_BREAKER, reactivate ? [{ type: "reactivate" }] : []]);
  });

  it("never reactivates after a block or alert trip", () => {
    expect([reset(opened({ action: "block" }), { nowMs: NOW }).effects, reset(opened({ action: "alert" }), { nowMs: NOW }).effects]).toEqual([[], []]);
  });

  it("is a no-op on a closed breaker", () => {
    expect(reset(CLOSED_BREAKER, { nowMs: NOW })).toEqual({ breaker: CLOSED_BREAKER, effects: [] });
  });

  it("lets the next trip suspend again", () => {
    const closed = reset(suspensionResult(opened(), "done").breaker, { nowMs: NOW }).breaker;
    expect(trip(closed, { ...TRIP, tripId: "t2" }).effects[0]).toEqual({ type: "suspend" });
  });

});

describe("suspensionResult", () => {
  it("marks the suspension done and ends the account's live calls", () => {
    const { breaker, effects } = suspensionResult(opened(), "done", "t1");
    expect([breaker.suspension, effects]).toEqual(["done", [{ type: "end-calls" }]]);
  });

  it("ignores a second done", () => {
    const done = suspensionResult(opened(), "done").breaker;
    expect(suspensionResult(done, "done")).toEqual({ breaker: done, effects: [] });
  });

  it("marks a retrying suspension failed, with no effects (the caller schedules the retry)", () => {
    const { breaker, effects } = suspensionResult(opened(), "retry");
    expect([breaker.suspension, effects]).toEqual(["failed", []]);
  });

  it("lets a retried suspension succeed", () => {
    expect(suspensionResult(suspensionResult(opened(), "retry").breaker, "done").breaker.suspension).toBe("done");
  });

  it("alerts when the suspension fails for good", () => {
    const { breaker, effects } = suspensionResult(opened(), "failed");
    expect([breaker.suspension, effects]).toEqual(["failed", [{ type: "alert", level: "trip", reason: "suspension failed and will not be retried" }]]);
  });

  it("undoes a suspension that landed after a reset", () => {
    const closed = reset(opened(), { nowMs: NOW }).breaker;
    expect(suspensionResult(closed, "done", "t1")).toEqual({ breaker: closed, effects: [{ type: "reactivate" }] });
  });

  it("ignores a failure that arrives after a reset", () => {
    const closed = reset(opened(), { nowMs: NOW }).breaker;
    expect(suspensionResult(closed, "failed", "t1")).toEqual({ breaker: closed, effects: [] });
  });

  it("ignores an earlier trip's success while a later trip suspends", () => {
    const later = opened({ tripId: "t2" });
    expect(suspensionResult(later, "done", "t1")).toEqual({ breaker: later, effects: [] });
  });

  it("undoes an earlier trip's suspension when the later trip does not suspend", () => {
    const later = opened({ tripId: "t2", action: "block" });
    expect(suspensionResult(later, "done", "t1").effects).toEqual([{ type: "reactivate" }]);
  });
});

describe("breakerBlocks", () => {
  it("does not block when closed", () => {
    expect(breakerBlocks(CLOSED_BREAKER)).toBe(false);
  });

  it("blocks a breaker persisted without an action (suspend or block)", () => {
    expect(breakerBlocks({ state: "open", suspension: "pending" })).toBe(true);
  });
});

describe("warningAlert", () => {
  it("is a warn-level alert naming the limit, the share and the window", () => {
    const warning = run(policy([{ window: "day", usd: 50 }]), 1, { usdMicros: 40_000_000, events: 1 })[0]!.warnings[0]!;
    expect(warningAlert(warning, 0.8)).toEqual({ type: "alert", level: "warn", reason: `day 50 USD reached 80% in ${windowId("day", NOW)}` });
  });
});

describe("effectCurrent", () => {
  const open = (suspension: "pending" | "done" | "failed" | "none", tripId = "t2") => ({ state: "open" as const, suspension, tripId, action: "suspend" as const });
  const closed = { state: "closed" as const, suspension: "none" as const };
  it("lets a suspension through for the current trip only, until it is done", () => {
    expect(effectCurrent(open("pending"), "suspend", "t2")).toBe(true);
    expect(effectCurrent(open("failed"), "suspend", "t2")).toBe(true);
    expect(effectCurrent(open("pending"), "suspend", "t1")).toBe(false);
    expect(effectCurrent(open("done"), "suspend", "t2")).toBe(false);
    expect(effectCurrent(closed, "suspend", "t2")).toBe(false);
  });
  it("drops a reactivation overtaken by a trip that suspends", () => {
    expect(effectCurrent(closed, "reactivate", "t1")).toBe(true);
    expect(effectCurrent(open("pending"), "reactivate", "t1")).toBe(false);
    expect(effectCurrent(open("none"), "reactivate", "t1")).toBe(true);
  });
  it("ends calls for the current suspending trip only", () => {
    expect(effectCurrent(open("done"), "end-calls", "t2")).toBe(true);
    expect(effectCurrent(open("done"), "end-calls", "t1")).toBe(false);
    expect(effectCurrent(closed, "end-calls", "t2")).toBe(false);
  });
});

describe("reactivationResult", () => {
  it("suspends again when a trip's suspension was done before the reactivation landed", () => {
    const breaker = { state: "open" as const, suspension: "done" as const, tripId: "t2", action: "suspend" as const };
    expect(reactivationResult(breaker, "done")).toEqual({ breaker: { ...breaker, suspension: "pending" }, effects: [{ type: "suspend" }] });
  });
  it("changes nothing for a closed breaker, or a failed reactivation", () => {
    const closed = { state: "closed" as const, suspension: "none" as const };
    expect(reactivationResult(closed, "done")).toEqual({ breaker: closed, effects: [] });
    const breaker = { state: "open" as const, suspension: "done" as const, tripId: "t2" };
    expect(reactivationResult(breaker, "failed").effects).toEqual([]);
  });
});

describe("applyEvent's scratch arrays", () => {
  it("answers each evaluation from its own inputs, whatever was evaluated before it", () => {
    const p = policy([{ window: "minute", events: 3 }, { window: "day", usd: 1 }, { window: "month", events: 100 }], 0.5);
    const heavy = applyEvent(p, [], NOW, { usdMicros: 900_000, events: 2 }).totals;
    const evaluate = [
      () => applyEvent(p, [], NOW, ONE_EVENT),
      () => applyEvent(p, heavy, NOW, { usdMicros: 200_000, events: 1 }),
      () => applyEvent(p, heavy, NOW, { usdMicros: 0, events: 1 }, { day: { usdMicros: 150_000, events: 0 }, month: { usdMicros: 0, events: 0 } }),
    ];
    const first = evaluate.map((f) => f());
    expect(first.map((e) => e.crossed)).toEqual([null, { window: "day", usd: 1 }, { window: "day", usd: 1 }]);
    expect(first.map((e) => e.warnings.map((w) => w.limitIndex))).toEqual([[], [], []]);
    // Per window: the minute and hour windows get the event, the day and month nothing (3 of 3 events does not cross).
    const minuteOnly = applyEvent(p, heavy, NOW, ONE_EVENT, { day: { usdMicros: 0, events: 0 }, month: { usdMicros: 0, events: 0 } });
    expect(minuteOnly.crossed).toBeNull();
    expect(minuteOnly.totals.map((t) => t.events)).toEqual([3, 3, 2, 2]);
    expect([evaluate[2]!(), evaluate[0]!(), evaluate[1]!(), evaluate[0]!()]).toEqual([first[2], first[0], first[1], first[0]]);
  });
});
