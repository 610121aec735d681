// E.164 numbers that exercise libphonenumber-js's country and validity steps (src/egress/phone-country.ts):
// every country's example number (the library's own `examples` export) and its one-digit mutations, a
// national prefix in front of it, numbers around every calling code (geographic and not) at every length,
// and the shared calling codes in depth (+1 by area code, +7 by three digits, +44 by four). Seeded.
import { getCountries, getCountryCallingCode, Metadata, parsePhoneNumberFromString, type CountryCode } from "libphonenumber-js/min";
import examples from "libphonenumber-js/mobile/examples";
import { Seeded } from "./seeded.ts";

/** Every calling code the metadata knows, geographic (+1, +44) or not (+800, +882). */
export function callingCodes(): string[] {
  const json = (new Metadata() as unknown as { metadata: { country_calling_codes: Record<string, string[]> } }).metadata;
  return Object.keys(json.country_calling_codes);
}

/** What src/egress/destination.ts answered before phone-country.ts: the library's own call. */
export function libraryCountry(e164: string): string | null {
  const parsed = parsePhoneNumberFromString(e164);
  return parsed !== undefined && parsed.isValid() ? (parsed.country ?? null) : null;
}

/** Each country's example (mobile) number as E.164, from the library's examples export. */
export function exampleNumbers(): Array<{ country: CountryCode; e164: string }> {
  const out: Array<{ country: CountryCode; e164: string }> = [];
  for (const country of getCountries()) {
    const national = (examples as Record<string, string | undefined>)[country];
    if (national !== undefined) out.push({ country, e164: `+${getCountryCallingCode(country)}${national}` });
  }
  return out;
}

const MAX_E164_DIGITS = 15;

function digits(rng: Seeded, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += String(rng.int(10));
  return s;
}

/**
 * Numbers to compare, each "+" and digits. `scale` (0–1] thins the generated (not the example) numbers
 * for a quicker run (the workerd suite); 1 is the full set (a few hundred thousand).
 */
export function phoneNumbersToCompare(seed: number, scale = 1): string[] {
  const rng = new Seeded(seed);
  const keep = () => scale >= 1 || rng.chance(scale);
  const out = new Set<string>();
  // Every country's example, one-digit mutations of it, one digit more or less, a national prefix in front.
  for (const { e164 } of exampleNumbers()) {
    out.add(e164);
    for (let i = 2; i < e164.length; i++) {
      for (let d = 0; d <= 9; d++) if (keep()) out.add(`${e164.slice(0, i)}${d}${e164.slice(i + 1)}`);
      if (keep()) out.add(`${e164.slice(0, i)}${e164.slice(i + 1)}`);
      if (keep()) out.add(`${e164.slice(0, i)}${rng.int(10)}${e164.slice(i)}`);
    }
    for (let d = 0; d <= 9; d++) out.add(`${e164}${d}`);
  }
  for (const { country, e164 } of exampleNumbers()) {
    const cc = getCountryCallingCode(country);
    const national = e164.slice(1 + cc.length);
    for (const prefix of ["0", "1", "8", "00", "01", "06", "09", "80", "810"]) out.add(`+${cc}${prefix}${national}`);
  }
  // Around every calling code: two leading digits × every national length, the rest random.
  for (const cc of callingCodes()) {
    for (let n = 0; n <= MAX_E164_DIGITS - cc.length; n++) {
      if (n <= 2) {
        for (let v = 0; v < 10 ** n; v++) out.add(`+${cc}${String(v).padStart(n, "0").slice(0, n)}`);
        continue;
      }
      for (let lead = 0; lead < 100; lead++) if (keep()) out.add(`+${cc}${String(lead).padStart(2, "0")}${digits(rng, n - 2)}`);
    }
  }
  // +1: every area code, exchanges 2–9 and 0–1 (the NANP countries share +1 by area code).
  for (let area = 200; area <= 999; area++) {
    for (let k = 0; k < 6; k++) if (keep()) out.add(`+1${area}${k < 4 ? 2 + rng.int(8) : rng.int(2)}${digits(rng, 6)}`);
    if (keep()) out.add(`+11${area}${digits(rng, 7)}`);
  }
  // +7 (Russia, Kazakhstan) by three digits; +44 (GB, GG, IM, JE) by four, with and without its 0.
  for (let p = 0; p < 1000; p++) for (let k = 0; k < 3; k++) if (keep()) out.add(`+7${String(p).padStart(3, "0")}${digits(rng, 7)}`);
  for (let p = 0; p < 10000; p++) {
    if (keep()) out.add(`+44${String(p).padStart(4, "0")}${digits(rng, 6)}`);
    if (keep()) out.add(`+440${String(p).padStart(4, "0")}${digits(rng, 6)}`);
  }
  // Short and odd: too few digits to be viable, a calling code alone, a leading 0.
  for (const s of ["+1", "+12", "+123", "+44", "+440", "+7", "+70", "+800", "+8001", "+012345", "+0441234567890"]) out.add(s);
  return [...out];
}

/**
 * Variants of the library's `min` metadata, for comparing the two implementations' *steps* beyond what
 * today's ranges reach: seeded random changes to each country's national pattern, possible lengths,
 * national prefix for parsing and its transform rule, leading digits and number types, plus +1 (US)
 * and +7 (RU) rewritten so that a national number can come out shorter than 2 digits, longer than 17,
 * or from an input of 2 digits. The positions are those of the metadata's v4 format (source/metadata.js):
 * 2 national pattern, 3 possible lengths, 7 national prefix for parsing, 8 its transform rule, 10 leading
 * digits, 11 number types ([pattern, lengths?] each).
 */
export function metadataVariant(json: object, seed: number): object {
  const rng = new Seeded(seed);
  const copy = structuredClone(json) as { countries: Record<string, unknown[]> };
  for (const plan of Object.values(copy.countries)) {
    if (rng.chance(0.3)) plan[2] = "\\d{4,12}";
    if (rng.chance(0.3)) {
      const lengths = [4, 5, 6, 7, 8, 9, 10, 11, 12].filter(() => rng.chance(0.4));
      plan[3] = lengths.length > 0 ? lengths : [8];
    }
    if (rng.chance(0.25)) {
      plan[7] = rng.pick(["0(\\d)?", "(\\d{2})0", "0|(1)", "([2-9]\\d{5})$|0", "(9)", "8"]);
      plan[8] = rng.chance(0.5) ? rng.pick(["9$1", "$1", "1481$1"]) : 0;
    }
    if (rng.chance(0.2)) plan[10] = 0;
    const types = plan[11];
    if (Array.isArray(types)) {
      for (let i = 0; i < types.length; i++) if (types[i] && rng.chance(0.2)) types[i] = rng.chance(0.5) ? ["\\d+"] : ["\\d+", [rng.int(8) + 4]];
    }
  }
  const anyLength = Array.from({ length: 40 }, (_, i) => i + 1);
  // +1: the whole rest doubled (a 2-digit input is long enough; a 15-digit one comes out 28 digits).
  Object.assign(copy.countries.US!, { 2: "\\d+", 3: anyLength, 7: "(\\d+)", 8: "$1$1", 10: 0, 11: [["\\d+"]] });
  // +7: a 0 stripped even when one digit is left.
  Object.assign(copy.countries.RU!, { 2: "\\d+", 3: anyLength, 7: "0", 8: 0, 10: 0, 11: [["\\d+"]] });
  return copy;
}
