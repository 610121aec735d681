// src/egress/phone-country.ts in workerd: the library's answer for known numbers of shared calling codes,
// equal to libphonenumber-js over every country's example and a sample around every calling code (the
// whole differential run is test/node/phone-country.differential.test.ts), and its compiled plans reused.
import { describe, expect, it } from "vitest";
import { PhoneCountries } from "../../src/egress/phone-country.ts";
import { libraryCountry, phoneNumbersToCompare } from "../support/phone-numbers.ts";

describe("PhoneCountries", () => {
  it("names the country of shared calling codes by its leading digits or number types", () => {
    const pc = new PhoneCountries();
    expect(pc.countryOf("+14155552671")).toBe("US");
    expect(pc.countryOf("+14165550123")).toBe("CA");
    expect(pc.countryOf("+18765550123")).toBe("JM");
    expect(pc.countryOf("+17875550123")).toBe("PR");
    expect(pc.countryOf("+447400123456")).toBe("GB");
    expect(pc.countryOf("+447781123456")).toBe("GG");
    expect(pc.countryOf("+447797123456")).toBe("JE");
    expect(pc.countryOf("+447624123456")).toBe("IM");
    expect(pc.countryOf("+79123456789")).toBe("RU");
    expect(pc.countryOf("+77012345678")).toBe("KZ");
  });

  it("answers null where the library names no valid country", () => {
    const pc = new PhoneCountries();
    expect(pc.countryOf("+15555550123")).toBeNull(); // +1, in no NANP country's ranges
    expect(pc.countryOf("+80012345678")).toBeNull(); // non-geographic (+800)
    expect(pc.countryOf("+12")).toBeNull(); // too few digits
    expect(pc.countryOf("+44")).toBeNull(); // a calling code alone
    expect(pc.countryOf("+2999999999999")).toBeNull(); // no calling code +299 number this long
  });

  it("strips a national prefix written after the calling code, as the library does", () => {
    const pc = new PhoneCountries();
    expect(pc.countryOf("+4407400123456")).toBe(libraryCountry("+4407400123456"));
    expect(pc.countryOf("+4407400123456")).toBe("GB");
  });

  it("answers as libphonenumber-js over every country's example and a sample around every calling code", () => {
    const pc = new PhoneCountries();
    const seed = (Date.now() ^ (Math.random() * 2 ** 32)) >>> 0;
    const differences = phoneNumbersToCompare(seed, 0.02).filter((n) => pc.countryOf(n) !== libraryCountry(n));
    expect({ seed, differences: differences.slice(0, 10) }).toEqual({ seed, differences: [] });
  });

  it("compiles a country's plan once and reuses it", () => {
    const pc = new PhoneCountries();
    pc.countryOf("+14155552671");
    const compiled = pc.compiledCountries;
    const plan = pc.plan("US");
    for (let i = 0; i < 100; i++) pc.countryOf(`+1415555${String(1000 + i)}`);
    expect(pc.compiledCountries).toBe(compiled);
    expect(pc.plan("US")).toBe(plan);
  });
});
