// GuardDirectory: the one Durable Object every isolate shares (named "directory"). It knows
//   - the parent's subaccounts, their auth tokens and friendly names, learnt all at once from Twilio's
//     account list (GET /Accounts.json, paged), refreshed at most once a LISTING_MIN_INTERVAL_MS when a
//     SID it does not know appears (or a signature fails, for a rotated token): an unknown SID costs no
//     per-SID lookup, forged AccountSids cost no REST call and leave no row, and a real new subaccount
//     is found by the first listing after it was created, within a minute;
//   - which accounts the guard has seen (each AccountGuard registers itself once), for the admin listing.
// It is called only on an isolate's token-cache miss and once per account, never per event.
import { getConfig } from "../config/config.ts";
import type { GuardEnv } from "../config/env.ts";
import { GuardObject, versionedSchema } from "../durable/base.ts";
import type { TwilioAccount } from "../twilio/rest.ts";
import { twilioClientFor } from "../twilio/client.ts";
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
 * the release), and the console's light summaries (summary.ts).
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
]);

export class GuardDirectory extends GuardObject {
  /** The listing on its way: concurrent misses share one. */
  #listing: Promise<boolean> | null = null;

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
      const { listedAt, attemptedAt } = this.#listingTimes();
      const stale = now - listedAt >= LISTING_MAX_AGE_MS;
      // Refresh when the SID is not known, when a signature failed (a rotated token), or when the
      // listing is old; never more often than once a LISTING_MIN_INTERVAL_MS, whatever the reason.
      const wanted = row === undefined || options.refresh === true || stale;
      if (this.#listing !== null || (wanted && now - attemptedAt >= LISTING_MIN_INTERVAL_MS)) {
        // A listing on its way is awaited: a burst of a new subaccount's first webhooks shares it.
        const listed = await this.#refresh(now);
        row = this.#row(sid);
        if (!listed && row === undefined) return { status: "unavailable" };
      } else if (row === undefined && listedAt === 0) {
        // Never listed successfully, and the last attempt failed a moment ago: nothing to judge by.
        return { status: "unavailable" };
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

  #row(sid: string): { token: string; status: string } | undefined {
    return this.sql.exec<{ token: string; status: string }>("SELECT token, status FROM subaccounts WHERE sid = ?", sid).toArray()[0];
  }

  #listingTimes(): { listedAt: number; attemptedAt: number } {
    const row = this.sql.exec<{ listed_at: number; attempted_at: number }>("SELECT listed_at, attempted_at FROM listing WHERE id = 1").toArray()[0];
    return { listedAt: row?.listed_at ?? 0, attemptedAt: row?.attempted_at ?? 0 };
  }

  /** Lists the parent's accounts at Twilio and replaces the table with them; false when Twilio could not be asked. */
  #refresh(now: number): Promise<boolean> {
    if (this.#listing) return this.#listing;
    const { listedAt } = this.#listingTimes();
    // The attempt is recorded first: a failing Twilio is asked once a minute too.
    this.sql.exec("INSERT OR REPLACE INTO listing (id, listed_at, attempted_at) VALUES (1, ?, ?)", listedAt, now);
    const listing = (async () => {
      const config = getConfig(this.env);
      const client = twilioClientFor(config);
      let accounts: TwilioAccount[];
      try {
        accounts = await client.listAccounts();
      } catch (error) {
        this.logger.error("account-listing-failed", error);
        this.sql.exec("UPDATE listing SET attempted_at = ? WHERE id = 1", now - LISTING_MIN_INTERVAL_MS + LISTING_RETRY_AFTER_FAILURE_MS);
        return false;
      }
      const ours = accounts.filter((a) => a.sid !== config.accountSid && a.ownerAccountSid === config.accountSid);
      this.ctx.storage.transactionSync(() => {
        this.sql.exec("DELETE FROM subaccounts");
        for (const a of ours) {
          this.sql.exec("INSERT OR REPLACE INTO subaccounts (sid, token, friendly_name, status) VALUES (?, ?, ?, ?)", a.sid, a.authToken, a.friendlyName, a.status);
        }
        // The console's listing shows (and searches) the names Twilio has: learnt here, with the tokens.
        putFriendlyNames(this.sql, ours.map((a) => ({ sid: a.sid, friendlyName: a.friendlyName })));
        this.sql.exec("UPDATE listing SET listed_at = ? WHERE id = 1", now);
      });
      return true;
    })();
    this.#listing = listing;
    void listing.finally(() => {
      if (this.#listing === listing) this.#listing = null;
    });
    return listing;
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
