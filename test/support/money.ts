// Helpers for the AccountGuard's money-path tests: a subaccount Twilio knows (with its policy set in its
// Durable Object), signed webhooks through the real Worker, and a gate that holds a mocked answer.
// The object itself (its stub, draining its alarm, its day window) is in ./guard.ts.
import { exports } from "cloudflare:workers";
import type { Policy } from "../../src/ledger/policy.ts";
import { guard } from "./guard.ts";
import type { FakeTwilio } from "./origin.ts";
import { PARENT_SID, signedForm, uniqueSid, type Params } from "./twilio.ts";

export const WORKER = "https://guard.example.com";

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

/** A promise and the function that resolves it: holds a mocked REST answer until a test lets it go. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}
