// GuardDirectory: subaccount tokens learnt from Twilio's account list (GET /Accounts.json, paged), at
// most one listing a minute, so forged AccountSids cost no per-SID lookup and leave no row behind, and
// a real new subaccount is found by the next listing.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { LISTING_MIN_INTERVAL_MS, type GuardDirectory } from "../../src/accounts/directory.ts";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { mockOutbound, twilioWorld, type FakeTwilio } from "../support/origin.ts";
import { PARENT_SID, inboundSms, signedForm, uniqueSid, type Params } from "../support/twilio.ts";

const WORKER = "https://guard.example.com";

let outbound: ReturnType<typeof mockOutbound>;
let twilio: FakeTwilio;
function setup(): void {
  ({ twilio, outbound } = twilioWorld({ alerts: false }));
}
afterEach(() => {
  outbound?.restore();
  vi.restoreAllMocks();
});

const directory = () => env.DIRECTORY.getByName("directory") as DurableObjectStub<GuardDirectory>;

/** As if the last listing was attempted a minute ago: the next unknown SID may list again. */
async function aMinuteLater(): Promise<void> {
  await runInDurableObject(directory(), (_i, state) => {
    state.storage.sql.exec("UPDATE listing SET attempted_at = attempted_at - ?", LISTING_MIN_INTERVAL_MS);
  });
}

/** Each request through a fresh app (its own isolate token cache), so only the directory decides. */
async function send(params: Params, token: string): Promise<number> {
  const ctx = createExecutionContext();
  const response = await createApp().fetch(await signedForm(`${WORKER}/webhooks/sms`, params, { token }), env as GuardEnv, ctx);
  await waitOnExecutionContext(ctx);
  return response.status;
}

function subaccount(status = "active", owner = PARENT_SID): { sid: string; token: string } {
  const sid = uniqueSid();
  const token = `token-of-${sid}`;
  twilio.subaccounts.set(sid, { token, status, owner });
  return { sid, token };
}

const listings = () => outbound.calls.filter((c) => c.method === "GET" && new URL(c.url).pathname === "/2010-04-01/Accounts.json");
const perSidLookups = () => outbound.calls.filter((c) => c.method === "GET" && /\/Accounts\/AC[0-9a-f]{32}\.json$/.test(c.url));

describe("GuardDirectory: the account listing", () => {
  it("learns every subaccount, token and friendly name from one paged listing", async () => {
    setup();
    twilio.setListPageSize(2);
    const subs = Array.from({ length: 5 }, () => subaccount());
    await aMinuteLater();
    for (const { sid, token } of subs) expect(await send(inboundSms(sid), token)).toBe(200);
    // Six accounts (the parent and five subaccounts) in pages of two: one listing of three pages.
    expect(listings().map((c) => new URL(c.url).searchParams.get("Page") ?? "0")).toEqual(["0", "1", "2"]);
    expect(new URL(listings()[0]!.url).searchParams.get("PageSize")).toBe("1000");
    expect(perSidLookups()).toHaveLength(0);
    const names = await directory().subaccountNames();
    for (const { sid } of subs) expect(names).toContainEqual({ sid, friendlyName: `name of ${sid}`, status: "active" });
    expect(names.some((n) => n.sid === PARENT_SID)).toBe(false);
  });

  it("gives the console's listing the friendly names it learnt", async () => {
    setup();
    const { sid, token } = subaccount();
    await aMinuteLater();
    expect(await send(inboundSms(sid), token)).toBe(200);
    const names = await runInDurableObject(directory(), (_i, state) =>
      state.storage.sql.exec<{ friendly_name: string | null }>("SELECT friendly_name FROM account_summary WHERE sid = ?", sid).toArray(),
    );
    expect(names).toEqual([{ friendly_name: `name of ${sid}` }]);
  });

  it("lets a flood of forged AccountSids cost at most one listing a minute, and store nothing", async () => {
    setup();
    await aMinuteLater();
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) statuses.push(await send(inboundSms(uniqueSid()), "junk-token"));
    expect(statuses.every((s) => s === 403)).toBe(true);
    expect(listings()).toHaveLength(1);
    expect(perSidLookups()).toHaveLength(0);
    const rows = await runInDurableObject(directory(), (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM subaccounts").one().n);
    expect(rows).toBe(twilio.subaccounts.size);
  });

  it("finds a real new subaccount at the next listing, within a minute, even after a flood", async () => {
    setup();
    await aMinuteLater();
    for (let i = 0; i < 50; i++) await send(inboundSms(uniqueSid()), "junk-token");
    // Created just after the listing (without the fake's relisting shortcut: see support/origin.ts).
    const fresh = { sid: uniqueSid(), token: "fresh-token" };
    Map.prototype.set.call(twilio.subaccounts, fresh.sid, { token: fresh.token, status: "active", owner: PARENT_SID });
    // Created just after the listing: refused until the listing may run again…
    expect(await send(inboundSms(fresh.sid), fresh.token)).toBe(403);
    await aMinuteLater();
    // …a minute later its first webhook lists again and is accepted, never a 503.
    expect(await send(inboundSms(fresh.sid), fresh.token)).toBe(200);
  });

  it("shares one listing among a burst of a new subaccount's first webhooks, refusing none", async () => {
    setup();
    const { sid, token } = subaccount();
    await aMinuteLater();
    const statuses = await Promise.all(Array.from({ length: 30 }, () => send(inboundSms(sid), token)));
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(listings()).toHaveLength(1);
  });

  it("refuses a SID owned by another parent, and a closed subaccount", async () => {
    setup();
    const foreign = subaccount("active", uniqueSid());
    const closed = subaccount("closed");
    await aMinuteLater();
    expect(await send(inboundSms(foreign.sid), foreign.token)).toBe(403);
    expect(await send(inboundSms(closed.sid), closed.token)).toBe(403);
  });

  it("answers 503 (not 403) while Twilio cannot be listed and nothing is known", async () => {
    setup();
    await runInDurableObject(directory(), (_i, state) => {
      state.storage.sql.exec("DELETE FROM subaccounts");
      state.storage.sql.exec("DELETE FROM listing");
    });
    twilio.failNext("list-accounts", "network");
    const { sid, token } = subaccount();
    expect(await send(inboundSms(sid), token)).toBe(503);
    await aMinuteLater();
    expect(await send(inboundSms(sid), token)).toBe(200);
  });
});
