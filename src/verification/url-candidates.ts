// The URL strings Twilio may have signed for a request the Worker received. Pure string work with
// web-standard APIs only; no Worker types (the CLI and the Node differential tests import it).
//
// Twilio signs "the webhook URL set in Twilio" exactly as configured
// (https://www.twilio.com/docs/usage/webhooks/webhooks-security), but the Worker only sees
// `request.url`, re-serialized by a WHATWG URL parser: default port dropped, an empty path turned into
// "/", and characters such as space, `"`, `<`, `>`, non-ASCII (and `'` in the query) percent-encoded.
// twilio-node's validateRequest() rebuilds its fallbacks from `new URL()` and so never undoes those
// escapes (twilio/twilio-node#1183); here we do, in a small fixed number of candidates.

/**
 * Upper bound on candidate URLs, so a bad signature costs at most this many HMACs per token: the first
 * tier (ports × userinfo × the five whole-URL forms) and, after it, partial undos of typed escapes.
 */
export const MAX_URL_CANDIDATES = 40;

/** Twilio's SDKs try the URL with and without the scheme's default port (twilio-node addPort/removePort). */
const DEFAULT_PORT_HTTPS = ":443";
const DEFAULT_PORT_OTHER = ":80";

/**
 * node:querystring.parse stops after this many pairs by default, so twilio-node's legacy-querystring
 * fallback signs only the first 1000 pieces of a longer query: whatever follows (`&MessageSid=…&Price=…`
 * after 998 `&`s) would ride along unsigned. Past this many pieces there is no legacy candidate at all.
 */
export const LEGACY_QS_MAX_KEYS = 1000;

/**
 * ASCII characters the WHATWG URL parser percent-encodes when it serializes a URL
 * (https://url.spec.whatwg.org/#percent-encoded-bytes), besides C0 controls and non-ASCII (which
 * Twilio's console would not take raw): in a special-scheme query, the query set (space " # < >) and
 * `'`; in a path, the path set (the query set plus ? ^ ` { }). `#` and `?` cannot be raw where they
 * would end the part, so they are left out. Only these escapes (and UTF-8 of non-ASCII) may have been
 * added on the way to the Worker; every other %XX was typed by the user.
 */
const QUERY_ADDED_ASCII: ReadonlySet<number> = new Set([0x20, 0x22, 0x3c, 0x3e, 0x27]);
const PATH_ADDED_ASCII: ReadonlySet<number> = new Set([0x20, 0x22, 0x3c, 0x3e, 0x5e, 0x60, 0x7b, 0x7d]);

/** Where a piece of URL sits: the parser escapes a different set in each. */
export type UrlPart = "path" | "query";

function addedSet(part: UrlPart): ReadonlySet<number> {
  return part === "path" ? PATH_ADDED_ASCII : QUERY_ADDED_ASCII;
}

export interface UrlParts {
  scheme: string; // "https://" as written
  userInfo: string; // "" or "user:pass@"
  host: string;
  port: string; // "" or ":8443"
  path: string; // everything up to '?' or '#'
  query: string; // "" or "?..." (with any "#..." after it)
}

/**
 * Splits an absolute URL without normalizing it (twilio-node's splitUrl), so every part keeps the exact
 * characters that were signed. Returns null when there is no `scheme://`.
 */
export function splitUrl(url: string): UrlParts | null {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)/i.exec(url);
  if (!match) return null;
  const [prefix, scheme = "", authority = ""] = match;
  const userInfoEnd = authority.lastIndexOf("@");
  const hostAndPort = authority.slice(userInfoEnd + 1);
  // A colon only starts the port after the closing bracket of an IPv6 literal.
  const portStart = hostAndPort.indexOf(":", hostAndPort.lastIndexOf("]") + 1);
  const rest = url.slice(prefix.length);
  const queryStart = rest.search(/[?#]/);
  return {
    scheme,
    userInfo: authority.slice(0, userInfoEnd + 1),
    host: portStart === -1 ? hostAndPort : hostAndPort.slice(0, portStart),
    port: portStart === -1 ? "" : hostAndPort.slice(portStart),
    path: queryStart === -1 ? rest : rest.slice(0, queryStart),
    query: queryStart === -1 ? "" : rest.slice(queryStart),
  };
}

function defaultPort(scheme: string): string {
  return scheme.toLowerCase() === "https://" ? DEFAULT_PORT_HTTPS : DEFAULT_PORT_OTHER;
}

const HEX = /^[0-9A-F]{2}$/;

/** Length of the valid UTF-8 sequence starting at bytes[i] (2–4), or 0 (Unicode Table 3-7). */
function utf8SequenceLength(bytes: readonly number[], i: number): number {
  const b0 = bytes[i]!;
  let length: number;
  let low = 0x80;
  let high = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) length = 2;
  else if (b0 >= 0xe0 && b0 <= 0xef) {
    length = 3;
    if (b0 === 0xe0) low = 0xa0;
    if (b0 === 0xed) high = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    length = 4;
    if (b0 === 0xf0) low = 0x90;
    if (b0 === 0xf4) high = 0x8f;
  } else return 0;
  if (i + length > bytes.length) return 0;
  const b1 = bytes[i + 1]!;
  if (b1 < low || b1 > high) return 0;
  for (let k = 2; k < length; k++) {
    const b = bytes[i + k]!;
    if (b < 0x80 || b > 0xbf) return 0;
  }
  return length;
}

