import { describe, expect, it } from "vitest";
import { base32Decode, base32Encode } from "../../src/admin/base32.ts";
import { utf8 } from "../../src/util/encoding.ts";

// RFC 4648 §10 test vectors.
const RFC4648_VECTORS: Array<[string, string]> = [
  ["", ""],
  ["f", "MY======"],
  ["fo", "MZXQ===="],
  ["foo", "MZXW6==="],
  ["foob", "MZXW6YQ="],
  ["fooba", "MZXW6YTB"],
  ["foobar", "MZXW6YTBOI======"],
];

describe("base32Encode", () => {
  it.each(RFC4648_VECTORS)("encodes %j as the RFC 4648 §10 vector", (plain, encoded) => {
    expect(base32Encode(utf8(plain))).toBe(encoded);
  });

  it("encodes the RFC 6238 test secret as its well-known base32 form", () => {
    expect(base32Encode(utf8("12345678901234567890"))).toBe("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
  });

  it("encodes all byte values with the upper-case alphabet only", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(base32Encode(all)).toMatch(/^[A-Z2-7]+=*$/);
  });
});

describe("base32Decode", () => {
  it.each(RFC4648_VECTORS)("decodes the RFC 4648 §10 vector for %j", (plain, encoded) => {
    expect(base32Decode(encoded)).toEqual(utf8(plain));
  });

  it("returns a Uint8Array over a plain ArrayBuffer", () => {
    const bytes = base32Decode("MZXW6YTB");
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(bytes.buffer).toBeInstanceOf(ArrayBuffer);
  });

  it("is case-insensitive", () => {
    expect(base32Decode("mzxw6ytboi")).toEqual(utf8("foobar"));
    expect(base32Decode("MzXw6YtBoI")).toEqual(utf8("foobar"));
  });

  it("ignores spaces, tabs and line breaks as authenticator apps group secrets", () => {
    expect(base32Decode("gezd gnbv gy3t qojq\tgezd\ngnbv\r\ngy3t qojq")).toEqual(utf8("12345678901234567890"));
  });

  it("accepts the text with or without '=' padding", () => {
    expect(base32Decode("MZXW6YTBOI")).toEqual(utf8("foobar"));
    expect(base32Decode("MZXW6YTBOI======")).toEqual(utf8("foobar"));
    expect(base32Decode("MY")).toEqual(utf8("f"));
  });

  it("round-trips every length from 0 to 64 bytes of random data", () => {
    for (let length = 0; length <= 64; length++) {
      const bytes = crypto.getRandomValues(new Uint8Array(length));
      expect(base32Decode(base32Encode(bytes))).toEqual(bytes);
      expect(base32Decode(base32Encode(bytes).toLowerCase().replace(/=/g, ""))).toEqual(bytes);
    }
  });

  it("round-trips all 256 byte values", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(base32Decode(base32Encode(all))).toEqual(all);
  });

  it.each([
    ["a character outside the alphabet", "JBSWY3DP!EHPK3PX"],
    ["the digit 1 (not in the alphabet)", "JBSWY3DP1EHPK3PX"],
    ["the digit 0 (not in the alphabet)", "JBSWY3DP0EHPK3PX"],
    ["the digit 8", "JBSWY3DP8EHPK3PX"],
    ["a hyphen", "JBSW-Y3DP-EHPK-3PXP"],
    ["a non-ASCII letter", "JBSWY3DPÉHPK3PXP"],
    ["data after padding", "MZXW6===YTBOI"],
    ["a truncated group (1 character left over)", "MZXW6YTBO"],
    ["a truncated group (3 characters left over)", "MZXW6YTBOIA"],
    ["a truncated group (6 characters left over)", "MZXW6YTBOIAAAA"],
  ])("rejects %s with an Error that does not contain the input", (_label, input) => {
    let caught: unknown;
    try {
      base32Decode(input);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(Error);
    const message = (caught as Error).message;
    expect(message).toMatch(/^base32: /);
    expect(message).not.toContain(input);
    expect(message).not.toContain(input.slice(0, 8));
    expect(message.toUpperCase()).not.toContain(input.replace(/[^A-Z2-7]/gi, "").slice(0, 6).toUpperCase());
  });

  it("names the position of an invalid character", () => {
    expect(() => base32Decode("AB!C")).toThrow(/position 3/);
  });
});
