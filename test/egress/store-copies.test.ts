// The egress store's copies of storage (src/egress/store.ts): a live key's hash and last use, and the
// countries already sent to, so a send costs no statement for them. Storage stays the truth: a revoked
// key is refused at once, the last use is still written once a minute, and a rolled-back first send
// to a country leaves the next one the first (forget(), which the AccountGuard calls on a rollback).
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { EgressStore } from "../../src/egress/store.ts";
import { issueEgressKey } from "../../src/egress/keys.ts";
import { guard } from "../support/guard.ts";
import { uniqueSid } from "../support/twilio.ts";

const MINUTE_MS = 60_000;

/** Runs `fn` with a new EgressStore on the account's own SQLite (a fresh account: its object is only used here). */
async function withStore<T>(fn: (store: EgressStore, sql: SqlStorage, storage: DurableObjectStorage) => T): Promise<T> {
  return runInDurableObject(guard(uniqueSid()), (_i, state) => fn(new EgressStore(state.storage.sql), state.storage.sql, state.storage));
}

function lastUsed(sql: SqlStorage, id: string): number | null {
  return sql.exec<{ last_used_at_ms: number | null }>("SELECT last_used_at_ms FROM egress_keys WHERE id = ?", id).one().last_used_at_ms;
}

describe("EgressStore's copies of storage", () => {
  it("writes a key's last use once per minute, from the first use on", async () => {
    const key = await issueEgressKey();
    const t0 = Date.now();
    const seen = await withStore((store, sql) => {
      store.addKey(key.id, key.hash, t0);
      const uses: Array<number | null> = [];
      for (const at of [t0, t0 + 1_000, t0 + MINUTE_MS - 1, t0 + MINUTE_MS, t0 + MINUTE_MS + 5_000, t0 + 2 * MINUTE_MS + 1]) {
        expect(store.useKey(key.id, key.hash, at)).toBe(true);
        uses.push(lastUsed(sql, key.id));
      }
      return uses;
    });
    expect(seen).toEqual([t0, t0, t0, t0 + MINUTE_MS, t0 + MINUTE_MS, t0 + 2 * MINUTE_MS + 1]);
  });

  it("takes the last use a previous instance stored", async () => {
    const key = await issueEgressKey();
    const t0 = Date.now();
    const seen = await withStore((store, sql) => {
      store.addKey(key.id, key.hash, t0);
      store.useKey(key.id, key.hash, t0);
      // A new instance (evicted and started again) over the same rows.
      const next = new EgressStore(sql);
      next.useKey(key.id, key.hash, t0 + 30_000);
      const within = lastUsed(sql, key.id);
      next.useKey(key.id, key.hash, t0 + MINUTE_MS);
      return [within, lastUsed(sql, key.id)];
    });
    expect(seen).toEqual([t0, t0 + MINUTE_MS]);
  });

  it("refuses a key once revoked, and a wrong key or unknown id always", async () => {
    const key = await issueEgressKey();
    const other = await issueEgressKey();
    const t0 = Date.now();
    const answers = await withStore((store) => {
      store.addKey(key.id, key.hash, t0);
      const before = [store.useKey(key.id, key.hash, t0), store.useKey(key.id, other.hash, t0), store.useKey(other.id, other.hash, t0)];
      store.revokeKey(key.id, t0 + 1);
      return [...before, store.useKey(key.id, key.hash, t0 + 2)];
    });
    expect(answers).toEqual([true, false, false, false]);
  });

  it("answers a country's first send once, and again after the transaction that wrote it rolled back", async () => {
    const t0 = Date.now();
    const answers = await withStore((store, _sql, storage) => {
      const firsts = [store.firstSendTo("US", t0), store.firstSendTo("US", t0), store.firstSendTo(null, t0), store.firstSendTo(null, t0)];
      expect(() =>
        storage.transactionSync(() => {
          firsts.push(store.firstSendTo("GB", t0));
          throw new Error("rolled back");
        }),
      ).toThrow("rolled back");
      store.forget();
      firsts.push(store.firstSendTo("GB", t0), store.firstSendTo("GB", t0), store.firstSendTo("US", t0));
      return firsts;
    });
    expect(answers).toEqual([true, false, true, false, true, true, false, false]);
  });
});
