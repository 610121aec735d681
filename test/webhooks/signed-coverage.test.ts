// Issue 11: the guard acts on and forwards only what Twilio signed. Each test sends a request whose
// signature is genuine (or was genuine for another request) and checks that nothing unsigned is
// counted, stored or forwarded.
import { runInDurableObject } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { computeSignature } from "../../src/verification/signature.ts";
import { encodeForm } from "../../src/verification/form.ts";
import { forwardHeaders, MAX_FORWARDED_HEADER_BYTES } from "../../src/webhooks/forward.ts";
import { ORIGIN, mockOutbound, twilioWorld, type FakeTwilio } from "../support/origin.ts";
import { PARENT_SID, PRIMARY_TOKEN, inboundSms, messageStatus, signedForm, signedGet, uniqueSid, basicAuth, type Params } from "../support/twilio.ts";
import { guard, seenKeys } from "../support/guard.ts";
import { viaApp } from "../support/app.ts";
import { subaccount } from "../support/money.ts";

const WORKER = "https://guard.example.com";
const BASIC = { BASIC_AUTH_USER: "twilio", BASIC_AUTH_PASSWORD: "basic-password-not-a-secret" };
const BASIC_HEADER = basicAuth(BASIC.BASIC_AUTH_USER, BASIC.BASIC_AUTH_PASSWORD);

let outbound: ReturnType<typeof mockOutbound>;
let twilio: FakeTwilio;
function setup(): void {
  ({ twilio, outbound } = twilioWorld());
}
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});



async function dayEvents(sid: string): Promise<number> {
  return (await guard(sid).snapshot()).windows.find((w) => w.window === "day")?.events ?? 0;
}

/** A subaccount the fake Twilio knows, with a generous policy. */
const generous = () => subaccount(twilio, { limits: [{ window: "day", events: 100 }] });

function rawPost(url: string, body: string, signature: string, headers: Record<string, string> = {}): Request {
  return new Request(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature, ...headers },
    body,
  });
}

describe("appended parameters ride no signature", () => {
  it("refuses a captured GET webhook with 998 '&' and a new MessageSid and Price appended", async () => {
    setup();
    const { sid, token } = await generous();
    const captured = await signedGet(`${WORKER}/webhooks/sms`, inboundSms(sid), { token });
    const smuggled = `${captured.url}${"&".repeat(998)}&MessageSid=${uniqueSid("SM")}&Price=-999.00`;
    const response = await exports.default.fetch(new Request(smuggled, { headers: captured.headers }));
    expect([400, 403]).toContain(response.status);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
    expect(await dayEvents(sid)).toBe(0);
  });

  it("refuses a POST whose query gained tenant=evil&admin=1 after 999 '&'", async () => {
    setup();
    const url = `${WORKER}/webhooks/sms?tenant=t54`;
    const params = inboundSms(PARENT_SID);
    const signature = await computeSignature(PRIMARY_TOKEN, url, params);
    const response = await exports.default.fetch(rawPost(`${url}${"&".repeat(999)}&tenant=evil&admin=1`, encodeForm(params), signature));
    expect(response.status).toBe(403);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });

  it.each([
    ["empty pairs '=&=&='", "&=&=&="],
    ["empty pieces '&&'", "&&"],
    ["a pair repeated verbatim", "&NumSegments=1"],
  ])("refuses a form body with %s (Twilio never sends one)", async (_name, tail) => {
    setup();
    const params = inboundSms(PARENT_SID);
    const signature = await computeSignature(PRIMARY_TOKEN, `${WORKER}/webhooks/sms`, params);
    const response = await exports.default.fetch(rawPost(`${WORKER}/webhooks/sms`, encodeForm(params) + tail, signature));
    expect(response.status).toBe(400);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });

  it("refuses a GET signature replayed as a POST", async () => {
    setup();
    const get = await signedGet(`${WORKER}/webhooks/sms`, inboundSms(PARENT_SID));
    const asPost = new Request(get.url, { method: "POST", headers: get.headers });
    expect((await exports.default.fetch(asPost)).status).toBe(400);
    const asEmptyForm = new Request(get.url, { method: "POST", headers: { ...Object.fromEntries(get.headers), "content-type": "application/x-www-form-urlencoded" }, body: "" });
    expect((await exports.default.fetch(asEmptyForm)).status).toBe(400);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });
});

