// An account's Durable Object from workerd tests: its stub, its breaker and day window, running its alarm
// until the outbox (the suspensions, reactivations and alerts it owes Twilio and the operator) is empty,
// and making its next alarm reconcile.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";

export function guard(sid: string): DurableObjectStub<AccountGuard> {
  return env.ACCOUNT_GUARD.getByName(sid);
}

/** Runs the account's alarm until its outbox is empty (every pending row made due first); throws if it never empties. */
export async function drainAlarms(sid: string, rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    const pending = await runInDurableObject(guard(sid), (_instance, state) => {
      state.storage.sql.exec("UPDATE outbox SET next_at_ms = 0 WHERE state = 'pending'");
      return state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'").one().n;
    });
    if (pending === 0) return;
    await runDurableObjectAlarm(guard(sid));
  }
  throw new Error(`outbox of ${sid} not drained after ${rounds} alarms`);
}

/** The account's breaker state: "closed" or "open". */
export async function breakerState(sid: string): Promise<string> {
  return (await guard(sid).snapshot()).breaker.state;
}

/** The day window of the account's snapshot. */
export async function today(sid: string) {
  return (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
}

/** Makes the account's next alarm reconcile with Twilio's usage records. */
export async function reconcileNow(sid: string): Promise<void> {
  await runInDurableObject(guard(sid), (_instance, state) => {
    state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('reconcile_at', '0')");
  });
  await runDurableObjectAlarm(guard(sid));
}
