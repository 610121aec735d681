// Twilio SID shapes (src/twilio/sids.ts): two letters and 32 hex digits, whole strings only; an
// AccountSid only in Twilio's lowercase spelling (it is our key), other SIDs in either case (OpenAPI).
import { describe, expect, it } from "vitest";
import { ACCOUNT_SID, API_KEY_SID, CALL_SID, MESSAGE_SID, SEND_SID, SID_SOURCE, USAGE_TRIGGER_SID } from "../../src/twilio/sids.ts";

const HEX = "0123456789abcdef0123456789abcdef";

describe("Twilio SID patterns", () => {
  it("accepts an AccountSid only as AC and 32 lowercase hex digits", () => {
    expect(ACCOUNT_SID.test(`AC${HEX}`)).toBe(true);
    expect(ACCOUNT_SID.test(`AC${HEX.toUpperCase()}`)).toBe(false);
    expect(ACCOUNT_SID.test(`ac${HEX}`)).toBe(false);
  });

  it("accepts other SIDs in either case, with their own prefix only", () => {
    for (const [pattern, prefix] of [[MESSAGE_SID, "SM"], [MESSAGE_SID, "MM"], [CALL_SID, "CA"], [USAGE_TRIGGER_SID, "UT"], [API_KEY_SID, "SK"]] as const) {
      expect(pattern.test(`${prefix}${HEX}`)).toBe(true);
      expect(pattern.test(`${prefix}${HEX.toUpperCase()}`)).toBe(true);
      expect(pattern.test(`XX${HEX}`)).toBe(false);
    }
  });

  it("matches whole strings only: no missing or extra digits, no suffix, no line break", () => {
    for (const pattern of [ACCOUNT_SID, MESSAGE_SID, CALL_SID, SEND_SID]) {
      const prefix = pattern === ACCOUNT_SID ? "AC" : pattern === CALL_SID ? "CA" : "SM";
      expect(pattern.test(`${prefix}${HEX.slice(1)}`)).toBe(false);
      expect(pattern.test(`${prefix}${HEX}0`)).toBe(false);
      expect(pattern.test(`${prefix}${HEX}/x`)).toBe(false);
      expect(pattern.test(`${prefix}${HEX}\n`)).toBe(false);
      expect(pattern.test(`x${prefix}${HEX}`)).toBe(false);
    }
  });

  it("a send is a message or a call, nothing else", () => {
    expect(SEND_SID.test(`SM${HEX}`) && SEND_SID.test(`MM${HEX}`) && SEND_SID.test(`CA${HEX}`)).toBe(true);
    expect(SEND_SID.test(`UT${HEX}`)).toBe(false);
  });

  it("gives sources that embed in a path pattern without capturing", () => {
    const path = new RegExp(`^/Accounts/(${SID_SOURCE.account})/Messages/(${SID_SOURCE.message})\\.json$`);
    expect(path.exec(`/Accounts/AC${HEX}/Messages/MM${HEX}.json`)?.slice(1)).toEqual([`AC${HEX}`, `MM${HEX}`]);
  });
});
