// The REST egress gate's Node stand: the real Worker (dev/worker.ts) in EGRESS_MODE=enforce in front of
// the loopback Twilio stand-in (dev/twilio-standin.ts), with fresh fake parent credentials and an admin
// token, for the tests that drive the gate with a real Twilio SDK (test/node/egress.test.ts, sdk-python).
import { randomBytes } from "node:crypto";
import { startGuard, type StartedGuard } from "../../dev/worker.ts";
import { startTwilioStandin, type TwilioStandin } from "../../dev/twilio-standin.ts";

export interface EgressStand {
  parentSid: string;
  parentToken: string;
  adminToken: string;
  standin: TwilioStandin;
  guard: StartedGuard;
  /** An admin API call with the admin token. */
  admin(method: string, path: string, body?: unknown): Promise<Response>;
  /** A subaccount Twilio knows, given `policy`, and an egress key issued for it (shown once: here). */
  account(policy: Record<string, unknown>): Promise<{ sid: string; authToken: string; key: string }>;
  stop(): Promise<void>;
}

export async function startEgressStand(parentSid: string): Promise<EgressStand> {
  const parentToken = `parent-token-${randomBytes(8).toString("hex")}`;
  const adminToken = `admin-token-${randomBytes(12).toString("hex")}`;
  const standin = await startTwilioStandin({ parentSid, parentToken });
  let guard: StartedGuard;
  try {
    guard = await startGuard({
      vars: { TWILIO_ACCOUNT_SID: parentSid, TWILIO_API_BASE: standin.url, EGRESS_MODE: "enforce", ORIGIN_URL: "http://127.0.0.1:9", RECONCILE_INTERVAL_S: "0" },
      secrets: { TWILIO_AUTH_TOKEN: parentToken, ADMIN_TOKEN: adminToken },
    });
  } catch (error) {
    await standin.close();
    throw error;
  }
  const admin = (method: string, path: string, body?: unknown) =>
    fetch(`${guard.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  return {
    parentSid,
    parentToken,
    adminToken,
    standin,
    guard,
    admin,
    async account(policy) {
      const { sid, authToken } = standin.addSubaccount();
      const set = await admin("PUT", `/admin/accounts/${sid}/policy`, policy);
      if (set.status !== 200) throw new Error(`policy of ${sid}: ${set.status}`);
      const issued = (await (await admin("POST", `/admin/accounts/${sid}/egress-keys`)).json()) as { key: string };
      return { sid, authToken, key: issued.key };
    },
    async stop() {
      await guard.stop();
      await standin.close();
    },
  };
}
