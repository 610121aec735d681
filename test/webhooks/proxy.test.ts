// The /webhooks/* proxy, driven through the Worker's own fetch with real signed requests (CONTRACT.md,
// "Answers on /webhooks/*"). The origin is a fetch mock: it records what reached it.
import { createExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Router } from "itty-router";
import { createApp, WEBHOOK_ROUTE } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { ORIGIN, mockOutbound, relistSubaccounts, twiml } from "../support/origin.ts";
import {
  PARENT_SID,
  PRIMARY_TOKEN,
  SECONDARY_TOKEN,
  signedForm,
  signedGet,
  signedJson,
  inboundSms,
  type Params,
} from "../support/twilio.ts";
import { viaApp } from "../support/app.ts";

const WORKER = "https://guard.example.com";
// Not billable (no status, no direction): exercises verification and forwarding alone.
const plainParams = (): Params => [
  ["AccountSid", PARENT_SID],
  ["Digits", "1234"],
  ["From", "+14155550100"],
  ["To", "+15005550006"],
  ["Note", "ünïcode & spaces + 'quotes'"],
];


let outbound: ReturnType<typeof mockOutbound>;
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

describe("verified webhooks are forwarded", () => {
  it("keeps method, path, query and body bytes, and adds the X-Guard headers", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms/inbound?tenant=a%20b&x=1`, plainParams());
    const sentBody = new Uint8Array(await request.clone().arrayBuffer());
    const response = await exports.default.fetch(request);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("<Response><Message>ok</Message></Response>");
    expect(response.headers.get("content-type")).toBe("text/xml");
    const [hit] = outbound.to(ORIGIN);
    expect(outbound.to(ORIGIN)).toHaveLength(1);
    expect(hit!.method).toBe("POST");
    expect(hit!.url).toBe(`${ORIGIN}/sms/inbound?tenant=a%20b&x=1`);
    expect(hit!.body).toEqual(sentBody);
    expect(hit!.headers.get("x-guard-verified")).toBe("signature");
    expect(hit!.headers.get("x-guard-account")).toBe(PARENT_SID);
    expect(hit!.headers.get("x-guard-duplicate")).toBeNull();
    expect(hit!.headers.get("x-twilio-signature")).toBe(request.headers.get("x-twilio-signature"));
  });

  it("relays the origin's status, body and content-type as they are", async () => {
    outbound = mockOutbound([[ORIGIN, () => new Response('{"queued":true}', { status: 202, headers: { "content-type": "application/json" } })]]);
    const response = await exports.default.fetch(await signedForm(`${WORKER}/webhooks/status`, plainParams()));
    expect(response.status).toBe(202);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.text()).toBe('{"queued":true}');
  });

  it("drops X-Guard headers a client sent, so no one can claim a verdict", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, plainParams(), {
      headers: { "X-Guard-Verified": "basic", "X-Guard-Duplicate": "1", "X-Guard-Account": "ACforged" },
    });
    await exports.default.fetch(request);
    const [hit] = outbound.to(ORIGIN);
    expect(hit!.headers.get("x-guard-verified")).toBe("signature");
    expect(hit!.headers.get("x-guard-duplicate")).toBeNull();
    expect(hit!.headers.get("x-guard-account")).toBe(PARENT_SID);
  });

  it("drops hop-by-hop headers and keeps end-to-end ones", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, plainParams(), {
      headers: { "Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic eDp5", TE: "trailers", "I-Twilio-Idempotency-Token": "abc", "User-Agent": "TwilioProxy/1.1" },
    });
    await exports.default.fetch(request);
    const [hit] = outbound.to(ORIGIN);
    expect(hit!.headers.get("keep-alive")).toBeNull();
    expect(hit!.headers.get("proxy-authorization")).toBeNull();
    expect(hit!.headers.get("te")).toBeNull();
    expect(hit!.headers.get("i-twilio-idempotency-token")).toBe("abc");
    expect(hit!.headers.get("user-agent")).toBe("TwilioProxy/1.1");
  });

  it("accepts a GET webhook whose parameters live in the signed query", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedGet(`${WORKER}/webhooks/voice`, plainParams());
    const response = await exports.default.fetch(request);
    expect(response.status).toBe(200);
    const [hit] = outbound.to(ORIGIN);
    expect(hit!.method).toBe("GET");
    expect(hit!.url).toBe(`${ORIGIN}/voice${new URL(request.url).search}`);
  });

  it("accepts a JSON body whose SHA-256 matches bodySHA256", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const body = JSON.stringify({ AccountSid: PARENT_SID, event: "test", value: "ü" });
    const response = await exports.default.fetch(await signedJson(`${WORKER}/webhooks/events`, body));
    expect(response.status).toBe(200);
    expect(new TextDecoder().decode(outbound.to(ORIGIN)[0]!.body)).toBe(body);
  });

  it("accepts the secondary auth token during a rotation", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, plainParams(), { token: SECONDARY_TOKEN });
    const response = await viaApp(request, { TWILIO_AUTH_TOKEN_SECONDARY: SECONDARY_TOKEN });
    expect(response.status).toBe(200);
    expect(outbound.to(ORIGIN)).toHaveLength(1);
  });

  it("verifies against PUBLIC_URL when a proxy rewrote the host", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms?t=1`, plainParams(), {
      signedUrl: "https://hooks.example.org/twilio/webhooks/sms?t=1",
    });
    expect((await viaApp(request.clone())).status).toBe(403);
    const response = await viaApp(request, { PUBLIC_URL: "https://hooks.example.org/twilio" });
    expect(response.status).toBe(200);
  });
});

