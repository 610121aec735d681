import { describe, expect, it } from "vitest";
import { allowedProduct, parseGatePath, upstreamUrl } from "../../src/egress/hosts.ts";
import { requestScope } from "../../src/egress/scope.ts";
import { presentedCredentials, tokenMatches } from "../../src/egress/credentials.ts";
import { egressKeyId, hashEgressKey, issueEgressKey } from "../../src/egress/keys.ts";
import { destinationOf, prefixOf } from "../../src/egress/destination.ts";
import { GSM7_BASIC, callReservation, priceSend, sendFacts, smsSegments, SendError } from "../../src/egress/send.ts";
import { SegmentedMessage } from "sms-segments-calculator";
import { checkPumping } from "../../src/egress/pumping.ts";
import { refusal } from "../../src/egress/refusals.ts";
import { lookupQuery, settlementFromList } from "../../src/egress/lookup.ts";
import { toErrorResponse } from "../../src/http/errors.ts";
import { DEFAULT_PRICES, parsePolicy, PolicyError } from "../../src/ledger/policy.ts";
import { basicAuth } from "../support/twilio.ts";

const SID = "AC0123456789abcdef0123456789abcdef";
const OTHER = "ACfedcba9876543210fedcba9876543210";
const form = (fields: Record<string, string | string[]>) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x);
  return p;
};

describe("host allowlist", () => {
  it("accepts Twilio product hosts, with edge and region as the SDKs build them", () => {
    expect(allowedProduct("api.twilio.com")).toBe("api");
    expect(allowedProduct("messaging.twilio.com")).toBe("messaging");
    expect(allowedProduct("api.sydney.au1.twilio.com")).toBe("api");
    expect(allowedProduct("api.ie1.twilio.com")).toBe("api");
  });
  it("refuses every other host", () => {
    for (const host of ["evil.com", "api.twilio.com.evil.com", "twilio.com", "x.twilio.com", "api.evil.au1.twilio.com", "api.twilio.co", "169.254.169.254"]) {
      expect(allowedProduct(host), host).toBeNull();
    }
  });
  it("splits the gate path and refuses dot segments", () => {
    expect(parseGatePath(`/twilio/api.twilio.com/2010-04-01/Accounts/${SID}/Messages.json`)).toEqual({
      host: "api.twilio.com", product: "api", path: `/2010-04-01/Accounts/${SID}/Messages.json`,
    });
    expect(parseGatePath(`/twilio/api.twilio.com/2010-04-01/Accounts/${SID}/../../x`)).toBeNull();
    expect(parseGatePath(`/twilio/api.twilio.com/2010-04-01/%2e%2e/x`)).toBeNull();
    expect(parseGatePath("/twilio/evil.com/x")).toBeNull();
  });
  it("sends api.twilio.com to TWILIO_API_BASE and other hosts to themselves", () => {
    expect(upstreamUrl({ host: "api.twilio.com", product: "api", path: "/a" }, "?b=1", "http://127.0.0.1:9")).toBe("http://127.0.0.1:9/a?b=1");
    expect(upstreamUrl({ host: "verify.twilio.com", product: "verify", path: "/v2/x" }, "", "http://127.0.0.1:9")).toBe("https://verify.twilio.com/v2/x");
  });
});

