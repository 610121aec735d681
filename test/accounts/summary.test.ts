// The directory's light summary rows (src/accounts/summary.ts putSummary): a push is stored unless a newer
// one is there, whichever statement stores it (the breaker state unchanged, changed, or a new row).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { putFriendlyNames, putSummary, type AccountSummary } from "../../src/accounts/summary.ts";
import { uniqueSid } from "../support/twilio.ts";

function summary(sid: string, rev: number, changes: Partial<AccountSummary> = {}): AccountSummary {
  return {
    sid, isParent: false, state: "closed", suspension: "none", action: "suspend", dayStartMs: 0, spendTodayMicros: rev * 1000, eventsToday: rev,
    warnedUntilMs: 0, maxUsed: 0, lastActivityMs: rev, rev, policySource: "default", windows: [], ...changes,
  };
}

type Row = { state: string; events: number; rev: number; last_activity_ms: number; friendly_name: string | null; suspension: string };

/** Applies the pushes in order to a fresh directory's table and answers the account's row. */
async function stored(sid: string, steps: (sql: SqlStorage) => void): Promise<Row | undefined> {
  return runInDurableObject(env.DIRECTORY.getByName(`summary-test-${sid}`), (_instance, state) => {
    const sql = state.storage.sql;
    steps(sql);
    return sql.exec<Row>("SELECT state, events, rev, last_activity_ms, friendly_name, suspension FROM account_summary WHERE sid = ?", sid).toArray()[0];
  });
}

describe("putSummary", () => {
  it("stores a new account's first push", async () => {
    const sid = uniqueSid();
    expect(await stored(sid, (sql) => putSummary(sql, summary(sid, 5)))).toMatchObject({ state: "closed", events: 5, rev: 5, last_activity_ms: 5 });
  });

  it("takes a newer push with the same state", async () => {
    const sid = uniqueSid();
    expect(await stored(sid, (sql) => [5, 6].forEach((rev) => putSummary(sql, summary(sid, rev))))).toMatchObject({ events: 6, rev: 6 });
  });

  it("takes a newer push with another state (a trip, then a reset)", async () => {
    const sid = uniqueSid();
    const open = { state: "open" as const, suspension: "done" };
    expect(await stored(sid, (sql) => [putSummary(sql, summary(sid, 5)), putSummary(sql, summary(sid, 6, open))])).toMatchObject({ state: "open", suspension: "done", rev: 6 });
    expect(await stored(sid, (sql) => putSummary(sql, summary(sid, 7)))).toMatchObject({ state: "closed", suspension: "none", rev: 7 });
  });

  it("ignores an older push, with the same state or another", async () => {
    const sid = uniqueSid();
    expect(await stored(sid, (sql) => [putSummary(sql, summary(sid, 6)), putSummary(sql, summary(sid, 5)), putSummary(sql, summary(sid, 4, { state: "open" }))]))
      .toMatchObject({ state: "closed", events: 6, rev: 6 });
  });

  it("keeps the friendly name learned from Twilio's listing", async () => {
    const sid = uniqueSid();
    expect(await stored(sid, (sql) => [putFriendlyNames(sql, [{ sid, friendlyName: "Acme Pizza" }]), putSummary(sql, summary(sid, 5))]))
      .toMatchObject({ friendly_name: "Acme Pizza", events: 5, rev: 5 });
  });
});
