import { describe, expect, it } from "vitest";
import { classifyWebhook, parseReportedPrice, type BillableEvent } from "../../src/ledger/classify.ts";

const AC = "AC" + "1a".repeat(16);
const SM = "SM" + "2b".repeat(16);
const MM = "MM" + "3c".repeat(16);
const CA = "CA" + "4d".repeat(16);

// Payloads as Twilio sends them (https://www.twilio.com/docs/messaging/guides/webhook-request,
// https://www.twilio.com/docs/voice/twiml#request-parameters, the call and message StatusCallbacks).
const inboundSms = (extra: Record<string, string> = {}): Record<string, string> => ({
  ToCountry: "US", ToState: "CA", SmsMessageSid: SM, NumMedia: "0", ToCity: "SAN FRANCISCO", FromZip: "94105",
  SmsSid: SM, FromState: "CA", SmsStatus: "received", FromCity: "SAN FRANCISCO", Body: "Hello there", FromCountry: "US",
  To: "+15005550006", ToZip: "94105", NumSegments: "1", ReferralNumMedia: "0", MessageSid: SM, AccountSid: AC,
  From: "+14155550100", ApiVersion: "2010-04-01", ...extra,
});

const inboundMms = (extra: Record<string, string> = {}): Record<string, string> => ({
  ...inboundSms({ SmsMessageSid: MM, SmsSid: MM, MessageSid: MM, Body: "", NumMedia: "2" }),
  MediaContentType0: "image/jpeg", MediaUrl0: `https://api.twilio.com/2010-04-01/Accounts/${AC}/Messages/${MM}/Media/ME${"5".repeat(32)}`,
  MediaContentType1: "image/png", MediaUrl1: `https://api.twilio.com/2010-04-01/Accounts/${AC}/Messages/${MM}/Media/ME${"6".repeat(32)}`,
  ...extra,
});

const messageStatus = (status: string, extra: Record<string, string> = {}): Record<string, string> => ({
  SmsSid: SM, SmsStatus: status, MessageStatus: status, To: "+14155550100", MessagingServiceSid: "MG" + "7".repeat(32),
  MessageSid: SM, AccountSid: AC, From: "+15005550006", ApiVersion: "2010-04-01", ...extra,
});

const inboundCall = (extra: Record<string, string> = {}): Record<string, string> => ({
  Called: "+15005550006", ToState: "CA", CallerCountry: "US", Direction: "inbound", CallerState: "CA", ToZip: "94105",
  CallSid: CA, To: "+15005550006", CallerZip: "94105", ToCountry: "US", CallToken: "%7B%22parentCallInfoToken%22%7D",
  CalledZip: "94105", ApiVersion: "2010-04-01", CalledCity: "SAN FRANCISCO", CallStatus: "ringing", From: "+14155550100",
  AccountSid: AC, CalledCountry: "US", CallerCity: "SAN FRANCISCO", ToCity: "SAN FRANCISCO", FromCountry: "US",
  Caller: "+14155550100", FromCity: "SAN FRANCISCO", CalledState: "CA", FromZip: "94105", FromState: "CA", ...extra,
});

const callStatus = (status: string, extra: Record<string, string> = {}): Record<string, string> => ({
  ...inboundCall({ CallStatus: status }),
  Timestamp: "Sat, 28 Nov 2026 13:05:42 +0000", CallbackSource: "call-progress-events", SequenceNumber: "0", ...extra,
});

const billable = (params: Record<string, string> | ReadonlyMap<string, string>): BillableEvent => {
  const result = classifyWebhook(params);
  if (result.kind === "not-billable") throw new Error(`not billable: ${result.reason}`);
  return result;
};

describe("classifyWebhook: inbound messages", () => {
  it("classifies an inbound SMS with its keys and units", () => {
    expect(billable(inboundSms({ NumSegments: "2" }))).toEqual({
      kind: "inbound-message", sid: SM, accountSid: AC, status: "received", dedupeKey: `${SM}:received`, countKey: `msg:${SM}`,
      units: { segments: 2, media: 0 }, billable: true,
    });
  });

  it("classifies an inbound MMS and counts its media", () => {
    expect(billable(inboundMms())).toMatchObject({ kind: "inbound-message", sid: MM, units: { media: 2 } });
  });

  it("recognises an inbound message by SmsSid alone (older payloads)", () => {
    const { MessageSid: _omit, ...params } = inboundSms();
    expect(billable(params)).toMatchObject({ kind: "inbound-message", sid: SM });
  });

  it("recognises an inbound message without a status by its Body", () => {
    const { SmsStatus: _omit, ...params } = inboundSms();
    expect(billable(params)).toMatchObject({ kind: "inbound-message", status: "received", dedupeKey: `${SM}:received` });
  });

  it("accepts the parameters as a Map", () => {
    expect(billable(new Map(Object.entries(inboundSms())))).toMatchObject({ kind: "inbound-message" });
  });

  it("accepts the parameters as URLSearchParams", () => {
    expect(classifyWebhook(new URLSearchParams(inboundSms()))).toMatchObject({ kind: "inbound-message" });
  });
});

