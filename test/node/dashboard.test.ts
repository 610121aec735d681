// The operator console in a real browser, as an on-call engineer uses it: the Worker in workerd
// (dev/worker.ts) beside the loopback Twilio stand-in and a loopback origin, driven with headless
// Chromium through playwright-core (test/support/browser.ts: the binary comes from the @sparticuz/chromium
// dev dependency, or CHROMIUM_PATH). Real signed webhooks make one account trip, one warn and one stay
// quiet; forged ones fill the refused-requests log. Then, at 1400 px: sign in, the overview and the
// list (search, filter), an account's charts (spend and events per hour and per day against the limits,
// blocked events and the trip marked; a sender's sends through the egress gate by destination country,
// the refused country in red, a release given back), the wrong-account case (an unknown SID after an open account
// must clear it), one elevation (one code) for a trip and a reset, the refused-requests page; at 390 px
// the same views without horizontal overflow (the country table in light and dark mode too), and the
// list refreshing itself. Screenshots of each state
// go to .test-results/dashboard-<width>-<state>.png.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import type { Browser, Page } from "playwright-core";
import twilio from "twilio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { base32Decode } from "../../src/admin/base32.ts";
import { generateSecretBase32, importTotpKey, totpAt } from "../../src/admin/totp.ts";
import { launchChromium } from "../support/browser.ts";
import { startGuard, type StartedGuard } from "../../dev/worker.ts";
import { startTwilioStandin, type TwilioStandin } from "../../dev/twilio-standin.ts";

const RESULTS = ".test-results";
const PARENT_SID = `AC${"da5b0a2d".repeat(4)}`;
const PARENT_TOKEN = `parent-token-${randomBytes(8).toString("hex")}`;
const ADMIN_TOKEN = `admin-token-${randomBytes(12).toString("hex")}`;
const TOTP_SECRET = generateSecretBase32();
/** Five inbound messages an hour per account; warn at 60%. */
const POLICY = JSON.stringify({ limits: [{ window: "hour", events: 5 }, { window: "day", usd: 1 }], warnAt: 0.6, action: "suspend" });
/** The sender's own policy: sends through the egress gate to three countries only, far from its limit. */
const SENDER_POLICY = { limits: [{ window: "day", usd: 5 }], warnAt: 0.8, action: "alert", egress: { countries: ["US", "GB", "DE"] } };
/** Summaries reach the list within 5 s (trailing push), the page refreshes every 5 s. */
const REFRESH_WAIT_MS = 15_000;

let standin: TwilioStandin;
let guard: StartedGuard;
let plain: StartedGuard | null = null;
let origin: Server;
let browser: Browser | null = null;

async function totpCode(atMs: number): Promise<string> {
  return totpAt(await importTotpKey(base32Decode(TOTP_SECRET)), atMs / 1000);
}

let messageCounter = 0;
/** An inbound SMS as Twilio sends it, signed with `token` (the account's own, or a wrong one). */
async function inboundSms(sid: string, token: string): Promise<Response> {
  const url = `${guard.url}/webhooks/sms`;
  messageCounter += 1;
  const params = {
    AccountSid: sid,
    MessageSid: `SM${randomBytes(16).toString("hex")}`,
    From: "+15005550100",
    To: "+15005550199",
    Body: `hello ${messageCounter}`,
    NumSegments: "1",
    SmsStatus: "received",
  };
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": twilio.getExpectedTwilioSignature(token, url, params) },
    body: new URLSearchParams(params).toString(),
  });
}

/** An admin call as the operator's tooling makes it (bearer token, and an elevation for a change). */
async function admin(method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Response> {
  return fetch(`${guard.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** A send through the REST egress gate, as the app's SDK makes it with the account's egress key. */
async function sendThroughGate(sid: string, key: string, to: string): Promise<number> {
  const response = await fetch(`${guard.url}/twilio/api.twilio.com/2010-04-01/Accounts/${sid}/Messages.json`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${Buffer.from(`${sid}:${key}`).toString("base64")}` },
    body: new URLSearchParams({ To: to, From: "+15005550006", Body: "Your code is 123456" }).toString(),
  });
  await response.arrayBuffer();
  return response.status;
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function watch(page: Page): { problems: string[]; offsite: string[] } {
  const problems: string[] = [];
  const offsite: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // The browser logs every non-2xx answer; the unknown account's 404 is one the page handles.
    if (message.type() === "error" && !message.text().includes("status of 404")) problems.push(`console: ${message.text()}`);
  });
  page.on("request", (request) => {
    if (!request.url().startsWith(guard.url) && !request.url().startsWith("data:")) offsite.push(request.url());
  });
  return { problems, offsite };
}

