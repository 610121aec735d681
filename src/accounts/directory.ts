// GuardDirectory: the one Durable Object every isolate shares (named "directory"). It knows
//   - the parent's subaccounts, their auth tokens and friendly names, learnt from Twilio's account list
//     (GET /Accounts.json, paged), refreshed at most once a LISTING_MIN_INTERVAL_MS when a SID it does
//     not know appears (or a signature fails, for a rotated token): an unknown SID costs no per-SID
//     lookup, forged AccountSids cost no REST call and leave no row, and a real new subaccount is found
//     by the first listing after it was created, within a minute. The listing is written page by page
//     (one transaction each: memory and a transaction stay one page, whatever the parent's size), merged
//     into what is known; only a COMPLETE listing removes the subaccounts it did not contain. A listing
//     that stops at its bound (MAX_ACCOUNT_LIST_PAGES) forgets nothing, and an unknown SID then gets one
//     GET /Accounts/{Sid}.json, at most MAX_SINGLE_LOOKUPS_PER_MINUTE a minute (accounts past the bound);
//   - which accounts the guard has seen (each AccountGuard registers itself once), for the admin listing.
// It is called only on an isolate's token-cache miss and once per account, never per event.
import { getConfig } from "../config/config.ts";
import type { GuardEnv } from "../config/env.ts";
import { GuardObject, versionedSchema } from "../durable/base.ts";
import type { TwilioAccount } from "../twilio/rest.ts";
import { ACCOUNT_SID } from "../twilio/sids.ts";
import { twilioClientFor } from "../twilio/client.ts";
import { MAX_ACCOUNT_LIST_PAGES } from "../twilio/rest.ts";
import { metrics } from "../observability/metrics.ts";
import { ensureSummaryTables, overviewOf, putFriendlyNames, putSummary, querySummaries, type AccountSummary, type Overview, type SummaryQuery } from "./summary.ts";

/**
 * The account list is fetched from Twilio at most this often: bounds the REST traffic forged SIDs can
 * cause to one listing a minute, and is how late a new subaccount's first webhooks may be refused.
 */
export const LISTING_MIN_INTERVAL_MS = 60_000;
/**
 * After a failed listing (Twilio down or erroring), the next may run this soon: a new subaccount is
 * not kept waiting a minute for an outage of a second, and an outage with a flood of forged SIDs
 * still costs at most one call a second.
 */
export const LISTING_RETRY_AFTER_FAILURE_MS = 1_000;
/** A listing older than this is refreshed on the next lookup of a known SID anyway (bounds a revoked token's life). */
export const LISTING_MAX_AGE_MS = 60 * 60_000;
/**
 * Only when the last listing stopped at its bound (a parent of more than 100,000 accounts): an unknown
 * SID may be looked up alone (GET /Accounts/{Sid}.json), this many a minute, so a subaccount past the
 * bound is verified while a flood of forged SIDs costs at most this many calls a minute. Nothing is
 * stored for a SID Twilio does not know.
 */
export const MAX_SINGLE_LOOKUPS_PER_MINUTE = 10;
/** Kept for callers that imported the old names; the listing's interval is what they meant. */
export const DIRECTORY_REFRESH_MIN_INTERVAL_MS = LISTING_MIN_INTERVAL_MS;
export const DIRECTORY_TOKEN_MAX_AGE_MS = LISTING_MAX_AGE_MS;

export type TokenLookup = { status: "ok"; token: string } | { status: "unknown" } | { status: "unavailable" };

export interface AccountListing {
  sid: string;
  firstSeenAt: number;
  isParent: boolean;
}

/**
 * The directory's storage. 1: the first release's tables (idempotent, so it adopts a database written
 * before versioning); 2: the subaccount listing replaces the per-SID lookups (`tokens`, with negative
 * rows for forged SIDs, and `lookups`, their per-minute budget: dropped, so no forged SID's row outlives
 * the release), and the console's light summaries (summary.ts); 3: the listing is merged page by page:
 * each subaccount row says which listing (`generation`) saw it last, so a complete listing removes the
 * rows it did not see; whether the last listing was complete; the per-minute budget of single lookups.
 */