describe("classifyWebhook: message status callbacks", () => {
  it.each(["sent", "delivered", "undelivered", "read", "partially_delivered"])("bills %s, counted once per MessageSid", (status) => {
    expect(billable(messageStatus(status))).toMatchObject({ kind: "message-status", status, billable: true, countKey: `msg:${SM}`, dedupeKey: `${SM}:${status}` });
  });

  it("does not bill a message that failed (it never left Twilio)", () => {
    expect(billable(messageStatus("failed", { ErrorCode: "30008" }))).toMatchObject({ kind: "message-status", billable: false });
  });

  it.each(["queued", "sending", "accepted", "scheduled", "canceled"])("does not bill %s (not sent, or never)", (status) => {
    expect(billable(messageStatus(status))).toMatchObject({ kind: "message-status", billable: false });
  });

  it("gives every status of one message the same countKey and its own dedupeKey", () => {
    const keys = ["sent", "delivered"].map((s) => billable(messageStatus(s)));
    expect([keys[0]!.countKey === keys[1]!.countKey, keys[0]!.dedupeKey === keys[1]!.dedupeKey]).toEqual([true, false]);
  });

  it("reads MessageStatus even when SmsStatus disagrees", () => {
    expect(billable(messageStatus("delivered", { SmsStatus: "sent" })).status).toBe("delivered");
  });

  it("prices an MM status callback without NumMedia as an MMS", () => {
    expect(billable(messageStatus("delivered", { MessageSid: MM, SmsSid: MM })).units).toEqual({ segments: 1, media: 1 });
  });

  it("reads Twilio's negative Price as a positive USD amount", () => {
    expect(billable(messageStatus("delivered", { Price: "-0.00750", PriceUnit: "USD" })).reportedPriceUsd).toBe(0.0075);
  });

  it("ignores a Price in another currency", () => {
    expect(billable(messageStatus("delivered", { Price: "-0.00700", PriceUnit: "EUR" })).reportedPriceUsd).toBeUndefined();
  });

  it("does not bill an unknown status", () => {
    expect(classifyWebhook(messageStatus("weird"))).toEqual({ kind: "not-billable", reason: "message status weird" });
  });

  it("does not treat the inbound `receiving` status as a status callback", () => {
    expect(classifyWebhook(messageStatus("receiving"))).toMatchObject({ kind: "not-billable" });
  });
});

describe("classifyWebhook: calls", () => {
  it("classifies the Voice URL request of a ringing inbound call, reserving one minute", () => {
    expect(billable(inboundCall())).toEqual({
      kind: "inbound-call", sid: CA, accountSid: AC, status: "ringing", dedupeKey: `${CA}:ringing`, countKey: `call:${CA}`,
      units: { minutes: 1 }, billable: true,
    });
  });

  it("does not count a mid-call request (a Gather action or redirect, CallStatus in-progress) as a new event", () => {
    expect(classifyWebhook(inboundCall({ CallStatus: "in-progress" }))).toEqual({ kind: "not-billable", reason: "mid-call request: part of a call already counted" });
  });

  it("bills a completed call by Duration, Twilio's billed minutes", () => {
    expect(billable(callStatus("completed", { Duration: "3", CallDuration: "125" }))).toMatchObject({ kind: "call-status", status: "completed", billable: true, units: { minutes: 3 } });
  });

  it("falls back to CallDuration seconds rounded up to the minute", () => {
    expect(billable(callStatus("completed", { CallDuration: "61" })).units).toEqual({ minutes: 2 });
  });

  it("bills zero minutes for a completed call without any duration", () => {
    expect(billable(callStatus("completed")).units).toEqual({ minutes: 0 });
  });

  it("gives the completed callback the inbound request's countKey, so it settles the reservation", () => {
    expect(billable(callStatus("completed", { Duration: "1" })).countKey).toBe(billable(inboundCall()).countKey);
  });

  it.each(["busy", "no-answer", "failed", "canceled"])("does not bill a %s call", (status) => {
    expect(billable(callStatus(status, { Direction: "outbound-api" }))).toMatchObject({ kind: "call-status", status, billable: false, units: { minutes: 0 } });
  });

  it("bills an outbound call's completion (no reservation was made)", () => {
    expect(billable(callStatus("completed", { Direction: "outbound-api", Duration: "2" }))).toMatchObject({ kind: "call-status", billable: true, units: { minutes: 2 } });
  });

  it.each(["initiated", "ringing", "in-progress"])("does not count an outbound call's %s request before completion", (status) => {
    expect(classifyWebhook(callStatus(status, { Direction: "outbound-api" }))).toMatchObject({ kind: "not-billable" });
  });

  it("lowercases CallStatus", () => {
    expect(billable(callStatus("COMPLETED", { Duration: "1" })).status).toBe("completed");
  });
});

