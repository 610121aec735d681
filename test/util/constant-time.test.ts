import { describe, expect, it } from "vitest";
import { timingSafeEqualBytes, timingSafeEqualString } from "../../src/util/constant-time.ts";

describe("timingSafeEqualString", () => {
  it("agrees with === on equal, different, prefix and empty strings", () => {
    const samples = ["", "a", "ab", "abc", "abd", "b", "é", "e\u0301", "😀", "\u0000", "a\u0000"];
    for (const a of samples) for (const b of samples) expect(timingSafeEqualString(a, b)).toBe(a === b);
  });

  it("tells apart strings that differ only in lone surrogates (which UTF-8 encoding would merge)", () => {
    expect(timingSafeEqualString("\ud800", "\ud801")).toBe(false);
    expect(timingSafeEqualString("x\udc00", "x\ufffd")).toBe(false);
  });
});

describe("timingSafeEqualBytes", () => {
  it("agrees with element-wise equality, including different lengths", () => {
    const a = new Uint8Array([1, 2, 3]);
    expect(timingSafeEqualBytes(a, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(timingSafeEqualBytes(a, new Uint8Array([1, 2, 4]))).toBe(false);
    expect(timingSafeEqualBytes(a, new Uint8Array([1, 2, 3, 0]))).toBe(false);
    expect(timingSafeEqualBytes(a, new Uint8Array([1, 2]))).toBe(false);
    expect(timingSafeEqualBytes(new Uint8Array([]), new Uint8Array([]))).toBe(true);
  });
});
