// Which auth tokens may have signed a webhook of an account. The parent's come from the environment;
// a subaccount's from Twilio (GET /Accounts/{Sid}.json with the parent's credentials → auth_token),
// through the GuardDirectory Durable Object, which caches them, negative-caches unknown SIDs and caps
// how often unknown SIDs may reach Twilio at all. This isolate keeps a short-lived copy, so the warm
// webhook path makes no call for tokens.

/** A subaccount token copy is reused this long per isolate; rotation is caught by the refresh-on-failure path. */
export const TOKEN_TTL_MS = 5 * 60_000;
/** An unknown SID is refused from memory this long before the directory is asked again. */
export const NEGATIVE_TTL_MS = 60_000;
/** A signature failure may ask Twilio for a rotated token, at most this often per SID per isolate. */
export const REFRESH_MIN_INTERVAL_MS = 60_000;
/** Bounded memory per isolate: at most this many accounts' tokens. */
const MAX_CACHED_ACCOUNTS = 10_000;

export interface TokenSource {
  /** The subaccount's current auth token, or null when the SID is not one of the parent's subaccounts. */
  subaccountToken(sid: string, options: { refresh: boolean }): Promise<string | null>;
}

interface Entry {
  tokens: readonly string[] | null;
  expiresAt: number;
  fetchedAt: number;
}

export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  /** Lookups on their way: a burst of first webhooks for a new subaccount shares one. */
  readonly #pending = new Map<string, Promise<readonly string[] | null>>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  async tokensFor(
    sid: string,
    parent: { sid: string; tokens: readonly string[] },
    source: TokenSource,
    options: { refresh?: boolean } = {},
  ): Promise<readonly string[] | null> {
    if (sid === parent.sid) return parent.tokens;
    const now = this.#now();
    const cached = this.#entries.get(sid);
    if (cached && cached.expiresAt > now) {
      const refreshAllowed = options.refresh === true && cached.tokens !== null && now - cached.fetchedAt >= REFRESH_MIN_INTERVAL_MS;
      if (!refreshAllowed) return cached.tokens;
    }
    const inFlight = this.#pending.get(sid);
    if (inFlight) return inFlight;
    const lookup = this.#lookup(sid, source, options.refresh === true && cached !== undefined, now);
    this.#pending.set(sid, lookup);
    try {
      return await lookup;
    } finally {
      this.#pending.delete(sid);
    }
  }

  async #lookup(sid: string, source: TokenSource, refresh: boolean, now: number): Promise<readonly string[] | null> {
    // A source that cannot answer throws: nothing is cached, the next webhook asks again.
    const token = await source.subaccountToken(sid, { refresh });
    const tokens = token === null ? null : [token];
    this.#entries.delete(sid);
    this.#entries.set(sid, { tokens, fetchedAt: now, expiresAt: now + (tokens ? TOKEN_TTL_MS : NEGATIVE_TTL_MS) });
    if (this.#entries.size > MAX_CACHED_ACCOUNTS) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    return tokens;
  }

  clear(): void {
    this.#entries.clear();
  }
}