describe("classifyWebhook: bounded counts", () => {
  it("counts a forged NumSegments as one segment", () => {
    expect(billable(inboundSms({ NumSegments: "999999999" })).units.segments).toBe(1);
  });

  it("counts NumSegments 0 (a Messaging Service before sending) as one segment", () => {
    expect(billable(messageStatus("sent", { NumSegments: "0" })).units.segments).toBe(1);
  });

  it("accepts up to 100 segments", () => {
    expect(billable(inboundSms({ NumSegments: "100" })).units.segments).toBe(100);
  });

  it("ignores a non-numeric NumSegments", () => {
    expect(billable(inboundSms({ NumSegments: "1e9" })).units.segments).toBe(1);
  });

  it("ignores a NumMedia above Twilio's 10", () => {
    expect(billable(inboundSms({ NumMedia: "500" })).units.media).toBe(0);
  });

  it("caps a forged Duration at 24 hours", () => {
    expect(billable(callStatus("completed", { Duration: "999999" })).units.minutes).toBe(1440);
  });

  it("caps a forged CallDuration at 24 hours", () => {
    expect(billable(callStatus("completed", { CallDuration: "999999999" })).units.minutes).toBe(1440);
  });

  it("ignores a negative Duration and uses CallDuration", () => {
    expect(billable(callStatus("completed", { Duration: "-5", CallDuration: "30" })).units.minutes).toBe(1);
  });
});

describe("classifyWebhook: not billable", () => {
  it.each([
    ["no AccountSid", { MessageSid: SM, SmsStatus: "received" }, "no AccountSid"],
    ["an upper-case AccountSid", inboundSms({ AccountSid: AC.toUpperCase() }), "malformed AccountSid"],
    ["a short AccountSid", inboundSms({ AccountSid: "AC123" }), "malformed AccountSid"],
    ["a non-AC AccountSid", inboundSms({ AccountSid: "SK" + "1a".repeat(16) }), "malformed AccountSid"],
    ["a malformed MessageSid", inboundSms({ MessageSid: "SMnope" }), "malformed MessageSid"],
    ["a malformed CallSid", inboundCall({ CallSid: "CA1" }), "malformed CallSid"],
    ["a message without status or Body", { AccountSid: AC, MessageSid: SM }, "message status missing"],
    ["a Gather with neither Sid", { AccountSid: AC, Digits: "1" }, "neither a message nor a call"],
  ])("refuses %s", (_what, params, reason) => {
    expect(classifyWebhook(params as Record<string, string>)).toEqual({ kind: "not-billable", reason });
  });

  it("does not read inherited properties of a record as parameters", () => {
    const params = Object.create({ AccountSid: AC, MessageSid: SM, SmsStatus: "received" }) as Record<string, string>;
    expect(classifyWebhook(params)).toEqual({ kind: "not-billable", reason: "no AccountSid" });
  });
});

describe("parseReportedPrice", () => {
  it("parses Twilio's negative decimal string as its absolute value", () => {
    expect(parseReportedPrice("-0.00750", "USD")).toBe(0.0075);
  });

  it("accepts a Price without a PriceUnit as USD", () => {
    expect(parseReportedPrice("-0.0083", undefined)).toBe(0.0083);
  });

  it("accepts a lower-case unit", () => {
    expect(parseReportedPrice("-0.01", "usd")).toBe(0.01);
  });

  it("ignores another currency", () => {
    expect(parseReportedPrice("-0.0075", "EUR")).toBeUndefined();
  });

  it.each(["", "abc", "-", "1e3", "-0x10", "9999999.0", "NaN", "Infinity"])("ignores %j", (price) => {
    expect(parseReportedPrice(price, "USD")).toBeUndefined();
  });
});
