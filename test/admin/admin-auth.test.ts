// Admin authentication (CONTRACT.md, "Admin API"): off without ADMIN_TOKEN, bearer token, TOTP on
// mutating calls (RFC 6238 codes computed with src/admin/totp.ts, each accepted once), and the global
// failure lockout. Failures are counted per UTC minute for the whole guard, so every test that fails
// on purpose runs on its own injected clock minute (createApp({ now })) and cannot lock out another.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import {
  ADMIN_FAILURES_PER_MINUTE,
  bearerToken,
  rateLimit,
  retryAfterSeconds,
  tokenFingerprint,
  tokenMatches,
} from "../../src/admin/auth.ts";
import { generateSecretBase32 } from "../../src/admin/totp.ts";
import { uniqueSid } from "../support/twilio.ts";
import { TEST_ADMIN_TOKEN, WORKER, adminCaller, privateMinute, totpCodeAt, type AdminCall } from "../support/admin.ts";
import { breakerState } from "../support/guard.ts";


describe("admin off", () => {
  it("answers every /admin route 404 when ADMIN_TOKEN is unset, like a route that does not exist", async () => {
    const call = adminCaller({ adminToken: null });
    const missing = await createApp().fetch(new Request(`${WORKER}/nowhere`), env as GuardEnv, createExecutionContext());
    const sid = uniqueSid();
    for (const [method, path] of [
      ["GET", "/admin"],
      ["GET", "/admin/"],
      ["GET", "/admin/accounts"],
      ["GET", `/admin/accounts/${sid}`],
      ["POST", `/admin/accounts/${sid}/trip`],
      ["PUT", `/admin/accounts/${sid}/policy`],
      ["GET", "/admin/metrics"],
    ] as const) {
      const response = await call(method, path);
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(await response.text()).toBe(await missing.clone().text());
    }
    expect(await breakerState(sid)).toBe("closed");
  });

  it("treats a blank ADMIN_TOKEN as unset", async () => {
    const response = await adminCaller({ adminToken: "   " })("GET", "/admin/accounts", { token: "   " });
    expect(response.status).toBe(404);
  });
});

