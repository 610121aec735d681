import { afterEach, describe, expect, it, vi } from "vitest";
import { base32Decode } from "../../src/admin/base32.ts";
import {
  generateSecretBase32,
  hotp,
  importTotpKey,
  otpauthUri,
  totpAt,
  verifyTotp,
} from "../../src/admin/totp.ts";
import { utf8 } from "../../src/util/encoding.ts";

// RFC 4226 Appendix D and RFC 6238 Appendix B (SHA-1) share this 20-byte ASCII secret.
const RFC_SECRET = utf8("12345678901234567890");
const RFC_SECRET_BASE32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

const rfcKey = () => importTotpKey(RFC_SECRET);

afterEach(() => {
  vi.restoreAllMocks();
});

describe("importTotpKey", () => {
  it("returns a non-extractable HMAC-SHA1 signing key", async () => {
    const key = await rfcKey();
    expect(key.algorithm).toMatchObject({ name: "HMAC", hash: { name: "SHA-1" } });
    expect(key.extractable).toBe(false);
    expect(key.usages).toEqual(["sign"]);
  });

  it("rejects an empty secret", async () => {
    await expect(importTotpKey(new Uint8Array(0))).rejects.toThrow(/empty/);
  });

  it("does not depend on later changes to the caller's buffer", async () => {
    const secret = new Uint8Array(RFC_SECRET);
    const key = await importTotpKey(secret);
    secret.fill(0);
    expect(await hotp(key, 0)).toBe("755224");
  });
});

describe("hotp", () => {
  // RFC 4226 Appendix D: HOTP values for counters 0-9.
  const RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];

  it.each(RFC4226.map((code, counter) => [counter, code] as const))(
    "counter %i gives the RFC 4226 Appendix D value %s",
    async (counter, code) => {
      expect(await hotp(await rfcKey(), counter)).toBe(code);
    },
  );

  it("encodes counters above 2^32 as 8 bytes big-endian", async () => {
    const key = await rfcKey();
    for (const counter of [2 ** 32, 2 ** 32 + 5, 2 ** 40 + 123_456, Number.MAX_SAFE_INTEGER]) {
      // Independent reference: the counter bytes written with BigInt, truncation per RFC 4226 §5.4.
      const message = new Uint8Array(8);
      new DataView(message.buffer).setBigUint64(0, BigInt(counter));
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
      const offset = mac[19]! & 0xf;
      const binary = new DataView(mac.buffer).getUint32(offset) & 0x7fffffff;
      expect(await hotp(key, counter, 8)).toBe(String(binary % 1e8).padStart(8, "0"));
    }
  });

  it.each([-1, 1.5, Number.NaN, Infinity, 2 ** 53])("rejects the counter %s", async (counter) => {
    await expect(hotp(await rfcKey(), counter)).rejects.toThrow(RangeError);
  });

  it.each([5, 9, 6.5])("rejects %s digits", async (digits) => {
    await expect(hotp(await rfcKey(), 0, digits)).rejects.toThrow(RangeError);
  });

  it("keeps leading zeros", async () => {
    // RFC 6238 Appendix B: T = 1111111109 is 07081804 with 8 digits.
    expect(await hotp(await rfcKey(), Math.floor(1111111109 / 30), 8)).toBe("07081804");
  });
});

describe("totpAt", () => {
  // RFC 6238 Appendix B, the SHA-1 rows (8 digits).
  const RFC6238_SHA1: Array<[number, string]> = [
    [59, "94287082"],
    [1111111109, "07081804"],
    [1111111111, "14050471"],
    [1234567890, "89005924"],
    [2000000000, "69279037"],
    [20000000000, "65353130"],
  ];

  it.each(RFC6238_SHA1)("T = %i gives the RFC 6238 Appendix B value %s", async (time, code) => {
    expect(await totpAt(await rfcKey(), time, 8)).toBe(code);
  });

  it("defaults to 6 digits, the last 6 of the 8-digit value", async () => {
    expect(await totpAt(await rfcKey(), 59)).toBe("287082");
  });

  it("gives the same code throughout a 30 s step and a new one after it", async () => {
    const key = await rfcKey();
    const start = 1_700_000_010; // a multiple of 30
    const code = await totpAt(key, start);
    expect(await totpAt(key, start + 29.999)).toBe(code);
    expect(await totpAt(key, start + 30)).toBe(await hotp(key, start / 30 + 1));
  });

  it.each([-1, Number.NaN, Infinity])("rejects the time %s", async (time) => {
    await expect(totpAt(await rfcKey(), time)).rejects.toThrow(RangeError);
  });
});

