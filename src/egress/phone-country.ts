// The country of an E.164 number, as libphonenumber-js answers it, without its garbage. Pure.
//
// `parsePhoneNumberFromString(n)` then `.isValid()` (libphonenumber-js/min) rebuilds a `Metadata` object
// several times and a RegExp for every pattern it tries on every call (its `matchesEntirely`): about
// 4 KB of young-generation garbage per send through the gate (docs/benchmarks.md, section 6). This
// module answers the same question, `parsed?.isValid() ? parsed.country ?? null : null`, by the same
// steps over the same metadata (read through the library's own `Metadata` accessors, never a table of
// ours), with each country's patterns compiled once, when a number of that country is first seen (at
// most one entry per country in the metadata). test/node/phone-country.differential.test.ts proves the
// answer equal to the library's over every country's example number and ~290,000 generated ones, and
// over seeded variants of the metadata that reach the steps today's ranges do not; it fails when an
// upgrade of the library changes its steps or its data.
//
// The library's steps for "+<digits>" (source/parse.js, helpers/*.js of libphonenumber-js 1.13):
//   1. fewer than 3 digits is not a viable number (isViablePhoneNumber): no answer;
//   2. the calling code is the shortest prefix of 1–3 digits the metadata knows (extractCountryCallingCode);
//   3. the national number: the calling code's main country's national prefix is stripped (its
//      national_prefix_for_parsing, with its transform rule), unless that turns a number matching the
//      national pattern into one that does not, or leaves a number too short or of an impossible length
//      for the country it then belongs to (extractNationalNumber);
//   4. the country: the only one of the calling code, or the first of its countries whose leading digits
//      start the national number or, for a country without them, whose number types match it
//      (getCountryByNationalNumber); a non-geographic calling code (+800, +882, …) has none;
//   5. valid: the national number matches the country's national pattern and, when the country has number
//      types, one of them (getNumberType / isValidNumber).
import { Metadata } from "libphonenumber-js/min";

/** libphonenumber-js: a number of fewer digits is not viable (MIN_LENGTH_FOR_NSN + 1 with the `+`'s pattern). */
const MIN_VIABLE_DIGITS = 3;
/** libphonenumber-js: a national (significant) number has 2 to 17 digits (MIN_/MAX_LENGTH_FOR_NSN). */
const MIN_NATIONAL_DIGITS = 2;
const MAX_NATIONAL_DIGITS = 17;
/** libphonenumber-js: calling codes have 1 to 3 digits (MAX_LENGTH_COUNTRY_CODE). */
const MAX_CALLING_CODE_DIGITS = 3;
/** Every number type `getNumberType` tries (FIXED_LINE first, then NON_FIXED_LINE_PHONE_TYPES). */
const NUMBER_TYPES = ["FIXED_LINE", "MOBILE", "PREMIUM_RATE", "TOLL_FREE", "SHARED_COST", "VOIP", "PERSONAL_NUMBER", "PAGER", "UAN", "VOICEMAIL"];

/**
 * The runtime accessors of the library's `Metadata` class (source/metadata.js) that this module reads;
 * its .d.ts declares only a few of them. A renamed accessor fails the differential test at once.
 */
interface LibraryType {
  pattern(): string;
  possibleLengths(): number[] | undefined;
}
interface LibraryPlan {
  nationalNumberPattern(): string;
  possibleLengths(): number[] | undefined;
  nationalPrefixForParsing(): string | undefined;
  nationalPrefixTransformRule(): string | undefined;
  leadingDigits(): string | undefined;
  hasTypes(): boolean;
  type(name: string): LibraryType | undefined;
}
interface LibraryMetadata {
  hasCallingCode(callingCode: string): boolean | undefined;
  getCountryCodesForCallingCode(callingCode: string): string[] | undefined;
  selectNumberingPlan(country: string): unknown;
  numberingPlan: LibraryPlan;
}

/** One number type of a country: its pattern, compiled, and the lengths it allows (none: any). */
interface NumberType {
  pattern: RegExp;
  lengths: readonly number[] | null;
}

/** A country's numbering plan with its patterns compiled (what `matchesEntirely` builds per call). */
export interface CompiledPlan {
  nationalNumber: RegExp;
  possibleLengths: readonly number[] | null;
  /** Its national prefix for parsing, anchored at the start, or null when it has none. */
  prefixForParsing: RegExp | null;
  transformRule: string | null;
  /** Its leading digits, anchored at the start (`search(...) === 0`), or null when it has none. */
  leadingDigits: RegExp | null;
  hasTypes: boolean;
  types: readonly NumberType[];
}

/** The whole of `pattern` (`matchesEntirely`). */
const entirely = (pattern: string) => new RegExp(`^(?:${pattern})$`);
/** A match of `pattern` at the start. */
const atStart = (pattern: string) => new RegExp(`^(?:${pattern})`);

export class PhoneCountries {
  readonly #metadata: LibraryMetadata;
  /** Compiled plans by ISO country code; bounded by the metadata's countries (245). */
  readonly #plans = new Map<string, CompiledPlan>();

  constructor(metadata: LibraryMetadata = new Metadata() as unknown as LibraryMetadata) {
    this.#metadata = metadata;
  }

