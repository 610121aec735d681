// POST /admin/elevate (CONTRACT.md, "Admin API"): one fresh TOTP code buys an elevation token good for
// ten minutes, for the bearer token it was issued to only; X-Guard-Elevation then stands in for
// X-Guard-TOTP on mutating calls. The clock is injected: expiry is tested without waiting.
import { describe, expect, it } from "vitest";
import { ELEVATION_TTL_MS, checkElevation, issueElevation } from "../../src/admin/auth.ts";
import { generateSecretBase32 } from "../../src/admin/totp.ts";
import { adminCaller, privateMinute, totpCodeAt, uniqueIp } from "../support/admin.ts";
import { uniqueSid } from "../support/twilio.ts";
import { breakerState } from "../support/guard.ts";

type Elevated = { elevation: string; expiresAt: number; ttlSeconds: number };

async function elevate(call: ReturnType<typeof adminCaller>, code: string, ip?: string): Promise<Elevated> {
  const response = await call("POST", "/admin/elevate", { totp: code, ...(ip ? { ip } : {}) });
  expect(response.status).toBe(200);
  return (await response.json()) as Elevated;
}

describe("POST /admin/elevate", () => {
  it("turns one fresh code into ten minutes of mutating calls: five trips and a reset without another code", async () => {
    const secret = generateSecretBase32();
    let now = privateMinute();
    const call = adminCaller({ now: () => now, totpSecret: secret });
    const elevated = await elevate(call, await totpCodeAt(secret, now));
    expect(elevated.expiresAt).toBe(now + ELEVATION_TTL_MS);
    expect(elevated.ttlSeconds).toBe(600);
    const sids = Array.from({ length: 5 }, () => uniqueSid());
    for (const sid of sids) {
      now += 1_000;
      expect((await call("POST", `/admin/accounts/${sid}/trip`, { elevation: elevated.elevation })).status).toBe(200);
    }
    expect(await Promise.all(sids.map(breakerState))).toEqual(Array(5).fill("open"));
    now = elevated.expiresAt - 1;
    expect((await call("POST", `/admin/accounts/${sids[0]}/reset`, { elevation: elevated.elevation })).status).toBe(200);
    expect(await breakerState(sids[0]!)).toBe("closed");
    // The audit trail says the second factor was checked for each call.
    const detail = (await (await call("GET", `/admin/accounts/${sids[0]}`)).json()) as { audit: Array<{ action: string; totp: boolean }> };
    expect(detail.audit.map((e) => [e.action, e.totp])).toEqual([["reset", true], ["trip", true]]);
  });

  it("refuses the token once ten minutes have passed (403 elevation-expired, not counted as a failure)", async () => {
    const secret = generateSecretBase32();
    let now = privateMinute();
    const call = adminCaller({ now: () => now, totpSecret: secret });
    const ip = uniqueIp();
    const { elevation } = await elevate(call, await totpCodeAt(secret, now), ip);
    now += ELEVATION_TTL_MS;
    const sid = uniqueSid();
    for (let i = 0; i < 7; i++) {
      const late = await call("POST", `/admin/accounts/${sid}/trip`, { elevation, ip });
      expect(late.status).toBe(403);
      expect(await late.json()).toMatchObject({ error: "elevation-expired" });
    }
    expect(await breakerState(sid)).toBe("closed");
    // Not a guess: the same address can still sign in and elevate again.
    expect((await call("POST", "/admin/elevate", { ip, totp: await totpCodeAt(secret, now) })).status).toBe(200);
  });

  it("is bound to the bearer token: after ADMIN_TOKEN changes, the old elevation is refused", async () => {
    const secret = generateSecretBase32();
    const now = privateMinute();
    const before = adminCaller({ now: () => now, totpSecret: secret, adminToken: "first-admin-token-of-this-test" });
    const { elevation } = await elevate(before, await totpCodeAt(secret, now));
    const after = adminCaller({ now: () => now + 1_000, totpSecret: secret, adminToken: "second-admin-token-of-this-test" });
    const sid = uniqueSid();
    const refused = await after("POST", `/admin/accounts/${sid}/trip`, { elevation });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ error: "elevation-invalid" });
    expect(await breakerState(sid)).toBe("closed");
    // And a wrong bearer with a genuine elevation is still a 401: elevation never replaces the token.
    expect((await before("POST", `/admin/accounts/${sid}/trip`, { token: "wrong", elevation })).status).toBe(401);
  });

  it("spends the code it was given: that code cannot elevate again nor authorise a mutation", async () => {
    const secret = generateSecretBase32();
    const now = privateMinute();
    const call = adminCaller({ now: () => now, totpSecret: secret });
    const code = await totpCodeAt(secret, now);
    await elevate(call, code);
    const again = await call("POST", "/admin/elevate", { totp: code });
    expect(again.status).toBe(403);
    expect(await again.json()).toMatchObject({ error: "totp-reused" });
    const sid = uniqueSid();
    expect((await call("POST", `/admin/accounts/${sid}/trip`, { totp: code })).status).toBe(403);
    expect(await breakerState(sid)).toBe("closed");
  });

  it("needs a code: none, a wrong one, or an elevation token in its place are refused", async () => {
    const secret = generateSecretBase32();
    const now = privateMinute();
    const call = adminCaller({ now: () => now, totpSecret: secret });
    expect(await (await call("POST", "/admin/elevate")).json()).toMatchObject({ error: "totp-required" });
    const code = await totpCodeAt(secret, now);
    expect(await (await call("POST", "/admin/elevate", { totp: code === "000000" ? "111111" : "000000" })).json()).toMatchObject({ error: "totp-invalid" });
    const { elevation } = await elevate(call, code);
    const chained = await call("POST", "/admin/elevate", { elevation });
    expect(chained.status).toBe(403);
    expect(await chained.json()).toMatchObject({ error: "totp-required" });
    expect((await call("GET", "/admin/elevate")).status).toBe(405);
  });

  it("counts a forged or tampered token as a failed guess", async () => {
    const secret = generateSecretBase32();
    const now = privateMinute();
    const call = adminCaller({ now: () => now, totpSecret: secret });
    const ip = uniqueIp();
    const { elevation } = await elevate(call, await totpCodeAt(secret, now), ip);
    const [prefix, expires, nonce, mac] = elevation.split(".");
    const longer = `${prefix}.${Number(expires) + 3_600_000}.${nonce}.${mac}`;
    const flipped = `${prefix}.${expires}.${nonce}.${mac!.slice(0, -2)}${mac!.endsWith("AA") ? "BB" : "AA"}`;
    const sid = uniqueSid();
    for (const forged of [longer, flipped, "ge1.1.2.3", "x".repeat(500), `${elevation}.extra`]) {
      const response = await call("POST", `/admin/accounts/${sid}/trip`, { elevation: forged, ip });
      expect(response.status, forged.slice(0, 40)).toBe(403);
      expect(await response.json()).toMatchObject({ error: "elevation-invalid" });
    }
    // Five forged tokens: the address is locked out, even with the genuine one.
    expect((await call("POST", `/admin/accounts/${sid}/trip`, { elevation, ip })).status).toBe(429);
    expect(await breakerState(sid)).toBe("closed");
  });

  it("answers 409 when ADMIN_TOTP_SECRET is unset: there is no second factor to elevate", async () => {
    const call = adminCaller({ now: () => privateMinute() });
    const response = await call("POST", "/admin/elevate");
    expect(response.status).toBe(409);
    expect(await response.json()).toMatchObject({ error: "totp-off" });
  });

  it("signs tokens with a key from ADMIN_TOTP_SECRET: another secret's tokens are not accepted", async () => {
    const now = Date.UTC(2032, 5, 1);
    const issued = await issueElevation(generateSecretBase32(), "bearer", now);
    expect(await checkElevation(generateSecretBase32(), "bearer", issued.token, now)).toEqual({ status: "invalid" });
  });
});
