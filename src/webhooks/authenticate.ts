// Deciding whether a webhook really comes from Twilio: HTTP Basic (401 challenge), the
// X-Twilio-Signature, or both, per WEBHOOK_AUTH. Fails closed: any doubt is a refusal; the caller
// decides (by GUARD_MODE) whether a refusal is answered or only reported.
import { ACCOUNT_SID_PATTERN, type Config } from "../config/config.ts";
import { GuardError } from "../http/errors.ts";
import { BASIC_CHALLENGE, basicCredentialsMatch, parseBasicAuthorization } from "../verification/basic-auth.ts";
import { verifySignature } from "../verification/signature.ts";
import type { WebhookRequest } from "./read.ts";

/**
 * The auth tokens that may have signed a webhook of this account (primary first), or null when the
 * account is not the parent nor one of its subaccounts. Async: subaccount tokens come from Twilio.
 */
export type TokenResolver = (accountSid: string, options?: { refresh?: boolean }) => Promise<readonly string[] | null>;

export type AuthOutcome =
  | { ok: true; via: "signature" | "basic"; accountSid: string }
  | { ok: false; error: GuardError; accountSid: string | null };

function refuse(status: 401 | 403, reason: string, message: string, headers?: Record<string, string>): GuardError {
  return new GuardError(status, message, { reason, ...(headers ? { headers } : {}) });
}

export async function authenticateWebhook(
  webhook: WebhookRequest,
  headers: Headers,
  config: Config,
  resolveTokens: TokenResolver,
): Promise<AuthOutcome> {
  const claimed = webhook.claimedAccountSid;
  if (claimed !== null && !ACCOUNT_SID_PATTERN.test(claimed)) {
    return { ok: false, accountSid: null, error: refuse(403, "malformed-account-sid", "forbidden: malformed AccountSid") };
  }
  const accountSid = claimed ?? config.accountSid;

  if (config.webhookAuth !== "signature" && config.basic !== null) {
    const presented = parseBasicAuthorization(headers.get("authorization"));
    if (!basicCredentialsMatch(presented, config.basic)) {
      const reason = presented === null ? "missing-credentials" : "bad-credentials";
      const error = refuse(401, reason, "authentication required", { "www-authenticate": BASIC_CHALLENGE });
      return { ok: false, accountSid, error };
    }
    if (config.webhookAuth === "basic") {
      // Basic credentials are the same for every account, so they do not vouch for the AccountSid:
      // it must still be the parent or one of its subaccounts, or nothing is forwarded or counted.
      const tokens = await resolveTokens(accountSid);
      if (tokens === null || tokens.length === 0) {
        return { ok: false, accountSid, error: refuse(403, "unknown-account", "forbidden: unknown account") };
      }
      return { ok: true, via: "basic", accountSid };
    }
  }

  const signature = headers.get("x-twilio-signature");
  if (signature === null || signature === "") {
    return { ok: false, accountSid, error: refuse(403, "missing-signature", "forbidden: missing X-Twilio-Signature") };
  }
  const tokens = await resolveTokens(accountSid);
  if (tokens === null || tokens.length === 0) {
    return { ok: false, accountSid, error: refuse(403, "unknown-account", "forbidden: unknown account") };
  }
  const check = {
    url: webhook.url.href,
    ...(config.publicUrls.length > 0 ? { publicUrl: config.publicUrls } : {}),
    ...(config.basic !== null ? { basicAuth: config.basic } : {}),
    params: webhook.formParams,
    rawBody: webhook.rawBody,
    signature,
  };
  let verdict = await verifySignature(tokens, check);
  if (!verdict.ok && verdict.reason === "bad-signature" && accountSid !== config.accountSid) {
    // A subaccount's token may have been rotated at Twilio since we cached it: ask once (rate limited).
    const fresh = await resolveTokens(accountSid, { refresh: true });
    if (fresh !== null && fresh.some((token) => !tokens.includes(token))) verdict = await verifySignature(fresh, check);
  }
  if (!verdict.ok) {
    const message = verdict.reason === "body-hash-mismatch" ? "forbidden: body does not match bodySHA256" : "forbidden: invalid X-Twilio-Signature";
    return { ok: false, accountSid, error: refuse(403, verdict.reason, message) };
  }
  return { ok: true, via: "signature", accountSid };
}