export const DIRECTORY_SCHEMA = versionedSchema([
  {
    version: 1,
    up: (sql) =>
      sql.exec(`
        CREATE TABLE IF NOT EXISTS tokens (sid TEXT PRIMARY KEY, token TEXT, fetched_at INTEGER NOT NULL, negative_until INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS lookups (minute INTEGER PRIMARY KEY, count INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS accounts (sid TEXT PRIMARY KEY, first_seen_at INTEGER NOT NULL, is_parent INTEGER NOT NULL);
      `),
  },
  {
    version: 2,
    up: (sql) => {
      sql.exec(`
        DROP TABLE IF EXISTS tokens;
        DROP TABLE IF EXISTS lookups;
        CREATE TABLE IF NOT EXISTS subaccounts (sid TEXT PRIMARY KEY, token TEXT NOT NULL, friendly_name TEXT NOT NULL, status TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS listing (id INTEGER PRIMARY KEY CHECK (id = 1), listed_at INTEGER NOT NULL, attempted_at INTEGER NOT NULL);
      `);
      ensureSummaryTables(sql);
    },
  },
  {
    version: 3,
    up: (sql) =>
      sql.exec(`
        ALTER TABLE subaccounts ADD COLUMN listed_in INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE listing ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE listing ADD COLUMN complete INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE listing ADD COLUMN lookup_minute INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE listing ADD COLUMN lookup_count INTEGER NOT NULL DEFAULT 0;
      `),
  },
]);

type SubaccountRow = { token: string; status: string; listed_in: number };

interface ListingState {
  listedAt: number;
  attemptedAt: number;
  generation: number;
  complete: boolean;
}

export class GuardDirectory extends GuardObject {
  /** The listing on its way: concurrent misses share one. */
  #listing: Promise<boolean> | null = null;
  /** The generation the listing on its way writes its rows with. */
  #walking = 0;
  /** Resolved (and replaced) each time the listing on its way has written a page. */
  #pageWritten = Promise.withResolvers<void>();

  constructor(ctx: DurableObjectState, env: GuardEnv) {
    super(ctx, env, DIRECTORY_SCHEMA);
  }

  /**
   * The subaccount's auth token; `unknown` when the SID is not one of the parent's open subaccounts as
   * the latest listing has them; `unavailable` when Twilio could not be asked and nothing is known. A
   * result, not an exception: errors lose their type crossing the RPC boundary.
   */
  async subaccountToken(sid: string, options: { refresh?: boolean } = {}): Promise<TokenLookup> {
    try {
      const now = Date.now();
      let row = this.#row(sid);
      const { listedAt, attemptedAt } = this.#listingState();
      const stale = now - listedAt >= LISTING_MAX_AGE_MS;
      // Refresh when the SID is not known, when a signature failed (a rotated token), or when the
      // listing is old; never more often than once a LISTING_MIN_INTERVAL_MS, whatever the reason.
      const wanted = row === undefined || options.refresh === true || stale;
      let listedNow = false;
      if (wanted && (this.#listing !== null || now - attemptedAt >= LISTING_MIN_INTERVAL_MS)) {
        // A listing on its way is awaited: a burst of a new subaccount's first webhooks shares it, and
        // each is answered as soon as the page holding its SID is written (a known SID is answered
        // from its row meanwhile: it does not wait for a listing of 100 pages).
        const listed = await this.#awaitListing(sid, this.#refresh(now));
        listedNow = listed;
        row = this.#row(sid);
        if (!listed && row === undefined) return { status: "unavailable" };
      } else if (row === undefined && listedAt === 0) {
        // Never listed successfully, and the last attempt failed a moment ago: nothing to judge by.
        return { status: "unavailable" };
      }
      const last = this.#listingState();
      // The last listing stopped at its bound: the SID may be one of the accounts it did not reach, or
      // one it did not reach again (a rotated or revoked token, refreshed with the listing it asked for).
      if (!last.complete && (row === undefined || (listedNow && row.listed_in !== last.generation))) {
        const single = await this.#lookUpAlone(sid, now);
        if (single === "unavailable") return { status: "unavailable" };
        row = this.#row(sid);
      }
      if (row === undefined || row.status === "closed") return { status: "unknown" };
      return { status: "ok", token: row.token };
    } finally {
      metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
    }
  }

  /** Friendly names of the parent's subaccounts as last listed (for the console), in SID order. */
  subaccountNames(): Array<{ sid: string; friendlyName: string; status: string }> {
    return this.sql
      .exec<{ sid: string; friendly_name: string; status: string }>("SELECT sid, friendly_name, status FROM subaccounts ORDER BY sid")
      .toArray()
      .map((r) => ({ sid: r.sid, friendlyName: r.friendly_name, status: r.status }));
  }

  #row(sid: string): SubaccountRow | undefined {
    return this.sql.exec<SubaccountRow>("SELECT token, status, listed_in FROM subaccounts WHERE sid = ?", sid).toArray()[0];
  }

