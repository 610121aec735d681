// The URL strings Twilio may have signed for a request the Worker received. Pure string work with
// web-standard APIs only; no Worker types (the CLI and the Node differential tests import it).
//
// Twilio signs "the webhook URL set in Twilio" exactly as configured
// (https://www.twilio.com/docs/usage/webhooks/webhooks-security), but the Worker only sees
// `request.url`, re-serialized by a WHATWG URL parser: default port dropped, an empty path turned into
// "/", and characters such as space, `"`, `<`, `>`, non-ASCII (and `'` in the query) percent-encoded.
// twilio-node's validateRequest() rebuilds its fallbacks from `new URL()` and so never undoes those
// escapes (twilio/twilio-node#1183); here we do, in a small fixed number of candidates.

/** Upper bound on candidate URLs, so a bad signature costs at most this many HMACs per token. */
export const MAX_URL_CANDIDATES = 16;

/** Twilio's SDKs try the URL with and without the scheme's default port (twilio-node addPort/removePort). */
const DEFAULT_PORT_HTTPS = ":443";
const DEFAULT_PORT_OTHER = ":80";

/**
 * node:querystring.parse stops after this many pairs by default; twilio-node's legacy-querystring
 * fallback inherits the limit, so the reimplementation below does too.
 */
const LEGACY_QS_MAX_KEYS = 1000;

/**
 * ASCII characters whose %XX escape may have been added on the way to the Worker rather than typed by
 * the user: the WHATWG path/query percent-encode sets (space " < > ` { }, ^ in workerd's paths and,
 * in special-scheme queries, ') plus the other characters RFC 3986 §2 forbids raw in a
 * request-target (\ ^ |), which an HTTP client such as Twilio's has to escape before sending.
 */
const REESCAPED_ASCII: ReadonlySet<number> = new Set([
  0x20, 0x22, 0x27, 0x3c, 0x3e, 0x5c, 0x5e, 0x60, 0x7b, 0x7c, 0x7d,
]);

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

function decodeEscapeRun(run: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < run.length; i += 3) bytes.push(parseInt(run.slice(i + 1, i + 3), 16));
  let out = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    if (b < 0x80) {
      out += REESCAPED_ASCII.has(b) ? String.fromCharCode(b) : run.slice(i * 3, i * 3 + 3);
      i++;
      continue;
    }
    const length = utf8SequenceLength(bytes, i);
    if (length === 0) {
      out += run.slice(i * 3, i * 3 + 3);
      i++;
      continue;
    }
    out += utf8Decoder.decode(new Uint8Array(bytes.slice(i, i + length)));
    i += length;
  }
  return out;
}

/**
 * Undoes the escapes a URL parser or HTTP client adds: uppercase %XX of REESCAPED_ASCII and valid
 * UTF-8 sequences of non-ASCII characters. Everything else (e.g. %25, %2B, lowercase hex) is kept,
 * as those are far more likely to have been typed by the user.
 */
export function undoAddedEscapes(text: string): string {
  if (!text.includes("%")) return text;
  return text.replace(/(?:%[0-9A-F]{2})+/g, decodeEscapeRun);
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
 * object key order), empty pieces dropped, at most 1000 pairs. Expects an ASCII query (a parsed URL's).
 */
export function legacyQuerystring(query: string): string {
  const groups = new Map<string, string[]>();
  const pieces = query.split("&");
  let budget = LEGACY_QS_MAX_KEYS;
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
    if (!last && --budget === 0) break;
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

/** twilio-node's withLegacyQuerystring on the query part ("" or "?..."). */
function legacyQuery(query: string): string {
  if (query.length <= 1 || !query.startsWith("?")) return query;
  return `?${legacyQuerystring(query.slice(1))}`;
}

/** An absolute URL without "user:password@" (splitUrl would find no userinfo in it). */
const PLAIN_ABSOLUTE_URL = /^[a-z][a-z0-9+.-]*:\/\/[^/?#@]*(?:[/?#]|$)/i;

export interface CandidateInput {
  url: string;
  publicUrl?: string | undefined;
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
 *   for each userinfo  ["", the URL's own, basicAuth's "user:password@"]
 *     for each form    [as seen; added escapes undone in path and query; then either (request path
 *                       "/") that "/" dropped, query as seen / undone, or escapes undone in the path
 *                       only / the query only; last, twilio-node's legacy querystring]
 *       for each port  [as seen; toggled: default added when absent, removed when present]
 * With PUBLIC_URL, its scheme/userinfo/host/port replace the request's and its path prefixes the
 * request's path. The first candidate is the URL as seen (or the PUBLIC_URL form of it). Lazy: a
 * verifier that matches on the first candidate never builds the others.
 */
export function* candidateUrls(input: CandidateInput): Generator<string, void, undefined> {
  // Without PUBLIC_URL or userinfo the first candidate is the URL exactly as seen: yielded before any
  // parsing, so a verifier that matches on it (the hot path) pays for nothing else.
  const asSeen = (input.publicUrl === undefined || input.publicUrl === "") && PLAIN_ABSOLUTE_URL.test(input.url) ? input.url : null;
  if (asSeen !== null) yield asSeen;
  const seen = splitUrl(input.url);
  if (!seen) {
    if (asSeen === null) yield input.url;
    return;
  }
  let base = seen;
  let prefix = "";
  if (input.publicUrl !== undefined && input.publicUrl !== "") {
    const pub = splitUrl(input.publicUrl);
    if (pub) {
      prefix = pub.path.replace(/\/+$/, "");
      base = { ...pub, path: prefix + seen.path, query: seen.query };
    }
  }

  const undonePath = once(() => prefix + undoAddedEscapes(seen.path));
  const undoneQuery = once(() => undoAddedEscapes(base.query));
  const forms: Array<() => readonly [string, string]> = [
    () => [base.path, base.query],
    () => [undonePath(), undoneQuery()],
  ];
  if (seen.path === "/") {
    // "https://h.example?x=1" reaches the Worker as "https://h.example/?x=1".
    forms.push(() => [prefix, base.query], () => [prefix, undoneQuery()]);
  } else {
    // Path and query escaped independently: e.g. a raw "é" in the configured path, and a query
    // Twilio itself percent-encoded (GET parameters).
    forms.push(() => [undonePath(), base.query], () => [base.path, undoneQuery()]);
  }
  forms.push(() => [base.path, legacyQuery(base.query)]);
  const formAt = forms.map(once);

  const userInfos: Array<() => string> = [() => ""];
  if (base.userInfo) userInfos.push(() => base.userInfo);
  const basicAuth = input.basicAuth;
  if (basicAuth) userInfos.push(() => basicUserInfo(basicAuth.user, basicAuth.password));
  const ports = base.port ? [base.port, ""] : ["", defaultPort(base.scheme)];

  const emitted = new Set<string>(asSeen === null ? [] : [asSeen]);
  for (const userInfo of userInfos) {
    const authority = `${base.scheme}${userInfo()}${base.host}`;
    for (const form of formAt) {
      const [path, query] = form();
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

/** candidateUrls as an array. */
export function urlCandidates(input: CandidateInput): string[] {
  return [...candidateUrls(input)];
}
