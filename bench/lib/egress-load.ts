// The egress gate's load for bench/profile.ts and bench/ab.ts: raw `POST …/Messages.json` requests with
// an egress key, exactly what twilio-node's `messages.create({to, from, body})` sends through
// twilio-edge-guard/client (same path, form and Basic credentials), pre-built into a pool for autocannon.
// Section 6 (bench/sections/egress.ts) drives the official client itself; these scripts need the rate
// of autocannon and a pool both trees can share.
import type { SignedRequest } from "./events.ts";

/** The guard's settings for the gate: on, enforcing, no Usage Records polling during the load. */
export const EGRESS_VARS = { EGRESS_MODE: "enforce", RECONCILE_INTERVAL_S: "0" };

/** A policy no load reaches, set on the account, and an egress key issued for it (admin API). */
export async function prepareEgressAccount(guardUrl: string, adminToken: string, accountSid: string): Promise<string> {
  const admin = { authorization: `Bearer ${adminToken}`, "content-type": "application/json" };
  const policy = await fetch(`${guardUrl}/admin/accounts/${accountSid}/policy`, { method: "PUT", headers: admin, body: JSON.stringify({ limits: [{ window: "month", usd: 1_000_000_000 }] }) });
  if (policy.status !== 200) throw new Error(`egress load: policy answered ${policy.status}`);
  const issued = await fetch(`${guardUrl}/admin/accounts/${accountSid}/egress-keys`, { method: "POST", headers: admin });
  if (issued.status !== 201) throw new Error(`egress load: egress key answered ${issued.status}`);
  return ((await issued.json()) as { key: string }).key;
}

/** The i-th send: a distinct US number, a short GSM-7 body (what section 6's client sends). */
export function egressSend(accountSid: string, key: string, i: number): SignedRequest {
  const form = new URLSearchParams({ To: `+1415555${String(1000 + (i % 9000)).padStart(4, "0")}`, From: "+15005550006", Body: `bench ${i}` });
  return {
    path: `/twilio/api.twilio.com/2010-04-01/Accounts/${accountSid}/Messages.json`,
    body: form.toString(),
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
      authorization: `Basic ${Buffer.from(`${accountSid}:${key}`).toString("base64")}`,
    },
  };
}
