// Reading a webhook (src/webhooks/read.ts): which parameter lists are refused as not Twilio-shaped, and
// with which reason, and the flat fields classification reads. parseWebhook reads the pieces off the
// text and the repeats off one Map; `reference` below is the earlier check (split the text again, a Set
// of "key\0value" strings), kept here as the oracle the single pass must agree with.
import { describe, expect, it } from "vitest";
import { GuardError } from "../../src/http/errors.ts";
import { CLASSIFIED_FIELDS } from "../../src/ledger/classify.ts";
import { parseForm, type FormPairs } from "../../src/verification/form.ts";
import { parseWebhook, twilioShaped } from "../../src/webhooks/read.ts";

const SINGLE = new Set([...CLASSIFIED_FIELDS, "IdempotencyToken", "UsageTriggerSid", "DateFired", "CurrentValue", "TriggerValue", "Recurring", "UsageCategory", "TriggerBy"]);

/** The reason the earlier two-pass check gave (its first fault), or null. */
function reference(pieces: readonly string[], pairs: FormPairs): string | null {
  for (const piece of pieces) if (piece === "" || piece.startsWith("=")) return "empty-parameter";
  const seenPairs = new Set<string>();
  const seenFields = new Set<string>();
  for (const [key, value] of pairs) {
    if (key === "") return "empty-parameter";
    const pair = `${key}\u0000${value}`;
    if (seenPairs.has(pair)) return "repeated-parameter verbatim";
    seenPairs.add(pair);
    if (SINGLE.has(key)) {
      if (seenFields.has(key)) return `repeated-parameter ${key}`;
      seenFields.add(key);
    }
  }
  return null;
}

function reasonOf(error: GuardError | null): string | null {
  if (error === null) return null;
  if (error.reason !== "repeated-parameter") return error.reason;
  return error.message.endsWith("verbatim") ? "repeated-parameter verbatim" : `repeated-parameter ${/gives (\w+) twice/.exec(error.message)![1]}`;
}

function formPost(body: string, query = ""): Request {
  return new Request(`https://guard.example.com/webhooks/sms${query}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body,
  });
}

function parse(request: Request, body = "") {
  return parseWebhook(request, new TextEncoder().encode(body) as Uint8Array<ArrayBuffer>);
}

describe("twilioShaped", () => {
  it.each([
    ["a=1&b=2", null],
    ["a=1&&b=2", "empty-parameter"],
    ["&a=1", "empty-parameter"],
    ["a=1&", "empty-parameter"],
    ["=1&a=2", "empty-parameter"],
    ["a=1&=2", "empty-parameter"],
    ["a=1&a=1", "repeated-parameter verbatim"],
    ["a=1&a=2", null],
    ["Body=hi&Body=x", "repeated-parameter Body"],
    ["Body=hi&x=1&Body=hi", "repeated-parameter verbatim"],
    ["a=1&a=1&&b", "empty-parameter"],
    ["MessageSid=1&a=2&a=2&MessageSid=3", "repeated-parameter verbatim"],
    ["a=1&MessageSid=1&MessageSid=2&a=1", "repeated-parameter MessageSid"],
  ])("%s → %s", (text, expected) => {
    expect(reasonOf(twilioShaped(text, parseForm(text), "body").notShaped)).toBe(expected);
  });

  it("agrees with the earlier two-pass check on every list over a small alphabet", () => {
    // Every string of up to 6 symbols over this alphabet: empty pieces, empty names, repeats of names
    // (single-valued or not) and of whole pairs, in every order.
    const alphabet = ["a", "Body", "=", "1", "&", "x"];
    let checked = 0;
    const walk = (text: string, depth: number) => {
      if (text !== "") {
        const pairs = parseForm(text);
        expect(reasonOf(twilioShaped(text, pairs, "body").notShaped), text).toBe(reference(text.split("&"), pairs));
        checked++;
      }
      if (depth === 0) return;
      for (const symbol of alphabet) walk(text + symbol, depth - 1);
    };
    walk("", 6);
    expect(checked).toBeGreaterThan(50_000);
  });

  it("keeps a repeated name's last value in the fields, as new Map(pairs) does", () => {
    const pairs = parseForm("a=1&b=2&a=3");
    expect([...twilioShaped("a=1&b=2&a=3", pairs, "body").fields]).toEqual([...new Map(pairs)]);
  });
});

describe("parseWebhook", () => {
  it("reads a form body's fields and claimed AccountSid, shaped", () => {
    const webhook = parse(formPost("AccountSid=AC1&Body=hi+there"), "AccountSid=AC1&Body=hi+there");
    expect(webhook.notTwilioShaped).toBeNull();
    expect(webhook.claimedAccountSid).toBe("AC1");
    expect(webhook.fields.get("Body")).toBe("hi there");
    expect(webhook.formParams).toEqual([["AccountSid", "AC1"], ["Body", "hi there"]]);
  });

  it("names the query's fault before the body's on a POST", () => {
    const webhook = parse(formPost("a=1&a=1", "?t=1&&u=2"), "a=1&a=1");
    expect(webhook.notTwilioShaped?.message).toBe("query has an empty parameter (Twilio never sends one)");
  });

  it("names the body's fault when the query is shaped", () => {
    const webhook = parse(formPost("a=1&a=1", "?t=1"), "a=1&a=1");
    expect(webhook.notTwilioShaped?.message).toBe("body repeats a parameter verbatim");
  });

  it("refuses an empty POST as a GET's signature replayed, whatever else", () => {
    expect(parse(formPost("", "?a=1&&b"), "").notTwilioShaped?.reason).toBe("post-without-body");
  });

  it("reads a GET's fields from its query, and refuses a repeated single-valued field there", () => {
    const shaped = parse(new Request("https://guard.example.com/webhooks/sms?AccountSid=AC1&MessageSid=SM1"));
    expect(shaped.notTwilioShaped).toBeNull();
    expect(shaped.fields.get("MessageSid")).toBe("SM1");
    const repeated = parse(new Request("https://guard.example.com/webhooks/sms?MessageSid=SM1&MessageSid=SM2"));
    expect(repeated.notTwilioShaped?.message).toBe("query gives MessageSid twice");
  });

  it("takes a GET without a query as no fields, shaped", () => {
    const webhook = parse(new Request("https://guard.example.com/webhooks/sms?"));
    expect(webhook.notTwilioShaped).toBeNull();
    expect(webhook.fields.size).toBe(0);
  });
});