describe("an SMS whose Body was re-split into call parameters", () => {
  it("is refused when the re-split repeats a field (Body 'hiBodyx' as Body=hi&Body=x)", async () => {
    setup();
    const original = inboundSms(PARENT_SID, { Body: "hiBodyx" });
    const signature = await computeSignature(PRIMARY_TOKEN, `${WORKER}/webhooks/sms`, original);
    const resplit: Params = [...original.filter(([k]) => k !== "Body"), ["Body", "hi"], ["Body", "x"]];
    expect(await computeSignature(PRIMARY_TOKEN, `${WORKER}/webhooks/sms`, resplit)).toBe(signature);
    const response = await exports.default.fetch(rawPost(`${WORKER}/webhooks/sms`, encodeForm(resplit), signature));
    expect(response.status).toBe(400);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });

  it("is refused, and never counted as a call", async () => {
    setup();
    const { sid, token } = await generous();
    const callSid = uniqueSid("CA");
    // The attacker texts this Body; Twilio signs Body+"hi"+"CallSid"... with no separators.
    const original = inboundSms(sid, { Body: `hiCallSid${callSid}CallStatuscompletedDuration1440` });
    const signature = await computeSignature(token, `${WORKER}/webhooks/sms`, original);
    const resplit: Params = [
      ...original.filter(([k]) => k !== "Body"),
      ["Body", "hi"],
      ["CallSid", callSid],
      ["CallStatus", "completed"],
      ["Duration", "1440"],
    ];
    // Same signed string: that is the attack.
    expect(await computeSignature(token, `${WORKER}/webhooks/sms`, resplit)).toBe(signature);
    const response = await exports.default.fetch(rawPost(`${WORKER}/webhooks/sms`, encodeForm(resplit), signature));
    expect(response.status).toBe(400);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
    expect(await dayEvents(sid)).toBe(0);
  });
});

describe("the unsigned I-Twilio-Idempotency-Token header", () => {
  it("decides nothing and is never stored: replays with new tokens are duplicates of the event", async () => {
    setup();
    const { sid, token } = await generous();
    const params = inboundSms(sid);
    for (let i = 0; i < 5; i++) {
      const response = await exports.default.fetch(await signedForm(`${WORKER}/webhooks/sms`, params, { token, headers: { "I-Twilio-Idempotency-Token": `t${i}-${"x".repeat(8000)}` } }));
      expect(response.status).toBe(200);
    }
    expect(await dayEvents(sid)).toBe(1);
    const stored = await runInDurableObject(guard(sid), (_i, state) => seenKeys(state.storage.sql));
    expect(stored).toHaveLength(1);
    expect(stored[0]!.key.length).toBeLessThan(100);
    // An 8 KB header is not forwarded either.
    expect(outbound.to(ORIGIN).every((hit) => hit.headers.get("i-twilio-idempotency-token") === null)).toBe(true);
  });
});

describe("headers forwarded to the origin", () => {
  const attackerHeaders = {
    Forwarded: "for=1.2.3.4;host=admin.internal",
    "X-Forwarded-For": "1.2.3.4",
    "X-Forwarded-Host": "admin.internal",
    "X-Forwarded-Proto": "http",
    "X-Real-IP": "1.2.3.4",
    "True-Client-IP": "1.2.3.4",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-HTTP-Method-Override": "DELETE",
    "x-middleware-subrequest": "middleware",
    Cookie: "session=stolen",
    Authorization: "Bearer app-admin",
    "X-Custom": "named-in-connection",
  };

  it("are an allowlist: what Twilio sends, none of what an attacker could add", async () => {
    setup();
    const request = await signedForm(`${WORKER}/webhooks/sms`, [["AccountSid", PARENT_SID], ["Digits", "1"]], {
      headers: { ...attackerHeaders, "User-Agent": "TwilioProxy/1.1", "I-Twilio-Idempotency-Token": "abc-123", "X-Home-Region": "us1" },
    });
    expect((await exports.default.fetch(request)).status).toBe(200);
    const [hit] = outbound.to(ORIGIN);
    for (const name of Object.keys(attackerHeaders)) {
      if (name === "X-Forwarded-For") continue;
      expect(hit!.headers.get(name), name).toBeNull();
    }
    expect(hit!.headers.get("x-forwarded-for")).not.toBe("1.2.3.4");
    expect(hit!.headers.get("user-agent")).toBe("TwilioProxy/1.1");
    expect(hit!.headers.get("i-twilio-idempotency-token")).toBe("abc-123");
    expect(hit!.headers.get("x-home-region")).toBe("us1");
    expect(hit!.headers.get("x-twilio-signature")).toBe(request.headers.get("x-twilio-signature"));
    expect(hit!.headers.get("content-type")).toBe("application/x-www-form-urlencoded");
  });

  it("drop headers named in Connection, and set X-Forwarded-For from CF-Connecting-IP", () => {
    const incoming = new Headers({
      connection: "close, X-Home-Region, user-agent",
      "x-home-region": "us1",
      "user-agent": "TwilioProxy/1.1",
      "content-type": "application/x-www-form-urlencoded",
      "cf-connecting-ip": "203.0.113.7",
      "x-forwarded-for": "1.2.3.4",
      "i-twilio-idempotency-token": "x".repeat(MAX_FORWARDED_HEADER_BYTES + 1),
    });
    const out = forwardHeaders(incoming, { originUrl: ORIGIN, guardHeaders: { "x-guard-verified": "signature" } });
    expect(Object.keys(out).sort()).toEqual(["content-type", "x-forwarded-for", "x-guard-verified"]);
    expect(out["x-forwarded-for"]).toBe("203.0.113.7");
  });
});

