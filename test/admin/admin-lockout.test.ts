// The failure lockout is per client address (CONTRACT.md, "Admin API"): an attacker's junk locks out the
// attacker's address, never an operator elsewhere; a CORS preflight and a forgotten TOTP header are no
// failures. Each test runs on its own clock minute and its own addresses.
import { describe, expect, it } from "vitest";
import { ADMIN_FAILURES_PER_MINUTE, clientAddress } from "../../src/admin/auth.ts";
import { generateSecretBase32 } from "../../src/admin/totp.ts";
import { adminCaller, privateMinute, totpCodeAt, uniqueIp } from "../support/admin.ts";
import { uniqueSid } from "../support/twilio.ts";
import { breakerState } from "../support/guard.ts";

describe("failure lockout per client address", () => {
  it("locks out the address that failed, while a correct token from another address keeps working", async () => {
    const secret = generateSecretBase32();
    const now = privateMinute(5);
    const call = adminCaller({ now: () => now, totpSecret: secret });
    const attacker = uniqueIp();
    const operator = uniqueIp();
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE; i++) {
      expect((await call("GET", "/admin/accounts", { token: `junk-${i}`, ip: attacker })).status).toBe(401);
    }
    expect((await call("GET", "/admin/accounts", { token: "junk", ip: attacker })).status).toBe(429);
    // The attacker's own address is refused even with the right token: guessing it gains nothing.
    expect((await call("GET", "/admin/accounts?limit=1", { ip: attacker })).status).toBe(429);
    expect((await call("GET", "/admin", { token: null, ip: attacker })).status).toBe(429);

    // Everyone else: the page, the listing, the metrics scrape, and a mutation with a fresh code.
    expect((await call("GET", "/admin", { token: null, ip: operator })).status).toBe(200);
    expect((await call("GET", "/admin/accounts?limit=1", { ip: operator })).status).toBe(200);
    expect((await call("GET", "/admin/metrics", { ip: operator })).status).toBe(200);
    const sid = uniqueSid();
    const trip = await call("POST", `/admin/accounts/${sid}/trip`, { ip: operator, totp: await totpCodeAt(secret, now) });
    expect(trip.status).toBe(200);
    expect(await breakerState(sid)).toBe("open");
  });

  it("keeps locking the attacker for as long as it sends, and lets it go when the minute ends", async () => {
    let now = privateMinute(50);
    const call = adminCaller({ now: () => now });
    const attacker = uniqueIp();
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE + 3; i++) await call("GET", "/admin/accounts", { token: "junk", ip: attacker });
    const locked = await call("GET", "/admin/accounts?limit=1", { ip: attacker });
    expect(locked.status).toBe(429);
    expect(locked.headers.get("retry-after")).toBe("10");
    now += 10_000;
    expect((await call("GET", "/admin/accounts?limit=1", { ip: attacker })).status).toBe(200);
  });

  it("does not count a CORS preflight: OPTIONS answers 204 with no CORS grant, any number of times", async () => {
    const now = privateMinute();
    const call = adminCaller({ now: () => now });
    const ip = uniqueIp();
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE * 2; i++) {
      const preflight = await call("OPTIONS", "/admin/accounts", {
        token: null,
        ip,
        headers: { origin: "https://elsewhere.example", "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
      expect(preflight.headers.get("access-control-allow-headers")).toBeNull();
    }
    expect((await call("GET", "/admin/accounts?limit=1", { ip })).status).toBe(200);
  });

  it("does not count a forgotten TOTP header, but does count a wrong code", async () => {
    const secret = generateSecretBase32();
    const now = privateMinute();
    const call = adminCaller({ now: () => now, totpSecret: secret });
    const ip = uniqueIp();
    const sid = uniqueSid();
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE * 2; i++) {
      const forgot = await call("POST", `/admin/accounts/${sid}/trip`, { ip });
      expect(forgot.status).toBe(403);
      expect(await forgot.json()).toMatchObject({ error: "totp-required" });
    }
    const code = await totpCodeAt(secret, now);
    const wrong = code === "000000" ? "111111" : "000000";
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE; i++) expect((await call("POST", `/admin/accounts/${sid}/trip`, { ip, totp: wrong })).status).toBe(403);
    expect((await call("POST", `/admin/accounts/${sid}/trip`, { ip, totp: code })).status).toBe(429);
    expect(await breakerState(sid)).toBe("closed");
  });

  it("counts an IPv6 client by its /64, so rotating the last bits of the address gains nothing", async () => {
    const now = privateMinute();
    const call = adminCaller({ now: () => now });
    const prefix = `2001:db8:${Math.floor(Math.random() * 0xffff).toString(16)}:1`;
    for (let i = 0; i < ADMIN_FAILURES_PER_MINUTE; i++) await call("GET", "/admin/accounts", { token: "junk", ip: `${prefix}::${i + 1}` });
    expect((await call("GET", "/admin/accounts", { ip: `${prefix}:ffff::9` })).status).toBe(429);
    expect((await call("GET", "/admin/accounts?limit=1", { ip: "2001:db8:ffff:2::1" })).status).toBe(200);
  });

  it("normalises client addresses", () => {
    const h = (ip?: string) => new Headers(ip === undefined ? {} : { "cf-connecting-ip": ip });
    expect(clientAddress(h("203.0.113.7"))).toBe("203.0.113.7");
    expect(clientAddress(h("2001:DB8:0:1:aaaa::1"))).toBe("2001:db8:0:1::/64");
    expect(clientAddress(h("2001:db8::1"))).toBe("2001:db8:0:0::/64");
    expect(clientAddress(h("::1"))).toBe("0:0:0:0::/64");
    expect(clientAddress(h())).toBe("unknown");
    expect(clientAddress(h("not an address"))).toBe("unknown");
  });
});