describe("verifyTotp", () => {
  const NOW = 1_700_000_015; // mid-step: step 56666667
  const STEP = Math.floor(NOW / 30);

  it("accepts the current code and reports its step", async () => {
    const key = await rfcKey();
    expect(await verifyTotp(key, await hotp(key, STEP), NOW)).toEqual({ step: STEP });
  });

  it.each([-1, 1])("accepts the code %i step away (clock drift)", async (offset) => {
    const key = await rfcKey();
    expect(await verifyTotp(key, await hotp(key, STEP + offset), NOW)).toEqual({ step: STEP + offset });
  });

  it.each([-2, 2, -3, 3])("refuses the code %i steps away", async (offset) => {
    const key = await rfcKey();
    const code = await hotp(key, STEP + offset);
    // Guard against a coincidental collision with an in-window code (1 in 10^6 per candidate).
    const inWindow = await Promise.all([-1, 0, 1].map((o) => hotp(key, STEP + o)));
    expect(inWindow).not.toContain(code);
    expect(await verifyTotp(key, code, NOW)).toBeNull();
  });

  it("accepts ±2 steps when asked for a window of 2", async () => {
    const key = await rfcKey();
    expect(await verifyTotp(key, await hotp(key, STEP - 2), NOW, { window: 2 })).toEqual({ step: STEP - 2 });
    expect(await verifyTotp(key, await hotp(key, STEP + 2), NOW, { window: 2 })).toEqual({ step: STEP + 2 });
  });

  it("accepts only the current step with a window of 0", async () => {
    const key = await rfcKey();
    expect(await verifyTotp(key, await hotp(key, STEP), NOW, { window: 0 })).toEqual({ step: STEP });
    expect(await verifyTotp(key, await hotp(key, STEP + 1), NOW, { window: 0 })).toBeNull();
  });

  it("verifies the RFC 6238 8-digit codes with digits 8", async () => {
    const key = await rfcKey();
    expect(await verifyTotp(key, "14050471", 1111111111, { digits: 8 })).toEqual({ step: 37037037 });
    expect(await verifyTotp(key, "65353130", 20000000000, { digits: 8 })).toEqual({ step: 666666666 });
  });

  it("refuses a wrong code", async () => {
    const key = await rfcKey();
    const valid = await Promise.all([-1, 0, 1].map((o) => hotp(key, STEP + o)));
    const wrong = ["000000", "123456", "999999"].find((c) => !valid.includes(c))!;
    expect(await verifyTotp(key, wrong, NOW)).toBeNull();
  });

  it.each([
    ["too short", (c: string) => c.slice(0, 5)],
    ["too long", (c: string) => `${c}0`],
    ["empty", () => ""],
    ["with a letter", (c: string) => `${c.slice(0, 5)}a`],
    ["with a leading space", (c: string) => ` ${c}`],
    ["with a trailing newline", (c: string) => `${c}\n`],
    ["with a sign", (c: string) => `+${c.slice(1)}`],
    ["in full-width digits", (c: string) => c.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)))],
    ["in Arabic-Indic digits", (c: string) => c.replace(/[0-9]/g, (d) => String.fromCharCode(0x0660 + Number(d)))],
  ])("refuses a code %s", async (_label, mangle) => {
    const key = await rfcKey();
    expect(await verifyTotp(key, mangle(await hotp(key, STEP)), NOW)).toBeNull();
  });

  it("refuses a 6-digit code when 8 digits are expected, even its last 6 digits", async () => {
    const key = await rfcKey();
    expect(await verifyTotp(key, "050471", 1111111111, { digits: 8 })).toBeNull();
  });

  it("refuses a non-string code without throwing", async () => {
    const key = await rfcKey();
    expect(await verifyTotp(key, 287082 as unknown as string, 59)).toBeNull();
  });

  it("skips negative steps near the epoch", async () => {
    const key = await rfcKey();
    expect(await verifyTotp(key, "755224", 10)).toEqual({ step: 0 });
    expect(await verifyTotp(key, "287082", 10)).toEqual({ step: 1 });
  });

  it("computes every candidate in the window even when the first one matches", async () => {
    const key = await rfcKey();
    const code = await hotp(key, STEP - 1);
    const sign = vi.spyOn(crypto.subtle, "sign");
    expect(await verifyTotp(key, code, NOW)).toEqual({ step: STEP - 1 });
    expect(sign).toHaveBeenCalledTimes(3);
    sign.mockClear();
    expect(await verifyTotp(key, code, NOW, { window: 3 })).toEqual({ step: STEP - 1 });
    expect(sign).toHaveBeenCalledTimes(7);
  });

  it("reports steps that let the caller refuse a replay within the window", async () => {
    const key = await rfcKey();
    const code = await hotp(key, STEP);
    const first = await verifyTotp(key, code, NOW);
    // 30 s later the same code is still inside the window, at the same step, so "step <= last" refuses it.
    const again = await verifyTotp(key, code, NOW + 30);
    expect(first).toEqual({ step: STEP });
    expect(again).toEqual({ step: STEP });
    expect(again!.step <= first!.step).toBe(true);
  });

  it.each([{ window: -1 }, { window: 1.5 }, { window: 11 }, { digits: 5 }, { digits: 9 }])(
    "rejects the options %j",
    async (opts) => {
      await expect(verifyTotp(await rfcKey(), "123456", NOW, opts)).rejects.toThrow(RangeError);
    },
  );
});

