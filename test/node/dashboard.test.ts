// The operator dashboard in a real browser: the Worker in workerd (test/support/worker.ts) beside the
// loopback Twilio stand-in, driven with headless Chromium through playwright-core (test/support/browser.ts:
// the binary comes from the @sparticuz/chromium dev dependency, or CHROMIUM_PATH). An operator signs in,
// sees an account the guard tripped (Twilio usage trigger → suspension), resets it with a TOTP code the
// page asks for, and sees it closed and reactivated; the page then refreshes itself when another
// operator trips an account. A screenshot is kept in .test-results/dashboard.png.
import { mkdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import type { Browser, Page } from "playwright-core";
import twilio from "twilio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { base32Decode } from "../../src/admin/base32.ts";
import { generateSecretBase32, importTotpKey, totpAt } from "../../src/admin/totp.ts";
import { launchChromium } from "../support/browser.ts";
import { startGuard, type StartedGuard } from "../support/worker.ts";
import { startTwilioStandin, type TwilioStandin } from "../support/twilio-standin.ts";

const SCREENSHOT = ".test-results/dashboard.png";
const PARENT_SID = `AC${"da5b0a2d".repeat(4)}`;
const PARENT_TOKEN = `parent-token-${randomBytes(8).toString("hex")}`;
const ADMIN_TOKEN = `admin-token-${randomBytes(12).toString("hex")}`;
const TOTP_SECRET = generateSecretBase32();
/** The page refreshes every 5 s; allow two rounds. */
const REFRESH_WAIT_MS = 12_000;

let standin: TwilioStandin;
let guard: StartedGuard;
let browser: Browser | null = null;

async function totpCode(atMs: number): Promise<string> {
  return totpAt(await importTotpKey(base32Decode(TOTP_SECRET)), atMs / 1000);
}

/** Twilio calling /usage-trigger for the account, signed with the account's own token. */
async function fireUsageTrigger(sid: string, token: string): Promise<void> {
  const url = `${guard.url}/usage-trigger`;
  const params = {
    AccountSid: sid,
    UsageTriggerSid: `UT${randomBytes(16).toString("hex")}`,
    UsageCategory: "totalprice",
    CurrentValue: "51.20",
    TriggerValue: "50.00",
    IdempotencyToken: `dashboard-${randomBytes(8).toString("hex")}`,
    DateFired: new Date().toUTCString(),
  };
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": twilio.getExpectedTwilioSignature(token, url, params) },
    body: new URLSearchParams(params).toString(),
  });
  expect(response.status).toBe(200);
  expect(await response.json()).toMatchObject({ tripped: true });
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("operator dashboard in Chromium", () => {
  beforeAll(async () => {
    standin = await startTwilioStandin({ parentSid: PARENT_SID, parentToken: PARENT_TOKEN });
    guard = await startGuard({
      vars: { TWILIO_ACCOUNT_SID: PARENT_SID, TWILIO_API_BASE: standin.url, RECONCILE_INTERVAL_S: "0" },
      secrets: { TWILIO_AUTH_TOKEN: PARENT_TOKEN, ADMIN_TOKEN, ADMIN_TOTP_SECRET: TOTP_SECRET },
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await guard?.stop();
    await standin?.close();
  });

  it("signs in, shows a tripped account, resets it with a TOTP code, and refreshes itself", { timeout: 90_000 }, async () => {
    const sub = standin.addSubaccount();
    await fireUsageTrigger(sub.sid, sub.authToken);
    await eventually(() => standin.accounts.get(sub.sid)!.status === "suspended", 15_000, "the suspension");

    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page: Page = await context.newPage();
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    const offsite: string[] = [];
    page.on("request", (request) => {
      if (!request.url().startsWith(guard.url) && !request.url().startsWith("data:")) offsite.push(request.url());
    });

    const navigation = await page.goto(`${guard.url}/admin`);
    expect(navigation?.status()).toBe(200);
    expect(navigation?.headers()["content-security-policy"]).toContain("default-src 'none'");
    await page.locator("#signin").waitFor({ state: "visible" });

    // Sign in: the token goes to sessionStorage only.
    await page.fill("#token-input", ADMIN_TOKEN);
    await page.click("#signin-button");
    const row = page.locator(`tr[data-sid="${sub.sid}"]`);
    await row.waitFor({ state: "visible" });
    expect(await row.locator('[data-field="state"]').textContent()).toBe("open");
    expect(await row.textContent()).toContain("suspension done");
    expect(await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie])).toEqual([1, 0, ""]);

    // The account page: the trip is there, with its history.
    await row.locator("a").click();
    await page.locator("#account-state").waitFor({ state: "visible" });
    expect(await page.locator("#account-state").textContent()).toBe("open");
    expect(await page.locator("#trips-body").textContent()).toContain("usage-trigger");

    // Reset: the page asks for a TOTP code before calling (the server requires one).
    await page.click("#reset-button");
    await page.locator("#totp-dialog").waitFor({ state: "visible" });
    await page.fill("#totp-code", await totpCode(Date.now()));
    await page.click("#totp-submit");
    await page.waitForFunction(() => document.getElementById("account-state")?.textContent === "closed");
    await page.locator("#message").waitFor({ state: "visible" });
    expect(await page.locator("#message").textContent()).toBe("Breaker closed; reactivation: done.");
    expect(standin.accounts.get(sub.sid)!.status).toBe("active");
    const audit = page.locator('#audit-body tr[data-action="reset"]');
    await audit.waitFor({ state: "visible" });
    expect(await audit.textContent()).toContain("yes");
    mkdirSync(".test-results", { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Another operator trips a second account through the API: the list refreshes by itself.
    await page.click("#back-link");
    await row.waitFor({ state: "visible" });
    expect(await row.locator('[data-field="state"]').textContent()).toBe("closed");
    const other = standin.addSubaccount();
    const trip = await fetch(`${guard.url}/admin/accounts/${other.sid}/trip`, {
      method: "POST",
      // The reset consumed this step's code: the next step's code is the next valid one (±1 step).
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "x-guard-totp": await totpCode(Date.now() + 30_000), "content-type": "application/json" },
      body: JSON.stringify({ reason: "second operator" }),
    });
    expect(trip.status).toBe(200);
    const otherRow = page.locator(`tr[data-sid="${other.sid}"]`);
    await otherRow.waitFor({ state: "visible", timeout: REFRESH_WAIT_MS });
    expect(await otherRow.locator('[data-field="state"]').textContent()).toBe("open");

    expect(problems).toEqual([]);
    expect(offsite).toEqual([]);
    const html = await (await fetch(`${guard.url}/admin`)).text();
    expect(html).not.toContain(ADMIN_TOKEN);
  });
});
