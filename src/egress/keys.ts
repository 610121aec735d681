// Egress keys: the secret an app uses at the gate instead of a Twilio auth token (CONTRACT.md, admin
// `egress-keys`). Shown once when issued; only its SHA-256 is kept. Pure, WebCrypto only.
//
// Format: `egk` + 16 hex (the key's id, for lookup) + 40 hex (160 random bits). Letters and digits only,
// because twilio-go's validateCredentials refuses non-alphanumeric secrets; never 32 hex, so an egress
// key cannot be mistaken for an auth token.
import { toHex, utf8 } from "../util/encoding.ts";

export const EGRESS_KEY_PREFIX = "egk";
const ID_HEX = 16;
const SECRET_HEX = 40;
export const EGRESS_KEY_PATTERN = new RegExp(`^${EGRESS_KEY_PREFIX}([0-9a-f]{${ID_HEX}})[0-9a-f]{${SECRET_HEX}}$`);
/** An account has at most this many live keys: enough for rotation across several apps, bounded storage. */
export const MAX_EGRESS_KEYS = 20;

export interface IssuedKey {
  id: string;
  /** The key itself: returned to the operator once, never stored. */
  key: string;
  /** Hex SHA-256 of the key: what is stored and compared. */
  hash: string;
}

function randomHex(chars: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(chars / 2)));
}

export async function hashEgressKey(key: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", utf8(key)));
}

export async function issueEgressKey(): Promise<IssuedKey> {
  const id = randomHex(ID_HEX);
  const key = `${EGRESS_KEY_PREFIX}${id}${randomHex(SECRET_HEX)}`;
  return { id, key, hash: await hashEgressKey(key) };
}

/** The id of a well-formed egress key, or null when the secret is not one. */
export function egressKeyId(secret: string): string | null {
  return EGRESS_KEY_PATTERN.exec(secret)?.[1] ?? null;
}
