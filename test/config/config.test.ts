import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { ConfigError } from "../../src/http/errors.ts";
import { DEFAULT_POLICY } from "../../src/ledger/policy.ts";

const base = {
  TWILIO_ACCOUNT_SID: "AC00000000000000000000000000000001",
  TWILIO_AUTH_TOKEN: "primary-token-value",
  ORIGIN_URL: "https://origin.example/app/",
} as unknown as GuardEnv;

function settingOf(overrides: Record<string, string>): string {
  try {
    parseConfig({ ...base, ...overrides } as GuardEnv);
  } catch (error) {
    if (error instanceof ConfigError) return error.setting;
    throw error;
  }
  return "(accepted)";
}

describe("parseConfig", () => {
  it("applies the contract's defaults", () => {
    const config = parseConfig(base);
    expect(config.apiBase).toBe("https://api.twilio.com");
    expect(config.webhookAuth).toBe("signature");
    expect(config.mode).toBe("enforce");
    expect(config.policy).toEqual(DEFAULT_POLICY);
    expect(config.reconcileIntervalS).toBe(300);
    expect(config.adminToken).toBeNull();
    expect(config.originUrl).toBe("https://origin.example/app");
  });

  it("puts the primary token first and the secondary after it", () => {
    const config = parseConfig({ ...base, TWILIO_AUTH_TOKEN_SECONDARY: "secondary-token-value" } as GuardEnv);
    expect(config.authTokens).toEqual(["primary-token-value", "secondary-token-value"]);
  });

  it("lists every configured secret for the log redactor", () => {
    const config = parseConfig({
      ...base,
      WEBHOOK_AUTH: "both",
      BASIC_AUTH_USER: "twilio",
      BASIC_AUTH_PASSWORD: "basic-password-value",
      ADMIN_TOKEN: "admin-token-value",
      ADMIN_TOTP_SECRET: "JBSWY3DPEHPK3PXP",
    } as GuardEnv);
    expect(config.secrets).toEqual(["primary-token-value", "basic-password-value", "admin-token-value", "JBSWY3DPEHPK3PXP"]);
  });

  it.each([
    [{ TWILIO_ACCOUNT_SID: "" }, "TWILIO_ACCOUNT_SID"],
    [{ TWILIO_ACCOUNT_SID: "AC0000000000000000000000000000000G" }, "TWILIO_ACCOUNT_SID"],
    [{ TWILIO_AUTH_TOKEN: "   " }, "TWILIO_AUTH_TOKEN"],
    [{ TWILIO_API_BASE: "not a url" }, "TWILIO_API_BASE"],
    [{ ORIGIN_URL: "https://user:pw@origin.example" }, "ORIGIN_URL"],
    [{ PUBLIC_URL: "https://h.example/?q=1" }, "PUBLIC_URL"],
    [{ WEBHOOK_AUTH: "basic" }, "BASIC_AUTH_USER"],
    [{ WEBHOOK_AUTH: "basic", BASIC_AUTH_USER: "a:b", BASIC_AUTH_PASSWORD: "p" }, "BASIC_AUTH_USER"],
    [{ GUARD_MODE: "off" }, "GUARD_MODE"],
    [{ GUARD_POLICY: '{"limits":[],"warnAt":2}' }, "GUARD_POLICY"],
    [{ RECONCILE_INTERVAL_S: "5" }, "RECONCILE_INTERVAL_S"],
    [{ RECONCILE_INTERVAL_S: "-1" }, "RECONCILE_INTERVAL_S"],
    [{ ALERT_SMS_TO: "+15005550006" }, "ALERT_SMS_FROM"],
    [{ ALERT_WEBHOOK_URL: "hooks.slack.com/x" }, "ALERT_WEBHOOK_URL"],
  ])("refuses %o naming %s", (overrides, setting) => {
    expect(settingOf(overrides as Record<string, string>)).toBe(setting);
  });

  it("accepts RECONCILE_INTERVAL_S=0 as polling off", () => {
    expect(parseConfig({ ...base, RECONCILE_INTERVAL_S: "0" } as GuardEnv).reconcileIntervalS).toBe(0);
  });

  it("names the bad policy field in the message, never the secrets", () => {
    try {
      parseConfig({ ...base, GUARD_POLICY: '{"limits":[{"window":"day","usd":-1}]}' } as GuardEnv);
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toContain("limits[0].usd");
      expect((error as Error).message).not.toContain("primary-token-value");
    }
  });
});

describe("parseConfig: PUBLIC_URL and TWILIO_WEBHOOK_SHARED_KEYS (issue 11)", () => {
  it("takes several comma-separated PUBLIC_URL bases; the first is the one handed out", () => {
    const config = parseConfig({ ...base, PUBLIC_URL: "https://hooks.example.com/t/, https://guard.acme.workers.dev" } as GuardEnv);
    expect(config.publicUrls).toEqual(["https://hooks.example.com/t", "https://guard.acme.workers.dev"]);
    expect(config.publicUrl).toBe("https://hooks.example.com/t");
    expect(parseConfig(base).publicUrls).toEqual([]);
  });

  it.each(["https://a.example,", "https://a.example,,https://b.example", "https://a.example,ftp://b.example", "https://a.example,https://b.example/?q"])(
    "refuses PUBLIC_URL %s, naming it",
    (value) => expect(settingOf({ PUBLIC_URL: value })).toBe("PUBLIC_URL"),
  );

  it("reads TWILIO_WEBHOOK_SHARED_KEYS as key id → secret, and redacts the secrets", () => {
    const config = parseConfig({ ...base, TWILIO_WEBHOOK_SHARED_KEYS: '{"webhooks_sharedkey_a":"secret-a","webhooks_sharedkey_b":"secret-b"}' } as GuardEnv);
    expect([...config.sharedKeys]).toEqual([["webhooks_sharedkey_a", "secret-a"], ["webhooks_sharedkey_b", "secret-b"]]);
    expect(config.secrets).toEqual(expect.arrayContaining(["secret-a", "secret-b"]));
    expect(parseConfig(base).sharedKeys.size).toBe(0);
  });

  it.each(["not json", "[]", '"x"', '{"k": 1}', '{"k": ""}', '{"bad id": "s"}', JSON.stringify(Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, "s"])))])(
    "refuses TWILIO_WEBHOOK_SHARED_KEYS %s, naming it",
    (value) => expect(settingOf({ TWILIO_WEBHOOK_SHARED_KEYS: value })).toBe("TWILIO_WEBHOOK_SHARED_KEYS"),
  );
});
