// Deciding whether a webhook really comes from Twilio: HTTP Basic (401 challenge), the
// X-Twilio-Signature, or both, per WEBHOOK_AUTH. Fails closed: any doubt is a refusal; the caller
// decides (by GUARD_MODE) whether a refusal is answered or only reported.
import { type Config } from "../config/config.ts";
import { GuardError } from "../http/errors.ts";
import { BASIC_CHALLENGE, basicCredentialsMatch, parseBasicAuthorization } from "../verification/basic-auth.ts";
import { verifySignature, type SignatureAlgorithm } from "../verification/signature.ts";
import type { WebhookRequest } from "./read.ts";
import { ACCOUNT_SID } from "../twilio/sids.ts";

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

/** Header Twilio adds when a Webhook Rule signs with a SharedKey (webhook-shared-keys docs). */
export const SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings";
/** Algorithms a SharedKey Setting may name (twilio-node webhooks.ts: HMAC_SHA1, HMAC_SHA256). */
const SHARED_KEY_ALGORITHMS: ReadonlySet<string> = new Set(["HMAC_SHA1", "HMAC_SHA256"]);

/**
 * `key=<id>,algorithm=<name>` → the key's secret and the algorithm; a refusal for anything else:
 * an unknown key id, an unknown or missing algorithm, a malformed header. Never a fallback to the auth
 * token: whoever sets the header chose the key, and must hold it.
 */
export function sharedKeyFor(header: string, keys: ReadonlyMap<string, string>): { secret: string; algorithm: SignatureAlgorithm } | GuardError {
  const fields = new Map<string, string>();
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq === -1) return refuse(403, "bad-signature-settings", "forbidden: malformed X-Twilio-Webhooks-Signature-Settings");
    const name = part.slice(0, eq).trim().toLowerCase();
    if (fields.has(name)) return refuse(403, "bad-signature-settings", "forbidden: malformed X-Twilio-Webhooks-Signature-Settings");
    fields.set(name, part.slice(eq + 1).trim());
  }
  const algorithm = (fields.get("algorithm") ?? "").toUpperCase();
  if (!SHARED_KEY_ALGORITHMS.has(algorithm)) {
    return refuse(403, "unsupported-signature-algorithm", "forbidden: unsupported signature algorithm");
  }
  const secret = keys.get(fields.get("key") ?? "");
  if (secret === undefined) return refuse(403, "unknown-shared-key", "forbidden: unknown signing key");
  return { secret, algorithm: algorithm as SignatureAlgorithm };
}

export async function authenticateWebhook(
  webhook: WebhookRequest,
  headers: Headers,
  config: Config,
  resolveTokens: TokenResolver,
): Promise<AuthOutcome> {
  const claimed = webhook.claimedAccountSid;
  if (claimed !== null && !ACCOUNT_SID.test(claimed)) {
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
  const settings = headers.get(SIGNATURE_SETTINGS_HEADER);
  let sharedKey: { secret: string; algorithm: SignatureAlgorithm } | null = null;
  if (settings !== null && settings.trim() !== "") {
    const found = sharedKeyFor(settings, config.sharedKeys);
    if (found instanceof GuardError) return { ok: false, accountSid, error: found };
    sharedKey = found;
  }
  const check = {
    url: webhook.url.href,
    ...(config.publicUrls.length > 0 ? { publicUrl: config.publicUrls } : {}),
    ...(config.basic !== null ? { basicAuth: config.basic } : {}),
    params: webhook.formParams,
    rawBody: webhook.rawBody,
    signature,
    ...(sharedKey !== null ? { algorithm: sharedKey.algorithm } : {}),
  };
  // A SharedKey signature is checked with that key alone; an auth token signature with the account's tokens.
  let verdict = await verifySignature(sharedKey !== null ? [sharedKey.secret] : tokens, check);
  if (!verdict.ok && verdict.reason === "bad-signature" && sharedKey === null && accountSid !== config.accountSid) {
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
