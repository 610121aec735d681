import { describe, expect, it } from "vitest";
import { RETRY_BASE_MS, RETRY_CAP_MS, RETRY_MIN_MS, retryDelayMs } from "../../src/ledger/backoff.ts";
import { classifyRestFailure } from "../../src/twilio/errors.ts";

const ALMOST_ONE = 1 - Number.EPSILON;

describe("retryDelayMs", () => {
  it("keeps the first retry under the base delay", () => {
    expect(retryDelayMs(1, ALMOST_ONE)).toBeLessThan(RETRY_BASE_MS);
  });

  it("doubles the ceiling with every failed attempt", () => {
    expect([2, 3, 4].map((attempt) => retryDelayMs(attempt, ALMOST_ONE))).toEqual([2 * RETRY_BASE_MS - 1, 4 * RETRY_BASE_MS - 1, 8 * RETRY_BASE_MS - 1]);
  });

  it("spreads delays uniformly under the ceiling (full jitter)", () => {
    expect(retryDelayMs(4, 0.5)).toBe(4 * RETRY_BASE_MS);
  });

  it("never exceeds the cap, however many attempts", () => {
    for (const attempt of [9, 10, 50, 1000, Number.MAX_SAFE_INTEGER]) expect(retryDelayMs(attempt, ALMOST_ONE)).toBeLessThanOrEqual(RETRY_CAP_MS);
  });

  it("reaches close to the cap on late attempts", () => {
    expect(retryDelayMs(30, ALMOST_ONE)).toBe(RETRY_CAP_MS - 1);
  });

  it("never drops below the floor", () => {
    for (let attempt = 1; attempt < 40; attempt++) expect(retryDelayMs(attempt, 0)).toBe(RETRY_MIN_MS);
  });

  it("stays within bounds for every attempt and random value", () => {
    for (let attempt = 1; attempt <= 30; attempt++) {
      for (const random of [0, 0.001, 0.25, 0.5, 0.999, ALMOST_ONE]) {
        const delay = retryDelayMs(attempt, random);
        expect(Number.isInteger(delay) && delay >= RETRY_MIN_MS && delay <= RETRY_CAP_MS).toBe(true);
      }
    }
  });

  it("is deterministic for the same attempt and random value", () => {
    expect(retryDelayMs(5, 0.37)).toBe(retryDelayMs(5, 0.37));
  });

  it("clamps a random value outside [0, 1)", () => {
    expect([retryDelayMs(3, -1), retryDelayMs(3, 7), retryDelayMs(3, Number.NaN)]).toEqual([RETRY_MIN_MS, 4 * RETRY_BASE_MS - 1, RETRY_MIN_MS]);
  });

  it("takes another shape: its own base and cap", () => {
    const shape = { baseMs: 60_000, capMs: 3_600_000 };
    expect([1, 2, 7, 8, 40].map((attempt) => retryDelayMs(attempt, ALMOST_ONE, shape))).toEqual([59_999, 119_999, 3_599_999, 3_599_999, 3_599_999]);
  });

  it("treats an attempt below 1 or not a number as the first", () => {
    expect([retryDelayMs(0, ALMOST_ONE), retryDelayMs(-3, ALMOST_ONE), retryDelayMs(Number.NaN, ALMOST_ONE)]).toEqual([RETRY_BASE_MS - 1, RETRY_BASE_MS - 1, RETRY_BASE_MS - 1]);
  });
});

describe("classifyRestFailure", () => {
  it.each([
    [500, undefined, "retry"],
    [502, undefined, "retry"],
    [503, 20503, "retry"],
    [429, 20429, "retry"],
    [429, undefined, "retry"],
    [400, 20429, "retry"],
    [408, undefined, "retry"],
    ["timeout", undefined, "retry"],
    ["network", undefined, "retry"],
    [400, 21477, "failed"],
    [401, 20003, "failed"],
    [403, 20005, "failed"],
    [404, 20404, "failed"],
    [409, undefined, "failed"],
  ] as const)("%s (Twilio code %s) → %s", (status, code, expected) => {
    expect(classifyRestFailure(status, code)).toBe(expected);
  });
});