describe("otpauthUri", () => {
  it("builds the Google Authenticator key URI", () => {
    expect(otpauthUri({ secretBase32: RFC_SECRET_BASE32, issuer: "twilio-edge-guard", account: "operator" })).toBe(
      "otpauth://totp/twilio-edge-guard:operator?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" +
        "&issuer=twilio-edge-guard&algorithm=SHA1&digits=6&period=30",
    );
  });

  it("percent-encodes issuer and account, spaces as %20", () => {
    const uri = otpauthUri({ secretBase32: RFC_SECRET_BASE32, issuer: "Acme Co & Sons", account: "ops@example.com" });
    expect(uri).toMatch(/^otpauth:\/\/totp\/Acme%20Co%20%26%20Sons:ops%40example\.com\?/);
    const parsed = new URL(uri);
    expect(parsed.protocol).toBe("otpauth:");
    expect(parsed.searchParams.get("issuer")).toBe("Acme Co & Sons");
    expect(parsed.searchParams.get("secret")).toBe(RFC_SECRET_BASE32);
    expect(uri).not.toContain("+");
  });

  it("normalises the secret to upper case without spaces or padding", () => {
    const uri = otpauthUri({ secretBase32: "mzxw 6ytb oi======", issuer: "I", account: "a" });
    expect(new URL(uri).searchParams.get("secret")).toBe("MZXW6YTBOI");
  });

  it.each([
    ["an issuer with ':'", { issuer: "a:b", account: "x" }],
    ["an account with ':'", { issuer: "a", account: "x:y" }],
    ["an empty issuer", { issuer: "", account: "x" }],
    ["an empty account", { issuer: "a", account: "" }],
  ])("rejects %s", (_label, names) => {
    expect(() => otpauthUri({ secretBase32: RFC_SECRET_BASE32, ...names })).toThrow(Error);
  });

  it("rejects an invalid or empty secret without echoing it", () => {
    const secret = "NOT-A-BASE32-SECRET";
    expect(() => otpauthUri({ secretBase32: secret, issuer: "a", account: "b" })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining(secret) }),
    );
    expect(() => otpauthUri({ secretBase32: " == ", issuer: "a", account: "b" })).toThrow(/empty/);
  });
});

describe("generateSecretBase32", () => {
  it("gives 160 bits as 32 unpadded base32 characters by default", () => {
    const secret = generateSecretBase32();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(base32Decode(secret)).toHaveLength(20);
  });

  it("gives the requested size, unpadded", () => {
    const secret = generateSecretBase32(16);
    expect(secret).toMatch(/^[A-Z2-7]{26}$/);
    expect(base32Decode(secret)).toHaveLength(16);
  });

  it("gives a different secret each time", () => {
    const secrets = new Set(Array.from({ length: 50 }, () => generateSecretBase32()));
    expect(secrets.size).toBe(50);
  });

  it("draws from crypto.getRandomValues", () => {
    const random = vi.spyOn(crypto, "getRandomValues");
    generateSecretBase32();
    expect(random).toHaveBeenCalledTimes(1);
  });

  it.each([0, 15, 10.5, 65])("rejects %s bytes (RFC 4226 requires at least 128 bits)", (bytes) => {
    expect(() => generateSecretBase32(bytes)).toThrow(RangeError);
  });

  it("produces secrets that work end to end", async () => {
    const secret = generateSecretBase32();
    const key = await importTotpKey(base32Decode(secret));
    const code = await totpAt(key, 1_700_000_000);
    expect(await verifyTotp(key, code, 1_700_000_000)).toEqual({ step: Math.floor(1_700_000_000 / 30) });
  });
});
