import { describe, expect, it } from "vitest";
import { DEFAULT_POLICY, DEFAULT_PRICES, MAX_LIMITS, PolicyError, parsePolicy, parsePolicyJson } from "../../src/ledger/policy.ts";

/** The PolicyError a value is refused with; fails the test when it is accepted. */
function refusal(run: () => unknown): PolicyError {
  try {
    run();
  } catch (error) {
    if (error instanceof PolicyError) return error;
    throw error;
  }
  throw new Error("accepted");
}

const CONTRACT_EXAMPLE = {
  limits: [
    { window: "day", usd: 50 },
    { window: "hour", usd: 10 },
    { window: "minute", events: 120 },
  ],
  warnAt: 0.8,
  action: "suspend",
  prices: { smsSegment: 0.0083, mms: 0.022, voiceMinute: 0.014 },
};

describe("DEFAULT_POLICY", () => {
  it("is one daily limit of 50 USD, warn at 0.8, action suspend", () => {
    expect(DEFAULT_POLICY).toMatchObject({ limits: [{ window: "day", usd: 50 }], warnAt: 0.8, action: "suspend" });
  });

  it("uses the US list prices", () => {
    expect(DEFAULT_POLICY.prices).toEqual({ smsSegment: 0.0083, mms: 0.022, voiceMinute: 0.014 });
  });

  it("is deeply frozen, since every account without its own policy shares it", () => {
    expect([Object.isFrozen(DEFAULT_POLICY), Object.isFrozen(DEFAULT_POLICY.limits), Object.isFrozen(DEFAULT_POLICY.limits[0]), Object.isFrozen(DEFAULT_POLICY.prices)]).toEqual([true, true, true, true]);
  });

  it("is itself a valid policy", () => {
    expect(parsePolicy(DEFAULT_POLICY)).toEqual(DEFAULT_POLICY);
  });
});

