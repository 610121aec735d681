// Secrets never leave the guard. Every e2e file runs with recognisable secret values (harness SECRETS:
// auth tokens, Basic password, admin token, TOTP secret) and ends by checking that none appears in any
// answer, alert or log line; this file goes looking for the paths most likely to leak one: Twilio
// errors that echo the credentials back, an origin that reflects what it received, settings errors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BASIC_USER,
  SECRETS,
  eventually,
  inboundSms,
  startE2E,
  type Answer,
  type E2E,
} from "./harness.ts";

const POLICY = JSON.stringify({ limits: [{ window: "day", events: 2 }], warnAt: 0.5, action: "suspend" });
const PARENT_BASIC = () => Buffer.from(`${e2e.parent.sid}:${SECRETS.authToken}`).toString("base64");
const GOOD_BASIC = `Basic ${Buffer.from(`${BASIC_USER}:${SECRETS.basicPassword}`).toString("base64")}`;

let e2e: E2E;
let misconfigured: E2E;
beforeAll(async () => {
  [e2e, misconfigured] = await Promise.all([
    startE2E({ vars: { GUARD_POLICY: POLICY, WEBHOOK_AUTH: "both" }, secrets: { BASIC_AUTH_USER: BASIC_USER, BASIC_AUTH_PASSWORD: SECRETS.basicPassword } }),
    // A malformed setting: the guard answers 500 naming it, and must not print the others' values.
    startE2E({ vars: { TWILIO_ACCOUNT_SID: "AC-not-a-sid", GUARD_POLICY: POLICY } }),
  ]);
}, 60_000);
afterAll(async () => {
  await Promise.all([e2e?.stop(), misconfigured?.stop()]);
});

function withBasic(account: { sid: string; token: string }, path = "/webhooks/sms") {
  return e2e.signedForm(account, inboundSms(account.sid), { path, headers: [["Authorization", GOOD_BASIC]] });
}

describe("no secret leaks", () => {
  it("the leak check itself finds a planted secret", () => {
    const planted: Answer = { status: 200, headers: {}, rawHeaders: ["X-Test", `a ${SECRETS.basicPassword} b`], body: "", ms: 0 };
    e2e.answers.push(planted);
    try {
      expect(e2e.leaks().length).toBeGreaterThan(0);
    } finally {
      e2e.answers.splice(e2e.answers.indexOf(planted), 1);
    }
  });

  it("a Twilio account lookup failing with an error that echoes the credentials: 503, nothing echoed", async () => {
    const sub = e2e.subaccount();
    e2e.standin.failNext("list-accounts", { status: 500, code: 20500, message: `internal: bad auth ${SECRETS.authToken} / Basic ${PARENT_BASIC()}` }, 1);
    const first = await e2e.send(withBasic(sub));
    expect(first.status).toBe(503);
    // A failed listing may be retried a second later (LISTING_RETRY_AFTER_FAILURE_MS).
    await eventually(async () => expect((await e2e.send(withBasic(sub))).status).toBe(200), 10_000, 250);
    expect(e2e.logs().some((l) => l.message.includes("account-listing-failed"))).toBe(true);
  });

  it("a suspension failing with an error that echoes the credentials: logged and alerted without them", async () => {
    const sub = e2e.subaccount();
    e2e.standin.failNext(
      (r) => r.purpose === "suspend" && r.path.includes(sub.sid),
      { status: 500, code: 20500, message: `upstream said: token=${SECRETS.authToken} auth=Basic ${PARENT_BASIC()}` },
      1,
    );
    for (let i = 0; i < 3; i++) await e2e.send(withBasic(sub));
    await eventually(() => expect(e2e.suspensions(sub.sid)).toBe(1), 15_000);
    const failed = e2e.logs().filter((l) => l.message.includes("outbox-attempt-failed") && l.message.includes(sub.sid));
    expect(failed).toHaveLength(1);
    expect(e2e.alertsFor(sub.sid, "trip")).toHaveLength(1);
  });

  it("an origin that reflects every header it received: the Basic credentials never reach it", async () => {
    const sub = e2e.subaccount();
    e2e.origin.when("/reflect", { kind: "reflect" });
    const answer = await e2e.send(withBasic(sub, "/webhooks/reflect"));
    expect(answer.status).toBe(200);
    const reflected = JSON.parse(answer.body) as { headers: Record<string, string> };
    expect(reflected.headers.authorization).toBeUndefined();
    expect(reflected.headers["x-guard-verified"]).toBe("signature");
  });

  it("wrong credentials, admin and health routes: nothing echoed", async () => {
    const request = withBasic(e2e.parent);
    request.headers = [
      ...request.headers!.filter(([name]) => name !== "Authorization"),
      ["Authorization", `Basic ${Buffer.from(`${BASIC_USER}:${SECRETS.basicPassword}x`).toString("base64")}`],
    ];
    const wrong = await e2e.send(request);
    expect(wrong.status).toBe(401);
    expect((await e2e.send({ method: "GET", path: "/healthz" })).body).toBe('{"ok":true}');
    await e2e.send({ method: "GET", path: "/admin/accounts", headers: [["Authorization", `Bearer ${SECRETS.adminToken}`]] });
    await e2e.send({ method: "GET", path: "/admin/accounts", headers: [["Authorization", `Bearer ${SECRETS.adminToken}x`]] });
    await e2e.send({ method: "GET", path: "/admin" });
  });

  it("a malformed setting: 500 naming it, nothing forwarded, no secret in the answer or the log", async () => {
    const answer = await misconfigured.send(misconfigured.signedForm(misconfigured.parent, inboundSms(misconfigured.parent.sid)));
    expect(answer.status).toBe(500);
    expect(JSON.parse(answer.body)).toMatchObject({ setting: "TWILIO_ACCOUNT_SID" });
    expect(misconfigured.origin.hits).toHaveLength(0);
    expect(misconfigured.leaks()).toEqual([]);
    expect(misconfigured.standin.requests).toEqual([]);
  });

  it("nothing leaked anywhere in this file's runs, and every REST call was well-formed", () => {
    expect(e2e.leaks()).toEqual([]);
    expect(e2e.standin.violations).toEqual([]);
    // The log is captured (workerd's structured logs): a JSON line per request, at least.
    const requestLines = e2e.logs().filter((l) => l.message.includes('"request"'));
    expect(requestLines.length).toBeGreaterThanOrEqual(e2e.answers.length);
    for (const line of e2e.logs()) expect(() => JSON.parse(line.message), line.message).not.toThrow();
  });
});
