// The light account summary the admin listing is served from: one small row per account (breaker state,
// spend and events today, whether a limit is past its warning, last activity), pushed by each
// AccountGuard after it changes (at most every SUMMARY_PUSH_INTERVAL_MS, immediately on a trip or reset)
// and kept in the GuardDirectory. The listing then costs one query, whatever the number of accounts,
// instead of one snapshot RPC per row; search, sort and filter run in SQLite over an indexed table.
//
// This module owns the table and its queries (the directory only calls them), and the pure parts:
// how a summary is computed from the ledger's current windows, and how a listing request is parsed.
import type { Policy } from "../ledger/policy.ts";
import type { WindowKind } from "../ledger/windows.ts";
import { windowEnd } from "../ledger/windows.ts";

/** How stale a listed figure may be while events keep coming: a push per account every 5 s at most. */
export const SUMMARY_PUSH_INTERVAL_MS = 5_000;
/** A listing page holds at most this many rows. */
export const SUMMARY_PAGE_MAX = 500;
/** The overview's "top spenders". */
export const TOP_SPENDERS = 10;
/** Search text is a SID or a fragment of a friendly name; longer is no search anyone types. */
export const MAX_SEARCH_CHARS = 64;

export type SummarySort = "spend" | "state" | "activity" | "sid";
export type SummaryFilter = "all" | "open" | "warned";
export const SORTS: readonly SummarySort[] = ["spend", "state", "activity", "sid"];
export const FILTERS: readonly SummaryFilter[] = ["all", "open", "warned"];

export interface AccountSummary {
  sid: string;
  isParent: boolean;
  state: "open" | "closed";
  /** pending | done | failed | none, as in the breaker. */
  suspension: string;
  action: string;
  /** The UTC day spendTodayMicros and eventsToday belong to. */
  dayStartMs: number;
  spendTodayMicros: number;
  eventsToday: number;
  /** Until when a limit is at or past warnAt (the end of that window); 0 when none is. */
  warnedUntilMs: number;
  /** The highest used/limit ratio of the current windows (1 = at the limit). */
  maxUsed: number;
  lastActivityMs: number;
  /** Monotonic per account: a late push never overwrites a newer one. */
  rev: number;
  policySource: "default" | "account";
  /** The current windows at push time, as the account page shows them (the listing zeroes a window that has rolled over). */
  windows: SummaryWindow[];
}

export interface SummaryWindow {
  window: string;
  windowId: string;
  usd: number;
  events: number;
  /** used = spend (or events) / the limit: 0.5 is half the limit, 1 the limit itself. */
  limits: Array<{ usd?: number; events?: number; used: number }>;
}

export interface WindowFigures {
  window: WindowKind;
  usdMicros: number;
  events: number;
}

/** The summary figures of the current windows under a policy (pure). */
export function summarise(policy: Policy, windows: readonly WindowFigures[], nowMs: number): { warnedUntilMs: number; maxUsed: number } {
  let warnedUntilMs = 0;
  let maxUsed = 0;
  for (const limit of policy.limits) {
    const w = windows.find((x) => x.window === limit.window);
    if (w === undefined) continue;
    const used = limit.usd !== undefined ? w.usdMicros / Math.round(limit.usd * 1_000_000) : w.events / limit.events!;
    if (!Number.isFinite(used)) continue;
    maxUsed = Math.max(maxUsed, used);
    if (used >= policy.warnAt) warnedUntilMs = Math.max(warnedUntilMs, windowEnd(limit.window, nowMs));
  }
  return { warnedUntilMs, maxUsed: Math.round(maxUsed * 10_000) / 10_000 };
}

export interface SummaryQuery {
  q: string;
  sort: SummarySort;
  filter: SummaryFilter;
  offset: number;
  limit: number;
  /** Keyset cursor for sort=sid: accounts after this SID. */
  after: string;
}

export interface ListedAccount {
  sid: string;
  friendlyName: string | null;
  isParent: boolean;
  firstSeenAt: number;
  /** False for an account registered before summaries existed and quiet since: figures unknown. */
  summarised: boolean;
  breaker: { state: "open" | "closed"; suspension: string } | null;
  action: string | null;
  spendTodayUsd: number;
  eventsToday: number;
  warned: boolean;
  maxUsed: number;
  lastActivityAt: number | null;
  policySource: "default" | "account" | null;
  windows: SummaryWindow[];
}