describe("refused webhooks never reach the origin", () => {
  it("answers 403 to a forged signature", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, plainParams(), { token: "someone-elses-token" });
    const response = await exports.default.fetch(request);
    expect(response.status).toBe(403);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 403 to an unsigned request", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, plainParams());
    request.headers.delete("x-twilio-signature");
    const response = await exports.default.fetch(request);
    expect(response.status).toBe(403);
    expect(await response.text()).toContain("missing X-Twilio-Signature");
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 403 when a signed parameter was changed", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const signed = await signedForm(`${WORKER}/webhooks/sms`, plainParams());
    const tampered = new Request(signed.url, {
      method: "POST",
      headers: signed.headers,
      body: (await signed.text()).replace("Digits=1234", "Digits=1235"),
    });
    expect((await exports.default.fetch(tampered)).status).toBe(403);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 403 when the path differs from the signed URL", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, plainParams(), { signedUrl: `${WORKER}/webhooks/voice` });
    expect((await exports.default.fetch(request)).status).toBe(403);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 413 to a body over 64 KiB", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, [...plainParams(), ["Body", "x".repeat(64 * 1024)]]);
    expect((await exports.default.fetch(request)).status).toBe(413);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 413 to an oversized streamed body without a content-length", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const chunk = new TextEncoder().encode("a=" + "x".repeat(16 * 1024));
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(chunk);
        controller.close();
      },
    });
    const request = new Request(`${WORKER}/webhooks/sms`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": "AAAA" },
      body: stream,
    });
    expect((await exports.default.fetch(request)).status).toBe(413);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 405 with Allow to methods other than GET and POST", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    for (const method of ["PUT", "DELETE", "PATCH"]) {
      const response = await exports.default.fetch(new Request(`${WORKER}/webhooks/sms`, { method, body: "a=b" }));
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("GET, POST");
    }
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 400 to malformed form encoding", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = new Request(`${WORKER}/webhooks/sms`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": "AAAA" },
      body: "Body=%zz&AccountSid=" + PARENT_SID,
    });
    expect((await exports.default.fetch(request)).status).toBe(400);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 400 to a JSON body without bodySHA256", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = new Request(`${WORKER}/webhooks/events`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-twilio-signature": "AAAA" },
      body: "{}",
    });
    expect((await exports.default.fetch(request)).status).toBe(400);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 403 to a JSON body that does not match its signed bodySHA256", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const signed = await signedJson(`${WORKER}/webhooks/events`, '{"a":1}');
    const tampered = new Request(signed.url, { method: "POST", headers: signed.headers, body: '{"a":2}' });
    const response = await exports.default.fetch(tampered);
    expect(response.status).toBe(403);
    expect(outbound.calls).toHaveLength(0);
  });

  it("answers 403 to a malformed AccountSid", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = await signedForm(`${WORKER}/webhooks/sms`, [["AccountSid", "AC../../admin"], ["Body", "x"]]);
    expect((await exports.default.fetch(request)).status).toBe(403);
    expect(outbound.calls).toHaveLength(0);
  });
});

