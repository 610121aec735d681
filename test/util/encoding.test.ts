import { describe, expect, it } from "vitest";
import { fromBase64, toBase64, toHex } from "../../src/util/encoding.ts";

describe("fromBase64", () => {
  it("decodes every canonical encoding back to its bytes", () => {
    for (let length = 0; length <= 24; length++) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 97 + length * 13) & 0xff);
      expect(fromBase64(toBase64(bytes))).toEqual(bytes);
    }
  });

  it("rejects a value whose unused trailing bits are not zero", () => {
    expect(fromBase64("QQ==")).toEqual(new Uint8Array([0x41]));
    expect(fromBase64("QR==")).toBeNull(); // same byte, low 4 bits of 'R' set
    expect(fromBase64("QUI=")).toEqual(new Uint8Array([0x41, 0x42]));
    expect(fromBase64("QUJ=")).toBeNull(); // same bytes, low 2 bits of 'J' set
  });

  it("rejects missing padding, whitespace, other alphabets and stray '='", () => {
    for (const text of ["QQ", "QUI", " QUI=", "QUI=\n", "Q U I=", "QU-_", "Q===", "=QUI", "QQ==QQ==", "QUI=="]) {
      expect(fromBase64(text)).toBeNull();
    }
  });
});

describe("toHex", () => {
  it("writes two lowercase digits per byte", () => {
    expect(toHex(new Uint8Array([0, 1, 0x0f, 0x10, 0xab, 0xff]))).toBe("00010f10abff");
    expect(toHex(new Uint8Array([]).buffer)).toBe("");
  });
  it("writes every byte value as its two digits, in order, over a digest's length and a long input", () => {
    const every = Uint8Array.from({ length: 256 }, (_, byte) => byte);
    expect(toHex(every)).toBe(Array.from(every, (byte) => byte.toString(16).padStart(2, "0")).join(""));
    const long = Uint8Array.from({ length: 5000 }, (_, i) => (i * 151) & 0xff);
    expect(toHex(long.buffer)).toBe(Array.from(long, (byte) => byte.toString(16).padStart(2, "0")).join(""));
    expect(toHex(every.subarray(250, 256))).toBe("fafbfcfdfeff");
  });
});