describe("WEBHOOK_AUTH=basic", () => {
  it("ignores a payload's Price: shared credentials do not vouch for one account's figures", async () => {
    setup();
    const { sid } = await generous();
    await guard(sid).setPolicy(sid, { limits: [{ window: "day", usd: 5 }], warnAt: 0.8, action: "suspend" });
    const body = encodeForm(messageStatus(sid, uniqueSid("SM"), "delivered", { Price: "-999.00", PriceUnit: "USD" }));
    const request = new Request(`${WORKER}/webhooks/status`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: BASIC_HEADER },
      body,
    });
    expect((await viaApp(request, { WEBHOOK_AUTH: "basic", ...BASIC })).status).toBe(200);
    await vi.waitFor(async () => expect(await dayEvents(sid)).toBe(1));
    const snapshot = await guard(sid).snapshot();
    expect(snapshot.windows.find((w) => w.window === "day")!.usd).toBeLessThan(1);
    expect(snapshot.breaker.state).toBe("closed");
  });
});

describe("/usage-trigger", () => {
  function firing(sid: string, overrides: Record<string, string> = {}): Params {
    return Object.entries({
      AccountSid: sid,
      UsageTriggerSid: uniqueSid("UT"),
      DateFired: new Date().toUTCString(),
      Recurring: "daily",
      UsageCategory: "totalprice",
      TriggerBy: "price",
      TriggerValue: "50.00",
      CurrentValue: "50.12",
      ...overrides,
    });
  }

  it.each(["basic", "both", "signature"])("requires the account's signature with WEBHOOK_AUTH=%s", async (mode) => {
    setup();
    const { sid } = await generous();
    const unsigned = new Request(`${WORKER}/usage-trigger`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: BASIC_HEADER },
      body: encodeForm(firing(sid)),
    });
    const response = await viaApp(unsigned, { WEBHOOK_AUTH: mode, ...BASIC });
    expect(response.status).toBe(403);
    expect((await guard(sid).snapshot()).breaker.state).toBe("closed");
    // The parent's breaker cannot be opened with Basic credentials alone either.
    const parent = new Request(`${WORKER}/usage-trigger`, { method: "POST", headers: unsigned.headers, body: encodeForm(firing(PARENT_SID)) });
    expect((await viaApp(parent, { WEBHOOK_AUTH: mode, ...BASIC })).status).toBe(403);
  });

  it("keys idempotency on signed fields, never on the I-Twilio-Idempotency-Token header", async () => {
    setup();
    const { sid, token } = await generous();
    const params = firing(sid);
    const first = await exports.default.fetch(await signedForm(`${WORKER}/usage-trigger`, params, { token, headers: { "I-Twilio-Idempotency-Token": "h1" } }));
    expect(await first.json()).toMatchObject({ tripped: true, duplicate: false });
    await guard(sid).reset(sid);
    const replay = await exports.default.fetch(await signedForm(`${WORKER}/usage-trigger`, params, { token, headers: { "I-Twilio-Idempotency-Token": "h2" } }));
    expect(await replay.json()).toMatchObject({ tripped: false, duplicate: true });
    expect((await guard(sid).snapshot()).breaker.state).toBe("closed");
  });

  it.each([
    ["fired two days ago", () => new Date(Date.now() - 2 * 86_400_000).toUTCString()],
    ["fired tomorrow", () => new Date(Date.now() + 86_400_000).toUTCString()],
    ["without a DateFired", () => ""],
  ])("refuses a firing %s: a replay could outlive what is remembered", async (_name, date) => {
    setup();
    const { sid, token } = await generous();
    const params = firing(sid, { DateFired: date() }).filter(([, v]) => v !== "");
    const response = await exports.default.fetch(await signedForm(`${WORKER}/usage-trigger`, params, { token }));
    expect(response.status).toBe(400);
    expect((await guard(sid).snapshot()).breaker.state).toBe("closed");
  });
});

