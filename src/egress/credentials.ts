// Who is calling the gate (CONTRACT.md, "Credentials"): `Authorization: Basic <user>:<secret>` where the
// user is the AccountSid of the path (or an API key `SK…`). Pure: the comparison with the account's
// tokens is here; egress keys are checked by the account's Durable Object (their hashes live there).
import { parseBasicAuthorization } from "../verification/basic-auth.ts";
import { timingSafeEqualString } from "../util/constant-time.ts";
import { egressKeyId } from "./keys.ts";
import { ACCOUNT_SID, API_KEY_SID } from "../twilio/sids.ts";


export type Presented =
  | { kind: "egress-key"; accountSid: string; keyId: string; key: string }
  | { kind: "token"; accountSid: string; secret: string }
  | { kind: "api-key"; keySid: string }
  | { kind: "invalid"; why: string };

/**
 * Reads the credentials and the account they act for. The AccountSid of the path wins for API keys (Twilio
 * checks that the key may act for it); an AccountSid user must be the path's (else 401).
 */
export function presentedCredentials(authorization: string | null, pathAccount: string | null): Presented {
  const basic = parseBasicAuthorization(authorization);
  if (basic === null) return { kind: "invalid", why: "no Basic credentials" };
  if (API_KEY_SID.test(basic.user)) {
    return basic.password === "" ? { kind: "invalid", why: "empty secret" } : { kind: "api-key", keySid: basic.user };
  }
  if (!ACCOUNT_SID.test(basic.user)) return { kind: "invalid", why: "user is neither an AccountSid nor an API key" };
  if (pathAccount !== null && pathAccount !== basic.user) return { kind: "invalid", why: "path names another account" };
  const keyId = egressKeyId(basic.password);
  if (keyId !== null) return { kind: "egress-key", accountSid: basic.user, keyId, key: basic.password };
  if (basic.password === "") return { kind: "invalid", why: "empty secret" };
  return { kind: "token", accountSid: basic.user, secret: basic.password };
}

/** Constant-time: whether `secret` is one of the account's tokens (every token is compared). */
export function tokenMatches(secret: string, tokens: readonly string[]): boolean {
  let ok = false;
  for (const token of tokens) ok = timingSafeEqualString(secret, token) || ok;
  return ok;
}
