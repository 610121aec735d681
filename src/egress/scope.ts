// What a request on the gate is, from its method and path: which account it names, whether it is a send
// the gate prices (POST Messages.json / Calls.json), and whether an egress key may make it. Pure.
//
// An egress key is swapped for the parent's credentials, which can do far more than the key should: so
// with an egress key only this allowlist of the 2010 API's message and call resources of the key's own
// account is forwarded (CONTRACT.md, "REST egress gate"). Everything else (the account resource itself, a
// suspended subaccount reactivating itself; Keys, Tokens, SigningKeys, subaccounts, another account's
// path, another product's host whose path names no account) is refused with 403 / 20403.
import type { GatePath } from "./hosts.ts";
import { SID_SOURCE } from "../twilio/sids.ts";

/** Paths of the 2010-04-01 API (twilio_api_v2010.json). */
const ACCOUNT_PATH = new RegExp(`^/2010-04-01/Accounts/(${SID_SOURCE.account})(\\.json|/.*)?$`);

export type SendKind = "message" | "call";

export interface RequestScope {
  /** The AccountSid in the path, or null when the path names none. */
  pathAccount: string | null;
  /** A send the gate prices and reserves. */
  send: SendKind | null;
  /** Whether an egress key of `pathAccount` may make this call. */
  egressKeyAllowed: boolean;
}

const MESSAGE_SID = SID_SOURCE.message;
const CALL_SID = SID_SOURCE.call;

/** Resources under /Accounts/{Sid} an egress key may reach, and with which methods. */
const EGRESS_KEY_RESOURCES: ReadonlyArray<{ pattern: RegExp; methods: readonly string[] }> = [
  // Send a message; list the account's messages.
  { pattern: /^\/Messages\.json$/, methods: ["GET", "POST"] },
  // Fetch one; redact its body or cancel a scheduled one (POST); delete it.
  { pattern: new RegExp(`^/Messages/${MESSAGE_SID}\\.json$`), methods: ["GET", "POST", "DELETE"] },
  { pattern: new RegExp(`^/Messages/${MESSAGE_SID}/(Media|Feedback)(\\.json|/${SID_SOURCE.media}\\.json)$`), methods: ["GET"] },
  // Make a call; list the account's calls.
  { pattern: /^\/Calls\.json$/, methods: ["GET", "POST"] },
  // Fetch one; modify a live call (redirect, hang up: POST); delete its record.
  { pattern: new RegExp(`^/Calls/${CALL_SID}\\.json$`), methods: ["GET", "POST", "DELETE"] },
  { pattern: new RegExp(`^/Calls/${CALL_SID}/(Recordings|Notifications|Events)\\.json$`), methods: ["GET"] },
];

/** Classifies a request on the gate. */
export function requestScope(method: string, gate: GatePath): RequestScope {
  const m = gate.product === "api" ? ACCOUNT_PATH.exec(gate.path) : null;
  if (m === null) return { pathAccount: null, send: null, egressKeyAllowed: false };
  const pathAccount = m[1]!;
  const rest = m[2] ?? "";
  let send: SendKind | null = null;
  if (method === "POST" && rest === "/Messages.json") send = "message";
  if (method === "POST" && rest === "/Calls.json") send = "call";
  const egressKeyAllowed = EGRESS_KEY_RESOURCES.some((r) => r.pattern.test(rest) && r.methods.includes(method));
  return { pathAccount, send, egressKeyAllowed };
}