describe("request scope", () => {
  const scope = (method: string, path: string, host = "api.twilio.com") => requestScope(method, { host, product: host.split(".")[0]!, path });
  it("knows a message send and a call", () => {
    expect(scope("POST", `/2010-04-01/Accounts/${SID}/Messages.json`)).toEqual({ pathAccount: SID, send: "message", egressKeyAllowed: true });
    expect(scope("POST", `/2010-04-01/Accounts/${SID}/Calls.json`).send).toBe("call");
    expect(scope("GET", `/2010-04-01/Accounts/${SID}/Messages.json`).send).toBeNull();
  });
  it("lets an egress key read its messages and calls", () => {
    expect(scope("GET", `/2010-04-01/Accounts/${SID}/Messages/SM0123456789abcdef0123456789abcdef.json`).egressKeyAllowed).toBe(true);
    expect(scope("POST", `/2010-04-01/Accounts/${SID}/Calls/CA0123456789abcdef0123456789abcdef.json`).egressKeyAllowed).toBe(true);
  });
  it("never lets an egress key reach the account, keys, tokens, subaccounts or other products", () => {
    expect(scope("POST", `/2010-04-01/Accounts/${SID}.json`).egressKeyAllowed).toBe(false);
    expect(scope("GET", `/2010-04-01/Accounts/${SID}.json`).egressKeyAllowed).toBe(false);
    expect(scope("POST", `/2010-04-01/Accounts/${SID}/Keys.json`).egressKeyAllowed).toBe(false);
    expect(scope("POST", `/2010-04-01/Accounts/${SID}/Tokens.json`).egressKeyAllowed).toBe(false);
    expect(scope("GET", `/2010-04-01/Accounts.json`).egressKeyAllowed).toBe(false);
    expect(scope("POST", `/2010-04-01/Accounts/${SID}/IncomingPhoneNumbers.json`).egressKeyAllowed).toBe(false);
    expect(scope("POST", "/v2/Services", "verify.twilio.com")).toEqual({ pathAccount: null, send: null, egressKeyAllowed: false });
  });
});

describe("credentials", () => {
  it("classifies an egress key, a token and an API key", async () => {
    const { key, id } = await issueEgressKey();
    expect(presentedCredentials(basicAuth(SID, key), SID)).toEqual({ kind: "egress-key", accountSid: SID, keyId: id, key });
    expect(presentedCredentials(basicAuth(SID, "a".repeat(32)), SID)).toEqual({ kind: "token", accountSid: SID, secret: "a".repeat(32) });
    expect(presentedCredentials(basicAuth("SK0123456789abcdef0123456789abcdef", "s"), SID)).toEqual({ kind: "api-key", keySid: "SK0123456789abcdef0123456789abcdef" });
  });
  it("refuses another account's path, no credentials and odd users", () => {
    expect(presentedCredentials(basicAuth(SID, "x"), OTHER).kind).toBe("invalid");
    expect(presentedCredentials(null, SID).kind).toBe("invalid");
    expect(presentedCredentials(basicAuth("admin", "x"), SID).kind).toBe("invalid");
    expect(presentedCredentials(basicAuth(SID, ""), SID).kind).toBe("invalid");
  });
  it("compares tokens against every token of the account", () => {
    expect(tokenMatches("b", ["a", "b"])).toBe(true);
    expect(tokenMatches("c", ["a", "b"])).toBe(false);
  });
});

describe("egress keys", () => {
  it("are alphanumeric, unique, and hashed with SHA-256", async () => {
    const a = await issueEgressKey();
    const b = await issueEgressKey();
    expect(a.key).toMatch(/^egk[0-9a-f]{56}$/);
    expect(a.key).not.toBe(b.key);
    expect(a.hash).toBe(await hashEgressKey(a.key));
    expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(egressKeyId(a.key)).toBe(a.id);
    expect(egressKeyId("a".repeat(32))).toBeNull();
  });
});

describe("destination", () => {
  it("finds the country of an E.164 number", () => {
    expect(destinationOf("+14155552671").destination).toEqual({ address: "+14155552671", e164: "14155552671", country: "US" });
    expect(destinationOf("+37360123456").destination.country).toBe("MD");
    expect(destinationOf("+14165550123").destination.country).toBe("CA");
  });
  it("reads whatsapp: addresses as the number behind them", () => {
    expect(destinationOf("whatsapp:+447400123456")).toEqual({ channelPrefix: "whatsapp", destination: { address: "+447400123456", e164: "447400123456", country: "GB" } });
  });
  it("has no country for numbers in no known range, or non-numbers", () => {
    expect(destinationOf("+15555550123").destination.country).toBeNull();
    expect(destinationOf("client:alice").destination).toEqual({ address: "client:alice", e164: null, country: null });
    expect(destinationOf("sip:bob@example.com").destination.e164).toBeNull();
  });
  it("cuts the prefix of a block of numbers", () => {
    expect(prefixOf("37360123456", 4)).toBe("3736012");
  });
});