async function shot(page: Page, width: number, state: string): Promise<void> {
  await page.screenshot({ path: `${RESULTS}/dashboard-${width}-${state}.png`, fullPage: true });
}

async function signIn(page: Page): Promise<void> {
  const navigation = await page.goto(`${guard.url}/admin`);
  expect(navigation?.status()).toBe(200);
  expect(navigation?.headers()["content-security-policy"]).toContain("default-src 'none'");
  await page.locator("#signin").waitFor({ state: "visible" });
  await page.fill("#token-input", ADMIN_TOKEN);
  await page.click("#signin-button");
  await page.locator("#list").waitFor({ state: "visible" });
}

/** The page is no wider than the viewport: nothing overflows sideways (tables scroll inside their box). */
async function expectNoOverflow(page: Page, width: number, view: string): Promise<void> {
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(scrollWidth, `${view} at ${width} px`).toBeLessThanOrEqual(width);
}

const shortSid = (sid: string) => `${sid.slice(0, 6)}…${sid.slice(-4)}`;

describe("operator console in Chromium", () => {
  let tripped: { sid: string; authToken: string };
  let warned: { sid: string; authToken: string };
  let quiet: { sid: string; authToken: string };
  let sender: { sid: string; authToken: string };

  beforeAll(async () => {
    origin = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/xml" });
      res.end("<Response/>");
    });
    await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
    standin = await startTwilioStandin({ parentSid: PARENT_SID, parentToken: PARENT_TOKEN });
    guard = await startGuard({
      vars: {
        TWILIO_ACCOUNT_SID: PARENT_SID,
        TWILIO_API_BASE: standin.url,
        RECONCILE_INTERVAL_S: "0",
        GUARD_POLICY: POLICY,
        ORIGIN_URL: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`,
        EGRESS_MODE: "enforce",
      },
      secrets: { TWILIO_AUTH_TOKEN: PARENT_TOKEN, ADMIN_TOKEN, ADMIN_TOTP_SECRET: TOTP_SECRET },
    });
    tripped = standin.addSubaccount({ friendlyName: "Acme Pizza (tenant 17)" });
    warned = standin.addSubaccount({ friendlyName: "Blue Dental" });
    quiet = standin.addSubaccount({ friendlyName: "Quiet Co" });
    sender = standin.addSubaccount({ friendlyName: "Globex Outreach" });
    // Seven messages against five an hour: the sixth trips the breaker (suspension), the seventh is blocked.
    for (let i = 0; i < 7; i++) expect((await inboundSms(tripped.sid, tripped.authToken)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await inboundSms(warned.sid, warned.authToken)).status).toBe(200);
    expect((await inboundSms(quiet.sid, quiet.authToken)).status).toBe(200);
    // What an attacker (or a misconfigured URL) looks like: forged signatures and junk admin tokens.
    for (let i = 0; i < 3; i++) expect((await inboundSms(tripped.sid, "not-the-auth-token")).status).toBe(403);
    for (let i = 0; i < 2; i++) expect((await fetch(`${guard.url}/admin/accounts`, { headers: { authorization: "Bearer junk" } })).status).toBe(401);
    await eventually(() => standin.accounts.get(tripped.sid)!.status === "suspended", 15_000, "the suspension");
    // The sender gets its policy and an egress key under one elevation. Its code is the previous step's
    // (still accepted): the browser's own code later is a newer step, never a reused one.
    const elevated = await admin("POST", "/admin/elevate", { "x-guard-totp": await totpCode(Date.now() - 30_000) });
    expect(elevated.status).toBe(200);
    const elevation = { "x-guard-elevation": ((await elevated.json()) as { elevation: string }).elevation };
    expect((await admin("PUT", `/admin/accounts/${sender.sid}/policy`, elevation, SENDER_POLICY)).status).toBe(200);
    const issued = await admin("POST", `/admin/accounts/${sender.sid}/egress-keys`, elevation);
    expect(issued.status).toBe(201);
    const { key } = (await issued.json()) as { key: string };
    // Its app, through the egress gate: two texts to the US, one to the UK and one to Germany go out; a
    // UK text Twilio refuses is given back; three to Moldova (not allowed) are refused at the gate.
    const sends = [];
    for (const to of ["+14155552671", "+14155552672", "+447400123456", "+4915112345678"]) sends.push(await sendThroughGate(sender.sid, key, to));
    standin.failNext((req) => req.method === "POST" && req.path.endsWith("/Messages.json"), { status: 400, code: 21610, message: "Attempt to send to unsubscribed recipient" });
    sends.push(await sendThroughGate(sender.sid, key, "+447400123457"));
    for (let i = 0; i < 3; i++) sends.push(await sendThroughGate(sender.sid, key, "+37360123456"));
    expect(sends).toEqual([201, 201, 201, 201, 400, 400, 400, 400]);
    mkdirSync(RESULTS, { recursive: true });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await plain?.stop();
    await guard?.stop();
    await standin?.close();
    await new Promise((resolve) => origin?.close(resolve));
  });

  it("at 1400 px: overview, search, charts, the wrong-account case, one elevation for a trip and a reset, refused requests", { timeout: 120_000 }, async () => {
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const { problems, offsite } = watch(page);
    await signIn(page);
    expect(await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie])).toEqual([1, 0, ""]);

    // The list and the overview: one open, one warned, the top spender first.
    const row = (sid: string) => page.locator(`tr[data-sid="${sid}"]`);
    await eventually(async () => (await page.locator("#ov-open").textContent()) === "1" && (await page.locator("#ov-warned").textContent()) === "1", REFRESH_WAIT_MS, "the overview");
    await row(tripped.sid).waitFor({ state: "visible" });
    expect(await row(tripped.sid).locator('[data-field="state"]').textContent()).toBe("open");
    expect(await row(tripped.sid).textContent()).toContain("Twilio account suspended");
    expect(await row(warned.sid).locator('[data-field="state"]').textContent()).toBe("closed · warned");
    expect(await page.locator("#accounts-body tr").first().getAttribute("data-sid")).toBe(tripped.sid);
    // The names come from Twilio's account listing, learnt by the directory with the tokens.
    expect(await page.locator("#ov-top").textContent()).toContain("Acme Pizza (tenant 17)");
    // The sender's sends through the egress gate count in its spend today (4 texts at 0.0083 USD).
    await eventually(async () => (await row(sender.sid).textContent())?.includes("$0.0332") === true, REFRESH_WAIT_MS, "the sender's spend in the list");
    await shot(page, 1400, "accounts");

    // Search by SID, then by name, then filter to the open breakers.
    await page.fill("#search", warned.sid.slice(0, 14));
    await eventually(async () => (await page.locator("#accounts-body tr").count()) === 1, 5_000, "the search");
    expect(await page.locator("#accounts-body tr").getAttribute("data-sid")).toBe(warned.sid);
    // …and by the friendly name the listing gave it.
    await page.fill("#search", "Blue Den");
    await eventually(async () => (await page.locator("#accounts-body tr").count()) === 1, 5_000, "the search by name");
    expect(await page.locator("#accounts-body tr").getAttribute("data-sid")).toBe(warned.sid);
    await page.fill("#search", "");
    await page.selectOption("#filter", "open");
    await eventually(
      async () => (await page.locator("#accounts-body tr").count()) === 1 && (await page.locator("#accounts-body tr").getAttribute("data-sid")) === tripped.sid,
      5_000,
      "the open filter",
    );
    await shot(page, 1400, "accounts-filter-open");
    await page.selectOption("#filter", "all");

    // The tripped account: charts against the limit, the blocked event and the trip marked.
    await page.goto(`${guard.url}/admin#/account/${tripped.sid}`);
    await page.locator('svg[data-chart="events-hour"]').waitFor({ state: "visible" });
    expect(await page.locator("#account-state").textContent()).toBe("open");
    expect(await page.locator("#account-suspension").textContent()).toBe("Twilio account suspended");
    expect(await page.locator('svg[data-chart="events-hour"] line.limit[data-limit="5"]').count()).toBe(1);
    expect(await page.locator('svg[data-chart="events-hour"] path.trip').count()).toBe(1);
    expect(await page.locator('svg[data-chart="events-hour"] rect.blocked').count()).toBe(1);
    expect(await page.locator('#events-body tr[data-blocked="1"]').count()).toBe(2);
    expect(await page.locator('#events-body tr[data-blocked="1"]').first().textContent()).toContain("blocked at the edge");
    expect(await page.locator("#account-warnings").textContent()).toContain("reached 60%");
    expect(await page.locator("#trip-button").isDisabled()).toBe(true);
    expect(await page.locator("#reset-button").isDisabled()).toBe(false);
    expect(await page.locator("#reset-button").textContent()).toBe(`Reset ${shortSid(tripped.sid)}`);
    await shot(page, 1400, "account-open-hourly");
    await page.click("#by-day");
    await page.locator('svg[data-chart="usd-day"]').waitFor({ state: "visible" });
    expect(await page.locator('svg[data-chart="usd-day"] line.limit[data-limit="1"]').count()).toBe(1);
    await shot(page, 1400, "account-open-daily");

    // Sends by destination country: the sender's view lists each country with its figures, the refused
    // one in red, and the countries first sent to today marked new.
    await page.click("#by-hour");
    await page.evaluate((sid) => { location.hash = `#/account/${sid}`; }, sender.sid);
    const country = (code: string) => page.locator(`#countries-table tr[data-country="${code}"]`);
    await country("US").waitFor({ state: "visible" });
    expect(await page.locator("#countries-table tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-country")))).toEqual(["US", "DE", "GB", "MD"]);
    const figures = async (code: string) => Object.fromEntries(await country(code).locator("[data-field]").evaluateAll((cells) => cells.map((c) => [c.getAttribute("data-field"), c.textContent])));
    // (`current`, this hour's sends, is left alone: the seeding may have been in the previous hour.)
    expect(await figures("US")).toMatchObject({ sends: "2", usd: "$0.0166", blocked: "0" });
    // The UK text Twilio refused was given back: one send, not two.
    expect(await figures("GB")).toMatchObject({ sends: "1", blocked: "0" });
    expect(await figures("MD")).toMatchObject({ sends: "0", current: "0", usd: "$0.00", blocked: "3" });
    expect(await country("MD").locator("td.refused").count()).toBe(1);
    expect(await country("GB").textContent()).toContain("United Kingdom");
    expect(await country("DE").getAttribute("data-new")).toBe("1");
    expect(await country("MD").getAttribute("data-new")).toBe("0");
    await page.locator("#countries-title").scrollIntoViewIfNeeded();
    await page.locator("#countries").screenshot({ path: `${RESULTS}/dashboard-1400-countries.png` });
    await shot(page, 1400, "account-countries");

    // The wrong-account case: an unknown SID after an open account shows only "not found", no buttons.
    const unknown = `AC${randomBytes(16).toString("hex")}`;
    await page.evaluate((sid) => { location.hash = `#/account/${sid}`; }, unknown);
    await page.locator("#missing").waitFor({ state: "visible" });
    expect(await page.locator("#account").isHidden()).toBe(true);
    expect(await page.locator("#missing-text").textContent()).toContain(unknown);
    expect(await page.locator("#account-sid").textContent()).toBe("");
    expect(await page.locator("#trip-button").isDisabled()).toBe(true);
    expect(await page.locator("#trip-button").getAttribute("data-sid")).toBeNull();
    await shot(page, 1400, "unknown-account");

    // Trip the warned account: the page asks for a code once, and elevates for ten minutes.
    await page.evaluate((sid) => { location.hash = `#/account/${sid}`; }, warned.sid);
    await eventually(async () => (await page.locator("#account-sid").textContent()) === warned.sid, 5_000, "the warned account");
    expect(await page.locator("#trip-button").textContent()).toBe(`Trip ${shortSid(warned.sid)}`);
    expect(await page.locator("#reset-button").isDisabled()).toBe(true);
    await page.fill("#trip-reason", "pumping suspected");
    await page.click("#trip-button");
    await page.locator("#totp-dialog").waitFor({ state: "visible" });
    expect(await page.locator("#totp-title").textContent()).toContain(shortSid(warned.sid));
    await shot(page, 1400, "elevation-dialog");
    await page.fill("#totp-code", await totpCode(Date.now()));
    await page.click("#totp-submit");
    await page.waitForFunction(() => document.getElementById("account-state")?.textContent === "open");
    expect(await page.locator("#message").textContent()).toBe(`Breaker of ${warned.sid} opened.`);
    expect(await page.locator("#message").getAttribute("class")).toBe("ok");
    expect(await page.locator("#elevation-status").textContent()).toMatch(/^changes unlocked until \d\d:\d\d:\d\d UTC$/);
    await shot(page, 1400, "after-trip");

    // Reset the tripped account: no second code (the elevation is still good); the account is reactivated.
    let dialogs = 0;
    await page.locator("#totp-dialog").evaluate((d) => new MutationObserver(() => d.setAttribute("data-opened", "1")).observe(d, { attributes: true, attributeFilter: ["open"] }));
    await page.evaluate((sid) => { location.hash = `#/account/${sid}`; }, tripped.sid);
    await eventually(async () => (await page.locator("#account-sid").textContent()) === tripped.sid, 5_000, "the tripped account");
    await page.click("#reset-button");
    await page.waitForFunction(() => document.getElementById("account-state")?.textContent === "closed");
    if ((await page.locator("#totp-dialog").getAttribute("data-opened")) === "1") dialogs += 1;
    expect(dialogs).toBe(0);
    expect(await page.locator("#message").textContent()).toBe(`Breaker of ${tripped.sid} closed; Twilio account reactivated.`);
    expect(standin.accounts.get(tripped.sid)!.status).toBe("active");
    const audit = page.locator('#audit-body tr[data-action="reset"]');
    await audit.waitFor({ state: "visible" });
    expect(await audit.textContent()).toContain("yes");
    await shot(page, 1400, "after-reset");

    // The refused requests: forged signatures with the account they claimed, junk admin tokens.
    await page.click("#nav-rejections");
    await page.locator("#rejections-body tr").first().waitFor({ state: "visible" });
    const text = (await page.locator("#rejections-body").textContent()) ?? "";
    expect(text).toContain("token-invalid");
    expect(text).toContain("/webhooks/sms");
    expect(text).toContain(tripped.sid);
    expect(text).not.toContain("not-the-auth-token");
    await shot(page, 1400, "rejections");

    expect(problems).toEqual([]);
    expect(offsite).toEqual([]);
    await context.close();
  });

  it("at 768 px in dark mode, without TOTP: a change asks for a confirmation; Cancel changes nothing", { timeout: 90_000 }, async () => {
    plain = await startGuard({
      vars: {
        TWILIO_ACCOUNT_SID: PARENT_SID,
        TWILIO_API_BASE: standin.url,
        RECONCILE_INTERVAL_S: "0",
        GUARD_POLICY: POLICY,
        ORIGIN_URL: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`,
      },
      secrets: { TWILIO_AUTH_TOKEN: PARENT_TOKEN, ADMIN_TOKEN },
    });
    const sub = standin.addSubaccount();
    const url = `${plain.url}/webhooks/sms`;
    const params = { AccountSid: sub.sid, MessageSid: `SM${randomBytes(16).toString("hex")}`, From: "+15005550100", To: "+15005550199", Body: "hi", NumSegments: "1", SmsStatus: "received" };
    const sent = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": twilio.getExpectedTwilioSignature(sub.authToken, url, params) },
      body: new URLSearchParams(params).toString(),
    });
    expect(sent.status).toBe(200);
    browser ??= await launchChromium();
    const context = await browser.newContext({ viewport: { width: 768, height: 1000 }, colorScheme: "dark" });
    const page = await context.newPage();
    const { problems } = watch(page);
    await page.goto(`${plain.url}/admin`);
    await page.fill("#token-input", ADMIN_TOKEN);
    await page.click("#signin-button");
    await page.locator(`tr[data-sid="${sub.sid}"]`).waitFor({ state: "visible" });
    await expectNoOverflow(page, 768, "accounts");
    await shot(page, 768, "dark-accounts");
    await page.evaluate((sid) => { location.hash = `#/account/${sid}`; }, sub.sid);
    await page.locator('svg[data-chart="usd-hour"]').waitFor({ state: "visible" });
    await expectNoOverflow(page, 768, "account");
    // Dark mode really is dark: the page background, and no light track behind the bars.
    const colours = await page.evaluate(() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.querySelector(".bar")!).backgroundColor]);
    expect(colours).toEqual(["rgb(13, 17, 23)", "rgb(33, 38, 45)"]);

    await page.click("#trip-button");
    await page.locator("#confirm-dialog").waitFor({ state: "visible" });
    expect(await page.locator("#confirm-text").textContent()).toContain(sub.sid);
    await shot(page, 768, "dark-confirm-trip");
    await page.click("#confirm-cancel");
    await page.locator("#confirm-dialog").waitFor({ state: "hidden" });
    expect(await page.locator("#account-state").textContent()).toBe("closed");
    await page.click("#trip-button");
    await page.click("#confirm-ok");
    await page.waitForFunction(() => document.getElementById("account-state")?.textContent === "open");
    expect(await page.locator("#totp-dialog").isHidden()).toBe(true);
    await shot(page, 768, "dark-after-trip");
    expect(problems).toEqual([]);
    await context.close();
  });

  it("at 390 px: the same views fit the screen, and the list refreshes itself", { timeout: 90_000 }, async () => {
    browser ??= await launchChromium();
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    const { problems } = watch(page);
    await signIn(page);
    await page.locator(`tr[data-sid="${tripped.sid}"]`).waitFor({ state: "visible" });
    await expectNoOverflow(page, 390, "accounts");
    await shot(page, 390, "accounts");

    // Another quiet account's traffic takes it past its warning: the open page shows it by itself.
    for (let i = 0; i < 3; i++) await inboundSms(quiet.sid, quiet.authToken);
    const state = page.locator(`tr[data-sid="${quiet.sid}"] [data-field="state"]`);
    await eventually(async () => (await state.textContent()) === "closed · warned", REFRESH_WAIT_MS, "the list to refresh");

    await page.evaluate((sid) => { location.hash = `#/account/${sid}`; }, warned.sid);
    await page.locator('svg[data-chart="usd-hour"]').waitFor({ state: "visible" });
    await expectNoOverflow(page, 390, "account");
    await shot(page, 390, "account-open-hourly");

    await page.evaluate((sid) => { location.hash = `#/account/${sid}`; }, sender.sid);
    await page.locator('#countries-table tr[data-country="MD"]').waitFor({ state: "visible" });
    await expectNoOverflow(page, 390, "sends by country");
    const table = await page.locator("#countries-table").boundingBox();
    expect(table!.width).toBeLessThanOrEqual(390);
    await page.locator("#countries").screenshot({ path: `${RESULTS}/dashboard-390-countries.png` });
    // …and in dark mode: dark panel, no light track behind the share bars.
    await page.emulateMedia({ colorScheme: "dark" });
    expect(await page.locator("#countries-table .share").first().evaluate((e) => getComputedStyle(e).backgroundColor)).toBe("rgb(33, 38, 45)");
    await page.locator("#countries").screenshot({ path: `${RESULTS}/dashboard-390-countries-dark.png` });
    await page.emulateMedia({ colorScheme: "light" });

    await page.evaluate(() => { location.hash = `#/account/AC${"0".repeat(32)}`; });
    await page.locator("#missing").waitFor({ state: "visible" });
    await expectNoOverflow(page, 390, "unknown account");
    await shot(page, 390, "unknown-account");

    await page.evaluate(() => { location.hash = "#/rejections"; });
    await page.locator("#rejections-body tr").first().waitFor({ state: "visible" });
    await expectNoOverflow(page, 390, "rejections");
    await shot(page, 390, "rejections");

    expect(problems).toEqual([]);
    const html = await (await fetch(`${guard.url}/admin`)).text();
    expect(html).not.toContain(ADMIN_TOKEN);
    await context.close();
  });
});