  #listingState(): ListingState {
    const row = this.sql
      .exec<{ listed_at: number; attempted_at: number; generation: number; complete: number }>("SELECT listed_at, attempted_at, generation, complete FROM listing WHERE id = 1")
      .toArray()[0];
    return { listedAt: row?.listed_at ?? 0, attemptedAt: row?.attempted_at ?? 0, generation: row?.generation ?? 0, complete: (row?.complete ?? 1) === 1 };
  }

  /**
   * Waits for the listing, or only until a page of it has written the SID's row (the listing goes on):
   * true when the listing succeeded or the row was written by it.
   */
  async #awaitListing(sid: string, listing: Promise<boolean>): Promise<boolean> {
    const generation = this.#walking;
    const done = listing.then((listed) => ({ listed }));
    for (;;) {
      const next = await Promise.race([done, this.#pageWritten.promise.then(() => null)]);
      if (next !== null) return next.listed;
      if (this.#row(sid)?.listed_in === generation) return true;
    }
  }

  /**
   * Lists the parent's accounts at Twilio, page by page, merging each page into the table in its own
   * transaction; a complete listing then removes the rows it did not see. False when Twilio could not
   * be asked (what was written of a failed listing stays: it is what Twilio said, and removes nothing).
   */
  #refresh(now: number): Promise<boolean> {
    if (this.#listing) return this.#listing;
    const generation = this.#listingState().generation + 1;
    // The attempt is recorded first: a failing Twilio is asked once a minute too.
    this.sql.exec(
      "INSERT INTO listing (id, listed_at, attempted_at, generation) VALUES (1, 0, ?, ?) ON CONFLICT (id) DO UPDATE SET attempted_at = excluded.attempted_at, generation = excluded.generation",
      now,
      generation,
    );
    this.#walking = generation;
    const listing = (async () => {
      const config = getConfig(this.env);
      const client = twilioClientFor(config);
      let complete: boolean;
      try {
        ({ complete } = await client.walkAccounts((page) => {
          const ours = page.filter((a) => a.sid !== config.accountSid && a.ownerAccountSid === config.accountSid);
          this.ctx.storage.transactionSync(() => this.#putSubaccounts(ours, generation));
          this.#signalPage();
        }));
      } catch (error) {
        this.logger.error("account-listing-failed", error);
        this.sql.exec("UPDATE listing SET attempted_at = ? WHERE id = 1", now - LISTING_MIN_INTERVAL_MS + LISTING_RETRY_AFTER_FAILURE_MS);
        return false;
      }
      this.ctx.storage.transactionSync(() => {
        // Only a listing that saw every account may conclude that a row it did not see is gone.
        if (complete) this.sql.exec("DELETE FROM subaccounts WHERE listed_in <> ?", generation);
        else this.logger.warn("account-listing-incomplete", { pages: MAX_ACCOUNT_LIST_PAGES });
        this.sql.exec("UPDATE listing SET listed_at = ?, complete = ? WHERE id = 1", now, complete ? 1 : 0);
      });
      return true;
    })();
    this.#listing = listing;
    void listing.finally(() => {
      if (this.#listing === listing) this.#listing = null;
      this.#signalPage();
    });
    return listing;
  }

  #putSubaccounts(accounts: readonly TwilioAccount[], generation: number): void {
    for (const a of accounts) {
      this.sql.exec(
        "INSERT OR REPLACE INTO subaccounts (sid, token, friendly_name, status, listed_in) VALUES (?, ?, ?, ?, ?)",
        a.sid, a.authToken, a.friendlyName, a.status, generation,
      );
    }
    // The console's listing shows (and searches) the names Twilio has: learnt here, with the tokens.
    putFriendlyNames(this.sql, accounts.map((a) => ({ sid: a.sid, friendlyName: a.friendlyName })));
  }

  #signalPage(): void {
    const written = this.#pageWritten;
    this.#pageWritten = Promise.withResolvers<void>();
    written.resolve();
  }

  /**
   * One GET /Accounts/{Sid}.json for a SID an incomplete listing did not reach, within the minute's
   * budget; a subaccount of the parent is stored (as the current listing's), nothing else is, and a row
   * of a SID Twilio no longer has as the parent's is removed.
   */
  async #lookUpAlone(sid: string, now: number): Promise<"done" | "unavailable"> {
    if (!ACCOUNT_SID.test(sid)) return "done";
    const config = getConfig(this.env);
    if (sid === config.accountSid) return "done";
    const minute = Math.floor(now / 60_000);
    const budget = this.sql.exec<{ lookup_minute: number; lookup_count: number }>("SELECT lookup_minute, lookup_count FROM listing WHERE id = 1").toArray()[0];
    const used = budget !== undefined && budget.lookup_minute === minute ? budget.lookup_count : 0;
    if (used >= MAX_SINGLE_LOOKUPS_PER_MINUTE) return "done";
    this.sql.exec("UPDATE listing SET lookup_minute = ?, lookup_count = ? WHERE id = 1", minute, used + 1);
    let account: TwilioAccount | null;
    try {
      account = await twilioClientFor(config).fetchAccount(sid);
    } catch (error) {
      this.logger.error("account-lookup-failed", error);
      return "unavailable";
    }
    this.ctx.storage.transactionSync(() => {
      if (account !== null && account.ownerAccountSid === config.accountSid) this.#putSubaccounts([account], this.#listingState().generation);
      // Twilio does not know it (any more) as the parent's: a row kept from before goes.
      else this.sql.exec("DELETE FROM subaccounts WHERE sid = ?", sid);
    });
    return "done";
  }

  /** Called once by each AccountGuard when it first records anything. Idempotent. */
  register(sid: string, isParent: boolean, atMs: number): void {
    this.sql.exec("INSERT OR IGNORE INTO accounts (sid, first_seen_at, is_parent) VALUES (?, ?, ?)", sid, atMs, isParent ? 1 : 0);
  }

  /** Accounts in SID order, a page at a time (keyset pagination: fast at any depth). */
  listAccounts(options: { after?: string; limit: number }): { accounts: AccountListing[]; next: string | null } {
    const limit = Math.max(1, Math.min(options.limit, 500));
    const rows = this.sql
      .exec<{ sid: string; first_seen_at: number; is_parent: number }>(
        "SELECT sid, first_seen_at, is_parent FROM accounts WHERE sid > ? ORDER BY sid LIMIT ?",
        options.after ?? "",
        limit + 1,
      )
      .toArray();
    const page = rows.slice(0, limit).map((r) => ({ sid: r.sid, firstSeenAt: r.first_seen_at, isParent: r.is_parent === 1 }));
    return { accounts: page, next: rows.length > limit ? page[page.length - 1]!.sid : null };
  }

  // ---------------------------------------------------------------- the light summary (summary.ts)

  /** An AccountGuard's latest figures; a late push never overwrites a newer one. */
  putSummary(summary: AccountSummary): void {
    putSummary(this.sql, summary);
  }

  /** Friendly names from Twilio's subaccount listing, for the listing's display and search. */
  putFriendlyNames(names: Array<{ sid: string; friendlyName: string }>): void {
    this.ctx.storage.transactionSync(() => putFriendlyNames(this.sql, names));
  }

  querySummaries(query: SummaryQuery, nowMs: number, dayStartMs: number) {
    return querySummaries(this.sql, query, nowMs, dayStartMs);
  }

  overview(nowMs: number, dayStartMs: number): Overview {
    return overviewOf(this.sql, nowMs, dayStartMs);
  }

  countAccounts(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM accounts").one().n;
  }
}
