import { describe, expect, it } from "vitest";
import { decideReservation, releaseAsDuplicate, settleReservation, type Reservation } from "../../src/ledger/reservations.ts";
import { parsePolicy } from "../../src/ledger/policy.ts";
import { windowId } from "../../src/ledger/windows.ts";

const held: Reservation = { id: "r1", atMs: 0, kind: "message", usdMicros: 16_600, state: "held", sid: null };
const SM = "SM0123456789abcdef0123456789abcdef";

describe("settling a reservation", () => {
  it("binds the estimate to the Sid on success, counted as settled for a message", () => {
    const t = settleReservation(held, { type: "accepted", sid: SM });
    expect(t).toEqual({ next: { ...held, state: "bound", sid: SM }, deltaMicros: 0, deltaEvents: 0, bind: { countKey: `msg:${SM}`, entry: { usdMicros: 16_600, settled: true } } });
  });
  it("leaves a call's binding for its completion to settle", () => {
    const t = settleReservation({ ...held, kind: "call" }, { type: "accepted", sid: "CA01" });
    expect(t.bind).toEqual({ countKey: "call:CA01", entry: { usdMicros: 16_600, settled: false } });
  });
  it("replaces the estimate with a price Twilio's answer carried, binding the Sid at its real price", () => {
    const t = settleReservation(held, { type: "accepted", sid: SM, priceUsd: -0.0079 });
    expect(t.deltaMicros).toBe(7_900 - 16_600);
    expect(t.next.usdMicros).toBe(7_900);
    expect(t.bind).toEqual({ countKey: `msg:${SM}`, entry: { usdMicros: 7_900, settled: true, price: "real" } });
  });
  it("releases the estimate and the event on an error answer", () => {
    expect(settleReservation(held, { type: "rejected" })).toMatchObject({ next: { state: "released" }, deltaMicros: -16_600, deltaEvents: -1 });
  });
  it("keeps the reservation when the outcome is unknown, and binds it when the Sid shows up", () => {
    const unknown = settleReservation(held, { type: "unknown" });
    expect(unknown).toMatchObject({ next: { state: "unknown" }, deltaMicros: 0, bind: null });
    expect(settleReservation(unknown.next, { type: "sid-seen", sid: SM })).toMatchObject({ next: { state: "bound", sid: SM }, deltaMicros: 0, bind: { countKey: `msg:${SM}` } });
  });
  it("is idempotent: a second outcome changes nothing", () => {
    const bound = settleReservation(held, { type: "accepted", sid: SM }).next;
    expect(settleReservation(bound, { type: "accepted", sid: SM })).toEqual({ next: bound, deltaMicros: 0, deltaEvents: 0, bind: null });
    expect(settleReservation(bound, { type: "rejected" }).deltaMicros).toBe(0);
    const released = settleReservation(held, { type: "rejected" }).next;
    expect(settleReservation(released, { type: "accepted", sid: SM })).toEqual({ next: released, deltaMicros: 0, deltaEvents: 0, bind: null });
  });
  it("releases a reservation whose Sid a status callback already counted", () => {
    expect(releaseAsDuplicate(held)).toMatchObject({ next: { state: "released" }, deltaMicros: -16_600, deltaEvents: -1 });
  });
});

describe("deciding a reservation", () => {
  const now = Date.UTC(2026, 10, 28, 12);
  const policy = parsePolicy({ limits: [{ window: "day", usd: 1 }, { window: "minute", events: 10 }] });
  const totals = (usdMicros: number, events: number) => [{ window: "day" as const, windowId: windowId("day", now), usdMicros, events }, { window: "minute" as const, windowId: windowId("minute", now), usdMicros, events }];
  it("allows a send that reaches a limit", () => {
    expect(decideReservation(policy, totals(900_000, 0), now, 100_000, false).ok).toBe(true);
  });
  it("refuses the send that would take a window above a limit", () => {
    expect(decideReservation(policy, totals(900_001, 0), now, 100_000, false)).toEqual({ ok: false, reason: "limit", limit: { window: "day", usd: 1 } });
    expect(decideReservation(policy, totals(0, 10), now, 1, false)).toEqual({ ok: false, reason: "limit", limit: { window: "minute", events: 10 } });
  });
  it("refuses every send while the breaker blocks", () => {
    expect(decideReservation(policy, [], now, 1, true)).toEqual({ ok: false, reason: "breaker-open" });
  });
});
