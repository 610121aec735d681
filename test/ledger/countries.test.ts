// Sends by destination country per usage bucket (src/ledger/countries.ts): bounded, and corrected under
// the key a send was counted under.
import { describe, expect, it } from "vitest";
import {
  MAX_COUNTRIES_PER_BUCKET,
  OTHER,
  UNKNOWN,
  addSend,
  addSendStored,
  correctSend,
  correctSendStored,
  countryLines,
  decodeCountries,
  encodeCountries,
  type CountryMap,
} from "../../src/ledger/countries.ts";
import { Seeded } from "../support/seeded.ts";

const SEND = { sends: 1, usdMicros: 8_300, blocked: 0 };
const REFUSED = { sends: 0, usdMicros: 0, blocked: 1 };
const RELEASE = { sends: -1, usdMicros: -8_300, blocked: 0 };

/** A bucket already naming `n` countries (AA, AB, …: any two letters will do for the bound). */
function full(n: number): CountryMap {
  let map: CountryMap = new Map();
  for (let i = 0; i < n; i++) map = addSend(map, String.fromCharCode(65 + Math.floor(i / 26), 65 + (i % 26)), SEND);
  return map;
}

describe("addSend", () => {
  it("adds sends, spend and refusals under the country, a number of no country under unknown", () => {
    let map = addSend(new Map(), "US", SEND);
    map = addSend(map, "US", SEND);
    map = addSend(map, "CU", REFUSED);
    map = addSend(map, null, SEND);
    expect(Object.fromEntries(map)).toEqual({
      US: { sends: 2, usdMicros: 16_600, blocked: 0 },
      CU: { sends: 0, usdMicros: 0, blocked: 1 },
      [UNKNOWN]: SEND,
    });
  });

  it(`names at most ${MAX_COUNTRIES_PER_BUCKET} countries per bucket and folds the rest under ${OTHER}`, () => {
    const bucket = full(MAX_COUNTRIES_PER_BUCKET);
    const more = addSend(addSend(bucket, "ZW", SEND), "ZM", REFUSED);
    expect(more.size).toBe(MAX_COUNTRIES_PER_BUCKET + 1);
    expect(more.has("ZW")).toBe(false);
    expect(more.get(OTHER)).toEqual({ sends: 1, usdMicros: 8_300, blocked: 1 });
    // A country already named keeps its own key.
    expect(addSend(more, "AA", SEND).get("AA")!.sends).toBe(2);
  });

  it("leaves the map it was given unchanged", () => {
    const before = addSend(new Map(), "US", SEND);
    addSend(before, "US", SEND);
    expect(before.get("US")!.sends).toBe(1);
  });
});

describe("correctSend", () => {
  it("moves the country the send was counted under", () => {
    const map = addSend(addSend(new Map(), "GB", SEND), "GB", SEND);
    expect(correctSend(map, "GB", RELEASE)!.get("GB")).toEqual(SEND);
    expect(correctSend(map, "GB", { sends: 0, usdMicros: 31_700, blocked: 0 })!.get("GB")).toEqual({ sends: 2, usdMicros: 48_300, blocked: 0 });
  });

  it(`moves ${OTHER} for a send folded there, never gives the country a key of its own`, () => {
    const map = addSend(full(MAX_COUNTRIES_PER_BUCKET), "ZW", SEND);
    const after = correctSend(map, "ZW", RELEASE)!;
    expect(after.has("ZW")).toBe(false);
    expect(after.get(OTHER)).toEqual({ sends: 0, usdMicros: 0, blocked: 0 });
  });

  it("changes nothing when the bucket no longer holds the send (pruned)", () => {
    expect(correctSend(new Map(), "US", RELEASE)).toBeNull();
  });
});

describe("storage form", () => {
  it("round-trips, compactly", () => {
    const map = addSend(addSend(new Map(), "US", SEND), "CU", REFUSED);
    const text = encodeCountries(map);
    expect(text).toBe('{"US":[1,8300,0],"CU":[0,0,1]}');
    expect(decodeCountries(text)).toEqual(map);
    expect(decodeCountries(null).size).toBe(0);
  });

  it("stays under 1 KB for a bucket at its bound", () => {
    const map = addSend(full(MAX_COUNTRIES_PER_BUCKET), "ZW", { sends: 999_999, usdMicros: 99_999_999_999, blocked: 999_999 });
    expect(encodeCountries(map).length).toBeLessThan(1024);
  });
});

describe("countryLines", () => {
  it("sums buckets, most sends first, other last, and leaves out keys that came back to zero", () => {
    const a = addSend(addSend(addSend(new Map(), "GB", SEND), OTHER, SEND), "DE", SEND);
    const b = addSend(addSend(new Map(), "US", SEND), "US", SEND);
    const released = correctSend(a, "DE", RELEASE)!;
    expect(countryLines([released, b])).toEqual([
      { country: "US", sends: 2, usd: 0.0166, blocked: 0 },
      { country: "GB", sends: 1, usd: 0.0083, blocked: 0 },
      { country: OTHER, sends: 1, usd: 0.0083, blocked: 0 },
    ]);
  });
});

describe("addSendStored and correctSendStored", () => {
  it("give the stored form the Map functions give, over seeded scripts past the bound", () => {
    for (const seed of [1, 7, 42]) {
      const rnd = new Seeded(seed);
      let map: CountryMap = new Map();
      let text: string | null = rnd.chance(0.5) ? null : "";
      for (let step = 0; step < 400; step++) {
        // 40 countries (past the bound of 24), the unknown one, and sends, refusals, releases, price moves.
        const country = rnd.chance(0.05) ? null : String.fromCharCode(65 + rnd.int(2), 65 + rnd.int(20));
        const delta = rnd.pick([SEND, REFUSED, RELEASE, { sends: 0, usdMicros: rnd.int(20_000) - 10_000, blocked: 0 }]);
        if (rnd.chance(0.6)) {
          map = addSend(map, country, delta);
          text = addSendStored(text, country, delta);
        } else {
          const corrected = correctSend(map, country, delta);
          const stored = correctSendStored(text, country, delta);
          expect(stored === null, `seed ${seed} step ${step}`).toBe(corrected === null);
          if (corrected === null || stored === null) continue;
          map = corrected;
          text = stored;
        }
        expect(text, `seed ${seed} step ${step}`).toBe(encodeCountries(map));
      }
      expect(decodeCountries(text).size).toBeLessThanOrEqual(MAX_COUNTRIES_PER_BUCKET + 1);
    }
  });

  it("finds nothing to correct in an empty or absent bucket", () => {
    expect(correctSendStored(null, "US", RELEASE)).toBeNull();
    expect(correctSendStored("", "US", RELEASE)).toBeNull();
  });
});