describe("segments (Twilio's calculator)", () => {
  it("counts GSM-7 160 single, 153 per part", () => {
    expect(smsSegments("a".repeat(160))).toBe(1);
    expect(smsSegments("a".repeat(161))).toBe(2);
    expect(smsSegments("a".repeat(306))).toBe(2);
    expect(smsSegments("a".repeat(307))).toBe(3);
  });
  it("counts extension characters twice", () => {
    expect(smsSegments("{".repeat(80))).toBe(1);
    expect(smsSegments("{".repeat(81))).toBe(2);
    expect(smsSegments("€".repeat(81))).toBe(2);
  });
  it("counts UCS-2 70 single, 67 per part, an emoji two units", () => {
    expect(smsSegments("ж".repeat(70))).toBe(1);
    expect(smsSegments("ж".repeat(71))).toBe(2);
    expect(smsSegments("😀".repeat(35))).toBe(1);
    expect(smsSegments("😀".repeat(36))).toBe(2);
    // One non-GSM character makes the whole message UCS-2.
    expect(smsSegments(`${"a".repeat(100)}ж`)).toBe(2);
  });
  it("counts basic GSM-7 directly exactly as the calculator does, character by character", () => {
    for (const ch of GSM7_BASIC) {
      for (const n of [1, 160, 161, 306, 307, 459, 460]) {
        const text = ch.repeat(n);
        const reference = new SegmentedMessage(text);
        expect([reference.encodingName, smsSegments(text)], `${JSON.stringify(ch)} × ${n}`).toEqual(["GSM-7", reference.segmentsCount]);
      }
    }
    // ~900 runs of the calculator (about 1 s alone; several on 2 shared cores under a full test run).
  }, 60_000);
  it("agrees with the calculator on mixed bodies", () => {
    const bodies = ["Your code is 123456", "Hello\nworld", "line\r\nbreak", "price: 5€", "naïve café", "a{b}c[d]", "ÄÖÜ äöü ß".repeat(30), `${"x".repeat(152)}€`, "emoji 😀 here".repeat(10)];
    for (const body of bodies) expect(smsSegments(body), body).toBe(new SegmentedMessage(body).segmentsCount);
  });
  it("applies Smart Encoding when the send asks for it", () => {
    const curly = `\u201C${"a".repeat(150)}\u201D`;
    expect(smsSegments(curly)).toBe(3);
    expect(smsSegments(curly, true)).toBe(1);
  });
});

