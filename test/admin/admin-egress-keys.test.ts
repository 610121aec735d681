// The admin API's egress keys (CONTRACT.md: POST/GET /admin/accounts/:sid/egress-keys, DELETE …/:id):
// a key is shown once, only its hash is kept, listing never shows it, revoking takes effect at the gate.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSecretBase32 } from "../../src/admin/totp.ts";
import { adminCaller, totpCodeAt } from "../support/admin.ts";
import { dropEgressTables } from "../support/guard.ts";
import { TWILIO_API, mockOutbound } from "../support/origin.ts";
import { basicAuth, uniqueSid } from "../support/twilio.ts";

/** The gate on, so a revoked key can be seen refused there. */
const adminApp = (options: { totpSecret?: string } = {}) => adminCaller({ totpSecret: options.totpSecret ?? null, vars: { EGRESS_MODE: "enforce" } });

let outbound: ReturnType<typeof mockOutbound>;
beforeEach(() => {
  outbound = mockOutbound([[TWILIO_API, () => new Response(JSON.stringify({ sid: uniqueSid("SM"), status: "queued" }), { status: 201 })]]);
});
afterEach(() => outbound.restore());

type Issued = { id: string; key: string; account: string };

describe("egress keys in the admin API", () => {
  it("issues a key once, keeps only its hash, and lists it without the key", async () => {
    const call = adminApp();
    const sid = uniqueSid();
    const response = await call("POST", `/admin/accounts/${sid}/egress-keys`);
    expect(response.status).toBe(201);
    const issued = (await response.json()) as Issued;
    expect(issued.key).toMatch(/^egk[0-9a-f]{56}$/);
    expect(issued.key.slice(3, 19)).toBe(issued.id);
    const stored = await runInDurableObject(env.ACCOUNT_GUARD.getByName(sid), (_i, state) => state.storage.sql.exec<{ hash: string }>("SELECT hash FROM egress_keys").toArray());
    expect(stored).toHaveLength(1);
    expect(stored[0]!.hash).not.toContain(issued.key);
    const listing = await (await call("GET", `/admin/accounts/${sid}/egress-keys`)).text();
    expect(listing).not.toContain(issued.key);
    expect(listing).not.toContain(stored[0]!.hash);
    expect(JSON.parse(listing)).toEqual({ keys: [{ id: issued.id, createdAt: expect.any(Number), lastUsedAt: null, revokedAt: null }] });
  });

  it("records when a key was last used, and a revoked key no longer passes the gate", async () => {
    const call = adminApp();
    const sid = uniqueSid();
    const issued = (await (await call("POST", `/admin/accounts/${sid}/egress-keys`)).json()) as Issued;
    const send = () => call("POST", `/twilio/api.twilio.com/2010-04-01/Accounts/${sid}/Messages.json`, {
      token: null,
      headers: { authorization: basicAuth(sid, issued.key), "content-type": "application/x-www-form-urlencoded" },
      body: "To=%2B14155552671&Body=hi",
    });
    expect((await send()).status).toBe(201);
    const keys = (await (await call("GET", `/admin/accounts/${sid}/egress-keys`)).json()) as { keys: Array<{ lastUsedAt: number | null }> };
    expect(keys.keys[0]!.lastUsedAt).toEqual(expect.any(Number));
    expect((await call("DELETE", `/admin/accounts/${sid}/egress-keys/${issued.id}`)).status).toBe(200);
    expect((await send()).status).toBe(401);
    expect((await call("DELETE", `/admin/accounts/${sid}/egress-keys/${issued.id}`)).status).toBe(404);
  });

  it("audits issue and revoke with the key's id, never the key", async () => {
    const call = adminApp();
    const sid = uniqueSid();
    const issued = (await (await call("POST", `/admin/accounts/${sid}/egress-keys`)).json()) as Issued;
    await call("DELETE", `/admin/accounts/${sid}/egress-keys/${issued.id}`);
    const detail = await (await call("GET", `/admin/accounts/${sid}`)).text();
    expect(detail).not.toContain(issued.key);
    const audit = (JSON.parse(detail) as { audit: Array<{ action: string; after: unknown }> }).audit;
    expect(audit.map((a) => a.action)).toEqual(["egress-key-revoke", "egress-key-issue"]);
    expect(audit[1]!.after).toEqual({ id: issued.id });
  });

  it("needs a fresh TOTP code to issue or revoke when ADMIN_TOTP_SECRET is set", async () => {
    const secret = generateSecretBase32();
    const call = adminApp({ totpSecret: secret });
    const sid = uniqueSid();
    expect((await call("POST", `/admin/accounts/${sid}/egress-keys`)).status).toBe(403);
    const code = await totpCodeAt(secret, Date.now());
    expect((await call("POST", `/admin/accounts/${sid}/egress-keys`, { totp: code })).status).toBe(201);
  });

  it("shows an account that never used the gate (no egress tables) as having no keys and no sends by country, and creates none", async () => {
    const call = adminApp();
    const sid = uniqueSid();
    expect((await call("PUT", `/admin/accounts/${sid}/policy`, { body: { limits: [{ window: "day", usd: 50 }] } })).status).toBe(200);
    await dropEgressTables(sid);
    const keys = await call("GET", `/admin/accounts/${sid}/egress-keys`);
    expect(keys.status).toBe(200);
    expect(await keys.json()).toEqual({ keys: [] });
    const usage = await call("GET", `/admin/accounts/${sid}/usage?by=day`);
    expect(usage.status).toBe(200);
    expect(((await usage.json()) as { countries: unknown[] }).countries).toEqual([]);
    expect((await call("GET", `/admin/accounts/${sid}`)).status).toBe(200);
    expect((await call("DELETE", `/admin/accounts/${sid}/egress-keys/0123456789abcdef`)).status).toBe(404);
    const tables = await runInDurableObject(env.ACCOUNT_GUARD.getByName(sid), (_i, state) => ({
      written: state.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'meta'").toArray().length,
      egress: state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name LIKE 'egress%'").toArray(),
    }));
    expect(tables).toEqual({ written: 1, egress: [] });
    // Its first key creates them.
    expect((await call("POST", `/admin/accounts/${sid}/egress-keys`)).status).toBe(201);
    expect(((await (await call("GET", `/admin/accounts/${sid}/egress-keys`)).json()) as { keys: unknown[] }).keys).toHaveLength(1);
  });

  it("refuses bad ids and methods", async () => {
    const call = adminApp();
    const sid = uniqueSid();
    expect((await call("DELETE", `/admin/accounts/${sid}/egress-keys/not-an-id`)).status).toBe(400);
    expect((await call("PUT", `/admin/accounts/${sid}/egress-keys`)).status).toBe(405);
    expect((await call("POST", "/admin/accounts/ACnope/egress-keys")).status).toBe(400);
  });
});