describe("HTTP Basic authentication", () => {
  const basicEnv = { WEBHOOK_AUTH: "basic", BASIC_AUTH_USER: "twilio", BASIC_AUTH_PASSWORD: "test-basic-password-not-a-secret" };
  const auth = (user: string, password: string) => `Basic ${btoa(`${user}:${password}`)}`;

  it("challenges a request without credentials with 401 and WWW-Authenticate", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const response = await viaApp(new Request(`${WORKER}/webhooks/sms`, { method: "POST" }), basicEnv);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Basic realm="[^"]+"/);
    expect(outbound.calls).toHaveLength(0);
  });

  it("challenges wrong credentials the same way", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = new Request(`${WORKER}/webhooks/sms`, { method: "POST", headers: { authorization: auth("twilio", "wrong") } });
    const response = await viaApp(request, basicEnv);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain("Basic");
    expect(outbound.calls).toHaveLength(0);
  });

  it("forwards the retry with the right credentials, without the guard's Authorization header", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const request = new Request(`${WORKER}/webhooks/sms`, {
      method: "POST",
      headers: { authorization: auth("twilio", basicEnv.BASIC_AUTH_PASSWORD), "content-type": "application/x-www-form-urlencoded" },
      body: "AccountSid=" + PARENT_SID,
    });
    const response = await viaApp(request, basicEnv);
    expect(response.status).toBe(200);
    const [hit] = outbound.to(ORIGIN);
    expect(hit!.headers.get("x-guard-verified")).toBe("basic");
    expect(hit!.headers.get("authorization")).toBeNull();
  });

  it("still refuses an AccountSid that is neither the parent nor its subaccount", async () => {
    outbound = mockOutbound([
      [ORIGIN, () => twiml()],
      // Twilio's account list: the parent has no subaccount at all.
      ["https://twilio.test", () => new Response(JSON.stringify({ accounts: [], next_page_uri: null }), { status: 200 })],
    ]);
    await relistSubaccounts();
    const request = new Request(`${WORKER}/webhooks/sms`, {
      method: "POST",
      headers: { authorization: auth("twilio", basicEnv.BASIC_AUTH_PASSWORD), "content-type": "application/x-www-form-urlencoded" },
      body: "AccountSid=AC" + "e".repeat(32) + "&Body=x",
    });
    const response = await viaApp(request, basicEnv);
    expect(response.status).toBe(403);
    expect(outbound.to(ORIGIN)).toHaveLength(0);
  });

  it("with WEBHOOK_AUTH=both, still wants the signature after the credentials", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const bothEnv = { ...basicEnv, WEBHOOK_AUTH: "both" };
    const unsigned = new Request(`${WORKER}/webhooks/sms`, {
      method: "POST",
      headers: { authorization: auth("twilio", basicEnv.BASIC_AUTH_PASSWORD), "content-type": "application/x-www-form-urlencoded" },
      body: "AccountSid=" + PARENT_SID,
    });
    expect((await viaApp(unsigned, bothEnv)).status).toBe(403);
    // Twilio signs the URL it was given, which carries the credentials as userinfo.
    const signed = await signedForm(`${WORKER}/webhooks/sms`, plainParams(), {
      headers: { authorization: auth("twilio", basicEnv.BASIC_AUTH_PASSWORD) },
      signedUrl: `https://twilio:${basicEnv.BASIC_AUTH_PASSWORD}@guard.example.com/webhooks/sms`,
    });
    expect((await viaApp(signed, bothEnv)).status).toBe(200);
    expect(outbound.to(ORIGIN)).toHaveLength(1);
  });
});

