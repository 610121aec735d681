// HTTP Basic authentication of Twilio's webhook requests (RFC 7617). Twilio sends credentials only after
// a 401 challenge with WWW-Authenticate ("Twilio will first send a request without credentials ... and
// retry with them when challenged": https://www.twilio.com/docs/usage/security#http-authentication).
import { timingSafeEqualString } from "../util/constant-time.ts";

/** The realm named in our challenge; any value works for Twilio, this one tells an operator where it came from. */
export const BASIC_REALM = "twilio-edge-guard";
export const BASIC_CHALLENGE = `Basic realm="${BASIC_REALM}", charset="UTF-8"`;

export interface BasicCredentials {
  user: string;
  password: string;
}

/** One fatal decoder for every header (stateless between whole-buffer decode() calls): none made per request. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** The credentials in an Authorization header, or null when absent or not well-formed Basic. */
export function parseBasicAuthorization(header: string | null): BasicCredentials | null {
  if (header === null) return null;
  const match = /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header);
  if (!match) return null;
  let decoded: string;
  try {
    const binary = atob(match[1]!);
    // Indexed, not Uint8Array.from(binary, …): the string iterator allocates per character, on every
    // gate send (docs/benchmarks.md section 6, the gate's own tail).
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    decoded = strictUtf8.decode(bytes);
  } catch {
    return null;
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Constant-time check of the presented credentials: both fields are always compared, so the time taken
 * does not tell whether the user or the password was wrong.
 */
export function basicCredentialsMatch(presented: BasicCredentials | null, expected: BasicCredentials): boolean {
  const user = timingSafeEqualString(presented?.user ?? "", expected.user);
  const password = timingSafeEqualString(presented?.password ?? "", expected.password);
  return presented !== null && user && password;
}