describe("Webhook SharedKey signatures (HMAC-SHA256)", () => {
  const KEYS = { TWILIO_WEBHOOK_SHARED_KEYS: JSON.stringify({ webhooks_sharedkey_old: "shared-secret-old", webhooks_sharedkey_new: "shared-secret-new" }) };
  const params = (): Params => [["AccountSid", PARENT_SID], ["Digits", "7"]];

  async function sharedKeyRequest(secret: string, settings: string, algorithm: "HMAC_SHA1" | "HMAC_SHA256" = "HMAC_SHA256"): Promise<Request> {
    const p = params();
    const signature = await computeSignature(secret, `${WORKER}/webhooks/voice`, p, algorithm);
    return rawPost(`${WORKER}/webhooks/voice`, encodeForm(p), signature, { "X-Twilio-Webhooks-Signature-Settings": settings });
  }

  it("verifies with either configured key during a rotation", async () => {
    setup();
    for (const [id, secret] of [["webhooks_sharedkey_old", "shared-secret-old"], ["webhooks_sharedkey_new", "shared-secret-new"]]) {
      const response = await viaApp(await sharedKeyRequest(secret!, `key=${id},algorithm=HMAC_SHA256`), KEYS);
      expect(response.status, id).toBe(200);
    }
    expect(outbound.to(ORIGIN)).toHaveLength(2);
  });

  it.each([
    ["an unknown key id", "shared-secret-old", "key=webhooks_sharedkey_other,algorithm=HMAC_SHA256"],
    ["an unknown algorithm", "shared-secret-old", "key=webhooks_sharedkey_old,algorithm=HMAC_SHA512"],
    ["no algorithm", "shared-secret-old", "key=webhooks_sharedkey_old"],
    ["a malformed header", "shared-secret-old", "webhooks_sharedkey_old"],
    ["the wrong key's secret", "shared-secret-new", "key=webhooks_sharedkey_old,algorithm=HMAC_SHA256"],
    ["the auth token as the secret (no fallback)", PRIMARY_TOKEN, "key=webhooks_sharedkey_old,algorithm=HMAC_SHA256"],
  ])("refuses %s with 403", async (_name, secret, settings) => {
    setup();
    expect((await viaApp(await sharedKeyRequest(secret, settings), KEYS)).status).toBe(403);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });

  it("never falls back to the auth token when the header is present, even with HMAC-SHA1", async () => {
    setup();
    const request = await signedForm(`${WORKER}/webhooks/voice`, params(), { headers: { "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_old,algorithm=HMAC_SHA1" } });
    expect((await viaApp(request, KEYS)).status).toBe(403);
    // Without any configured key, a SharedKey header is refused too.
    expect((await viaApp(await sharedKeyRequest("shared-secret-old", "key=webhooks_sharedkey_old,algorithm=HMAC_SHA256"))).status).toBe(403);
  });

  it("answers 500 naming TWILIO_WEBHOOK_SHARED_KEYS when it is malformed", async () => {
    setup();
    const response = await viaApp(await sharedKeyRequest("x", "key=a,algorithm=HMAC_SHA256"), { TWILIO_WEBHOOK_SHARED_KEYS: "{not json" });
    expect(response.status).toBe(500);
    expect(await response.text()).toContain("TWILIO_WEBHOOK_SHARED_KEYS");
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });
});

describe("PUBLIC_URL with several bases", () => {
  const PUBLIC = { PUBLIC_URL: "https://hooks.example.org/twilio, https://guard.example.com" };

  it("accepts a webhook configured on any of them", async () => {
    setup();
    for (const signedUrl of ["https://hooks.example.org/twilio/webhooks/sms", `${WORKER}/webhooks/sms`]) {
      const request = await signedForm(`${WORKER}/webhooks/sms`, [["AccountSid", PARENT_SID], ["Digits", "1"]], { signedUrl });
      expect((await viaApp(request, PUBLIC)).status, signedUrl).toBe(200);
    }
  });

  it("does not let the Host header move the signed URL to another host bound to the Worker", async () => {
    setup();
    const other = "https://other-zone.example/webhooks/sms";
    const request = await signedForm(other, [["AccountSid", PARENT_SID], ["Digits", "1"]]);
    expect((await viaApp(request, PUBLIC)).status).toBe(403);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });
});
