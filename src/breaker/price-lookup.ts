// The real price of a send through the REST egress gate (CONTRACT.md: "the real price replaces the
// estimate when Twilio reports it"). Twilio fills a Message's or Call's `price` late: null at first, a
// negative decimal string once billed (FetchMessage / FetchCall in twilio_api_v2010.json: "populated
// after the message has been sent", "after the call is completed. May not be immediately available").
//
// When a gate send's final status arrives without a Price (the callback had none, nor had Twilio's
// answer), the AccountGuard marks its ledger entry as awaiting its price (entries.ts awaitPrice: once per
// Sid) and queues one `price-lookup` row in its outbox (outbox.ts runs it from the alarm, so it survives
// eviction). Each attempt GETs the resource with the parent's credentials; no price yet: again later with
// backoff; a price: applied to the entry through entries.ts realPrice, which changes a Sid once, so a
// Price that came with a status callback first, or a lookup run twice, counts nothing more.
import type { SendPrice } from "../twilio/rest.ts";
import type { Backoff } from "../ledger/backoff.ts";

/**
 * Twilio documents a price as filled within 24 hours of the send; twice that covers a late day, and then
 * the lookup stops: the send stays at its estimate, and the day's reconciliation with Twilio's own usage
 * records (src/ledger/reconcile.ts) still holds the day's spend to Twilio's figure.
 */
export const PRICE_LOOKUP_HORIZON_MS = 48 * 3_600_000;
/** The first look, a minute after the final status: a message's price usually shows within that. */
export const PRICE_LOOKUP_FIRST_DELAY_MS = 60_000;
/** Then from a minute, doubling, at most an hour apart: a price missing for the whole horizon costs about 50 GETs. */
export const PRICE_LOOKUP_BACKOFF: Backoff = { baseMs: 60_000, capMs: 3_600_000 };
/**
 * Lookups one account keeps waiting at most. Past it a send is not looked up (logged, counted as
 * `over-bound`) and keeps its estimate, corrected only by the day's reconciliation; a later status of it
 * tries again once room is back. 1000 rows are about 200 KB of outbox and one 1000-send burst.
 */
export const MAX_PENDING_PRICE_LOOKUPS = 1_000;
/** One alarm run makes at most this many lookups (after the account's own effects); the alarm comes back for the rest. */
export const PRICE_LOOKUPS_PER_RUN = 25;

/** An outbox row's payload: which resource to read, and which ledger entry it prices. */
export interface PriceLookup {
  /** The MessageSid or CallSid. */
  sid: string;
  kind: "message" | "call";
  countKey: string;
  /** When the lookup was queued: the horizon counts from here. */
  since: number;
}

/** No price to apply: not yet (retried), or never (`permanent`: no such resource, another currency). */
export class PriceUnavailable extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent: boolean) {
    super(message);
    this.permanent = permanent;
  }
}

/** The USD amount a lookup's answer gives the ledger, or why there is none. */
export function readPrice(found: SendPrice | null): number {
  if (found === null) throw new PriceUnavailable("Twilio has no such resource (404)", true);
  if (found.usd === null) throw new PriceUnavailable(`no price yet (status ${found.status || "unknown"})`, false);
  // The ledger counts USD; an account billed in another currency has no USD price to apply.
  if (found.unit !== null && found.unit.toUpperCase() !== "USD") throw new PriceUnavailable(`priced in ${found.unit}, not USD`, true);
  return found.usd;
}
