import { describe, expect, it } from "vitest";
import { parseBasicAuthorization } from "../../src/verification/basic-auth.ts";

/** `Basic <base64 of the bytes>` from raw bytes (so tests can send bytes that are not UTF-8). */
function basic(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}
const utf8 = (s: string) => new TextEncoder().encode(s);

describe("parseBasicAuthorization", () => {
  it("splits user and password at the first colon", () => {
    expect(parseBasicAuthorization(basic(utf8("AC123:pa:ss")))).toEqual({ user: "AC123", password: "pa:ss" });
  });

  it("decodes the credentials as UTF-8", () => {
    expect(parseBasicAuthorization(basic(utf8("üser:pässwörd-€")))).toEqual({ user: "üser", password: "pässwörd-€" });
  });

  it("refuses bytes that are not UTF-8 (one byte of Latin-1)", () => {
    expect(parseBasicAuthorization(basic(new Uint8Array([0x75, 0x3a, 0xe9])))).toBeNull();
  });

  it("keeps refusing bad bytes and accepting good ones call after call (the decoder is shared)", () => {
    const good = basic(utf8("a:b"));
    const bad = basic(new Uint8Array([0x61, 0x3a, 0xc3]));
    for (let i = 0; i < 3; i++) {
      expect(parseBasicAuthorization(bad)).toBeNull();
      expect(parseBasicAuthorization(good)).toEqual({ user: "a", password: "b" });
    }
  });

  it("refuses credentials without a colon, another scheme, or no header", () => {
    expect(parseBasicAuthorization(basic(utf8("nocolon")))).toBeNull();
    expect(parseBasicAuthorization("Bearer abc")).toBeNull();
    expect(parseBasicAuthorization(null)).toBeNull();
  });

  it("accepts the scheme in any case, with spaces around the token", () => {
    expect(parseBasicAuthorization(`bAsIc   ${btoa("u:p")}  `)).toEqual({ user: "u", password: "p" });
  });
});
