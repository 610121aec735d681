// Storage per account per day, measured: one AccountGuard records N billable events of one UTC day
// (each a new MessageSid, the worst case: every event leaves a de-duplication key and a priced entry),
// and the SQLite database size is read before and after. A second object holds only the de-duplication
// keys, to split the figure between what is kept two days (seen) and what is kept for the month (counted).
//
//   npm run storage        100 000 events, prints the figures docs/storage.md keeps
//   npm test               runs it with STORAGE_EVENTS (default 2 000) and checks the per-event bound
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { windowStart } from "../../src/ledger/windows.ts";
import { guard, seenKeys } from "../support/guard.ts";
import { messageStatus, uniqueSid } from "../support/twilio.ts";

const EVENTS = Number((env as unknown as { STORAGE_EVENTS?: string }).STORAGE_EVENTS || "2000");
/** What docs/storage.md promises per event, with margin: a regression past it is a schema change to look at. */
const MAX_BYTES_PER_EVENT = 400;

function delivered(account: string): BillableEvent {
  const sid = uniqueSid("SM");
  const e = classifyWebhook(new Map(messageStatus(account, sid, "delivered", { Price: "-0.0079", PriceUnit: "USD" })));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

describe("storage per account per day", () => {
  it(`${EVENTS} events of one day stay under ${MAX_BYTES_PER_EVENT} bytes each`, async () => {
    const account = uniqueSid();
    await guard(account).setPolicy(account, { limits: [{ window: "day", usd: 1_000_000 }], action: "alert" });
    const day = windowStart("day", Date.now()); // today's UTC day, spread over its 24 hours
    const measured = await runInDurableObject(guard(account), async (instance: AccountGuard, state) => {
      const before = state.storage.sql.databaseSize;
      for (let i = 0; i < EVENTS; i++) await instance.record(delivered(account), null, day + Math.floor((i * 86_000_000) / EVENTS));
      // Since schema 6 the event keys are rows of `counted` too (src/breaker/schema.ts): counted here apart.
      const seen = seenKeys(state.storage.sql).length;
      const rows = state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM counted").one().n;
      return { before, after: state.storage.sql.databaseSize, seen, counted: rows - seen };
    });
    const keysOnly = await runInDurableObject(env.ACCOUNT_GUARD.getByName(uniqueSid()), async (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("CREATE TABLE seen_probe (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID");
      const before = sql.databaseSize;
      for (let i = 0; i < EVENTS; i++) sql.exec("INSERT INTO seen_probe VALUES (?, ?)", `${uniqueSid("SM")}:delivered`, day + i);
      return sql.databaseSize - before;
    });
    const total = measured.after - measured.before;
    const perEvent = total / EVENTS;
    const figures = {
      events: EVENTS,
      bytes: total,
      bytesPerEvent: Math.round(perEvent),
      seenBytes: keysOnly,
      restBytes: total - keysOnly,
      seenRows: measured.seen,
      countedRows: measured.counted,
      // Steady state of an account at this rate every day: seen for 2 days, counted for up to a month + 2 days.
      steadyStateMiB: Math.round(((2 * keysOnly + 33 * (total - keysOnly)) / 1_048_576) * 10) / 10,
    };
    console.log(`storage: ${JSON.stringify(figures)}`);
    expect(measured.seen).toBe(EVENTS);
    expect(measured.counted).toBe(EVENTS);
    expect(perEvent).toBeLessThan(MAX_BYTES_PER_EVENT);
  }, 600_000);
});
