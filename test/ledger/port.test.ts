// The verdict as a number (AccountGuard.recordEvent's answer): bit 1 duplicate, bit 2 blocked.
import { describe, expect, it } from "vitest";
import { verdictBits, verdictFromBits } from "../../src/ledger/port.ts";

describe("verdictBits / verdictFromBits", () => {
  it("round-trips every verdict", () => {
    for (const duplicate of [false, true]) {
      for (const blocked of [false, true]) expect(verdictFromBits(verdictBits({ duplicate, blocked }))).toEqual({ duplicate, blocked });
    }
  });

  it("gives each verdict its own number, 0 for a new event that is not blocked", () => {
    expect([verdictBits({ duplicate: false, blocked: false }), verdictBits({ duplicate: true, blocked: false }), verdictBits({ duplicate: false, blocked: true }), verdictBits({ duplicate: true, blocked: true })]).toEqual([0, 1, 2, 3]);
  });

  it("refuses anything that is not a verdict", () => {
    for (const bits of [-1, 4, 1.5, Number.NaN, "1" as unknown as number, undefined as unknown as number]) expect(() => verdictFromBits(bits)).toThrow(TypeError);
  });
});