export function ensureSummaryTables(sql: SqlStorage): void {
  sql.exec(`
    CREATE TABLE IF NOT EXISTS account_summary (sid TEXT PRIMARY KEY, is_parent INTEGER NOT NULL, state TEXT NOT NULL,
      suspension TEXT NOT NULL, action TEXT NOT NULL, day_start_ms INTEGER NOT NULL, spend_micros INTEGER NOT NULL,
      events INTEGER NOT NULL, warned_until_ms INTEGER NOT NULL, max_used REAL NOT NULL, last_activity_ms INTEGER NOT NULL,
      rev INTEGER NOT NULL, friendly_name TEXT, policy_source TEXT NOT NULL DEFAULT 'default', windows_json TEXT NOT NULL DEFAULT '[]') WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS account_summary_activity ON account_summary (last_activity_ms);
    CREATE INDEX IF NOT EXISTS account_summary_state ON account_summary (state);
  `);
}

/**
 * Stores a push unless a newer one is already there. A push that leaves the breaker state as it was (all
 * but a trip's or a reset's) is an UPDATE that does not name `state`, so SQLite leaves its index as it
 * is: per push, the directory's commit copies the row's page and the activity index's, not the state
 * index's too (docs/benchmarks.md section 5). Otherwise (a new row, a new state, or an older push) the
 * upsert below, which changes nothing for an older push either.
 */
export function putSummary(sql: SqlStorage, s: AccountSummary): void {
  const figures = [
    s.suspension, s.action, s.dayStartMs, Math.round(s.spendTodayMicros), s.eventsToday, s.warnedUntilMs, s.maxUsed, s.lastActivityMs, s.rev,
    s.policySource === "account" ? "account" : "default", JSON.stringify(s.windows.slice(0, 4)).slice(0, 4_000), s.isParent ? 1 : 0,
  ] as const;
  const sameState = sql.exec(
    `UPDATE account_summary SET suspension = ?, action = ?, day_start_ms = ?, spend_micros = ?, events = ?, warned_until_ms = ?, max_used = ?,
       last_activity_ms = ?, rev = ?, policy_source = ?, windows_json = ?, is_parent = ?
     WHERE sid = ? AND state = ? AND rev < ?`,
    ...figures, s.sid, s.state, s.rev,
  ).rowsWritten;
  if (sameState > 0) return;
  sql.exec(
    `INSERT INTO account_summary (sid, is_parent, state, suspension, action, day_start_ms, spend_micros, events, warned_until_ms, max_used, last_activity_ms, rev, policy_source, windows_json)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (sid) DO UPDATE SET is_parent = excluded.is_parent, state = excluded.state, suspension = excluded.suspension,
       action = excluded.action, day_start_ms = excluded.day_start_ms, spend_micros = excluded.spend_micros, events = excluded.events,
       warned_until_ms = excluded.warned_until_ms, max_used = excluded.max_used, last_activity_ms = excluded.last_activity_ms, rev = excluded.rev,
       policy_source = excluded.policy_source, windows_json = excluded.windows_json
     WHERE excluded.rev > account_summary.rev`,
    s.sid, figures[11], s.state, ...figures.slice(0, 11),
  );
}

/** Friendly names learned from Twilio's subaccount listing (GET /Accounts.json), for display and search. */
export function putFriendlyNames(sql: SqlStorage, names: ReadonlyArray<{ sid: string; friendlyName: string }>): void {
  for (const n of names) {
    sql.exec(
      `INSERT INTO account_summary (sid, is_parent, state, suspension, action, day_start_ms, spend_micros, events, warned_until_ms, max_used, last_activity_ms, rev, friendly_name)
       VALUES (?, 0, 'closed', 'none', '', 0, 0, 0, 0, 0, 0, 0, ?) ON CONFLICT (sid) DO UPDATE SET friendly_name = excluded.friendly_name`,
      n.sid, n.friendlyName.slice(0, 200),
    );
  }
}

