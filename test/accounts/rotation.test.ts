// A subaccount's auth token rotated at Twilio is picked up without a redeploy, at bounded cost.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { REFRESH_MIN_INTERVAL_MS, TokenCache } from "../../src/accounts/token-cache.ts";
import { DIRECTORY_REFRESH_MIN_INTERVAL_MS } from "../../src/accounts/directory.ts";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { ORIGIN, TWILIO_API, fakeTwilio, mockOutbound, twiml } from "../support/origin.ts";
import { PARENT_SID, signedForm, uniqueSid } from "../support/twilio.ts";

let outbound: ReturnType<typeof mockOutbound>;
afterEach(() => outbound?.restore());

describe("subaccount token rotation", () => {
  it("accepts the new token after a rotation, asking Twilio again at most once a minute", async () => {
    const twilio = fakeTwilio(PARENT_SID);
    outbound = mockOutbound([
      [ORIGIN, () => twiml()],
      [TWILIO_API, (req) => twilio.responder(req)],
    ]);
    const sid = uniqueSid();
    twilio.subaccounts.set(sid, { token: "old-token", status: "active", owner: PARENT_SID });
    let now = Date.now();
    const app = createApp({ tokenCache: new TokenCache(() => now) });
    const send = async (token: string) => {
      const ctx = createExecutionContext();
      const request = await signedForm("https://guard.example.com/webhooks/x", [["AccountSid", sid], ["Note", "n"]], { token });
      const response = await app.fetch(request, env as GuardEnv, ctx);
      await waitOnExecutionContext(ctx);
      return response.status;
    };
    // Tokens come from the account list (GuardDirectory): each listing is one GET /Accounts.json.
    const lookups = () => outbound.calls.filter((c) => c.method === "GET" && new URL(c.url).pathname === "/2010-04-01/Accounts.json").length;

    expect(await send("old-token")).toBe(200);
    twilio.subaccounts.get(sid)!.token = "new-token";
    // Within the refresh interval a failing signature does not reach Twilio again: forged traffic
    // against a real subaccount cannot make the guard hammer the API.
    expect(await send("new-token")).toBe(403);
    expect(await send("new-token")).toBe(403);
    expect(lookups()).toBe(1);

    now += Math.max(REFRESH_MIN_INTERVAL_MS, DIRECTORY_REFRESH_MIN_INTERVAL_MS);
    await runInDurableObject(env.DIRECTORY.getByName("directory"), (_instance, state) => {
      state.storage.sql.exec("UPDATE listing SET attempted_at = attempted_at - ?", DIRECTORY_REFRESH_MIN_INTERVAL_MS);
    });
    expect(await send("new-token")).toBe(200);
    expect(lookups()).toBe(2);
    expect(await send("old-token")).toBe(403);
  });
});
