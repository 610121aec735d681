// Settling a send whose answer never came (CONTRACT.md: Twilio's answer settles a reservation; a timeout
// after Twilio may have accepted is settled from the Message resource, never counted twice). After the
// gate gave up waiting, it lists the account's newest messages to that number from that sender
// (ListMessage: GET /2010-04-01/Accounts/{Sid}/Messages.json?To=&From=&PageSize=) and looks for the one
// it sent: created since the reservation, with the same body. Found: the reservation is bound to its Sid;
// not found: nothing was created, the reservation is released. Pure except for the one fetch it is given.
import type { Settlement } from "../ledger/reservations.ts";
import { MESSAGE_SID } from "../twilio/sids.ts";

/** Newest first (Twilio's order): the send is among the last few messages to that number. */
export const LOOKUP_PAGE_SIZE = 20;
/** Twilio's date_created has one-second resolution, and clocks differ: allow this much before the reservation. */
const CLOCK_SLACK_MS = 60_000;

export interface SentMessage {
  to: string;
  from: string | null;
  messagingServiceSid: string | null;
  body: string | null;
  reservedAtMs: number;
}

interface MessageRow {
  sid?: unknown;
  to?: unknown;
  from?: unknown;
  body?: unknown;
  messaging_service_sid?: unknown;
  date_created?: unknown;
}

/** The ListMessage query for the send (only the filters Twilio documents for it). */
export function lookupQuery(sent: SentMessage): URLSearchParams {
  const q = new URLSearchParams({ To: sent.to, PageSize: String(LOOKUP_PAGE_SIZE) });
  if (sent.from !== null) q.set("From", sent.from);
  return q;
}

/** Picks the message the gate sent from a ListMessage page: a settlement, or null when the page is not one. */
export function settlementFromList(sent: SentMessage, pageText: string): Settlement | null {
  let page: { messages?: unknown };
  try {
    page = JSON.parse(pageText) as { messages?: unknown };
  } catch {
    return null;
  }
  if (!Array.isArray(page.messages)) return null;
  for (const m of page.messages as MessageRow[]) {
    if (typeof m.sid !== "string" || !MESSAGE_SID.test(m.sid)) continue;
    const created = typeof m.date_created === "string" ? Date.parse(m.date_created) : Number.NaN;
    if (!Number.isFinite(created) || created < sent.reservedAtMs - CLOCK_SLACK_MS) continue;
    if (sent.body !== null && m.body !== sent.body) continue;
    if (sent.messagingServiceSid !== null && m.messaging_service_sid !== sent.messagingServiceSid) continue;
    return { type: "accepted", sid: m.sid };
  }
  return { type: "rejected" };
}
