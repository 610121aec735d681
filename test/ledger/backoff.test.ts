import { describe, expect, it } from "vitest";
import { RETRY_BASE_MS, RETRY_CAP_MS, RETRY_MIN_MS, classifyRestFailure, retryDelayMs } from "../../src/ledger/backoff.ts";

describe("retryDelayMs", () => {
  it("grows exponentially with full jitter under the ceiling", () => {
    expect(retryDelayMs(1, 0.999)).toBeLessThan(RETRY_BASE_MS);
    expect(retryDelayMs(3, 0.999)).toBeGreaterThan(2 * RETRY_BASE_MS);
    expect(retryDelayMs(3, 0.999)).toBeLessThan(4 * RETRY_BASE_MS);
  });

  it("never exceeds the cap and never drops below the floor", () => {
    for (let attempt = 1; attempt < 100; attempt++) {
      expect(retryDelayMs(attempt, 0.999999)).toBeLessThanOrEqual(RETRY_CAP_MS);
      expect(retryDelayMs(attempt, 0)).toBe(RETRY_MIN_MS);
    }
  });
});

describe("classifyRestFailure", () => {
  it.each([
    [500, undefined, "retry"],
    [503, undefined, "retry"],
    [429, 20429, "retry"],
    ["timeout", undefined, "retry"],
    ["network", undefined, "retry"],
    [400, 21477, "failed"],
    [401, 20003, "failed"],
    [404, 20404, "failed"],
  ] as const)("%s (%s) → %s", (status, code, expected) => {
    expect(classifyRestFailure(status, code)).toBe(expected);
  });
});