const utf8Decoder = new TextDecoder();

/** A piece of text: kept as it is, or an escape the parser may have added (`char` is what it encodes). */
type Unit = { text: string; char?: string };

/** Splits a run of %XX escapes into the escapes the parser may have added (ASCII of `part`'s set, UTF-8 of non-ASCII) and the rest. */
function escapeRunUnits(run: string, part: UrlPart, out: Unit[]): void {
  const added = addedSet(part);
  const bytes: number[] = [];
  for (let i = 0; i < run.length; i += 3) bytes.push(parseInt(run.slice(i + 1, i + 3), 16));
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    if (b < 0x80) {
      const text = run.slice(i * 3, i * 3 + 3);
      out.push(added.has(b) ? { text, char: String.fromCharCode(b) } : { text });
      i++;
      continue;
    }
    const length = utf8SequenceLength(bytes, i);
    if (length === 0) {
      out.push({ text: run.slice(i * 3, i * 3 + 3) });
      i++;
      continue;
    }
    out.push({ text: run.slice(i * 3, (i + length) * 3), char: utf8Decoder.decode(new Uint8Array(bytes.slice(i, i + length))) });
    i += length;
  }
}

/** The text as units; only uppercase %XX can come from the parser (it writes uppercase hex). */
function unitsOf(text: string, part: UrlPart): Unit[] {
  const units: Unit[] = [];
  const runs = /(?:%[0-9A-F]{2})+/g;
  let last = 0;
  for (let match = runs.exec(text); match !== null; match = runs.exec(text)) {
    if (match.index > last) units.push({ text: text.slice(last, match.index) });
    escapeRunUnits(match[0], part, units);
    last = match.index + match[0].length;
  }
  if (last < text.length) units.push({ text: text.slice(last) });
  return units;
}

/** The distinct characters whose escapes may have been added, in order of first appearance. */
function addedChars(units: readonly Unit[]): string[] {
  const chars: string[] = [];
  for (const unit of units) if (unit.char !== undefined && !chars.includes(unit.char)) chars.push(unit.char);
  return chars;
}

function undoChars(units: readonly Unit[], chars: ReadonlySet<string> | "all"): string {
  let out = "";
  for (const unit of units) out += unit.char !== undefined && (chars === "all" || chars.has(unit.char)) ? unit.char : unit.text;
  return out;
}

/**
 * Undoes every escape the WHATWG parser may have added in this part of a URL: uppercase %XX of the
 * part's set (QUERY_ADDED_ASCII / PATH_ADDED_ASCII) and valid UTF-8 sequences of non-ASCII characters.
 * Everything else (e.g. %25, %2B, %26, lowercase hex) is kept: the parser never writes those.
 */
export function undoAddedEscapes(text: string, part: UrlPart): string {
  if (!text.includes("%")) return text;
  return undoChars(unitsOf(text, part), "all");
}

/**
 * Which characters to restore, beyond "all" and "none": a user may have typed some escapes (`%C3%A9`,
 * `%3E`) and left other characters raw (`It's`), and the Worker cannot tell a typed escape from an
 * added one. Each distinct character is taken as typed one way throughout (a URL mixing a typed `%27`
 * with a raw `'` stays out of reach): with up to SUBSET_CHARS_MAX distinct characters every choice is
 * tried, smallest first; with more, each character alone and all but each one.
 */
const SUBSET_CHARS_MAX = 4;

function* partialUndos(chars: readonly string[]): Generator<ReadonlySet<string>> {
  const n = chars.length;
  if (n < 2) return;
  if (n <= SUBSET_CHARS_MAX) {
    const masks: number[] = [];
    for (let mask = 1; mask < (1 << n) - 1; mask++) masks.push(mask);
    const bits = (m: number) => m.toString(2).replaceAll("0", "").length;
    masks.sort((a, b) => bits(a) - bits(b) || a - b);
    for (const mask of masks) yield new Set(chars.filter((_, i) => (mask >> i) & 1));
    return;
  }
  for (const c of chars) yield new Set([c]);
  for (const c of chars) yield new Set(chars.filter((x) => x !== c));
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/** node:querystring's unescape: decodeURIComponent, else byte-wise with bad escapes kept, then UTF-8. */
function legacyUnescape(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    const bytes: number[] = [];
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === 0x25 && i < text.length - 2) {
        const high = hexValue(text.charCodeAt(i + 1));
        const low = high >= 0 ? hexValue(text.charCodeAt(i + 2)) : -1;
        if (low >= 0) {
          bytes.push(high * 16 + low);
          i += 2;
          continue;
        }
      }
      bytes.push(code & 0xff); // node writes the char code into a byte; the query here is ASCII
    }
    return utf8Decoder.decode(new Uint8Array(bytes));
  }
}

