// The one place the Worker builds its Twilio REST client: the parent account's credentials from the
// settings (CONTRACT.md: every REST call authenticates as TWILIO_ACCOUNT_SID with the primary auth
// token) and the REST-call metrics observer. Callers (Durable Objects, admin routes) use this, never
// their own createTwilioClient call, so the credentials and the metrics are wired the same everywhere.
import type { Config } from "../config/config.ts";
import { restCallObserver } from "../observability/metrics.ts";
import { createTwilioClient, type TwilioClient } from "./rest.ts";

export function twilioClientFor(config: Pick<Config, "apiBase" | "accountSid" | "authTokens">): TwilioClient {
  const authToken = config.authTokens[0];
  if (authToken === undefined) throw new Error("no Twilio auth token configured");
  return createTwilioClient({ apiBase: config.apiBase, accountSid: config.accountSid, authToken, onCall: restCallObserver() });
}