/** LIKE pattern for user text: %, _ and \ are matched literally. */
function likeFragment(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

const ORDER: Record<SummarySort, string> = {
  // Spend today first (a stale day counts as nothing), then the most-used limit.
  spend: "today_micros DESC, COALESCE(s.max_used, 0) DESC, a.sid",
  state: "CASE COALESCE(s.state, 'closed') WHEN 'open' THEN 0 ELSE 1 END, warned DESC, today_micros DESC, a.sid",
  activity: "COALESCE(s.last_activity_ms, 0) DESC, a.sid",
  sid: "a.sid",
};

/**
 * One page of the listing: the registered accounts (the `accounts` table of the directory) joined
 * with their summaries, searched, filtered, sorted, and offset-paged. `total` counts the matches.
 */
export function querySummaries(sql: SqlStorage, query: SummaryQuery, nowMs: number, dayStartMs: number): { accounts: ListedAccount[]; total: number } {
  const where: string[] = [];
  const args: unknown[] = [];
  if (query.q !== "") {
    const fragment = likeFragment(query.q);
    where.push("(a.sid LIKE ? ESCAPE '\\' OR s.friendly_name LIKE ? ESCAPE '\\')");
    args.push(`${fragment.toUpperCase().startsWith("AC") ? `AC${fragment.slice(2).toLowerCase()}` : `%${fragment.toLowerCase()}`}%`, `%${fragment}%`);
  }
  if (query.filter === "open") where.push("s.state = 'open'");
  if (query.filter === "warned") where.push("s.state = 'closed' AND s.warned_until_ms > ?"), args.push(nowMs);
  const from = "FROM accounts a LEFT JOIN account_summary s ON s.sid = a.sid";
  const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
  const total = sql.exec<{ n: number }>(`SELECT COUNT(*) AS n ${from} ${clause}`, ...args).one().n;
  // The keyset cursor narrows the page, not the count of matches.
  if (query.after !== "" && query.sort === "sid") where.push("a.sid > ?"), args.push(query.after);
  const pageClause = where.length ? `WHERE ${where.join(" AND ")}` : "";
  type Row = {
    sid: string; first_seen_at: number; is_parent: number; state: string | null; suspension: string | null; action: string | null;
    today_micros: number; events_today: number; warned: number; max_used: number | null; last_activity_ms: number | null;
    friendly_name: string | null; rev: number | null; policy_source: string | null; windows_json: string | null;
  };
  const rows = sql
    .exec<Row>(
      `SELECT a.sid, a.first_seen_at, s.policy_source, s.windows_json, a.is_parent, s.state, s.suspension, s.action, s.friendly_name, s.rev, s.max_used, s.last_activity_ms,
         CASE WHEN s.day_start_ms = ? THEN s.spend_micros ELSE 0 END AS today_micros,
         CASE WHEN s.day_start_ms = ? THEN s.events ELSE 0 END AS events_today,
         CASE WHEN s.state = 'closed' AND s.warned_until_ms > ? THEN 1 ELSE 0 END AS warned
       ${from} ${pageClause} ORDER BY ${ORDER[query.sort]} LIMIT ? OFFSET ?`,
      dayStartMs, dayStartMs, nowMs, ...args, query.limit, query.offset,
    )
    .toArray();
  return {
    total,
    accounts: rows.map((r) => {
      const summarised = r.rev !== null && r.rev > 0;
      return {
        sid: r.sid,
        friendlyName: r.friendly_name,
        isParent: r.is_parent === 1,
        firstSeenAt: r.first_seen_at,
        summarised,
        breaker: summarised ? { state: r.state === "open" ? "open" : "closed", suspension: r.suspension ?? "none" } : null,
        action: summarised ? r.action : null,
        spendTodayUsd: r.today_micros / 1_000_000,
        eventsToday: r.events_today,
        warned: r.warned === 1,
        maxUsed: r.max_used ?? 0,
        lastActivityAt: summarised && r.last_activity_ms ? r.last_activity_ms : null,
        policySource: summarised ? (r.policy_source === "account" ? "account" : "default") : null,
        windows: summarised ? (JSON.parse(r.windows_json ?? "[]") as SummaryWindow[]) : [],
      };
    }),
  };
}

export interface Overview {
  accounts: number;
  open: number;
  warned: number;
  spendTodayUsd: number;
  eventsToday: number;
  topSpenders: Array<{ sid: string; friendlyName: string | null; spendTodayUsd: number; state: string }>;
}

/** The summary across every account: today's spend, how many are warned and open, the top spenders. */
export function overviewOf(sql: SqlStorage, nowMs: number, dayStartMs: number): Overview {
  const totals = sql
    .exec<{ accounts: number; open: number; warned: number; spend: number | null; events: number | null }>(
      `SELECT (SELECT COUNT(*) FROM accounts) AS accounts,
         COALESCE(SUM(state = 'open'), 0) AS open,
         COALESCE(SUM(state = 'closed' AND warned_until_ms > ?), 0) AS warned,
         SUM(CASE WHEN day_start_ms = ? THEN spend_micros ELSE 0 END) AS spend,
         SUM(CASE WHEN day_start_ms = ? THEN events ELSE 0 END) AS events
       FROM account_summary WHERE rev > 0`,
      nowMs, dayStartMs, dayStartMs,
    )
    .one();
  const top = sql
    .exec<{ sid: string; friendly_name: string | null; spend_micros: number; state: string }>(
      "SELECT sid, friendly_name, spend_micros, state FROM account_summary WHERE day_start_ms = ? AND spend_micros > 0 ORDER BY spend_micros DESC, sid LIMIT ?",
      dayStartMs, TOP_SPENDERS,
    )
    .toArray();
  return {
    accounts: totals.accounts,
    open: totals.open,
    warned: totals.warned,
    spendTodayUsd: (totals.spend ?? 0) / 1_000_000,
    eventsToday: totals.events ?? 0,
    topSpenders: top.map((t) => ({ sid: t.sid, friendlyName: t.friendly_name, spendTodayUsd: t.spend_micros / 1_000_000, state: t.state })),
  };
}