describe("parsePolicy", () => {
  it("accepts the contract's example as is", () => {
    expect(parsePolicy(CONTRACT_EXAMPLE)).toEqual(CONTRACT_EXAMPLE);
  });

  it("returns a copy that shares no object with its input", () => {
    const policy = parsePolicy(CONTRACT_EXAMPLE);
    expect(policy.limits).not.toBe(CONTRACT_EXAMPLE.limits);
    expect(policy.limits[0]).not.toBe(CONTRACT_EXAMPLE.limits[0]);
    expect(policy.prices).not.toBe(CONTRACT_EXAMPLE.prices);
  });

  it("fills all prices from the defaults when prices is absent", () => {
    expect(parsePolicy({ limits: [] }).prices).toEqual(DEFAULT_PRICES);
  });

  it("fills each missing price from its default, keeping the ones given", () => {
    expect(parsePolicy({ limits: [], prices: { mms: 0.02 } }).prices).toEqual({ smsSegment: 0.0083, mms: 0.02, voiceMinute: 0.014 });
  });

  it("defaults warnAt to 0.8 and action to suspend", () => {
    expect(parsePolicy({ limits: [] })).toMatchObject({ warnAt: 0.8, action: "suspend" });
  });

  it("accepts an empty limits array (count only, never trip)", () => {
    expect(parsePolicy({ limits: [], action: "block" }).limits).toEqual([]);
  });

  it("accepts warnAt 1 (warn only when the limit is reached)", () => {
    expect(parsePolicy({ limits: [], warnAt: 1 }).warnAt).toBe(1);
  });

  it("accepts a usd limit with 6 decimals (one micro-dollar)", () => {
    expect(parsePolicy({ limits: [{ window: "minute", usd: 0.000001 }] }).limits).toEqual([{ window: "minute", usd: 0.000001 }]);
  });

  it("accepts a zero price", () => {
    expect(parsePolicy({ limits: [], prices: { voiceMinute: 0 } }).prices.voiceMinute).toBe(0);
  });

  it(`accepts ${MAX_LIMITS} limits`, () => {
    expect(parsePolicy({ limits: Array.from({ length: MAX_LIMITS }, () => ({ window: "day", events: 1 })) }).limits).toHaveLength(MAX_LIMITS);
  });

  it("accepts every action", () => {
    expect(["suspend", "block", "alert"].map((action) => parsePolicy({ limits: [], action }).action)).toEqual(["suspend", "block", "alert"]);
  });

  it("names the field path in the message", () => {
    const error = refusal(() => parsePolicy({ limits: [{ window: "day", usd: 1 }, { window: "hour", usd: -2 }] }));
    expect(error.message).toBe("limits[1].usd: must be a positive number");
  });

  it("is an Error named PolicyError", () => {
    const error = refusal(() => parsePolicy(null));
    expect([error instanceof Error, error.name]).toEqual([true, "PolicyError"]);
  });

  it.each([
    ["null", null, "(policy)"],
    ["an array", [], "(policy)"],
    ["a string", "{}", "(policy)"],
    ["no limits", {}, "limits"],
    ["limits not an array", { limits: { window: "day", usd: 1 } }, "limits"],
    ["too many limits", { limits: Array.from({ length: MAX_LIMITS + 1 }, () => ({ window: "day", usd: 1 })) }, "limits"],
    ["a limit that is not an object", { limits: [5] }, "limits[0]"],
    ["an unknown window", { limits: [{ window: "week", usd: 1 }] }, "limits[0].window"],
    ["a missing window", { limits: [{ usd: 1 }] }, "limits[0].window"],
    ["neither usd nor events", { limits: [{ window: "day" }] }, "limits[0]"],
    ["both usd and events", { limits: [{ window: "day", usd: 1, events: 2 }] }, "limits[0]"],
    ["a negative usd", { limits: [{ window: "day", usd: -1 }] }, "limits[0].usd"],
    ["a zero usd", { limits: [{ window: "day", usd: 0 }] }, "limits[0].usd"],
    ["a usd as a string", { limits: [{ window: "day", usd: "50" }] }, "limits[0].usd"],
    ["an infinite usd", { limits: [{ window: "day", usd: Infinity }] }, "limits[0].usd"],
    ["a NaN usd", { limits: [{ window: "day", usd: NaN }] }, "limits[0].usd"],
    ["a usd with 7 decimals", { limits: [{ window: "day", usd: 0.0000001 }] }, "limits[0].usd"],
    ["a huge usd", { limits: [{ window: "day", usd: 1e12 }] }, "limits[0].usd"],
    ["fractional events", { limits: [{ window: "day", events: 1.5 }] }, "limits[0].events"],
    ["zero events", { limits: [{ window: "day", events: 0 }] }, "limits[0].events"],
    ["an unknown limit field", { limits: [{ window: "day", events: 1, extra: 1 }] }, "limits[0].extra"],
    ["a hole in limits", { limits: [{ window: "day", usd: 1 }, , { window: "day", usd: 1 }] }, "limits[1]"],
    ["warnAt 0", { limits: [], warnAt: 0 }, "warnAt"],
    ["warnAt above 1", { limits: [], warnAt: 1.2 }, "warnAt"],
    ["warnAt as a string", { limits: [], warnAt: "0.8" }, "warnAt"],
    ["an unknown action", { limits: [], action: "panic" }, "action"],
    ["prices not an object", { limits: [], prices: 1 }, "prices"],
    ["a negative price", { limits: [], prices: { smsSegment: -1 } }, "prices.smsSegment"],
    ["an absurd price", { limits: [], prices: { mms: 1000 } }, "prices.mms"],
    ["an unknown price", { limits: [], prices: { fax: 1 } }, "prices.fax"],
    ["a misspelt top-level field", { limits: [], limit: [] }, "limit"],
  ])("refuses %s, naming %s", (_what, input, field) => {
    expect(refusal(() => parsePolicy(input)).field).toBe(field);
  });

  it("refuses a __proto__ key instead of merging it", () => {
    expect(refusal(() => parsePolicy(JSON.parse('{"limits":[],"__proto__":{"action":"alert"}}'))).field).toBe("__proto__");
  });
});

describe("parsePolicyJson", () => {
  it("parses valid JSON into a validated policy", () => {
    expect(parsePolicyJson(JSON.stringify(CONTRACT_EXAMPLE))).toEqual(CONTRACT_EXAMPLE);
  });

  it("names the JSON itself when it does not parse", () => {
    expect(refusal(() => parsePolicyJson("{")).field).toBe("(json)");
  });

  it("validates what the JSON holds", () => {
    expect(refusal(() => parsePolicyJson('{"limits":[{"window":"day","usd":-1}]}')).field).toBe("limits[0].usd");
  });
});