  /** How many countries' plans are compiled (for tests: bounded by the metadata). */
  get compiledCountries(): number {
    return this.#plans.size;
  }

  /**
   * The ISO 3166 country of a valid number, or null (not valid for any country, not a country's:
   * a non-geographic calling code, or a shared calling code none of whose countries it fits).
   * `e164` is `+` and digits (the caller checks the form).
   */
  countryOf(e164: string): string | null {
    if (e164.length - 1 < MIN_VIABLE_DIGITS) return null;
    let end = 2;
    for (; end - 1 <= MAX_CALLING_CODE_DIGITS && end <= e164.length; end++) {
      if (this.#metadata.hasCallingCode(e164.slice(1, end))) break;
    }
    if (end - 1 > MAX_CALLING_CODE_DIGITS || end > e164.length) return null;
    const countries = this.#metadata.getCountryCodesForCallingCode(e164.slice(1, end));
    // A non-geographic calling code has a plan but no country: the library's answer has none.
    if (countries === undefined) return null;
    const rest = e164.slice(end);
    if (rest === "") return null;
    const national = this.#nationalNumber(rest, countries);
    if (national.length < MIN_NATIONAL_DIGITS || national.length > MAX_NATIONAL_DIGITS) return null;
    const country = this.#countryAmong(national, countries);
    if (country === undefined) return null;
    const plan = this.plan(country);
    return (plan.hasTypes ? hasNumberType(plan, national) : plan.nationalNumber.test(national)) ? country : null;
  }

  /** A country's plan, compiled on first use. */
  plan(country: string): CompiledPlan {
    let plan = this.#plans.get(country);
    if (plan === undefined) {
      plan = this.#compile(country);
      this.#plans.set(country, plan);
    }
    return plan;
  }

  #compile(country: string): CompiledPlan {
    this.#metadata.selectNumberingPlan(country);
    const p = this.#metadata.numberingPlan;
    const types: NumberType[] = [];
    if (p.hasTypes()) {
      for (const name of NUMBER_TYPES) {
        const type = p.type(name);
        if (type === undefined || !type.pattern()) continue;
        types.push({ pattern: entirely(type.pattern()), lengths: type.possibleLengths() || null });
      }
    }
    const prefix = p.nationalPrefixForParsing();
    const leading = p.leadingDigits();
    return {
      nationalNumber: entirely(p.nationalNumberPattern()),
      possibleLengths: p.possibleLengths() || null,
      prefixForParsing: prefix ? atStart(prefix) : null,
      transformRule: p.nationalPrefixTransformRule() || null,
      leadingDigits: leading ? atStart(leading) : null,
      hasTypes: p.hasTypes(),
      types,
    };
  }

  /** The national number after the calling code's main country's national prefix (step 3). */
  #nationalNumber(rest: string, countries: readonly string[]): string {
    const main = this.plan(countries[0]!);
    if (main.prefixForParsing === null) return rest;
    const match = main.prefixForParsing.exec(rest);
    if (match === null) return rest;
    const groups = match.length - 1;
    const captured = groups > 0 && Boolean(match[groups]);
    const national = main.transformRule !== null && captured ? rest.replace(main.prefixForParsing, main.transformRule) : rest.slice(match[0].length);
    if (national === rest) return rest;
    // Not stripped when that makes a number of the national pattern one that is not.
    if (main.nationalNumber.test(rest) && !main.nationalNumber.test(national)) return rest;
    if (main.possibleLengths !== null) {
      const country = this.#countryAmong(national, countries);
      const lengths = country === undefined ? main.possibleLengths : this.plan(country).possibleLengths;
      if (lengths !== null && !possibleIncomplete(national.length, lengths)) return rest;
    }
    return national;
  }

  /** Step 4: the calling code's only country, or the first whose leading digits or number types fit. */
  #countryAmong(national: string, countries: readonly string[]): string | undefined {
    if (countries.length === 1) return countries[0];
    for (const country of countries) {
      const plan = this.plan(country);
      if (plan.leadingDigits !== null) {
        if (national !== "" && plan.leadingDigits.test(national)) return country;
      } else if (hasNumberType(plan, national)) {
        return country;
      }
    }
    return undefined;
  }
}

/** `getNumberType(...) !== undefined`: the national pattern and one of the country's number types match. */
function hasNumberType(plan: CompiledPlan, national: string): boolean {
  if (!plan.nationalNumber.test(national)) return false;
  for (const type of plan.types) {
    if (type.lengths !== null && !type.lengths.includes(national.length)) continue;
    if (type.pattern.test(national)) return true;
  }
  return false;
}

/** `checkNumberLength` is neither TOO_SHORT nor INVALID_LENGTH (TOO_LONG still counts as possible here). */
function possibleIncomplete(length: number, lengths: readonly number[]): boolean {
  const shortest = lengths[0]!;
  if (length === shortest) return true;
  if (length < shortest) return false;
  if (lengths[lengths.length - 1]! < length) return true;
  return lengths.indexOf(length, 1) >= 0;
}

/** One per isolate: each country's patterns are compiled once for all sends. */
export const phoneCountries = new PhoneCountries();
