// GuardDirectory: subaccount tokens learnt from Twilio's account list (GET /Accounts.json, paged), at
// most one listing a minute, so forged AccountSids cost no per-SID lookup and leave no row behind, and
// a real new subaccount is found by the next listing.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DIRECTORY_SCHEMA, LISTING_MIN_INTERVAL_MS, MAX_SINGLE_LOOKUPS_PER_MINUTE, type GuardDirectory } from "../../src/accounts/directory.ts";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { MAX_ACCOUNT_LIST_PAGES } from "../../src/twilio/rest.ts";
import { ORIGIN, TWILIO_API, fakeTwilio, mockOutbound, twiml, twilioWorld, type FakeTwilio } from "../support/origin.ts";
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

/** Subaccounts added to the fake without letting the directory relist (the fake's shortcut): `n` of them. */
function quietSubaccounts(n: number): Array<{ sid: string; token: string }> {
  return Array.from({ length: n }, () => {
    const sid = uniqueSid();
    const token = `token-of-${sid}`;
    Map.prototype.set.call(twilio.subaccounts, sid, { token, status: "active", owner: PARENT_SID });
    return { sid, token };
  });
}

const knownRows = () =>
  runInDurableObject(directory(), (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM subaccounts").one().n);

/** A fresh minute's budget of single lookups (earlier tests of this file looked SIDs up in the same directory). */
async function aFreshLookupBudget(): Promise<void> {
  await runInDurableObject(directory(), (_i, state) => void state.storage.sql.exec("UPDATE listing SET lookup_count = 0"));
}

/** A parent of more accounts than one listing walks: pages of 2, so MAX_ACCOUNT_LIST_PAGES pages end before the last subaccounts. */
function pastTheBound(): { first: { sid: string; token: string }; last: { sid: string; token: string } } {
  twilio.setListPageSize(2);
  // The parent and 2 × MAX_ACCOUNT_LIST_PAGES + 3 subaccounts: two pages past the bound.
  const subs = quietSubaccounts(2 * MAX_ACCOUNT_LIST_PAGES + 3);
  return { first: subs[0]!, last: subs.at(-1)! };
}

describe("GuardDirectory: a listing merged page by page", () => {
  it("verifies a subaccount on the last page of a parent with more accounts than the listing's bound", async () => {
    setup();
    const { first, last } = pastTheBound();
    await aMinuteLater();
    expect(await send(inboundSms(last.sid), last.token)).toBe(200);
    // One listing, stopped at its bound; the SID it did not reach is looked up alone, once.
    expect(listings()).toHaveLength(MAX_ACCOUNT_LIST_PAGES);
    expect(perSidLookups().map((c) => new URL(c.url).pathname)).toEqual([`/2010-04-01/Accounts/${last.sid}.json`]);
    // The pages it reached are known: no further call for them.
    expect(await send(inboundSms(first.sid), first.token)).toBe(200);
    expect(await send(inboundSms(last.sid), last.token)).toBe(200);
    expect(listings()).toHaveLength(MAX_ACCOUNT_LIST_PAGES);
    expect(perSidLookups()).toHaveLength(1);
  });

  it("keeps the accounts an incomplete listing did not reach", async () => {
    setup();
    const early = subaccount();
    await aMinuteLater();
    expect(await send(inboundSms(early.sid), early.token)).toBe(200);
    // The account moves past the bound (as if Twilio listed it later now): the next listing stops before it.
    Map.prototype.delete.call(twilio.subaccounts, early.sid);
    pastTheBound();
    Map.prototype.set.call(twilio.subaccounts, early.sid, { token: early.token, status: "active", owner: PARENT_SID });
    await aMinuteLater();
    const fresh = subaccount();
    expect(await send(inboundSms(fresh.sid), fresh.token)).toBe(200);
    expect(listings().length).toBe(1 + MAX_ACCOUNT_LIST_PAGES);
    // Not forgotten, and no call to learn it again.
    const lookups = perSidLookups().length;
    expect(await send(inboundSms(early.sid), early.token)).toBe(200);
    expect(perSidLookups()).toHaveLength(lookups);
    expect((await directory().subaccountNames()).some((n) => n.sid === early.sid)).toBe(true);
  });

  it("drops a removed subaccount, and refuses a closed one, once a complete listing says so", async () => {
    setup();
    const removed = subaccount();
    const closing = subaccount();
    await aMinuteLater();
    expect(await send(inboundSms(removed.sid), removed.token)).toBe(200);
    expect(await send(inboundSms(closing.sid), closing.token)).toBe(200);
    Map.prototype.delete.call(twilio.subaccounts, removed.sid);
    twilio.subaccounts.get(closing.sid)!.status = "closed";
    await aMinuteLater();
    // Any unknown SID makes the directory list again; the listing is complete (one page).
    expect(await send(inboundSms(uniqueSid()), "junk-token")).toBe(403);
    expect(await send(inboundSms(removed.sid), removed.token)).toBe(403);
    expect(await send(inboundSms(closing.sid), closing.token)).toBe(403);
    const names = await directory().subaccountNames();
    expect(names.some((n) => n.sid === removed.sid)).toBe(false);
    expect(names).toContainEqual({ sid: closing.sid, friendlyName: `name of ${closing.sid}`, status: "closed" });
    expect(await knownRows()).toBe(twilio.subaccounts.size);
  });

  it("refreshes a rotated token past the bound when asked, and forgets the subaccount once Twilio no longer has it", async () => {
    setup();
    const { last } = pastTheBound();
    await aMinuteLater();
    await aFreshLookupBudget();
    expect(await send(inboundSms(last.sid), last.token)).toBe(200);
    // Rotated at Twilio: a signature failure asks the directory to refresh (the listing does not reach it).
    twilio.subaccounts.get(last.sid)!.token = "rotated-token";
    await aMinuteLater();
    expect(await directory().subaccountToken(last.sid, { refresh: true })).toEqual({ status: "ok", token: "rotated-token" });
    Map.prototype.delete.call(twilio.subaccounts, last.sid);
    await aMinuteLater();
    expect(await directory().subaccountToken(last.sid, { refresh: true })).toEqual({ status: "unknown" });
    expect((await directory().subaccountNames()).some((n) => n.sid === last.sid)).toBe(false);
    expect(listings()).toHaveLength(3 * MAX_ACCOUNT_LIST_PAGES);
    expect(perSidLookups()).toHaveLength(3);
  });

  it("lets forged AccountSids cost at most one listing and MAX_SINGLE_LOOKUPS_PER_MINUTE lookups a minute when the listing is incomplete, storing nothing", async () => {
    setup();
    // One minute of the clock: the lookups' budget is per minute.
    const now = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(now);
    pastTheBound();
    await aMinuteLater();
    await aFreshLookupBudget();
    const forged = Array.from({ length: 3 * MAX_SINGLE_LOOKUPS_PER_MINUTE }, () => uniqueSid());
    const statuses: number[] = [];
    for (const sid of forged) statuses.push(await send(inboundSms(sid), "junk-token"));
    expect(statuses.every((s) => s === 403)).toBe(true);
    expect(listings()).toHaveLength(MAX_ACCOUNT_LIST_PAGES);
    expect(perSidLookups()).toHaveLength(MAX_SINGLE_LOOKUPS_PER_MINUTE);
    const stored = await runInDurableObject(directory(), (_i, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM subaccounts WHERE sid IN (SELECT value FROM json_each(?))", JSON.stringify(forged)).one().n,
    );
    expect(stored).toBe(0);
  });

  it("answers a new subaccount's webhook as soon as the page holding it is written, while the listing goes on", async () => {
    const twilioFake = fakeTwilio(PARENT_SID);
    twilio = twilioFake;
    const held = Promise.withResolvers<void>();
    // The listing's second page waits until the test lets it go.
    outbound = mockOutbound([
      [ORIGIN, () => twiml()],
      [TWILIO_API, async (req) => {
        if (new URL(req.url).searchParams.get("Page") === "1") await held.promise;
        return twilioFake.responder(req);
      }],
    ]);
    twilio.setListPageSize(2);
    const [onFirstPage] = quietSubaccounts(3);
    await aMinuteLater();
    expect(await send(inboundSms(onFirstPage!.sid), onFirstPage!.token)).toBe(200);
    expect(listings()).toHaveLength(2);
    held.resolve();
  });
});

describe("GuardDirectory: schema 3", () => {
  const other = () => env.DIRECTORY.getByName("schema-test") as DurableObjectStub<GuardDirectory>;

  it("adds the listing's generation in place, keeping the subaccounts a schema-2 listing learnt", async () => {
    const sid = uniqueSid();
    const found = await runInDurableObject(other(), (_i, state) => {
      const sql = state.storage.sql;
      // Schema 2 as it was: the tables without the new columns, version 2 in meta.
      sql.exec("DROP TABLE IF EXISTS subaccounts; DROP TABLE IF EXISTS listing");
      sql.exec("CREATE TABLE subaccounts (sid TEXT PRIMARY KEY, token TEXT NOT NULL, friendly_name TEXT NOT NULL, status TEXT NOT NULL) WITHOUT ROWID");
      sql.exec("CREATE TABLE listing (id INTEGER PRIMARY KEY CHECK (id = 1), listed_at INTEGER NOT NULL, attempted_at INTEGER NOT NULL)");
      sql.exec("INSERT INTO subaccounts VALUES (?, 'tok', 'name', 'active')", sid);
      sql.exec("INSERT INTO listing VALUES (1, ?, ?)", Date.now(), Date.now());
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', '2')");
      return state.storage.transactionSync(() => DIRECTORY_SCHEMA.migrate(sql));
    });
    expect(found).toBe(2);
    const after = await runInDurableObject(other(), (_i, state) => ({
      row: state.storage.sql.exec("SELECT sid, token, status, listed_in FROM subaccounts").toArray(),
      listing: state.storage.sql.exec("SELECT generation, complete, lookup_count FROM listing").toArray(),
      version: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").one().value,
    }));
    expect(after).toEqual({
      row: [{ sid, token: "tok", status: "active", listed_in: 0 }],
      listing: [{ generation: 0, complete: 1, lookup_count: 0 }],
      version: String(DIRECTORY_SCHEMA.version),
    });
    // The schema-2 row still answers.
    expect(await other().subaccountToken(sid)).toEqual({ status: "ok", token: "tok" });
  });
});