function isArrayIndex(key: string): boolean {
  return /^(?:0|[1-9][0-9]*)$/.test(key) && Number(key) < 2 ** 32 - 1;
}

/**
 * `querystring.stringify(querystring.parse(q))` from Node, without Node: what twilio-node's
 * withLegacyQuerystring() fallback signs (for back ends that signed an escaped query). Reproduces its
 * quirks: '+' → space → %20, repeated keys grouped at their first position, integer keys first (JS
 * object key order), empty pieces dropped. Expects an ASCII query (a parsed URL's). Null when the
 * query has more than LEGACY_QS_MAX_KEYS pieces: Node would sign a truncated query, which covers
 * less than the guard forwards.
 */
export function legacyQuerystring(query: string): string | null {
  const groups = new Map<string, string[]>();
  const pieces = query.split("&");
  if (pieces.length > LEGACY_QS_MAX_KEYS) return null;
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    const last = i === pieces.length - 1;
    if (piece !== "") {
      const eq = piece.indexOf("=");
      const key = legacyUnescape((eq === -1 ? piece : piece.slice(0, eq)).replaceAll("+", " "));
      const value = eq === -1 ? "" : legacyUnescape(piece.slice(eq + 1).replaceAll("+", " "));
      const values = groups.get(key);
      if (values) values.push(value);
      else groups.set(key, [value]);
    } else if (last) break;
  }
  const keys = [...groups.keys()];
  const indexKeys = keys.filter(isArrayIndex).sort((a, b) => Number(a) - Number(b));
  const otherKeys = keys.filter((key) => !isArrayIndex(key));
  const fields: string[] = [];
  for (const key of [...indexKeys, ...otherKeys]) {
    const encodedKey = encodeURIComponent(key);
    for (const value of groups.get(key)!) fields.push(`${encodedKey}=${encodeURIComponent(value)}`);
  }
  return fields.join("&");
}

/** twilio-node's withLegacyQuerystring on the query part ("" or "?..."); null when there is none to try. */
function legacyQuery(query: string): string | null {
  if (query.length <= 1 || !query.startsWith("?")) return query;
  const legacy = legacyQuerystring(query.slice(1));
  return legacy === null ? null : `?${legacy}`;
}

