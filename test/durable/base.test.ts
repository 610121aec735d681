// GuardObject's meta table read whole (the AccountGuard's `wholeMeta`): a new instance (after each
// eviction) reads its meta, and its schema version, in one statement, and storage stays the truth.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { guard } from "../support/guard.ts";
import { inboundSms, uniqueSid } from "../support/twilio.ts";

function sms(account: string): BillableEvent {
  const e = classifyWebhook(Object.fromEntries(inboundSms(account)));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

/** The statements a call on a new instance of the account runs that name the meta table. */
async function metaStatementsOfNewInstance(sid: string, call: (instance: AccountGuard) => Promise<unknown>): Promise<string[]> {
  await evictDurableObject(guard(sid));
  return runInDurableObject(guard(sid), async (instance, state) => {
    const exec = vi.spyOn(state.storage.sql, "exec");
    try {
      await call(instance);
      return exec.mock.calls.map((c) => String(c[0])).filter((q) => /\bmeta\b/.test(q));
    } finally {
      exec.mockRestore();
    }
  });
}

describe("GuardObject with wholeMeta", () => {
  it("serves a new instance's meta reads from the one statement its constructor ran", async () => {
    const sid = uniqueSid();
    await guard(sid).setPolicy(sid, { limits: [{ window: "day", events: 100 }] });
    await guard(sid).record(sms(sid), null);
    const statements = await metaStatementsOfNewInstance(sid, (instance) => instance.record(sms(sid), null));
    // The event reads sid, registered, policy, breaker, prune_at, reconcile_at, summary_at: none of them from storage.
    expect(statements.filter((q) => q.startsWith("SELECT"))).toEqual([]);
    const day = (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
    expect(day).toMatchObject({ events: 2, limits: [{ events: 100, used: 0.02 }] });
  });

  it("reads meta written while no instance ran (storage is the truth for a new instance)", async () => {
    const sid = uniqueSid();
    await guard(sid).record(sms(sid), null);
    await evictDurableObject(guard(sid));
    await runInDurableObject(guard(sid), (_instance, state) => {
      state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('breaker', ?)", JSON.stringify({ state: "open", tripId: "t-1", openedAt: 1, reason: "operator", suspension: "none" }));
    });
    await evictDurableObject(guard(sid));
    expect((await guard(sid).snapshot()).breaker.state).toBe("open");
    expect(await guard(sid).record(sms(sid), null)).toMatchObject({ blocked: true });
  });

  it("reads the table again at an alarm (an operator may have changed it)", async () => {
    const sid = uniqueSid();
    await guard(sid).record(sms(sid), null);
    await runInDurableObject(guard(sid), (_instance, state) => {
      state.storage.sql.exec("INSERT INTO seen (key, at_ms) VALUES ('SMold:received', 0)");
      state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('prune_at', '0')");
    });
    await runDurableObjectAlarm(guard(sid));
    const old = await runInDurableObject(guard(sid), (_instance, state) => state.storage.sql.exec("SELECT key FROM seen WHERE key = 'SMold:received'").toArray());
    expect(old).toEqual([]);
  });

  it("creates nothing for an account only read (no meta table to read whole)", async () => {
    const sid = uniqueSid();
    expect((await guard(sid).snapshot()).sid).toBe("");
    const tables = await runInDurableObject(guard(sid), (_instance, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'meta'").one().n,
    );
    expect(tables).toBe(0);
  });
});
