// Helpers for the AccountGuard's money-path tests: the object by SID, a subaccount Twilio knows, signed
// webhooks through the real Worker, and draining the outbox by running the alarm.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import type { AccountGuard } from "../../src/breaker/account-guard.ts";
import type { Policy } from "../../src/ledger/policy.ts";
import type { FakeTwilio } from "./origin.ts";
import { PARENT_SID, signedForm, uniqueSid, type Params } from "./twilio.ts";

export const WORKER = "https://guard.example.com";

export function guard(sid: string): DurableObjectStub<AccountGuard> {
  return env.ACCOUNT_GUARD.getByName(sid);
}

/** A subaccount Twilio knows, with its own token and the given policy (default: 5 events a day, suspend). */
export async function subaccount(twilio: FakeTwilio, policy: Partial<Policy> = {}): Promise<{ sid: string; token: string }> {
  const sid = uniqueSid();
  const token = `token-of-${sid}`;
  twilio.subaccounts.set(sid, { token, status: "active", owner: PARENT_SID });
  await guard(sid).setPolicy(sid, { limits: [{ window: "day", events: 5 }], warnAt: 0.8, action: "suspend", ...policy });
  return { sid, token };
}

export async function send(params: Params, token: string, path = "/webhooks/sms", headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(await signedForm(`${WORKER}${path}`, params, { token, headers }));
}

/** Runs the object's alarm until its outbox has nothing pending (back-off delays made due at once). */
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

/** A promise and the function that resolves it: holds a mocked REST answer until a test lets it go. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}
