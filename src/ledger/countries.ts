// Sends through the REST egress gate by destination country, per usage bucket (the pumping signal of
// GET /admin/accounts/:sid/usage): how many sends were made to each ISO 3166 country, what they cost and
// how many the gate refused. Pure: the AccountGuard keeps one bounded map per bucket (the `countries`
// column of usage_buckets, schema.ts) and changes it only through these functions, in the same
// transaction as the reservation or settlement the change comes from.
//
// Exactness with a bound: a bucket names at most MAX_COUNTRIES_PER_BUCKET countries; a send to another
// country once the bucket is full goes to OTHER. A bucket's keys are never removed (only whole buckets
// are pruned), so a country that has its own key at settlement time had it when the send was reserved
// (a full bucket gains no key): a settlement moves the figures of the key the send was counted under,
// and finds neither key only when the bucket itself was pruned, where there is nothing left to correct.

/**
 * Countries named per bucket before the rest is folded under OTHER: an account sends to a handful of
 * countries, traffic pumping spreads over dozens; 24 names them all in a normal bucket and keeps a
 * bucket's row under ~1 KB however many countries an attack reaches (2 × 138 buckets per account).
 */
export const MAX_COUNTRIES_PER_BUCKET = 24;
/** The key of the sends to countries past the bound. */
export const OTHER = "other";
/** The key of sends whose number names no country (not a valid E.164 number, or a client:/sip: address). */
export const UNKNOWN = "unknown";

export interface CountryFigures {
  /** Sends reserved (and not released: Twilio's error gives the send back). */
  sends: number;
  /** Their cost in micro-USD: the estimate until the real price replaces it. */
  usdMicros: number;
  /** Sends the gate refused in enforce mode (country not allowed, pumping rule, limit, open breaker). */
  blocked: number;
}

/** One bucket's figures by key (ISO 3166 alpha-2, UNKNOWN or OTHER). */
export type CountryMap = ReadonlyMap<string, CountryFigures>;

export type CountryDelta = CountryFigures;

/** The key a destination country is stored under (before the bound). */
export function countryKey(country: string | null): string {
  return country === null ? UNKNOWN : country;
}

function plus(a: CountryFigures | undefined, d: CountryDelta): CountryFigures {
  return { sends: (a?.sends ?? 0) + d.sends, usdMicros: (a?.usdMicros ?? 0) + d.usdMicros, blocked: (a?.blocked ?? 0) + d.blocked };
}

/** Keys that count against the bound: every key but OTHER. */
function named(map: CountryMap): number {
  return map.size - (map.has(OTHER) ? 1 : 0);
}

/** The key a new send is counted under: its own while the bucket has it or has room, else OTHER. */
function newSendKey(own: string, hasOwn: boolean, named: number): string {
  return hasOwn || named < MAX_COUNTRIES_PER_BUCKET ? own : OTHER;
}

/** The key a correction moves (see the top of this file): its own, else OTHER, else none (pruned). */
function correctionKey(own: string, hasOwn: boolean, hasOther: boolean): string | null {
  return hasOwn ? own : hasOther ? OTHER : null;
}

/** A new send (or refusal) to `country` at this bucket: its own key while there is room, else OTHER. */
export function addSend(map: CountryMap, country: string | null, delta: CountryDelta): CountryMap {
  const own = countryKey(country);
  const key = newSendKey(own, map.has(own), named(map));
  return new Map(map).set(key, plus(map.get(key), delta));
}

/**
 * A correction of a send already counted in this bucket (released, or its price known): moves the key it
 * was counted under (see the top of this file). Null when the bucket no longer holds it (pruned).
 */
export function correctSend(map: CountryMap, country: string | null, delta: CountryDelta): CountryMap | null {
  const own = countryKey(country);
  const key = correctionKey(own, map.has(own), map.has(OTHER));
  if (key === null) return null;
  return new Map(map).set(key, plus(map.get(key), delta));
}

/** Storage form: `{"US":[sends,usdMicros,blocked],…}` (compact: it is rewritten with every send). */
export function encodeCountries(map: CountryMap): string {
  return JSON.stringify(Object.fromEntries([...map].map(([k, f]) => [k, [f.sends, f.usdMicros, f.blocked]])));
}

/** Reads the stored form; NULL (a bucket no send touched, or written before schema 4) is an empty map. */
export function decodeCountries(text: string | null): Map<string, CountryFigures> {
  const map = new Map<string, CountryFigures>();
  if (text === null || text === "") return map;
  const parsed = JSON.parse(text) as Record<string, [number, number, number]>;
  for (const [k, [sends, usdMicros, blocked]] of Object.entries(parsed)) map.set(k, { sends, usdMicros, blocked });
  return map;
}

/**
 * addSend and correctSend on the storage form itself, for the AccountGuard's hot path (each send and
 * settlement rewrites two buckets): the parsed JSON object's arrays are changed in place and written
 * back, with no Map, figure objects or entry arrays between. Same result as
 * `encodeCountries(addSend(decodeCountries(text), …))` (and correctSend's, null included): keys keep
 * their order, a new key goes last (test/ledger/countries.test.ts checks them against each other).
 */
export function addSendStored(text: string | null, country: string | null, delta: CountryDelta): string {
  const parsed = parseStored(text);
  const own = countryKey(country);
  const hasOwn = Object.hasOwn(parsed, own);
  let named = 0;
  if (!hasOwn) for (const k in parsed) if (k !== OTHER) named++;
  addTo(parsed, newSendKey(own, hasOwn, named), delta);
  return JSON.stringify(parsed);
}

/** correctSend on the storage form (see addSendStored); null when the bucket no longer holds the send. */
export function correctSendStored(text: string | null, country: string | null, delta: CountryDelta): string | null {
  const parsed = parseStored(text);
  const own = countryKey(country);
  const key = correctionKey(own, Object.hasOwn(parsed, own), Object.hasOwn(parsed, OTHER));
  if (key === null) return null;
  addTo(parsed, key, delta);
  return JSON.stringify(parsed);
}

type StoredFigures = Record<string, [number, number, number]>;

function parseStored(text: string | null): StoredFigures {
  return text === null || text === "" ? {} : (JSON.parse(text) as StoredFigures);
}

function addTo(parsed: StoredFigures, key: string, d: CountryDelta): void {
  const f = Object.hasOwn(parsed, key) ? parsed[key] : undefined;
  if (f === undefined) parsed[key] = [d.sends, d.usdMicros, d.blocked];
  else {
    f[0] += d.sends;
    f[1] += d.usdMicros;
    f[2] += d.blocked;
  }
}

/** One country's line in an answer. */
export interface CountryPoint {
  country: string;
  sends: number;
  usd: number;
  blocked: number;
}

/** Sums maps (the range's total), as answer lines: most sends (then refusals, spend) first, OTHER last. */
export function countryLines(maps: Iterable<CountryMap>): CountryPoint[] {
  const sum = new Map<string, CountryFigures>();
  for (const map of maps) for (const [k, f] of map) sum.set(k, plus(sum.get(k), f));
  return [...sum]
    .filter(([, f]) => f.sends !== 0 || f.blocked !== 0 || f.usdMicros !== 0)
    .map(([country, f]) => ({ country, sends: f.sends, usd: f.usdMicros / 1_000_000, blocked: f.blocked }))
    .sort((a, b) =>
      Number(a.country === OTHER) - Number(b.country === OTHER) || b.sends - a.sends || b.blocked - a.blocked || b.usd - a.usd || a.country.localeCompare(b.country),
    );
}