describe("bearer token", () => {
  it("serves the dashboard page without a token (a browser navigation cannot send one)", async () => {
    const response = await adminCaller()("GET", "/admin", { token: null });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/html");
    const html = await response.text();
    expect(html).not.toContain(TEST_ADMIN_TOKEN);
    // Self-contained: no external script, style, font or image; inline code runs only with the nonce.
    expect(html).not.toMatch(/\b(src|href)="(https?:)?\/\//);
    expect(html).not.toMatch(/@import|url\(/);
    const csp = response.headers.get("content-security-policy")!;
    const nonce = /'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)![1]!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain(`script-src 'nonce-${nonce}'`);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("unsafe");
    expect(html.match(/<script nonce="([^"]+)">/)![1]).toBe(nonce);
    expect(html.match(/<style nonce="([^"]+)">/)![1]).toBe(nonce);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    // A fresh nonce per response.
    const again = await adminCaller()("GET", "/admin/", { token: null });
    expect(again.headers.get("content-security-policy")).not.toBe(csp);
  });

  it("answers 401 with a Bearer challenge when the token is missing", async () => {
    const response = await adminCaller({ now: privateMinute() })("GET", "/admin/accounts", { token: null });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Bearer realm=/);
    expect(await response.json()).toMatchObject({ error: "token-missing" });
  });

  it("answers 401 on a wrong token, a token of another length, and another auth scheme", async () => {
    const call = adminCaller({ now: privateMinute() });
    for (const headers of [
      { authorization: `Bearer ${TEST_ADMIN_TOKEN.slice(0, -1)}x` },
      { authorization: `Bearer ${TEST_ADMIN_TOKEN}x` },
      { authorization: `Basic ${btoa(`admin:${TEST_ADMIN_TOKEN}`)}` },
    ]) {
      const response = await call("GET", "/admin/accounts", { token: null, headers });
      expect(response.status).toBe(401);
    }
  });

  it("accepts the right token on every API route, with any case of the scheme", async () => {
    const response = await adminCaller()("GET", "/admin/accounts?limit=1", { token: null, headers: { authorization: `bearer ${TEST_ADMIN_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
  });

  it("checks the token before anything else: an unknown route or a bad SID is 401 without it", async () => {
    const call = adminCaller({ now: privateMinute() });
    expect((await call("GET", "/admin/nothing-here", { token: "wrong" })).status).toBe(401);
    expect((await call("GET", "/admin/accounts/not-a-sid", { token: "wrong" })).status).toBe(401);
    expect((await call("GET", "/admin/nothing-here")).status).toBe(404);
    const bad = await call("GET", "/admin/accounts/AC123");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ field: "sid" });
  });

  it("parses bearer headers strictly", () => {
    expect(bearerToken("Bearer abc")).toBe("abc");
    expect(bearerToken("BEARER  abc ")).toBe("abc");
    expect(bearerToken("Bearer")).toBeNull();
    expect(bearerToken("Bearer a b")).toBeNull();
    expect(bearerToken("Basic abc")).toBeNull();
    expect(bearerToken(null)).toBeNull();
  });

  it("compares tokens through their digests", async () => {
    expect(await tokenMatches(TEST_ADMIN_TOKEN, TEST_ADMIN_TOKEN)).toBe(true);
    expect(await tokenMatches(`${TEST_ADMIN_TOKEN} `, TEST_ADMIN_TOKEN)).toBe(false);
    expect(await tokenMatches(null, TEST_ADMIN_TOKEN)).toBe(false);
    expect(await tokenMatches("", "")).toBe(false);
  });
});

describe("TOTP on mutating calls", () => {
  it("needs no code for reads, and none for mutations when ADMIN_TOTP_SECRET is unset", async () => {
    const sid = uniqueSid();
    const withTotp = adminCaller({ totpSecret: generateSecretBase32() });
    expect((await withTotp("GET", "/admin/accounts?limit=1")).status).toBe(200);
    const without = adminCaller();
    const trip = await without("POST", `/admin/accounts/${sid}/trip`);
    expect(trip.status).toBe(200);
    expect(await breakerState(sid)).toBe("open");
  });

  it("refuses a mutation without a code (403 totp-required) and changes nothing", async () => {
    const sid = uniqueSid();
    const call = adminCaller({ now: privateMinute(), totpSecret: generateSecretBase32() });
    const response = await call("POST", `/admin/accounts/${sid}/trip`);
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ error: "totp-required" });
    expect(await breakerState(sid)).toBe("closed");
  });

  it("refuses a wrong code (403 totp-invalid) and changes nothing", async () => {
    const sid = uniqueSid();
    const secret = generateSecretBase32();
    const now = privateMinute();
    const right = await totpCodeAt(secret, now);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, "0");
    const call = adminCaller({ now, totpSecret: secret });
    for (const code of [wrong, "12345", "abcdef", `${right}0`]) {
      const response = await call("POST", `/admin/accounts/${sid}/trip`, { totp: code });
      expect(response.status, code).toBe(403);
      expect(await response.json()).toMatchObject({ error: "totp-invalid" });
    }
    expect(await breakerState(sid)).toBe("closed");
  });

  it("accepts the current code once; the same code again is 403 totp-reused", async () => {
    const sid = uniqueSid();
    const secret = generateSecretBase32();
    const now = Date.now();
    const call = adminCaller({ totpSecret: secret });
    const code = await totpCodeAt(secret, now);
    const first = await call("POST", `/admin/accounts/${sid}/trip`, { totp: code, body: { reason: "test" } });
    expect(first.status).toBe(200);
    expect(await breakerState(sid)).toBe("open");
    const again = await call("POST", `/admin/accounts/${sid}/reset`, { totp: code });
    expect(again.status).toBe(403);
    expect(await again.json()).toMatchObject({ error: "totp-reused" });
    expect(await breakerState(sid)).toBe("open");
  });

  it("accepts one step either side, and refuses any step at or below the last accepted one", async () => {
    const sid = uniqueSid();
    const secret = generateSecretBase32();
    const now = privateMinute(40); // the minute's second step: step-1 and step+1 stay inside the minute
    const call = adminCaller({ now, totpSecret: secret });
    const previous = await totpCodeAt(secret, now - 30_000);
    const current = await totpCodeAt(secret, now);
    const next = await totpCodeAt(secret, now + 30_000);
    const twoAhead = await totpCodeAt(secret, now + 60_000);
    expect((await call("POST", `/admin/accounts/${sid}/trip`, { totp: twoAhead })).status).toBe(403);
    expect((await call("POST", `/admin/accounts/${sid}/trip`, { totp: previous })).status).toBe(200);
    expect((await call("POST", `/admin/accounts/${sid}/reset`, { totp: next })).status).toBe(200);
    // `current` is a valid code for this instant, but its step is below the last accepted one.
    const stale = await call("POST", `/admin/accounts/${sid}/trip`, { totp: current });
    expect(stale.status).toBe(403);
    expect(await stale.json()).toMatchObject({ error: "totp-reused" });
    expect(await breakerState(sid)).toBe("closed");
  });

  it("accepts a code once even when two calls race with it", async () => {
    const secret = generateSecretBase32();
    const now = privateMinute();
    const call = adminCaller({ now, totpSecret: secret });
    const code = await totpCodeAt(secret, now);
    const sids = [uniqueSid(), uniqueSid(), uniqueSid()];
    const answers = await Promise.all(sids.map((sid) => call("POST", `/admin/accounts/${sid}/trip`, { totp: code })));
    expect(answers.map((r) => r.status).sort()).toEqual([200, 403, 403]);
    const states = await Promise.all(sids.map(breakerState));
    expect(states.filter((s) => s === "open")).toHaveLength(1);
  });

  it("names a malformed ADMIN_TOTP_SECRET in a 500 instead of accepting anything", async () => {
    const response = await adminCaller({ totpSecret: "not base32!" })("POST", `/admin/accounts/${uniqueSid()}/trip`, { totp: "123456" });
    expect(response.status).toBe(500);
    expect(await response.json()).toMatchObject({ setting: "ADMIN_TOTP_SECRET" });
  });
});

describe("failure lockout", () => {
  it(`answers 429 for the rest of the UTC minute after ${ADMIN_FAILURES_PER_MINUTE} failures, and changes nothing`, async () => {
    const secret = generateSecretBase32();
    const now = privateMinute(55); // 5 s before the minute ends: Retry-After 5
    const call = adminCaller({ now, totpSecret: secret });
    const sid = uniqueSid();
    const code = await totpCodeAt(secret, now);
    const failures = [
      await call("GET", "/admin/accounts", { token: null }),
      await call("GET", "/admin/accounts", { token: "wrong" }),
      await call("POST", `/admin/accounts/${sid}/trip`, { totp: "000000" === code ? "111111" : "000000" }),
      await call("POST", `/admin/accounts/${sid}/trip`, { totp: "222222" === code ? "333333" : "222222" }),
      await call("GET", "/admin/metrics", { token: "wrong" }),
    ];
    expect(failures.map((r) => r.status)).toEqual([401, 401, 403, 403, 401]);

    // Now everything is refused, even a correct token with a correct code, and even the page.
    for (const [method, path, options] of [
      ["POST", `/admin/accounts/${sid}/trip`, { totp: code }],
      ["GET", "/admin/accounts", {}],
      ["GET", `/admin/accounts/${sid}`, {}],
      ["GET", "/admin/metrics", {}],
      ["GET", "/admin", { token: null }],
      ["GET", "/admin/accounts", { token: "wrong" }],
      ["PUT", `/admin/accounts/${sid}/policy`, { totp: code, body: { limits: "bad" } }],
    ] as Array<[string, string, AdminCall]>) {
      const response = await call(method, path, options);
      expect(response.status, `${method} ${path}`).toBe(429);
      expect(response.headers.get("retry-after")).toBe("5");
    }
    expect(await breakerState(sid)).toBe("closed");

    // The next minute: the lockout is over, and the code refused during it was never consumed.
    const later = adminCaller({ now: now + 6_000, totpSecret: secret });
    const trip = await later("POST", `/admin/accounts/${sid}/trip`, { totp: code });
    expect(trip.status).toBe(200);
    expect(await breakerState(sid)).toBe("open");
    const detail = (await (await later("GET", `/admin/accounts/${sid}`)).json()) as { audit: Array<{ action: string }> };
    expect(detail.audit.map((e) => e.action)).toEqual(["trip"]);
  });

  it("counts failures per UTC minute: four in one minute and one in the next lock nothing", async () => {
    const now = privateMinute(50);
    const call = adminCaller({ now });
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE - 1; i++) expect((await call("GET", "/admin/accounts", { token: "wrong" })).status).toBe(401);
    const next = adminCaller({ now: now + 15_000 });
    expect((await next("GET", "/admin/accounts", { token: "wrong" })).status).toBe(401);
    expect((await next("GET", "/admin/accounts?limit=1")).status).toBe(200);
  });

  it("answers the fifth failure itself with 401, and locks from the sixth call on", async () => {
    const call = adminCaller({ now: privateMinute(0) });
    const statuses: number[] = [];
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE + 1; i++) statuses.push((await call("GET", "/admin/accounts", { token: "wrong" })).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
    const ok = await call("GET", "/admin/accounts");
    expect(ok.status).toBe(429);
    expect(ok.headers.get("retry-after")).toBe("60");
  });

  it("computes Retry-After to the end of the minute", () => {
    const minute = Date.UTC(2030, 5, 1, 12, 0, 0);
    expect(retryAfterSeconds(minute)).toBe(60);
    expect(retryAfterSeconds(minute + 59_001)).toBe(1);
    expect(retryAfterSeconds(minute + 59_999)).toBe(1);
    expect(rateLimit(ADMIN_FAILURES_PER_MINUTE - 1, minute)).toEqual({ limited: false });
    expect(rateLimit(ADMIN_FAILURES_PER_MINUTE, minute + 30_000)).toEqual({ limited: true, retryAfterS: 30 });
  });
});

describe("token fingerprint", () => {
  it("is the first 12 hex of SHA-256 of the token", async () => {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(TEST_ADMIN_TOKEN)));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    expect(await tokenFingerprint(TEST_ADMIN_TOKEN)).toBe(hex.slice(0, 12));
  });
});
