// GuardDirectory: the one Durable Object every isolate shares (named "directory"). It knows
//   - the subaccounts' auth tokens (looked up at Twilio with the parent's credentials, cached, with
//     unknown SIDs negative-cached and Twilio lookups capped per minute, so forged AccountSids cannot
//     make the guard hammer Twilio's API);
//   - which accounts the guard has seen (each AccountGuard registers itself once), for the admin listing.
// It is called only on an isolate's token-cache miss and once per account, never per event.
import { getConfig } from "../config/config.ts";
import type { GuardEnv } from "../config/env.ts";
import { GuardObject, versionedSchema } from "../durable/base.ts";
import { createTwilioClient, TwilioRestError } from "../twilio/rest.ts";
import { metrics, restCallObserver } from "../admin/metrics.ts";

/** A cached subaccount token is re-fetched from Twilio at most this often when a signature fails (rotation). */
export const DIRECTORY_REFRESH_MIN_INTERVAL_MS = 60_000;
/** A cached token older than this is re-fetched on the next cache miss anyway (bounds a revoked token's life). */
export const DIRECTORY_TOKEN_MAX_AGE_MS = 60 * 60_000;
/** An SID Twilio says is not ours stays refused this long without asking Twilio again. */
export const DIRECTORY_NEGATIVE_TTL_MS = 10 * 60_000;
/**
 * At most this many account lookups reach Twilio per minute, all SIDs together: random forged SIDs
 * each miss every cache, so only a global cap bounds the REST traffic they cause. Real subaccounts are
 * looked up once and then cached, so this is ample for legitimate first sightings.
 */
export const DIRECTORY_LOOKUPS_PER_MINUTE = 30;

export type TokenLookup = { status: "ok"; token: string } | { status: "unknown" } | { status: "unavailable" };

export interface AccountListing {
  sid: string;
  firstSeenAt: number;
  isParent: boolean;
}

/**
 * The directory's storage. 1: the first release's tables (idempotent, so it adopts a database written
 * before versioning); 2: an index of the negative rows by expiry, so expired ones are pruned cheaply.
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
  { version: 2, up: (sql) => sql.exec("CREATE INDEX IF NOT EXISTS tokens_negative ON tokens (negative_until) WHERE token IS NULL") },
]);

export class GuardDirectory extends GuardObject {
  readonly #pending = new Map<string, Promise<TokenLookup>>();

  constructor(ctx: DurableObjectState, env: GuardEnv) {
    super(ctx, env, DIRECTORY_SCHEMA);
  }

  /**
   * The subaccount's auth token; `unknown` when Twilio says the SID is not one of the parent's
   * subaccounts (or the lookup cap is reached); `unavailable` when Twilio could not be asked. A result,
   * not an exception: errors lose their type crossing the RPC boundary.
   */
  async subaccountToken(sid: string, options: { refresh?: boolean } = {}): Promise<TokenLookup> {
    // Concurrent questions about one SID (isolates missing their caches at once) share one answer.
    const key = `${sid}:${options.refresh === true}`;
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#lookup(sid, options).then((result) =>
        typeof result === "string" ? { status: "ok" as const, token: result } : result === null ? { status: "unknown" as const } : result,
      );
      this.#pending.set(key, pending);
      void pending.finally(() => {
        this.#pending.delete(key);
        metrics.flush(this.env, (promise) => this.ctx.waitUntil(promise));
      });
    }
    return pending;
  }

  async #lookup(sid: string, options: { refresh?: boolean }): Promise<string | null | { status: "unavailable" }> {
    const now = Date.now();
    const row = this.sql
      .exec<{ token: string | null; fetched_at: number; negative_until: number }>(
        "SELECT token, fetched_at, negative_until FROM tokens WHERE sid = ?",
        sid,
      )
      .toArray()[0];
    if (row) {
      if (row.token === null && row.negative_until > now) return null;
      const age = now - row.fetched_at;
      const fresh = age < DIRECTORY_TOKEN_MAX_AGE_MS && !(options.refresh && age >= DIRECTORY_REFRESH_MIN_INTERVAL_MS);
      if (row.token !== null && fresh) return row.token;
    }
    if (!this.#takeLookupBudget(now)) {
      this.logger.warn("account-lookup-capped", { sid });
      // Over the cap: a known token is still good. An SID never seen cannot be judged without asking
      // Twilio, so it is "unavailable" (503, not cached), never "unknown": forged SIDs spending the
      // budget must not get a real new subaccount refused and negative-cached.
      return row?.token ?? { status: "unavailable" };
    }
    const config = getConfig(this.env);
    const client = createTwilioClient({ apiBase: config.apiBase, accountSid: config.accountSid, authToken: config.authTokens[0]!, onCall: restCallObserver() });
    let account;
    try {
      account = await client.fetchAccount(sid);
    } catch (error) {
      this.logger.error("account-lookup-failed", error, { sid });
      if (row?.token) return row.token;
      return error instanceof TwilioRestError && !error.retryable ? null : { status: "unavailable" };
    }
    if (account === null || account.ownerAccountSid !== config.accountSid || account.status === "closed" || account.authToken === "") {
      this.sql.exec(
        "INSERT OR REPLACE INTO tokens (sid, token, fetched_at, negative_until) VALUES (?, NULL, ?, ?)",
        sid,
        now,
        now + DIRECTORY_NEGATIVE_TTL_MS,
      );
      return null;
    }
    this.sql.exec("INSERT OR REPLACE INTO tokens (sid, token, fetched_at, negative_until) VALUES (?, ?, ?, 0)", sid, account.authToken, now);
    return account.authToken;
  }

  #takeLookupBudget(now: number): boolean {
    const minute = Math.floor(now / 60_000);
    // Once a minute (when the previous minute's row goes), expired negative rows go too: forged SIDs
    // each leave one, and nothing else would ever remove them.
    if (this.sql.exec("DELETE FROM lookups WHERE minute < ?", minute).rowsWritten > 0) {
      this.sql.exec("DELETE FROM tokens WHERE token IS NULL AND negative_until < ?", now);
    }
    const used = this.sql.exec<{ count: number }>("SELECT count FROM lookups WHERE minute = ?", minute).toArray()[0]?.count ?? 0;
    if (used >= DIRECTORY_LOOKUPS_PER_MINUTE) return false;
    this.sql.exec("INSERT OR REPLACE INTO lookups (minute, count) VALUES (?, ?)", minute, used + 1);
    return true;
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

  countAccounts(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM accounts").one().n;
  }
}
