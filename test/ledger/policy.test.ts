import { describe, expect, it } from "vitest";
import { DEFAULT_POLICY, PolicyError, parsePolicy, parsePolicyJson } from "../../src/ledger/policy.ts";

function fieldOf(input: unknown): string {
  try {
    parsePolicy(input);
  } catch (error) {
    if (error instanceof PolicyError) return error.field;
    throw error;
  }
  return "(accepted)";
}

describe("parsePolicy", () => {
  it("accepts the contract's example and fills default prices", () => {
    const policy = parsePolicy({
      limits: [{ window: "day", usd: 50 }, { window: "hour", usd: 10 }, { window: "minute", events: 120 }],
      warnAt: 0.8,
      action: "suspend",
    });
    expect(policy.limits).toHaveLength(3);
    expect(policy.prices).toEqual(DEFAULT_POLICY.prices);
  });

  it("defaults to one daily 50 USD limit, warn at 0.8, suspend", () => {
    expect(DEFAULT_POLICY).toMatchObject({ limits: [{ window: "day", usd: 50 }], warnAt: 0.8, action: "suspend" });
  });

  it.each([
    [null, "(policy)"],
    [{}, "limits"],
    [{ limits: [{ window: "week", usd: 1 }] }, "limits[0].window"],
    [{ limits: [{ window: "day" }] }, "limits[0]"],
    [{ limits: [{ window: "day", usd: 1, events: 2 }] }, "limits[0]"],
    [{ limits: [{ window: "day", usd: -1 }] }, "limits[0].usd"],
    [{ limits: [{ window: "day", usd: 0.0000001 }] }, "limits[0].usd"],
    [{ limits: [{ window: "day", events: 1.5 }] }, "limits[0].events"],
    [{ limits: [{ window: "day", events: 1, extra: 1 }] }, "limits[0].extra"],
    [{ limits: [], warnAt: 0 }, "warnAt"],
    [{ limits: [], warnAt: 1.2 }, "warnAt"],
    [{ limits: [], action: "panic" }, "action"],
    [{ limits: [], prices: { smsSegment: -1 } }, "prices.smsSegment"],
    [{ limits: [], prices: { fax: 1 } }, "prices.fax"],
    [{ limits: [], limit: [] }, "limit"],
    [{ limits: Array.from({ length: 17 }, () => ({ window: "day", usd: 1 })) }, "limits"],
  ])("refuses %j naming %s", (input, field) => {
    expect(fieldOf(input)).toBe(field);
  });

  it("names the JSON itself when it does not parse", () => {
    expect(() => parsePolicyJson("{")).toThrow(PolicyError);
    try {
      parsePolicyJson("{");
    } catch (error) {
      expect((error as PolicyError).field).toBe("(json)");
    }
  });
});
