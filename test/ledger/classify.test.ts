import { describe, expect, it } from "vitest";
import { classifyWebhook, parseReportedPrice } from "../../src/ledger/classify.ts";

const AC = "AC" + "1".repeat(32);
const SM = "SM" + "2".repeat(32);
const MM = "MM" + "3".repeat(32);
const CA = "CA" + "4".repeat(32);

describe("classifyWebhook", () => {
  it("classifies an inbound SMS (Twilio's messaging webhook)", () => {
    const event = classifyWebhook({ AccountSid: AC, MessageSid: SM, SmsSid: SM, SmsStatus: "received", Body: "hi", NumSegments: "2", NumMedia: "0" });
    expect(event).toMatchObject({ kind: "inbound-message", sid: SM, status: "received", dedupeKey: `${SM}:received`, countKey: `msg:${SM}`, units: { segments: 2, media: 0 }, billable: true });
  });

  it("classifies an inbound MMS by NumMedia", () => {
    expect(classifyWebhook({ AccountSid: AC, MessageSid: MM, SmsStatus: "received", NumMedia: "2" })).toMatchObject({ kind: "inbound-message", units: { media: 2 } });
  });

  it("treats sent, delivered and undelivered status callbacks as billable, once per MessageSid", () => {
    for (const status of ["sent", "delivered", "undelivered", "read"]) {
      expect(classifyWebhook({ AccountSid: AC, MessageSid: SM, MessageStatus: status })).toMatchObject({ kind: "message-status", billable: true, countKey: `msg:${SM}`, dedupeKey: `${SM}:${status}` });
    }
  });

  it("does not bill a message that failed before sending, nor one still queued", () => {
    for (const status of ["failed", "queued", "sending", "accepted", "scheduled", "canceled"]) {
      expect(classifyWebhook({ AccountSid: AC, MessageSid: SM, MessageStatus: status })).toMatchObject({ kind: "message-status", billable: false });
    }
  });

  it("classifies the voice request of an inbound call", () => {
    expect(classifyWebhook({ AccountSid: AC, CallSid: CA, CallStatus: "ringing", Direction: "inbound" })).toMatchObject({ kind: "inbound-call", countKey: `call:${CA}`, units: { minutes: 1 }, billable: true });
  });

  it("bills a completed call by Duration (minutes), else by CallDuration seconds rounded up", () => {
    expect(classifyWebhook({ AccountSid: AC, CallSid: CA, CallStatus: "completed", Duration: "3", CallDuration: "125" })).toMatchObject({ kind: "call-status", units: { minutes: 3 } });
    expect(classifyWebhook({ AccountSid: AC, CallSid: CA, CallStatus: "completed", CallDuration: "61" })).toMatchObject({ units: { minutes: 2 } });
  });

  it("does not bill busy, no-answer, failed or canceled calls", () => {
    for (const status of ["busy", "no-answer", "failed", "canceled"]) {
      expect(classifyWebhook({ AccountSid: AC, CallSid: CA, CallStatus: status })).toMatchObject({ kind: "call-status", billable: false });
    }
  });

  it("bounds forged unit counts", () => {
    expect(classifyWebhook({ AccountSid: AC, MessageSid: SM, SmsStatus: "received", NumSegments: "999999", NumMedia: "500" })).toMatchObject({ units: { segments: 1, media: 0 } });
    expect(classifyWebhook({ AccountSid: AC, CallSid: CA, CallStatus: "completed", Duration: "999999" })).toMatchObject({ units: { minutes: 1440 } });
  });

  it("reads Twilio's negative Price as a positive USD amount, and ignores other currencies", () => {
    expect(classifyWebhook({ AccountSid: AC, MessageSid: SM, MessageStatus: "sent", Price: "-0.00750", PriceUnit: "USD" })).toMatchObject({ reportedPriceUsd: 0.0075 });
    expect(parseReportedPrice("-0.0075", "EUR")).toBeUndefined();
    expect(parseReportedPrice("abc", "USD")).toBeUndefined();
    expect(parseReportedPrice("", undefined)).toBeUndefined();
  });

  it("accepts a Map of fields as well as a record", () => {
    expect(classifyWebhook(new Map([["AccountSid", AC], ["MessageSid", SM], ["SmsStatus", "received"]]))).toMatchObject({ kind: "inbound-message" });
  });

  it.each([
    [{}, "no AccountSid"],
    [{ AccountSid: "ACnope" }, "malformed AccountSid"],
    [{ AccountSid: AC, Digits: "1" }, "neither a message nor a call"],
    [{ AccountSid: AC, MessageSid: SM, MessageStatus: "weird" }, "message status weird"],
  ])("does not bill %j (%s)", (fields, reason) => {
    expect(classifyWebhook(fields as Record<string, string>)).toEqual({ kind: "not-billable", reason });
  });
});
