import { describe, expect, it } from "vitest";
import { encodeForm, FormEncodingError, parseForm } from "../../src/verification/form.ts";

describe("parseForm", () => {
  it("returns no pairs for an empty body", () => {
    expect(parseForm("")).toEqual([]);
  });

  it("decodes a Twilio SMS body in order, '+' as space and %2B as '+'", () => {
    // Shape of an inbound-SMS webhook body (twilio.com/docs/messaging/guides/webhook-request).
    expect(parseForm("From=%2B14158675309&To=%2B18005551212&Body=Hello+world%21")).toEqual([
      ["From", "+14158675309"],
      ["To", "+18005551212"],
      ["Body", "Hello world!"],
    ]);
  });

  it("keeps a key without '=' as an empty value", () => {
    expect(parseForm("a")).toEqual([["a", ""]]);
  });

  it("keeps empty values and empty keys", () => {
    expect(parseForm("a=&=b&=")).toEqual([
      ["a", ""],
      ["", "b"],
      ["", ""],
    ]);
  });

  it("keeps repeated keys in body order", () => {
    expect(parseForm("x=2&y=1&x=1&x=2")).toEqual([
      ["x", "2"],
      ["y", "1"],
      ["x", "1"],
      ["x", "2"],
    ]);
  });

  it("skips empty pieces between separators, as the WHATWG parser does", () => {
    expect(parseForm("&a=1&&b=2&")).toEqual([
      ["a", "1"],
      ["b", "2"],
    ]);
  });

  it("splits on the first '=' only", () => {
    expect(parseForm("a=b=c")).toEqual([["a", "b=c"]]);
  });

  it("decodes multi-byte UTF-8 and keeps raw non-ASCII text", () => {
    expect(parseForm("k=%F0%9F%98%80&%C3%A9=caf%C3%A9&raw=é")).toEqual([
      ["k", "😀"],
      ["é", "café"],
      ["raw", "é"],
    ]);
  });

  it.each([
    ["a=%zz", "non-hex digits"],
    ["a=%4", "a truncated escape"],
    ["a=100%", "a bare '%' at the end"],
    ["%=1", "a bare '%' in a key"],
    ["a=%E0%A4", "truncated UTF-8 (first two bytes of a three-byte sequence)"],
    ["a=%C3%28", "a lead byte followed by a non-continuation byte"],
    ["a=%C0%AF", "an overlong encoding"],
    ["a=%ED%A0%80", "an encoded UTF-16 surrogate"],
    ["a=%FF", "a byte that never occurs in UTF-8"],
    ["ok=1&a=%80", "a lone continuation byte after a good pair"],
  ])("rejects %s (%s) with FormEncodingError", (body) => {
    expect(() => parseForm(body)).toThrow(FormEncodingError);
  });

  it.each(["a=%zz", "a=%4", "a=100%", "%=1", "a=%E0%A4%zz"])("names %s's fault: malformed percent-encoding", (body) => {
    expect(() => parseForm(body)).toThrow("malformed percent-encoding in form body");
  });

  it.each(["a=%E0%A4", "a=%C0%AF", "a=%ED%A0%80", "a=%FF"])("names %s's fault: not valid UTF-8", (body) => {
    expect(() => parseForm(body)).toThrow("percent-encoded bytes in form body are not valid UTF-8");
  });

  it("does not echo the body in its error message", () => {
    expect(() => parseForm("secret=hunter2%zz")).toThrow(expect.objectContaining({ message: expect.not.stringContaining("hunter2") }));
  });
});

describe("encodeForm", () => {
  it("encodes as Twilio sends it: encodeURIComponent with space as '+'", () => {
    expect(encodeForm([["From", "+14158675309"], ["Body", "It's a test & more (ok)!*~"]])).toBe(
      "From=%2B14158675309&Body=It's+a+test+%26+more+(ok)!*~",
    );
  });

  it("keeps repeated keys, empty values and order", () => {
    expect(encodeForm([["a", ""], ["b", "1"], ["a", "2"], ["", "x"]])).toBe("a=&b=1&a=2&=x");
  });

  it("round-trips through parseForm", () => {
    const pairs: Array<[string, string]> = [
      ["Body", "héllo wörld 😀 100% +1 a=b&c"],
      ["MediaUrl0", "https://api.twilio.com/x?y=1&z=2"],
      ["Empty", ""],
      ["Body", "second"],
    ];
    expect(parseForm(encodeForm(pairs))).toEqual(pairs);
  });

  it("replaces a lone surrogate instead of throwing", () => {
    expect(encodeForm([["k", "a\uD800b"]])).toBe("k=a%EF%BF%BDb");
  });
});