describe("pricing a send", () => {
  const prices = { ...DEFAULT_PRICES, sms: { US: 0.0083, GB: 0.0463, "*": 0.1 }, voice: { US: 0.014, "*": 0.4 } };
  it("prices SMS per segment at the destination's country price", () => {
    const facts = sendFacts("message", form({ To: "+447400123456", From: "+15005550006", Body: "a".repeat(161) }));
    expect(facts.segments).toBe(2);
    expect(priceSend(facts, prices).usdMicros).toBe(2 * 46_300);
    expect(priceSend(sendFacts("message", form({ To: "+37360123456", Body: "hi" })), prices).usdMicros).toBe(100_000);
    expect(priceSend(facts, DEFAULT_PRICES).usdMicros).toBe(2 * 8_300);
  });
  it("prices MMS and WhatsApp per message", () => {
    const mms = sendFacts("message", form({ To: "+14155552671", Body: "a".repeat(500), MediaUrl: ["https://x.test/a.png", "https://x.test/b.png"] }));
    expect(mms).toMatchObject({ mms: true, segments: 1 });
    expect(priceSend(mms, prices).usdMicros).toBe(22_000);
    // Only a non-empty MediaUrl makes an MMS; none at all, or only empty ones, is an SMS.
    expect(sendFacts("message", form({ To: "+14155552671", Body: "hi", MediaUrl: ["", "https://x.test/a.png"] })).mms).toBe(true);
    expect(sendFacts("message", form({ To: "+14155552671", Body: "hi", MediaUrl: ["", ""] })).mms).toBe(false);
    expect(sendFacts("message", form({ To: "+14155552671", Body: "hi" })).mms).toBe(false);
    const wa = sendFacts("message", form({ To: "whatsapp:+14155552671", Body: "a".repeat(500) }));
    expect(wa).toMatchObject({ channel: "whatsapp", segments: 1 });
    expect(priceSend(wa, prices).usdMicros).toBe(8_300);
  });
  it("reserves a call for maxCallMinutes and sets it as TimeLimit when the call has none", () => {
    const facts = sendFacts("call", form({ To: "+37360123456", From: "+15005550006", Url: "https://x.test/t" }));
    expect(callReservation(facts, 30)).toEqual({ minutes: 30, setTimeLimitS: 1800 });
    expect(priceSend(facts, prices, 30).usdMicros).toBe(30 * 400_000);
    const limited = sendFacts("call", form({ To: "+14155552671", Url: "https://x.test/t", TimeLimit: "61" }));
    expect(callReservation(limited, 30)).toEqual({ minutes: 2, setTimeLimitS: null });
  });
  it("refuses a send without To", () => {
    expect(() => sendFacts("message", form({ Body: "x" }))).toThrow(SendError);
  });
  it("notes whether the send has its own StatusCallback", () => {
    expect(sendFacts("message", form({ To: "+14155552671", Body: "x", StatusCallback: "https://app.test/s" })).hasStatusCallback).toBe(true);
  });
});

describe("pumping rules", () => {
  const now = Date.UTC(2026, 10, 28, 13, 20, 0);
  const us = destinationOf("+14155552671").destination;
  it("refuses countries not on the list, and numbers of no known country", () => {
    expect(checkPumping({ countries: ["US"] }, destinationOf("+37360123456").destination, now, () => 0)).toEqual({ ok: false, reason: "country", country: "MD" });
    expect(checkPumping({ countries: ["US"] }, destinationOf("+15555550123").destination, now, () => 0)).toMatchObject({ ok: false, reason: "country" });
    expect(checkPumping({ countries: ["US"] }, us, now, () => 0).ok).toBe(true);
  });
  it("allows max sends per destination in the window, then asks to retry when it ends", () => {
    const rules = { perDestination: { window: "hour" as const, max: 5 } };
    expect(checkPumping(rules, us, now, () => 4)).toEqual({ ok: true, counters: [{ key: "dest:14155552671@hour:2026-11-28T13", window: "hour", windowId: "hour:2026-11-28T13" }] });
    expect(checkPumping(rules, us, now, () => 5)).toEqual({ ok: false, reason: "per-destination", retryAfterS: 40 * 60, key: "dest:14155552671@hour:2026-11-28T13" });
  });
  it("counts a block of adjacent numbers together", () => {
    const rules = { perPrefix: { window: "minute" as const, max: 2, digits: 4 } };
    const counts = new Map([["prefix:1415555@minute:2026-11-28T13:20", 2]]);
    const verdict = checkPumping(rules, destinationOf("+14155559999").destination, now, (k) => counts.get(k) ?? 0);
    expect(verdict).toMatchObject({ ok: false, reason: "per-prefix", retryAfterS: 60 });
    expect(checkPumping(rules, destinationOf("+14155569999").destination, now, (k) => counts.get(k) ?? 0).ok).toBe(true);
  });
});