/** An absolute URL without "user:password@" (splitUrl would find no userinfo in it). */
const PLAIN_ABSOLUTE_URL = /^[a-z][a-z0-9+.-]*:\/\/[^/?#@]*(?:[/?#]|$)/i;

export interface CandidateInput {
  url: string;
  /** PUBLIC_URL: one base URL, or several (each accepted). Absent or empty: the request's own URL. */
  publicUrl?: string | readonly string[] | undefined;
  basicAuth?: { user: string; password: string } | undefined;
}

function basicUserInfo(user: string, password: string): string {
  // Encoded as a WHATWG URL would hold them (what the user would have pasted into the Twilio console).
  const holder = new URL("http://h.invalid/");
  holder.username = user;
  holder.password = password;
  return `${holder.username}${holder.password ? `:${holder.password}` : ""}@`;
}

function once<T>(make: () => T): () => T {
  let made = false;
  let value: T;
  return () => {
    if (!made) {
      value = make();
      made = true;
    }
    return value;
  };
}

/**
 * The candidate URLs, most likely first, deduplicated, at most MAX_URL_CANDIDATES:
 *   first tier, for each base (the request's own URL, or each PUBLIC_URL) and each userinfo ["", the
 *   URL's own, basicAuth's "user:password@"]:
 *     forms   [as seen; every added escape undone in path and query; then either (request path "/")
 *              that "/" dropped, query as seen / undone, or escapes undone in the path only / the query
 *              only; last, twilio-node's legacy querystring (none past LEGACY_QS_MAX_KEYS pieces)]
 *     × ports [as seen; toggled: default added when absent, removed when present]
 *   second tier, the same loops (port as seen only) over partial undos: some characters restored,
 *   others kept as typed escapes (partialUndos), in the query then in the path.
 * With PUBLIC_URL, its scheme/userinfo/host/port replace the request's and its path prefixes the
 * request's path; the request's own host is then never tried, so a Host header cannot pick the URL
 * the signature is checked against. The first candidate is the URL as seen (or the first PUBLIC_URL
 * form of it). Lazy: a verifier that matches on the first candidate never builds the others.
 */
export function* candidateUrls(input: CandidateInput): Generator<string, void, undefined> {
  const publicUrls = (typeof input.publicUrl === "string" ? [input.publicUrl] : (input.publicUrl ?? [])).filter((u) => u !== "");
  // Without PUBLIC_URL or userinfo the first candidate is the URL exactly as seen: yielded before any
  // parsing, so a verifier that matches on it (the hot path) pays for nothing else.
  const asSeen = publicUrls.length === 0 && PLAIN_ABSOLUTE_URL.test(input.url) ? input.url : null;
  if (asSeen !== null) yield asSeen;
  const parsed = splitUrl(input.url);
  if (!parsed) {
    if (asSeen === null) yield input.url;
    return;
  }
  const seen: UrlParts = parsed;
  const bases: Array<{ base: UrlParts; prefix: string }> = [];
  for (const publicUrl of publicUrls) {
    const pub = splitUrl(publicUrl);
    if (!pub) continue;
    const prefix = pub.path.replace(/\/+$/, "");
    bases.push({ base: { ...pub, path: prefix + seen.path, query: seen.query }, prefix });
  }
  if (publicUrls.length === 0) bases.push({ base: seen, prefix: "" });

  const pathUnits = once(() => unitsOf(seen.path, "path"));
  const queryUnits = once(() => unitsOf(seen.query, "query"));
  const undonePath = once(() => undoChars(pathUnits(), "all"));
  const undoneQuery = once(() => undoChars(queryUnits(), "all"));
  type Form = () => readonly [string, string] | null;

  function firstTier(prefix: string): Form[] {
    const forms: Form[] = [() => [prefix + seen.path, seen.query], () => [prefix + undonePath(), undoneQuery()]];
    if (seen.path === "/") {
      // "https://h.example?x=1" reaches the Worker as "https://h.example/?x=1".
      forms.push(() => [prefix, seen.query], () => [prefix, undoneQuery()]);
    } else {
      // Path and query escaped independently: e.g. a raw "é" in the configured path, and a query
      // Twilio itself percent-encoded (GET parameters).
      forms.push(() => [prefix + undonePath(), seen.query], () => [prefix + seen.path, undoneQuery()]);
    }
    forms.push(() => {
      const legacy = legacyQuery(seen.query);
      return legacy === null ? null : [prefix + seen.path, legacy];
    });
    return forms;
  }

  function secondTier(prefix: string): Form[] {
    const forms: Form[] = [];
    const queryChars = seen.query.includes("%") ? addedChars(queryUnits()) : [];
    // Every partial undo of the query with the path as seen first (paths rarely mix), then with it undone.
    const queries = [...partialUndos(queryChars)].map((chars) => once(() => undoChars(queryUnits(), chars)));
    for (const query of queries) forms.push(() => [prefix + seen.path, query()]);
    for (const query of queries) forms.push(() => [prefix + undonePath(), query()]);
    const pathChars = seen.path.includes("%") ? addedChars(pathUnits()) : [];
    for (const chars of partialUndos(pathChars)) {
      const path = once(() => prefix + undoChars(pathUnits(), chars));
      forms.push(() => [path(), seen.query], () => [path(), undoneQuery()]);
    }
    return forms;
  }

  const basicAuth = input.basicAuth;
  const emitted = new Set<string>(asSeen === null ? [] : [asSeen]);
  for (const tier of [firstTier, secondTier]) {
    for (const { base, prefix } of bases) {
      const userInfos: Array<() => string> = [() => ""];
      if (base.userInfo) userInfos.push(() => base.userInfo);
      if (basicAuth) userInfos.push(() => basicUserInfo(basicAuth.user, basicAuth.password));
      // The second tier keeps the port as seen: a default port typed into a URL that also mixes
      // typed escapes with raw characters is too rare to double its cost.
      const ports = tier === secondTier ? [base.port] : base.port ? [base.port, ""] : ["", defaultPort(base.scheme)];
      const forms = tier(prefix).map(once);
      for (const userInfo of userInfos) {
        const authority = `${base.scheme}${userInfo()}${base.host}`;
        for (const form of forms) {
          const parts = form();
          if (parts === null) continue;
          const [path, query] = parts;
          for (const port of ports) {
            const url = `${authority}${port}${path}${query}`;
            if (emitted.has(url)) continue;
            emitted.add(url);
            yield url;
            if (emitted.size === MAX_URL_CANDIDATES) return;
          }
        }
      }
    }
  }
}

/** candidateUrls as an array. */
export function urlCandidates(input: CandidateInput): string[] {
  return [...candidateUrls(input)];
}