describe("report-only mode", () => {
  it("forwards a request that failed verification, marked with X-Guard-Verdict", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const warn = vi.spyOn(console, "warn");
    const request = await signedForm(`${WORKER}/webhooks/sms`, plainParams(), { token: "wrong-token" });
    const response = await viaApp(request, { GUARD_MODE: "report-only" });
    expect(response.status).toBe(200);
    const [hit] = outbound.to(ORIGIN);
    expect(hit!.headers.get("x-guard-verdict")).toBe("bad-signature");
    expect(hit!.headers.get("x-guard-verified")).toBeNull();
    expect(warn.mock.calls.some(([line]) => String(line).includes("bad-signature"))).toBe(true);
  });

  it("still marks verified requests as verified", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const response = await viaApp(await signedForm(`${WORKER}/webhooks/sms`, plainParams()), { GUARD_MODE: "report-only" });
    expect(response.status).toBe(200);
    expect(outbound.to(ORIGIN)[0]!.headers.get("x-guard-verified")).toBe("signature");
  });
});

describe("origin failures", () => {
  it("answers 502 when the origin does not answer in time", async () => {
    outbound = mockOutbound([
      [ORIGIN, (req) => new Promise<Response>(() => { void req; })],
    ]);
    const started = Date.now();
    const response = await viaApp(await signedForm(`${WORKER}/webhooks/sms`, plainParams()), {}, { originTimeoutMs: 50 });
    expect(response.status).toBe(502);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("answers 502 when the origin cannot be reached", async () => {
    outbound = mockOutbound([[ORIGIN, () => { throw new TypeError("connection refused"); }]]);
    const response = await exports.default.fetch(await signedForm(`${WORKER}/webhooks/sms`, plainParams()));
    expect(response.status).toBe(502);
    expect(await response.text()).not.toContain("connection refused");
  });

  it("relays an origin 500 as it is (Twilio then decides on the Fallback URL)", async () => {
    outbound = mockOutbound([[ORIGIN, () => new Response("boom", { status: 500 })]]);
    const response = await exports.default.fetch(await signedForm(`${WORKER}/webhooks/sms`, plainParams()));
    expect(response.status).toBe(500);
    expect(await response.text()).toBe("boom");
  });
});

describe("settings", () => {
  it.each([
    ["TWILIO_ACCOUNT_SID", { TWILIO_ACCOUNT_SID: "" }],
    ["TWILIO_ACCOUNT_SID", { TWILIO_ACCOUNT_SID: "not-a-sid" }],
    ["TWILIO_AUTH_TOKEN", { TWILIO_AUTH_TOKEN: "" }],
    ["ORIGIN_URL", { ORIGIN_URL: "" }],
    ["ORIGIN_URL", { ORIGIN_URL: "ftp://x" }],
    ["WEBHOOK_AUTH", { WEBHOOK_AUTH: "maybe" }],
    ["BASIC_AUTH_PASSWORD", { WEBHOOK_AUTH: "basic", BASIC_AUTH_USER: "u" }],
    ["GUARD_MODE", { GUARD_MODE: "lenient" }],
    ["GUARD_POLICY", { GUARD_POLICY: "{not json" }],
    ["GUARD_POLICY", { GUARD_POLICY: '{"limits":[{"window":"week","usd":1}]}' }],
  ] as const)("a bad %s answers 500 naming it and forwards nothing", async (setting, overrides) => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const response = await viaApp(await signedForm(`${WORKER}/webhooks/sms`, plainParams()), overrides as Partial<GuardEnv>);
    expect(response.status).toBe(500);
    const body = (await response.json()) as { setting: string };
    expect(body.setting).toBe(setting);
    expect(outbound.calls).toHaveLength(0);
  });
});

describe("GET /healthz with a bad setting", () => {
  const SETTINGS_CASES = [
    ["TWILIO_ACCOUNT_SID", { TWILIO_ACCOUNT_SID: "" }],
    ["TWILIO_ACCOUNT_SID", { TWILIO_ACCOUNT_SID: "not-a-sid" }],
    ["TWILIO_AUTH_TOKEN", { TWILIO_AUTH_TOKEN: "" }],
    ["ORIGIN_URL", { ORIGIN_URL: "" }],
    ["ORIGIN_URL", { ORIGIN_URL: "ftp://x" }],
    ["BASIC_AUTH_PASSWORD", { WEBHOOK_AUTH: "basic", BASIC_AUTH_USER: "u" }],
    ["GUARD_POLICY", { GUARD_POLICY: "{not json" }],
    ["ADMIN_TOTP_SECRET", { ADMIN_TOKEN: "t", ADMIN_TOTP_SECRET: "not base32!" }],
    ["ADMIN_TOTP_SECRET", { ADMIN_TOKEN: "t", ADMIN_TOTP_SECRET: "JBSWY3DP" }],
  ] as const;

  it.each(SETTINGS_CASES)("answers 503 naming %s, and nothing else", async (setting, overrides) => {
    const response = await viaApp(new Request(`${WORKER}/healthz`), overrides as Partial<GuardEnv>);
    expect(response.status).toBe(503);
    expect(await response.text()).toBe(JSON.stringify({ ok: false, setting }));
  });

  it("answers 200 again with the same settings fixed", async () => {
    const response = await viaApp(new Request(`${WORKER}/healthz`), { ADMIN_TOKEN: "t", ADMIN_TOTP_SECRET: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });
});

describe("the rest of the surface", () => {
  it("GET /healthz answers {ok:true} without account data", async () => {
    const response = await exports.default.fetch(`${WORKER}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });

  it("unknown routes answer 404", async () => {
    expect((await exports.default.fetch(`${WORKER}/nope`)).status).toBe(404);
  });

  it("matches the webhook route exactly as itty-router's /webhooks/* (dispatched without the router)", async () => {
    const itty = Router();
    itty.all("/webhooks/*", () => new Response());
    expect(WEBHOOK_ROUTE.source).toBe(itty.routes[0]![1].source);
    expect(WEBHOOK_ROUTE.flags).toBe(itty.routes[0]![1].flags);
    for (const path of ["/webhooks", "/webhooks/", "/webhooks/sms", "/webhooks//a/b/", "/webhooks/a%2Fb"]) expect(WEBHOOK_ROUTE.test(path), path).toBe(true);
    for (const path of ["/webhooksx", "/webhook", "/x/webhooks/sms", "/Webhooks/sms"]) expect(WEBHOOK_ROUTE.test(path), path).toBe(false);
    expect((await exports.default.fetch(`${WORKER}/webhooksx`)).status).toBe(404);
    // /webhooks itself is the route (forwarded to ORIGIN_URL's own path).
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const response = await exports.default.fetch(await signedForm(`${WORKER}/webhooks`, plainParams()));
    expect(response.status).toBe(200);
    expect(outbound.to(ORIGIN).map((hit) => hit.url)).toEqual([`${ORIGIN}/`]);
  });

  it("an unexpected failure is a generic 500 that leaks no internal message", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const error = vi.spyOn(console, "error");
    const broken = { ...(env as GuardEnv), ACCOUNT_GUARD: undefined } as unknown as GuardEnv;
    const app = createApp();
    const ctx = createExecutionContext();
    const request = await signedForm(`${WORKER}/webhooks/sms`, [["AccountSid", PARENT_SID], ["MessageSid", "SM" + "1".repeat(32)], ["SmsStatus", "received"], ["Body", "x"], ["NumSegments", "1"]]);
    const response = await app.fetch(request, broken, ctx);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: "internal error" });
    expect(error).toHaveBeenCalled();
    expect(outbound.calls).toHaveLength(0);
  });

  it("logs one JSON line per request with route, account, verdict, status and duration, and no secret", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const log = vi.spyOn(console, "log");
    await exports.default.fetch(await signedForm(`${WORKER}/webhooks/sms`, plainParams()));
    const lines = log.mock.calls.map(([line]) => String(line)).filter((l) => l.includes('"event":"request"'));
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ route: "webhooks", account: PARENT_SID, verdict: "verified-signature", status: 200 });
    expect(typeof line.durationMs).toBe("number");
    expect(lines[0]).not.toContain(PRIMARY_TOKEN);
  });

  it("names the billable event's kind in the log line", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const log = vi.spyOn(console, "log");
    await exports.default.fetch(await signedForm(`${WORKER}/webhooks/sms`, inboundSms(PARENT_SID)));
    const line = log.mock.calls.map(([l]) => String(l)).find((l) => l.includes('"event":"request"'));
    expect(JSON.parse(line!)).toMatchObject({ event: "request", eventKind: "inbound-message", duplicate: false, status: 200 });
  });
});