describe("refusals", () => {
  it("are Twilio's REST error shape, never with type or title", async () => {
    const response = toErrorResponse(refusal("per-prefix", "too many sends to this block of numbers", { retryAfterS: 60 }));
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("60");
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toEqual({ code: 20429, message: "too many sends to this block of numbers", more_info: "https://www.twilio.com/docs/errors/20429", status: 429, details: { reason: "per-prefix" } });
  });
  it("map each case to the contract's status and code", async () => {
    const cases = [["credentials", 401, 20003], ["country", 400, 21408], ["per-destination", 429, 20429], ["limit", 403, 20403], ["breaker-open", 403, 20403], ["scope", 403, 20403]] as const;
    for (const [reason, status, code] of cases) {
      const r = toErrorResponse(refusal(reason, "x"));
      expect([r.status, ((await r.json()) as { code: number }).code], reason).toEqual([status, code]);
    }
  });
});

describe("policy: per-country prices and egress rules", () => {
  it("parses the contract's example", () => {
    const policy = parsePolicy({
      limits: [{ window: "day", usd: 50 }],
      prices: { smsSegment: 0.0083, sms: { US: 0.0083, GB: 0.0463, "*": 0.1 }, voice: { US: 0.014, "*": 0.4 } },
      egress: { countries: ["US", "CA"], perPrefix: { window: "hour", max: 30, digits: 4 }, perDestination: { window: "hour", max: 5 }, maxCallMinutes: 60 },
    });
    expect(policy.prices.sms).toEqual({ US: 0.0083, GB: 0.0463, "*": 0.1 });
    expect(policy.egress).toEqual({ countries: ["US", "CA"], perPrefix: { window: "hour", max: 30, digits: 4 }, perDestination: { window: "hour", max: 5 }, maxCallMinutes: 60 });
  });
  it("refuses bad egress rules naming the field", () => {
    const bad: Array<[unknown, string]> = [
      [{ countries: ["usa"] }, "egress.countries[0]"],
      [{ perPrefix: { window: "hour", max: 3 } }, "egress.perPrefix.digits"],
      [{ perDestination: { window: "week", max: 3 } }, "egress.perDestination.window"],
      [{ maxCallMinutes: 0 }, "egress.maxCallMinutes"],
      [{ perDestination: { window: "hour", max: 3, extra: 1 } }, "egress.perDestination.extra"],
      [{ country: ["US"] }, "egress.country"],
    ];
    for (const [egress, field] of bad) {
      try {
        parsePolicy({ limits: [], egress });
        expect.unreachable(field);
      } catch (error) {
        expect((error as PolicyError).field, field).toBe(field);
      }
    }
    expect(() => parsePolicy({ limits: [], prices: { sms: { Gb: 1 } } })).toThrow(PolicyError);
  });
});

describe("settling a send whose answer never came, from the Message list", () => {
  const at = Date.UTC(2026, 10, 28, 12);
  const sent = { to: "+14155552671", from: "+15005550006", messagingServiceSid: null, body: "hi", reservedAtMs: at };
  const row = (over: Record<string, unknown>) => ({ sid: "SM0123456789abcdef0123456789abcdef", to: sent.to, from: sent.from, body: "hi", date_created: new Date(at + 1000).toUTCString(), ...over });
  it("asks for the newest messages to that number from that sender", () => {
    expect(lookupQuery(sent).toString()).toBe("To=%2B14155552671&PageSize=20&From=%2B15005550006");
  });
  it("binds the message created since the reservation with the same body", () => {
    expect(settlementFromList(sent, JSON.stringify({ messages: [row({ body: "other" }), row({})] }))).toEqual({ type: "accepted", sid: "SM0123456789abcdef0123456789abcdef" });
  });
  it("releases when no such message exists (older ones, other bodies)", () => {
    expect(settlementFromList(sent, JSON.stringify({ messages: [row({ date_created: new Date(at - 3_600_000).toUTCString() }), row({ body: "x" })] }))).toEqual({ type: "rejected" });
  });
  it("decides nothing from an answer that is not a Message list", () => {
    expect(settlementFromList(sent, "<html>")).toBeNull();
    expect(settlementFromList(sent, JSON.stringify({ code: 20003 }))).toBeNull();
  });
});
