// The destination of a send: the number it goes to, its ISO 3166 country (from the E.164 number with
// libphonenumber-js's `min` metadata, which knows every country's number ranges: phone-country.ts gives
// the library's answer with each country's patterns compiled once), its channel, and the keys the
// pumping rules count by. Pure.
import { phoneCountries } from "./phone-country.ts";

export type Channel = "sms" | "whatsapp" | "voice" | "other";

export interface Destination {
  /** The E.164 number (`+14155550123`), or the address as given when it is not a phone number. */
  address: string;
  /** Digits of the E.164 number, or null for addresses that are not numbers (client:, sip:, messenger:). */
  e164: string | null;
  /** ISO 3166-1 alpha-2, or null when the number's country cannot be determined (priced at `*`). */
  country: string | null;
}

/** Channel prefixes Twilio accepts in `To` (https://www.twilio.com/docs/messaging/api/message-resource). */
const CHANNEL_PREFIX = /^(whatsapp|messenger|rcs|client|sip):/i;
const E164 = /^\+[1-9][0-9]{1,14}$/;

export function destinationOf(to: string): { channelPrefix: string | null; destination: Destination } {
  const trimmed = to.trim();
  const prefix = CHANNEL_PREFIX.exec(trimmed)?.[1]?.toLowerCase() ?? null;
  const address = prefix === null ? trimmed : trimmed.slice(prefix.length + 1);
  // sip: and client: addresses are not phone numbers even when they hold digits.
  if (prefix === "sip" || prefix === "client" || prefix === "messenger" || !E164.test(address)) {
    return { channelPrefix: prefix, destination: { address: trimmed, e164: null, country: null } };
  }
  // Only a number valid for a country names it: a +1 number in no known range could be any NANP country.
  const country = phoneCountries.countryOf(address);
  return { channelPrefix: prefix, destination: { address, e164: address.slice(1), country } };
}

/** The block a number belongs to for `perPrefix`: every digit but the last `digits`. */
export function prefixOf(e164: string, digits: number): string {
  return e164.length > digits ? e164.slice(0, e164.length - digits) : "";
}
