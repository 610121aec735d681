// Differential test: src/egress/phone-country.ts (each country's patterns compiled once) against the call
// it replaces, `parsePhoneNumberFromString(n)` then `.isValid()` / `.country` of libphonenumber-js/min,
// over every country's example number and a few hundred thousand generated ones around every calling
// code (test/support/phone-numbers.ts). The answers must be equal for every number; the run must also
// name every country the examples name as valid, so the comparison is not only over invalid numbers.
// The same comparison then runs on seeded variants of the metadata (test/support/phone-numbers.ts
// metadataVariant), which reach the library's steps that today's ranges leave equivalent (a number too
// short or too long after its national prefix, a transform rule, lengths per number type): each of those
// steps left out of phone-country.ts fails it.
//
//   DIFF_SEED=<uint32>  replay a run (the seed is printed first)
import { Metadata, parsePhoneNumberFromString, type MetadataJson } from "libphonenumber-js/core";
import { getCountries } from "libphonenumber-js/min";
import metadata from "libphonenumber-js/min/metadata";
import { describe, expect, it } from "vitest";
import { PhoneCountries } from "../../src/egress/phone-country.ts";
import { exampleNumbers, libraryCountry, metadataVariant, phoneNumbersToCompare } from "../support/phone-numbers.ts";

const SEED = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) >>> 0 : (Date.now() ^ (Math.random() * 2 ** 32)) >>> 0;
console.log(`phone-country differential: DIFF_SEED=${SEED}`);

describe("phone-country against libphonenumber-js", () => {
  it("answers as parsePhoneNumberFromString(n).isValid() / .country for every generated number", () => {
    const ours = new PhoneCountries();
    const numbers = phoneNumbersToCompare(SEED);
    const differences: string[] = [];
    const validCountries = new Set<string>();
    let valid = 0;
    for (const n of numbers) {
      const expected = libraryCountry(n);
      const actual = ours.countryOf(n);
      if (actual !== expected) differences.push(`${n}: library ${expected}, ours ${actual}`);
      if (expected !== null) {
        valid++;
        validCountries.add(expected);
      }
    }
    console.log(`phone-country differential: ${numbers.length} numbers, ${valid} valid, ${validCountries.size} countries named`);
    expect(differences.slice(0, 20)).toEqual([]);
    expect(numbers.length).toBeGreaterThan(200_000);
    // Enough valid numbers, and of every country whose example the library itself calls valid.
    expect(valid).toBeGreaterThan(20_000);
    const exampleCountries = exampleNumbers().filter((e) => libraryCountry(e.e164) === e.country).map((e) => e.country);
    expect(exampleCountries.length).toBeGreaterThan(200);
    expect(exampleCountries.filter((c) => !validCountries.has(c))).toEqual([]);
  });

  it("takes the library's steps on variants of its metadata that reach what today's ranges do not", () => {
    // Changed patterns, lengths, national prefixes and transform rules (metadataVariant): a step of the
    // library's that phone-country.ts skipped or reordered shows here even where today's metadata hides it.
    const differences: string[] = [];
    let compared = 0;
    let valid = 0;
    for (const variantSeed of [SEED, SEED + 1, SEED + 2]) {
      const json = metadataVariant(metadata, variantSeed) as MetadataJson;
      const ours = new PhoneCountries(new Metadata(json) as unknown as ConstructorParameters<typeof PhoneCountries>[0]);
      for (const n of phoneNumbersToCompare(variantSeed, 0.1)) {
        const parsed = parsePhoneNumberFromString(n, json);
        const expected = parsed !== undefined && parsed.isValid() ? (parsed.country ?? null) : null;
        const actual = ours.countryOf(n);
        compared++;
        if (expected !== null) valid++;
        if (actual !== expected) differences.push(`variant ${variantSeed}, ${n}: library ${expected}, ours ${actual}`);
      }
    }
    console.log(`phone-country differential on metadata variants: ${compared} numbers, ${valid} valid`);
    expect(differences.slice(0, 20)).toEqual([]);
    expect(valid).toBeGreaterThan(10_000);
  });

  it("compiles at most one plan per country of the metadata", () => {
    const ours = new PhoneCountries();
    for (const n of phoneNumbersToCompare(SEED, 0.05)) ours.countryOf(n);
    expect(ours.compiledCountries).toBeGreaterThan(200);
    expect(ours.compiledCountries).toBeLessThanOrEqual(getCountries().length);
  });
});
