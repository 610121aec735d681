// The adversarial corpus: one data row per request an attacker (or a confused proxy) could send, with
// what the contract says the guard answers (../../../../shared/CONTRACT.md, "Answers on /webhooks/*").
// Rows are data; corpus.test.ts runs them against the real Worker and checks, for every row, the status,
// the headers named, whether the origin saw the request, and (through the ledger, at the end) whether
// anything refused was counted.
//
// Most rows target `victim`, a subaccount the Twilio stand-in knows, with a billable inbound message:
// had a refused row been counted, the victim's breaker would trip early in the final ledger check.
import { createHmac, randomBytes } from "node:crypto";
import twilio from "twilio";
import {
  BASIC_USER,
  SECRETS,
  formBody,
  inboundCall,
  inboundSms,
  messageStatus,
  paramsObject,
  sha256Hex,
  signForm,
  signUrl,
  uniqueSid,
  type Account,
  type Pairs,
  type RequestIsh,
} from "./harness.ts";
import { mulberry32 } from "../../support/seeded.ts";

export type WorkerKind = "signature" | "basic" | "both" | "report-only";
export type AccountRole = "victim" | "other" | "parent";

export interface CorpusContext {
  /** The Worker's base URL: what Twilio would have been configured with. */
  base: string;
  parent: Account;
  /** A subaccount of the parent, known to the stand-in: the target of most forgeries. */
  victim: Account;
  /** A second subaccount of the parent. */
  other: Account;
  /** Known to the stand-in, but owned by another parent account. */
  foreign: Account;
  /** Known to nobody. */
  unknown: Account;
  /** A closed subaccount of the parent. */
  closed: Account;
}

export interface CorpusExpectation {
  status: number;
  /** Whether the origin app saw (the last send of) this request. */
  originCalled: boolean;
  /** Whether this row adds exactly one event to `countedOn`'s ledger (replays: once in total). */
  counted: boolean;
  countedOn?: AccountRole;
  /** Answer headers: a string or RegExp the value must match, null when it must be absent. */
  header?: Record<string, string | RegExp | null>;
  /** Headers on the request the origin received (last one), same rules. */
  originHeader?: Record<string, string | RegExp | null>;
}

export interface CorpusRow {
  name: string;
  group: string;
  /** Which Worker runs it (WEBHOOK_AUTH); default signature. */
  worker?: WorkerKind;
  build(ctx: CorpusContext): RequestIsh;
  /** Sends the same request this many more times (Twilio's retries); `expect` applies to the last answer. */
  repeat?: number;
  expect: CorpusExpectation;
}

// ---- Building requests -------------------------------------------------------------------------------------------

/** A webhook under construction: what is sent, and (separately) what the signature covers. */
interface Draft {
  method: string;
  /** Request-target as sent. */
  path: string;
  /** The URL the signature covers. */
  signedUrl: string;
  /** Sent form parameters (encoded with formBody unless `body` is set). */
  pairs: Pairs;
  /** Parameters the signature covers (POST form); [] for GET and JSON. */
  signedPairs: Pairs;
  token: string;
  /** Explicit signature value; undefined = computed from signedUrl/signedPairs/token; null = no header. */
  signature?: string | null;
  signatureHeader: string;
  contentType: string | null;
  contentTypeHeader: string;
  headers: Array<[string, string]>;
  body?: string | Buffer;
  chunked?: boolean;
}

function formDraft(ctx: CorpusContext, account: Account = ctx.victim, options: { path?: string; pairs?: Pairs } = {}): Draft {
  const path = options.path ?? "/webhooks/sms";
  const pairs = options.pairs ?? inboundSms(account.sid);
  return {
    method: "POST",
    path,
    signedUrl: ctx.base + path,
    pairs,
    signedPairs: pairs,
    token: account.token,
    signatureHeader: "X-Twilio-Signature",
    contentType: "application/x-www-form-urlencoded",
    contentTypeHeader: "Content-Type",
    headers: [],
  };
}

/** Twilio's GET webhooks: the parameters live in the query, and the signature covers the URL alone. */
function getDraft(ctx: CorpusContext, account: Account = ctx.victim, pairs: Pairs = inboundSms(account.sid)): Draft {
  const path = `/webhooks/sms?${formBody(pairs)}`;
  return {
    method: "GET",
    path,
    signedUrl: ctx.base + path,
    pairs: [],
    signedPairs: [],
    token: account.token,
    signatureHeader: "X-Twilio-Signature",
    contentType: null,
    contentTypeHeader: "Content-Type",
    headers: [],
  };
}

/** A JSON body: the URL carries bodySHA256 (hex SHA-256 of the body) and is signed with no parameters. */
function jsonDraft(ctx: CorpusContext, account: Account = ctx.victim, options: { body?: string; hash?: string | null } = {}): Draft {
  const sid = uniqueSid("SM");
  const body =
    options.body ??
    JSON.stringify({ AccountSid: account.sid, MessageSid: sid, SmsStatus: "received", Body: "json hello ü", From: "+14155550100", To: "+15005550006", NumSegments: "1" });
  const hash = options.hash === undefined ? sha256Hex(body) : options.hash;
  const path = hash === null ? "/webhooks/events" : `/webhooks/events?bodySHA256=${hash}`;
  return {
    method: "POST",
    path,
    signedUrl: ctx.base + path,
    pairs: [],
    signedPairs: [],
    token: account.token,
    signatureHeader: "X-Twilio-Signature",
    contentType: "application/json",
    contentTypeHeader: "Content-Type",
    headers: [],
    body,
  };
}

function signatureOf(d: Draft): string {
  return d.signedPairs.length > 0 ? signForm(d.token, d.signedUrl, d.signedPairs) : signUrl(d.token, d.signedUrl);
}

function toRequest(d: Draft): RequestIsh {
  const headers: Array<[string, string]> = [];
  if (d.contentType !== null) headers.push([d.contentTypeHeader, d.contentType]);
  const signature = d.signature === undefined ? signatureOf(d) : d.signature;
  if (signature !== null) headers.push([d.signatureHeader, signature]);
  headers.push(...d.headers);
  const body = d.body ?? (d.method === "GET" ? undefined : formBody(d.pairs));
  return { method: d.method, path: d.path, headers, ...(body !== undefined ? { body } : {}), ...(d.chunked ? { chunked: true } : {}) };
}

function req(ctx: CorpusContext, change: (d: Draft) => void, start: (ctx: CorpusContext) => Draft = (c) => formDraft(c)): RequestIsh {
  const d = start(ctx);
  change(d);
  return toRequest(d);
}

function setPair(pairs: Pairs, key: string, value: string): Pairs {
  return pairs.map(([k, v]) => [k, k === key ? value : v] as [string, string]);
}

function withoutPair(pairs: Pairs, key: string): Pairs {
  return pairs.filter(([k]) => k !== key);
}

function valueOf(pairs: Pairs, key: string): string {
  return pairs.find(([k]) => k === key)?.[1] ?? "";
}

/** Substitutes the character at `index` (negative: from the end) with another one of the same class. */
function substitute(text: string, index: number): string {
  const i = index < 0 ? text.length + index : index;
  const c = text[i]!;
  const replacement = /[0-9]/.test(c) ? String((Number(c) + 1) % 10) : /[a-y]/.test(c) ? String.fromCharCode(c.charCodeAt(0) + 1) : /z/.test(c) ? "a" : /[A-Y]/.test(c) ? String.fromCharCode(c.charCodeAt(0) + 1) : c === "Z" ? "A" : c === "+" ? "/" : "A";
  return text.slice(0, i) + replacement + text.slice(i + 1);
}

function deleteAt(text: string, index: number): string {
  const i = index < 0 ? text.length + index : index;
  return text.slice(0, i) + text.slice(i + 1);
}

function insertAt(text: string, index: number, c: string): string {
  const i = index < 0 ? text.length + index : index;
  return text.slice(0, i) + c + text.slice(i);
}

function basicHeader(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

const GOOD_BASIC = () => basicHeader(BASIC_USER, SECRETS.basicPassword);

/** The form body with one raw byte sequence spliced into the Body value (no percent-encoding). */
function rawBodyWith(d: Draft, raw: Buffer): Buffer {
  const encoded = formBody(setPair(d.pairs, "Body", "MARK"));
  const at = encoded.indexOf("MARK");
  return Buffer.concat([Buffer.from(encoded.slice(0, at)), raw, Buffer.from(encoded.slice(at + 4))]);
}

/** Twilio's webhook body cap is 64 KiB (CONTRACT): a valid message padded to exactly `size` bytes. */
function paddedTo(ctx: CorpusContext, size: number): Draft {
  const d = formDraft(ctx);
  const base = formBody(setPair(d.pairs, "Body", "")).length;
  d.pairs = setPair(d.pairs, "Body", "x".repeat(size - base));
  d.signedPairs = d.pairs;
  return d;
}

// ---- Expectations ---------------------------------------------------------------------------------------------------

const FORBIDDEN: CorpusExpectation = { status: 403, originCalled: false, counted: false };
const MALFORMED: CorpusExpectation = { status: 400, originCalled: false, counted: false };
const TOO_LARGE: CorpusExpectation = { status: 413, originCalled: false, counted: false };
const NOT_ALLOWED: CorpusExpectation = { status: 405, originCalled: false, counted: false, header: { allow: /GET.*POST|POST.*GET/ } };
const CHALLENGE: CorpusExpectation = { status: 401, originCalled: false, counted: false, header: { "www-authenticate": /^Basic realm="[^"]+"/ } };
/** Forwarded and counted once on the victim's ledger: a valid request, or one equivalent to it. */
const PASSES: CorpusExpectation = {
  status: 200,
  originCalled: true,
  counted: true,
  originHeader: { "x-guard-verified": "signature", "x-guard-duplicate": null },
};
const PASSES_BASIC: CorpusExpectation = { ...PASSES, originHeader: { "x-guard-verified": "basic", "x-guard-duplicate": null, authorization: null } };
const DUPLICATE: CorpusExpectation = { status: 200, originCalled: true, counted: true, originHeader: { "x-guard-verified": "signature", "x-guard-duplicate": "1" } };

// ---- The rows -------------------------------------------------------------------------------------------------------

export const CORPUS: CorpusRow[] = [
  // -- Unsigned, forged, or signed by the wrong party --------------------------------------------------------------
  { group: "signature", name: "no X-Twilio-Signature header", build: (c) => req(c, (d) => (d.signature = null)), expect: FORBIDDEN },
  { group: "signature", name: "empty X-Twilio-Signature", build: (c) => req(c, (d) => (d.signature = "")), expect: FORBIDDEN },
  { group: "signature", name: "signature that is not base64", build: (c) => req(c, (d) => (d.signature = "not a signature!")), expect: FORBIDDEN },
  { group: "signature", name: "20 random bytes as the signature", build: (c) => req(c, (d) => (d.signature = randomBytes(20).toString("base64"))), expect: FORBIDDEN },
  {
    group: "signature",
    name: "the digest truncated to 19 bytes",
    build: (c) => req(c, (d) => (d.signature = Buffer.from(signatureOf(d), "base64").subarray(0, 19).toString("base64"))),
    expect: FORBIDDEN,
  },
  {
    group: "signature",
    name: "the digest with a 21st byte",
    build: (c) => req(c, (d) => (d.signature = Buffer.concat([Buffer.from(signatureOf(d), "base64"), Buffer.from([0])]).toString("base64"))),
    expect: FORBIDDEN,
  },
  { group: "signature", name: "the digest without its '=' padding", build: (c) => req(c, (d) => (d.signature = signatureOf(d).replace(/=+$/, ""))), expect: FORBIDDEN },
  {
    group: "signature",
    name: "the digest as hex instead of base64",
    build: (c) => req(c, (d) => (d.signature = Buffer.from(signatureOf(d), "base64").toString("hex"))),
    expect: FORBIDDEN,
  },
  {
    group: "signature",
    name: "a valid signature of another message",
    build: (c) => req(c, (d) => (d.signature = signForm(c.victim.token, d.signedUrl, inboundSms(c.victim.sid)))),
    expect: FORBIDDEN,
  },
  { group: "signature", name: "signed with a made-up token", build: (c) => req(c, (d) => (d.token = randomBytes(16).toString("hex"))), expect: FORBIDDEN },
  { group: "signature", name: "a subaccount's webhook signed with the parent's token", build: (c) => req(c, (d) => (d.token = c.parent.token)), expect: FORBIDDEN },
  { group: "signature", name: "a subaccount's webhook signed with the secondary token", build: (c) => req(c, (d) => (d.token = SECRETS.secondaryToken)), expect: FORBIDDEN },
  { group: "signature", name: "signed with another subaccount's token", build: (c) => req(c, (d) => (d.token = c.other.token)), expect: FORBIDDEN },
  {
    group: "signature",
    name: "signed by the victim, AccountSid switched to another subaccount",
    build: (c) =>
      req(c, (d) => {
        d.signature = signatureOf(d);
        d.pairs = setPair(d.pairs, "AccountSid", c.other.sid);
      }),
    expect: FORBIDDEN,
  },
  {
    group: "signature",
    name: "the parent's own webhook signed with the secondary token (rotation)",
    build: (c) => req(c, (d) => (d.token = SECRETS.secondaryToken), (cc) => formDraft(cc, cc.parent)),
    expect: { ...PASSES, countedOn: "parent" },
  },
  {
    group: "signature",
    name: "signed with HMAC-SHA256 (X-Twilio-Webhooks-Signature-Settings)",
    build: (c) =>
      req(c, (d) => {
        const data = d.signedUrl + [...d.signedPairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => k + v).join("");
        d.signature = createHmac("sha256", d.token).update(data).digest("base64");
        d.headers.push(["X-Twilio-Webhooks-Signature-Settings", "key=e2e,algorithm=HMAC_SHA256"]);
      }),
    expect: FORBIDDEN,
  },
  { group: "signature", name: "signed for another host", build: (c) => req(c, (d) => (d.signedUrl = d.signedUrl.replace("127.0.0.1", "evil.example"))), expect: FORBIDDEN },
  { group: "signature", name: "signed for https://", build: (c) => req(c, (d) => (d.signedUrl = d.signedUrl.replace("http://", "https://"))), expect: FORBIDDEN },
  {
    group: "signature",
    name: "signed for another port",
    build: (c) => req(c, (d) => (d.signedUrl = d.signedUrl.replace(/:(\d+)\//, (_m, p: string) => `:${Number(p) + 1}/`))),
    expect: FORBIDDEN,
  },
  { group: "signature", name: "signed for /webhooks/voice, sent to /webhooks/sms", build: (c) => req(c, (d) => (d.signedUrl = c.base + "/webhooks/voice")), expect: FORBIDDEN },
  { group: "signature", name: "signed with a query the request lacks", build: (c) => req(c, (d) => (d.signedUrl += "?tenant=a")), expect: FORBIDDEN },
  { group: "signature", name: "sent with a query that was not signed", build: (c) => req(c, (d) => (d.path += "?tenant=a")), expect: FORBIDDEN },
  { group: "signature", name: "signed with a trailing slash", build: (c) => req(c, (d) => (d.signedUrl += "/")), expect: FORBIDDEN },
  { group: "signature", name: "signed with a fragment", build: (c) => req(c, (d) => (d.signedUrl += "#frag")), expect: FORBIDDEN },
  {
    group: "signature",
    name: "two X-Twilio-Signature headers (valid, forged)",
    build: (c) =>
      req(c, (d) => {
        d.headers.push(["X-Twilio-Signature", randomBytes(20).toString("base64")]);
      }),
    expect: FORBIDDEN,
  },
  {
    group: "signature",
    name: "two X-Twilio-Signature headers (both valid)",
    build: (c) =>
      req(c, (d) => {
        d.headers.push(["X-Twilio-Signature", signatureOf(d)]);
      }),
    expect: FORBIDDEN,
  },
  {
    group: "signature",
    name: "signature wrapped in spaces (optional whitespace, RFC 9110 §5.5): still verifies",
    build: (c) => req(c, (d) => (d.signature = `  ${signatureOf(d)}  `)),
    expect: PASSES,
  },
  {
    group: "signature",
    name: "signature with its letter case flipped",
    build: (c) =>
      req(c, (d) => {
        const s = signatureOf(d);
        d.signature = [...s].map((ch) => (ch === ch.toLowerCase() ? ch.toUpperCase() : ch.toLowerCase())).join("");
      }),
    expect: FORBIDDEN,
  },
  {
    group: "signature",
    name: "the signature of the GET form of the same webhook",
    build: (c) => req(c, (d) => (d.signature = signUrl(d.token, `${c.base}/webhooks/sms?${formBody(d.pairs)}`))),
    expect: FORBIDDEN,
  },

  // -- One-character mutations of a valid request ------------------------------------------------------------------
  { group: "mutation", name: "path: one character substituted", build: (c) => req(c, (d) => (d.path = "/webhooks/smt")), expect: FORBIDDEN },
  { group: "mutation", name: "path: one character deleted", build: (c) => req(c, (d) => (d.path = "/webhooks/sm")), expect: FORBIDDEN },
  { group: "mutation", name: "path: one character inserted", build: (c) => req(c, (d) => (d.path = "/webhooks/smss")), expect: FORBIDDEN },
  { group: "mutation", name: "path: case of one character", build: (c) => req(c, (d) => (d.path = "/webhooks/Sms")), expect: FORBIDDEN },
  { group: "mutation", name: "path: trailing slash added", build: (c) => req(c, (d) => (d.path = "/webhooks/sms/")), expect: FORBIDDEN },
  {
    group: "mutation",
    name: "path: '/' doubled",
    build: (c) => req(c, (d) => (d.path = "/webhooks//sms"), (cc) => formDraft(cc, cc.victim)),
    expect: FORBIDDEN,
  },
  ...queryMutations(),
  { group: "mutation", name: "body key: one character substituted", build: (c) => req(c, (d) => (d.pairs = d.pairs.map(([k, v]) => [k === "Body" ? "Bodz" : k, v]))), expect: FORBIDDEN },
  { group: "mutation", name: "body key: case of one character", build: (c) => req(c, (d) => (d.pairs = d.pairs.map(([k, v]) => [k === "Body" ? "body" : k, v]))), expect: FORBIDDEN },
  { group: "mutation", name: "body value: one character substituted", build: (c) => req(c, (d) => (d.pairs = setPair(d.pairs, "Body", substitute(valueOf(d.pairs, "Body"), 0)))), expect: FORBIDDEN },
  { group: "mutation", name: "body value: one character deleted", build: (c) => req(c, (d) => (d.pairs = setPair(d.pairs, "Body", deleteAt(valueOf(d.pairs, "Body"), -1)))), expect: FORBIDDEN },
  { group: "mutation", name: "body value: one character inserted", build: (c) => req(c, (d) => (d.pairs = setPair(d.pairs, "Body", insertAt(valueOf(d.pairs, "Body"), 3, "!")))), expect: FORBIDDEN },
  { group: "mutation", name: "body value: a trailing space", build: (c) => req(c, (d) => (d.pairs = setPair(d.pairs, "Body", valueOf(d.pairs, "Body") + " "))), expect: FORBIDDEN },
  { group: "mutation", name: "body: To number with one digit changed", build: (c) => req(c, (d) => (d.pairs = setPair(d.pairs, "To", substitute(valueOf(d.pairs, "To"), -1)))), expect: FORBIDDEN },
  { group: "mutation", name: "body: NumSegments 1 → 9", build: (c) => req(c, (d) => (d.pairs = setPair(d.pairs, "NumSegments", "9"))), expect: FORBIDDEN },
  { group: "mutation", name: "body: MessageSid with one hex digit changed", build: (c) => req(c, (d) => (d.pairs = setPair(d.pairs, "MessageSid", substitute(valueOf(d.pairs, "MessageSid"), -1)))), expect: FORBIDDEN },
  { group: "mutation", name: "body: a signed parameter dropped", build: (c) => req(c, (d) => (d.pairs = withoutPair(d.pairs, "ToCountry"))), expect: FORBIDDEN },
  { group: "mutation", name: "body: an unsigned parameter added", build: (c) => req(c, (d) => (d.pairs = [...d.pairs, ["Price", "-0.00750"]])), expect: FORBIDDEN },
  { group: "mutation", name: "body: an empty unsigned parameter added", build: (c) => req(c, (d) => (d.pairs = [...d.pairs, ["Extra", ""]])), expect: FORBIDDEN },
  {
    group: "mutation",
    name: "body: space sent as %20 instead of '+' (same parameters): still verifies",
    build: (c) => req(c, (d) => (d.body = formBody(d.pairs).replaceAll("+", "%20"))),
    expect: PASSES,
  },
  {
    group: "mutation",
    name: "body: a key percent-encoded (%42ody = Body, same parameters): still verifies",
    build: (c) => req(c, (d) => (d.body = formBody(d.pairs).replace("Body=", "%42ody="))),
    expect: PASSES,
  },
  {
    group: "mutation",
    name: "body: empty pieces between '&'s (same parameters, but Twilio never sends them): refused",
    build: (c) => req(c, (d) => (d.body = formBody(d.pairs).replaceAll("&", "&&"))),
    expect: MALFORMED,
  },
  { group: "mutation", name: "signature: first character substituted", build: (c) => req(c, (d) => (d.signature = substitute(signatureOf(d), 0))), expect: FORBIDDEN },
  { group: "mutation", name: "signature: last data character substituted", build: (c) => req(c, (d) => (d.signature = substitute(signatureOf(d), -3))), expect: FORBIDDEN },
  { group: "mutation", name: "signature: one character deleted", build: (c) => req(c, (d) => (d.signature = deleteAt(signatureOf(d), 5))), expect: FORBIDDEN },
  { group: "mutation", name: "signature: one character inserted", build: (c) => req(c, (d) => (d.signature = insertAt(signatureOf(d), 5, "A"))), expect: FORBIDDEN },
  {
    group: "mutation",
    name: "header name in upper case (X-TWILIO-SIGNATURE): names are case-insensitive, still verifies",
    build: (c) => req(c, (d) => (d.signatureHeader = "X-TWILIO-SIGNATURE")),
    expect: PASSES,
  },
  {
    group: "mutation",
    name: "header name in lower case (x-twilio-signature): still verifies",
    build: (c) => req(c, (d) => (d.signatureHeader = "x-twilio-signature")),
    expect: PASSES,
  },
  {
    group: "mutation",
    name: "header name in mixed case (x-TwIlIo-SiGnAtUrE): still verifies",
    build: (c) => req(c, (d) => (d.signatureHeader = "x-TwIlIo-SiGnAtUrE")),
    expect: PASSES,
  },
  { group: "mutation", name: "header name: one character substituted (X-Twilio-Signaturf)", build: (c) => req(c, (d) => (d.signatureHeader = "X-Twilio-Signaturf")), expect: FORBIDDEN },
  { group: "mutation", name: "header name: one character deleted (X-Twilio-Signatur)", build: (c) => req(c, (d) => (d.signatureHeader = "X-Twilio-Signatur")), expect: FORBIDDEN },
  { group: "mutation", name: "header name: '-' as '_' (X-Twilio_Signature)", build: (c) => req(c, (d) => (d.signatureHeader = "X-Twilio_Signature")), expect: FORBIDDEN },
  {
    group: "mutation",
    name: "Content-Type header name in upper case: still verifies",
    build: (c) => req(c, (d) => (d.contentTypeHeader = "CONTENT-TYPE")),
    expect: PASSES,
  },
  {
    group: "mutation",
    name: "Content-Type value in mixed case (media types are case-insensitive): still verifies",
    build: (c) => req(c, (d) => (d.contentType = "Application/X-WWW-Form-URLEncoded")),
    expect: PASSES,
  },
  {
    group: "mutation",
    name: "Content-Type with a charset parameter: still verifies",
    build: (c) => req(c, (d) => (d.contentType = "application/x-www-form-urlencoded; charset=utf-8")),
    expect: PASSES,
  },
  { group: "mutation", name: "Content-Type value: one character substituted", build: (c) => req(c, (d) => (d.contentType = "application/x-www-form-urlencodee")), expect: MALFORMED },

  // -- Bodies -----------------------------------------------------------------------------------------------------------
  { group: "body", name: "truncated at a parameter boundary", build: (c) => req(c, (d) => (d.body = formBody(d.pairs.slice(0, -1)))), expect: FORBIDDEN },
  { group: "body", name: "truncated in the middle of a value", build: (c) => req(c, (d) => (d.body = formBody(d.pairs).slice(0, -3))), expect: FORBIDDEN },
  {
    group: "body",
    name: "truncated inside a percent escape",
    build: (c) =>
      req(c, (d) => {
        const full = formBody(d.pairs);
        d.body = full.slice(0, full.indexOf("%2B") + 2);
      }),
    expect: MALFORMED,
  },
  { group: "body", name: "empty body, signature over the parameters", build: (c) => req(c, (d) => (d.body = "")), expect: FORBIDDEN },
  { group: "body", name: "exactly 64 KiB, valid: forwarded", build: (c) => toRequest(paddedTo(c, 64 * 1024)), expect: PASSES },
  { group: "body", name: "64 KiB + 1 byte, validly signed", build: (c) => toRequest(paddedTo(c, 64 * 1024 + 1)), expect: TOO_LARGE },
  {
    group: "body",
    name: "64 KiB + 1 byte, chunked (no Content-Length)",
    build: (c) => {
      const d = paddedTo(c, 64 * 1024 + 1);
      d.chunked = true;
      return toRequest(d);
    },
    expect: TOO_LARGE,
  },
  { group: "body", name: "1 MiB, unsigned", build: (c) => req(c, (d) => ((d.signature = null), (d.body = "Body=" + "y".repeat(1024 * 1024)))), expect: TOO_LARGE },
  ...badEncodings(),
  {
    group: "body",
    name: "non-ASCII text (é, 😀) properly encoded and signed: forwarded",
    build: (c) =>
      req(c, (d) => {
        d.pairs = setPair(d.pairs, "Body", "héllo 😀 ünïcode & 100% +");
        d.signedPairs = d.pairs;
      }),
    expect: PASSES,
  },
  {
    group: "body",
    name: "duplicate keys reordered (twilio-node sorts a key's values): still verifies",
    build: (c) =>
      req(c, (d) => {
        d.signedPairs = [...d.pairs, ["MediaUrl0", "https://a.example/1"], ["MediaUrl0", "https://a.example/2"]];
        d.pairs = [...d.pairs, ["MediaUrl0", "https://a.example/2"], ["MediaUrl0", "https://a.example/1"]];
      }),
    expect: PASSES,
  },
  {
    group: "body",
    name: "a pair repeated verbatim (twilio-node de-duplicates a key's values, so the signature holds): refused",
    build: (c) =>
      req(c, (d) => {
        d.pairs = [...d.pairs, ["Body", valueOf(d.pairs, "Body")]];
      }),
    expect: MALFORMED,
  },
  { group: "body", name: "a key repeated with a new value", build: (c) => req(c, (d) => (d.pairs = [...d.pairs, ["Body", "injected"]])), expect: FORBIDDEN },
  {
    group: "body",
    name: "AccountSid twice (victim, then another subaccount), signed by the victim",
    build: (c) =>
      req(c, (d) => {
        d.pairs = [...d.pairs, ["AccountSid", c.other.sid]];
        d.signedPairs = d.pairs;
      }),
    expect: FORBIDDEN,
  },
  { group: "body", name: "Content-Type text/plain", build: (c) => req(c, (d) => (d.contentType = "text/plain")), expect: MALFORMED },
  { group: "body", name: "no Content-Type on a form body", build: (c) => req(c, (d) => (d.contentType = null)), expect: MALFORMED },
  { group: "body", name: "Content-Type multipart/form-data", build: (c) => req(c, (d) => (d.contentType = "multipart/form-data; boundary=x")), expect: MALFORMED },
  { group: "body", name: "a form body labelled application/json", build: (c) => req(c, (d) => (d.contentType = "application/json"), (cc) => ({ ...formDraft(cc), signedUrl: cc.base + "/webhooks/sms?bodySHA256=x", path: "/webhooks/sms?bodySHA256=x" })), expect: MALFORMED },

  // -- JSON bodies (bodySHA256) -----------------------------------------------------------------------------------------
  { group: "json", name: "JSON with a matching bodySHA256: forwarded", build: (c) => toRequest(jsonDraft(c)), expect: PASSES },
  { group: "json", name: "JSON without bodySHA256", build: (c) => toRequest(jsonDraft(c, c.victim, { hash: null })), expect: MALFORMED },
  { group: "json", name: "JSON with a wrong bodySHA256 (signature over that URL is valid)", build: (c) => toRequest(jsonDraft(c, c.victim, { hash: sha256Hex("something else") })), expect: FORBIDDEN },
  {
    group: "json",
    name: "JSON body changed by one character after signing",
    build: (c) =>
      req(c, (d) => (d.body = String(d.body).replace("json hello", "json hellp")), (cc) => jsonDraft(cc)),
    expect: FORBIDDEN,
  },
  {
    group: "json",
    name: "JSON with bodySHA256 in upper-case hex",
    build: (c) => {
      const d = jsonDraft(c);
      d.path = d.path.replace(/bodySHA256=([0-9a-f]+)/, (_m, h: string) => `bodySHA256=${h.toUpperCase()}`);
      d.signedUrl = c.base + d.path;
      return toRequest(d);
    },
    expect: FORBIDDEN,
  },
  {
    group: "json",
    name: "JSON whose signature covers the URL without bodySHA256",
    build: (c) => req(c, (d) => (d.signedUrl = c.base + "/webhooks/events"), (cc) => jsonDraft(cc)),
    expect: FORBIDDEN,
  },
  { group: "json", name: "JSON that does not parse (hash and signature valid)", build: (c) => toRequest(jsonDraft(c, c.victim, { body: '{"AccountSid": "AC' })), expect: MALFORMED },
  {
    group: "json",
    name: "JSON that is not UTF-8 (hash and signature valid)",
    build: (c) => {
      const body = Buffer.concat([Buffer.from('{"AccountSid":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
      const d = jsonDraft(c, c.victim, { body: "{}", hash: sha256Hex(body) });
      d.body = body;
      return toRequest(d);
    },
    expect: MALFORMED,
  },
  { group: "json", name: "JSON signed with another subaccount's token", build: (c) => req(c, (d) => (d.token = c.other.token), (cc) => jsonDraft(cc)), expect: FORBIDDEN },

  // -- GET/POST confusion and other methods ----------------------------------------------------------------------------
  { group: "method", name: "GET with the parameters in the signed query: forwarded", build: (c) => toRequest(getDraft(c)), expect: PASSES },
  { group: "method", name: "GET with one query character changed", build: (c) => req(c, (d) => (d.path = d.path.replace("hello", "hellp")), (cc) => getDraft(cc)), expect: FORBIDDEN },
  {
    group: "method",
    name: "POST-signed parameters sent as a GET query",
    build: (c) =>
      req(c, (d) => {
        d.signature = signatureOf(d);
        d.method = "GET";
        d.path = `/webhooks/sms?${formBody(d.pairs)}`;
        d.contentType = null;
        d.body = undefined;
        d.pairs = [];
      }),
    expect: FORBIDDEN,
  },
  {
    group: "method",
    name: "a GET's signed URL replayed as a POST with an empty form",
    build: (c) =>
      req(
        c,
        (d) => {
          d.method = "POST";
          d.contentType = "application/x-www-form-urlencoded";
          d.body = "";
        },
        (cc) => getDraft(cc),
      ),
    expect: FORBIDDEN,
  },
  {
    group: "method",
    name: "a GET's signed URL replayed as a POST without a body or Content-Type",
    build: (c) => req(c, (d) => ((d.method = "POST"), (d.body = "")), (cc) => getDraft(cc)),
    expect: MALFORMED,
  },
  {
    group: "method",
    name: "GET carrying the signed form in a body",
    build: (c) =>
      req(c, (d) => {
        d.signature = signatureOf(d);
        d.method = "GET";
      }),
    expect: FORBIDDEN,
  },
  ...["PUT", "DELETE", "PATCH", "OPTIONS"].map(
    (method): CorpusRow => ({ group: "method", name: `${method} with a valid signature`, build: (c) => req(c, (d) => (d.method = method)), expect: NOT_ALLOWED }),
  ),
  { group: "method", name: "HEAD with a valid GET signature", build: (c) => req(c, (d) => (d.method = "HEAD"), (cc) => getDraft(cc)), expect: NOT_ALLOWED },

  // -- AccountSid: missing, malformed, not the parent's --------------------------------------------------------------
  { group: "account", name: "no AccountSid, signed by the victim", build: (c) => req(c, (d) => ((d.pairs = withoutPair(d.pairs, "AccountSid")), (d.signedPairs = d.pairs))), expect: FORBIDDEN },
  {
    group: "account",
    name: "no AccountSid, signed by the parent: verified as the parent's, not billable",
    build: (c) => req(c, (d) => ((d.pairs = withoutPair(d.pairs, "AccountSid")), (d.signedPairs = d.pairs)), (cc) => formDraft(cc, cc.parent)),
    expect: { status: 200, originCalled: true, counted: false, originHeader: { "x-guard-verified": "signature" } },
  },
  ...malformedAccountSids(),
  { group: "account", name: "AccountSid owned by another parent, signed with its real token", build: (c) => toRequest(formDraft(c, c.foreign)), expect: FORBIDDEN },
  { group: "account", name: "AccountSid owned by another parent, ×10 (negative cache)", build: (c) => toRequest(formDraft(c, c.foreign)), repeat: 9, expect: FORBIDDEN },
  { group: "account", name: "AccountSid nobody knows", build: (c) => toRequest(formDraft(c, c.unknown)), expect: FORBIDDEN },
  { group: "account", name: "AccountSid nobody knows, ×10 (negative cache)", build: (c) => toRequest(formDraft(c, c.unknown)), repeat: 9, expect: FORBIDDEN },
  { group: "account", name: "a closed subaccount, signed with its token", build: (c) => toRequest(formDraft(c, c.closed)), expect: FORBIDDEN },
  {
    group: "account",
    name: "the victim's AccountSid with one hex digit changed, signed with the victim's token",
    build: (c) => req(c, (d) => ((d.pairs = setPair(d.pairs, "AccountSid", substitute(c.victim.sid, -1))), (d.signedPairs = d.pairs))),
    expect: FORBIDDEN,
  },

  // -- Replays and spoofed guard headers ------------------------------------------------------------------------------
  { group: "replay", name: "a valid message sent twice: the retry is marked and not counted again", build: (c) => toRequest(formDraft(c)), repeat: 1, expect: DUPLICATE },
  { group: "replay", name: "a valid message sent four times", build: (c) => toRequest(formDraft(c)), repeat: 3, expect: DUPLICATE },
  {
    group: "replay",
    name: "a retry with I-Twilio-Idempotency-Token",
    build: (c) => req(c, (d) => d.headers.push(["I-Twilio-Idempotency-Token", `idem-${randomBytes(6).toString("hex")}`])),
    repeat: 2,
    expect: DUPLICATE,
  },
  { group: "replay", name: "a valid GET replayed", build: (c) => toRequest(getDraft(c)), repeat: 1, expect: DUPLICATE },
  { group: "replay", name: "a valid JSON webhook replayed", build: (c) => toRequest(jsonDraft(c)), repeat: 1, expect: DUPLICATE },
  {
    group: "replay",
    name: "an inbound call replayed",
    build: (c) => toRequest(formDraft(c, c.victim, { path: "/webhooks/voice", pairs: inboundCall(c.victim.sid) })),
    repeat: 1,
    expect: DUPLICATE,
  },
  {
    group: "replay",
    name: "a valid message with forged X-Guard-* headers: the origin sees the guard's own",
    build: (c) =>
      req(c, (d) =>
        d.headers.push(["X-Guard-Verified", "basic"], ["X-Guard-Duplicate", "1"], ["X-Guard-Account", c.other.sid], ["X-Guard-Verdict", "ok"]),
      ),
    expect: { ...PASSES, originHeader: { "x-guard-verified": "signature", "x-guard-duplicate": null, "x-guard-account": /^AC/, "x-guard-verdict": null } },
  },
  {
    group: "replay",
    name: "a forged message with forged X-Guard-Verified",
    build: (c) => req(c, (d) => ((d.signature = null), d.headers.push(["X-Guard-Verified", "signature"]))),
    expect: FORBIDDEN,
  },

  // -- /usage-trigger: a forged trigger must never trip ------------------------------------------------------------------
  {
    group: "route",
    name: "/usage-trigger unsigned",
    build: (c) => req(c, (d) => ((d.path = "/usage-trigger"), (d.pairs = triggerPairs(c.victim.sid)), (d.signature = null))),
    expect: FORBIDDEN,
  },
  {
    group: "route",
    name: "/usage-trigger signed with another subaccount's token",
    build: (c) =>
      req(c, (d) => {
        d.path = "/usage-trigger";
        d.signedUrl = c.base + d.path;
        d.pairs = triggerPairs(c.victim.sid);
        d.signedPairs = d.pairs;
        d.token = c.other.token;
      }),
    expect: FORBIDDEN,
  },
  { group: "route", name: "/usage-trigger as GET", build: (c) => req(c, (d) => ((d.method = "GET"), (d.path = "/usage-trigger")), (cc) => getDraft(cc)), expect: { ...NOT_ALLOWED, header: { allow: "POST" } } },

  // -- Issue 11: signatures that cover less than what would be acted on ----------------------------------------------------
  ...unsignedRideAlongRows(),

  // -- WEBHOOK_AUTH=basic -------------------------------------------------------------------------------------------------
  ...basicRows(),
  // -- WEBHOOK_AUTH=both --------------------------------------------------------------------------------------------------
  ...bothRows(),
];

/** A TWILIO_WEBHOOK_SHARED_KEYS key every corpus Worker holds (corpus.test.ts), and its id. */
export const SHARED_KEY_ID = "webhooks_sharedkey_e2e";

/** HMAC-SHA256 over Twilio's signed string, as the official `twilio` package signs for SharedKeys. */
function signSharedKey(secret: string, d: Draft): string {
  return twilio.getExpectedTwilioSignature(secret, d.signedUrl, paramsObject(d.signedPairs), "HMAC_SHA256");
}

function unsignedRideAlongRows(): CorpusRow[] {
  const row = (name: string, build: (c: CorpusContext) => RequestIsh, expect: CorpusExpectation, more: Partial<CorpusRow> = {}): CorpusRow => ({
    group: "issue-11",
    name,
    build,
    expect,
    ...more,
  });
  const resplit = (d: Draft, extra: (c: string) => Pairs, bodyFor: (c: string) => string) => {
    const callSid = uniqueSid("CA");
    d.pairs = setPair(d.pairs, "Body", bodyFor(callSid));
    d.signature = signatureOf({ ...d, signedPairs: d.pairs });
    d.pairs = [...setPair(d.pairs, "Body", "hi"), ...extra(callSid)];
  };
  const attackerHeaders: Array<[string, string]> = [
    ["Forwarded", "for=6.6.6.6;host=admin.internal"],
    ["X-Forwarded-For", "6.6.6.6"],
    ["X-Forwarded-Host", "admin.internal"],
    ["X-Real-IP", "6.6.6.6"],
    ["True-Client-IP", "6.6.6.6"],
    ["X-Original-URL", "/admin"],
    ["X-Rewrite-URL", "/admin"],
    ["X-HTTP-Method-Override", "DELETE"],
    ["x-middleware-subrequest", "middleware:middleware:middleware"],
    ["Cookie", "session=stolen"],
    ["Authorization", "Bearer app-admin"],
  ];
  /** secret: a SharedKey secret, "token" (HMAC-SHA256 keyed with the auth token), or null (the usual SHA-1 signature). */
  const sharedKeyRow = (name: string, settings: (d: Draft) => string, secret: string | null, expect: CorpusExpectation) =>
    row(
      `SharedKey: ${name}`,
      (c) =>
        req(c, (d) => {
          d.signature = secret === null ? signatureOf(d) : signSharedKey(secret === "token" ? d.token : secret, d);
          d.headers.push(["X-Twilio-Webhooks-Signature-Settings", settings(d)]);
        }),
      expect,
    );
  return [
    row(
      "a captured GET with 998 '&' and a new MessageSid and Price appended (twilio-node's 1000-pair legacy querystring)",
      (c) => req(c, (d) => (d.path += `${"&".repeat(998)}&MessageSid=${uniqueSid("SM")}&Price=-999.00`), (cc) => getDraft(cc)),
      FORBIDDEN,
    ),
    row(
      "the same trick with a new MessageSid each time (replays must not count again)",
      (c) => req(c, (d) => (d.path += `${"&".repeat(1200)}&MessageSid=${uniqueSid("SM")}`), (cc) => getDraft(cc)),
      FORBIDDEN,
      { repeat: 2 },
    ),
    row(
      "a POST with tenant=evil&admin=1 appended to its query after 999 '&' (Node's parser stops at 1000 pieces)",
      (c) => req(c, (d) => ((d.signedUrl = `${c.base}/webhooks/sms?tenant=t54`), (d.path = `/webhooks/sms?tenant=t54${"&".repeat(999)}&tenant=evil&admin=1`))),
      FORBIDDEN,
    ),
    row(
      "a JSON webhook with tenant=evil&admin=1 appended to its query after 998 '&'",
      (c) => req(c, (d) => (d.path += `${"&".repeat(998)}&tenant=evil&admin=1`), (cc) => jsonDraft(cc)),
      FORBIDDEN,
    ),
    row("empty pairs '=&=&=' appended to a signed form (they add nothing to the signed string)", (c) => req(c, (d) => (d.body = `${formBody(d.pairs)}&=&=&=`)), MALFORMED),
    row("a bare '=' appended to a signed form", (c) => req(c, (d) => (d.body = `${formBody(d.pairs)}&=`)), MALFORMED),
    row("empty pairs appended to a signed GET query (the URL signature covers them)", (c) => req(c, (d) => (d.path += "&=&=&="), (cc) => getDraft(cc)), FORBIDDEN),
    row(
      "empty pieces '&&' in a POST's signed query (twilio-node's legacy querystring drops them, so the signature holds)",
      (c) => req(c, (d) => ((d.signedUrl = `${c.base}/webhooks/sms?tenant=t54&x=1`), (d.path = "/webhooks/sms?tenant=t54&&&x=1"))),
      MALFORMED,
    ),
    row("a pair repeated verbatim in a signed GET query (the URL signature covers it)", (c) => req(c, (d) => (d.path += "&NumSegments=1"), (cc) => getDraft(cc)), FORBIDDEN),
    row(
      "a Body re-split into a repeated field ('hiBodyx' as Body=hi&Body=x, same signed string)",
      (c) => req(c, (d) => resplit(d, () => [["Body", "x"]], () => "hiBodyx")),
      MALFORMED,
    ),
    row(
      "an SMS whose Body was re-split into CallSid/CallStatus=completed/Duration=1440 (same signed string): not a call",
      (c) =>
        req(c, (d) =>
          resplit(
            d,
            (callSid) => [["CallSid", callSid], ["CallStatus", "completed"], ["Duration", "1440"]],
            (callSid) => `hiCallSid${callSid}CallStatuscompletedDuration1440`,
          ),
        ),
      MALFORMED,
    ),
    row(
      "a webhook URL with typed escapes and a raw apostrophe (?note=%C3%A9%3D+%3E&who=It's): forwarded",
      (c) =>
        req(c, (d) => {
          d.path = "/webhooks/sms?tenant=t54&note=%C3%A9%3D+%3E&who=It's";
          d.signedUrl = c.base + d.path;
        }),
      PASSES,
    ),
    row(
      "a webhook URL with a raw space and é in its path and typed %3C in its query: forwarded",
      (c) =>
        req(c, (d) => {
          d.signedUrl = `${c.base}/webhooks/sms/a b/é?x=%3Cy`;
          d.path = "/webhooks/sms/a%20b/%C3%A9?x=%3Cy";
        }),
      PASSES,
    ),
    row(
      "headers an attacker chose never reach the origin (Forwarded, X-Forwarded-*, X-Real-IP, Cookie, Authorization, …)",
      (c) => req(c, (d) => d.headers.push(...attackerHeaders)),
      {
        ...PASSES,
        originHeader: {
          "x-guard-verified": "signature",
          forwarded: null,
          "x-forwarded-host": null,
          "x-real-ip": null,
          "true-client-ip": null,
          "x-original-url": null,
          "x-rewrite-url": null,
          "x-http-method-override": null,
          "x-middleware-subrequest": null,
          cookie: null,
          authorization: null,
          "x-forwarded-for": /^(?!6\.6\.6\.6)/,
        },
      },
    ),
    row(
      "a replay with an 8 KB I-Twilio-Idempotency-Token each time: not counted again, not forwarded",
      (c) => req(c, (d) => d.headers.push(["I-Twilio-Idempotency-Token", `idem-${randomBytes(4).toString("hex")}-${"t".repeat(8 * 1024)}`])),
      { ...DUPLICATE, originHeader: { "x-guard-verified": "signature", "x-guard-duplicate": "1", "i-twilio-idempotency-token": null } },
      { repeat: 2 },
    ),
    row(
      "/usage-trigger whose DateFired is two days old (a replay), validly signed",
      (c) =>
        req(c, (d) => {
          d.path = "/usage-trigger";
          d.signedUrl = c.base + d.path;
          d.pairs = setPair(triggerPairs(c.victim.sid), "DateFired", new Date(Date.now() - 2 * 86_400_000).toUTCString());
          d.signedPairs = d.pairs;
        }),
      MALFORMED,
      { group: "route" },
    ),
    row(
      "/usage-trigger without DateFired, validly signed",
      (c) =>
        req(c, (d) => {
          d.path = "/usage-trigger";
          d.signedUrl = c.base + d.path;
          d.pairs = withoutPair(triggerPairs(c.victim.sid), "DateFired");
          d.signedPairs = d.pairs;
        }),
      MALFORMED,
      { group: "route" },
    ),
    sharedKeyRow("HMAC_SHA256 with a configured key: forwarded", () => `key=${SHARED_KEY_ID},algorithm=HMAC_SHA256`, SECRETS.sharedKeySecret, PASSES),
    sharedKeyRow("a key id the guard does not hold", () => "key=webhooks_sharedkey_other,algorithm=HMAC_SHA256", SECRETS.sharedKeySecret, FORBIDDEN),
    sharedKeyRow("an algorithm the guard does not know", () => `key=${SHARED_KEY_ID},algorithm=HMAC_SHA512`, SECRETS.sharedKeySecret, FORBIDDEN),
    sharedKeyRow("the header with an auth-token signature (no fallback to the token)", () => `key=${SHARED_KEY_ID},algorithm=HMAC_SHA256`, null, FORBIDDEN),
    sharedKeyRow("HMAC_SHA256 keyed with the account's auth token", () => `key=${SHARED_KEY_ID},algorithm=HMAC_SHA256`, "token", FORBIDDEN),
    ...(["basic", "both"] as const).flatMap((worker) => [
      row(
        `WEBHOOK_AUTH=${worker}: /usage-trigger with valid Basic credentials and no signature`,
        (c) => req(c, (d) => ((d.path = "/usage-trigger"), (d.pairs = triggerPairs(c.victim.sid)), (d.signature = null), d.headers.push(["Authorization", GOOD_BASIC()]))),
        FORBIDDEN,
        { worker, group: worker },
      ),
      row(
        `WEBHOOK_AUTH=${worker}: /usage-trigger for the parent with valid Basic credentials and a forged signature`,
        (c) =>
          req(c, (d) => {
            d.path = "/usage-trigger";
            d.pairs = triggerPairs(c.parent.sid);
            d.signature = randomBytes(20).toString("base64");
            d.headers.push(["Authorization", GOOD_BASIC()]);
          }),
        FORBIDDEN,
        { worker, group: worker },
      ),
    ]),
    row(
      "WEBHOOK_AUTH=basic: a status callback whose Price is -999.00 counts the estimate, not the Price",
      (c) =>
        req(c, (d) => {
          d.path = "/webhooks/status";
          d.pairs = messageStatus(c.other.sid, uniqueSid("SM"), "delivered", { Price: "-999.00", PriceUnit: "USD" });
          d.signature = null;
          d.headers.push(["Authorization", GOOD_BASIC()]);
        }),
      { ...PASSES_BASIC, countedOn: "other" },
      { worker: "basic", group: "basic" },
    ),
  ];
}

function triggerPairs(accountSid: string): Pairs {
  return [
    ["AccountSid", accountSid],
    ["UsageTriggerSid", uniqueSid("UT")],
    ["UsageCategory", "totalprice"],
    ["CurrentValue", "75.00"],
    ["TriggerValue", "50.00"],
    ["IdempotencyToken", `trigger-${randomBytes(6).toString("hex")}`],
    ["DateFired", new Date().toUTCString()],
  ];
}

function queryMutations(): CorpusRow[] {
  const signed = "/webhooks/sms?tenant=alpha&x=1";
  const row = (name: string, sent: string, expect: CorpusExpectation = FORBIDDEN): CorpusRow => ({
    group: "mutation",
    name: `query: ${name}`,
    build: (c) => req(c, (d) => ((d.signedUrl = c.base + signed), (d.path = sent))),
    expect,
  });
  return [
    row("value, one character substituted", "/webhooks/sms?tenant=alphb&x=1"),
    row("value, one character deleted", "/webhooks/sms?tenant=alph&x=1"),
    row("value, one character inserted", "/webhooks/sms?tenant=alpha&x=12"),
    row("key, one character substituted", "/webhooks/sms?tenanu=alpha&x=1"),
    row("key, case of one character", "/webhooks/sms?Tenant=alpha&x=1"),
    row("'&' replaced by ';'", "/webhooks/sms?tenant=alpha;x=1"),
    row("pairs reordered", "/webhooks/sms?x=1&tenant=alpha"),
    row("'=' deleted", "/webhooks/sms?tenantalpha&x=1"),
    row("dropped entirely", "/webhooks/sms"),
    // twilio-node's validateRequest also tries the query as Node's legacy querystring re-encodes it,
    // which turns %61 back into "a": the same URL to Twilio's own validator, so it verifies.
    row("%61 for 'a' (Twilio's legacy-querystring fallback normalises it): still verifies", "/webhooks/sms?tenant=%61lpha&x=1", PASSES),
  ];
}

function badEncodings(): CorpusRow[] {
  const escaped = (name: string, bad: string): CorpusRow => ({
    group: "body",
    name: `badly percent-encoded: ${name}`,
    build: (c) => req(c, (d) => (d.body = formBody(setPair(d.pairs, "Body", "MARK")).replace("MARK", bad))),
    expect: MALFORMED,
  });
  const raw = (name: string, bytes: number[]): CorpusRow => ({
    group: "body",
    name: `not UTF-8: ${name}`,
    build: (c) => req(c, (d) => (d.body = rawBodyWith(d, Buffer.from(bytes)))),
    expect: MALFORMED,
  });
  return [
    escaped("%zz", "%zz"),
    escaped("a lone %", "50%"),
    escaped("%2 at the end of a value", "ab%2"),
    escaped("%G1", "%G1"),
    escaped("escaped truncated UTF-8 (%E0%A4)", "%E0%A4"),
    escaped("escaped overlong '/' (%C0%AF)", "%C0%AF"),
    escaped("escaped surrogate (%ED%A0%80)", "%ED%A0%80"),
    escaped("escaped %FF", "%FF"),
    raw("a raw 0xFF byte", [0xff]),
    raw("a truncated two-byte sequence", [0x68, 0xc3]),
    raw("an overlong raw '/' (C0 AF)", [0xc0, 0xaf]),
    raw("a raw UTF-16 surrogate (ED A0 80)", [0xed, 0xa0, 0x80]),
    raw("Latin-1 'é' (E9)", [0xe9]),
    {
      group: "body",
      name: "not UTF-8: the whole body in UTF-16LE",
      build: (c) => req(c, (d) => (d.body = Buffer.from("\ufeff" + formBody(d.pairs), "utf16le"))),
      expect: MALFORMED,
    },
  ];
}

function malformedAccountSids(): CorpusRow[] {
  const cases: Array<[string, (c: CorpusContext) => string]> = [
    ["too short (AC123)", () => "AC123"],
    ["upper-case hex", (c) => "AC" + c.victim.sid.slice(2).toUpperCase()],
    ["lower-case prefix (ac…)", (c) => "ac" + c.victim.sid.slice(2)],
    ["33 hex digits", (c) => c.victim.sid + "0"],
    ["31 hex digits", (c) => c.victim.sid.slice(0, -1)],
    ["empty", () => ""],
    ["a leading space", (c) => " " + c.victim.sid],
    ["a path traversal (AC../../Accounts)", () => "AC../../Accounts/" + "0".repeat(16)],
    ["a query injection (AC…?x=1)", (c) => c.victim.sid + "?x=1"],
    ["non-hex digits (ACzz…)", () => "AC" + "z".repeat(32)],
    ["a MessageSid (SM…) in its place", () => uniqueSid("SM")],
  ];
  return cases.map(
    ([name, value]): CorpusRow => ({
      group: "account",
      name: `malformed AccountSid: ${name}, signed with the victim's token`,
      build: (c) => req(c, (d) => ((d.pairs = setPair(d.pairs, "AccountSid", value(c))), (d.signedPairs = d.pairs))),
      expect: FORBIDDEN,
    }),
  );
}

function basicRows(): CorpusRow[] {
  const row = (name: string, change: (d: Draft, c: CorpusContext) => void, expect: CorpusExpectation, repeat?: number): CorpusRow => ({
    group: "basic",
    worker: "basic",
    name: `WEBHOOK_AUTH=basic: ${name}`,
    build: (c) => req(c, (d) => change(d, c)),
    expect,
    ...(repeat !== undefined ? { repeat } : {}),
  });
  const auth = (value: string) => (d: Draft) => d.headers.push(["Authorization", value]);
  return [
    row("no Authorization", () => {}, CHALLENGE),
    row("no Authorization, no signature", (d) => (d.signature = null), CHALLENGE),
    row("wrong password", auth(basicHeader(BASIC_USER, "wrong-password")), CHALLENGE),
    row("wrong user", auth(basicHeader("twilio-e2f", SECRETS.basicPassword)), CHALLENGE),
    row("password with one character changed", auth(basicHeader(BASIC_USER, substitute(SECRETS.basicPassword, -1))), CHALLENGE),
    row("password with a character appended", auth(basicHeader(BASIC_USER, SECRETS.basicPassword + "x")), CHALLENGE),
    row("empty password", auth(basicHeader(BASIC_USER, "")), CHALLENGE),
    row("credentials without a colon", auth(`Basic ${Buffer.from(BASIC_USER + SECRETS.basicPassword).toString("base64")}`), CHALLENGE),
    row("malformed base64", auth("Basic !!!not-base64!!!"), CHALLENGE),
    row("the password in clear text", auth(`Basic ${BASIC_USER}:${SECRETS.basicPassword}`), CHALLENGE),
    row("Bearer scheme with the password", auth(`Bearer ${SECRETS.basicPassword}`), CHALLENGE),
    row("valid credentials, no signature: forwarded", auth(GOOD_BASIC()), PASSES_BASIC),
    row("valid credentials, scheme in lower case ('basic'): forwarded", (d) => d.headers.push(["Authorization", GOOD_BASIC().replace("Basic", "basic")]), PASSES_BASIC),
    row("valid credentials and a forged signature: forwarded (basic checks credentials only)", (d) => ((d.signature = randomBytes(20).toString("base64")), d.headers.push(["Authorization", GOOD_BASIC()])), PASSES_BASIC),
    row(
      "valid credentials, malformed AccountSid",
      (d) => ((d.pairs = setPair(d.pairs, "AccountSid", "AC123")), d.headers.push(["Authorization", GOOD_BASIC()])),
      FORBIDDEN,
    ),
    // CONTRACT: "unknown or malformed AccountSid → 403, nothing forwarded, nothing counted", whatever WEBHOOK_AUTH.
    row(
      "valid credentials, an AccountSid nobody knows",
      (d, c) => ((d.pairs = inboundSms(c.unknown.sid)), d.headers.push(["Authorization", GOOD_BASIC()])),
      FORBIDDEN,
    ),
    row(
      "valid credentials, an AccountSid owned by another parent",
      (d, c) => ((d.pairs = inboundSms(c.foreign.sid)), d.headers.push(["Authorization", GOOD_BASIC()])),
      FORBIDDEN,
    ),
    row("valid credentials, body over 64 KiB", (d) => ((d.body = "Body=" + "z".repeat(64 * 1024)), d.headers.push(["Authorization", GOOD_BASIC()])), TOO_LARGE),
    row("valid credentials, a retry", auth(GOOD_BASIC()), { ...PASSES_BASIC, originHeader: { "x-guard-verified": "basic", "x-guard-duplicate": "1", authorization: null } }, 1),
  ];
}

function bothRows(): CorpusRow[] {
  const row = (name: string, change: (d: Draft, c: CorpusContext) => void, expect: CorpusExpectation): CorpusRow => ({
    group: "both",
    worker: "both",
    name: `WEBHOOK_AUTH=both: ${name}`,
    build: (c) => req(c, (d) => change(d, c)),
    expect,
  });
  const good = { ...PASSES, originHeader: { "x-guard-verified": "signature", "x-guard-duplicate": null, authorization: null } };
  return [
    row("valid credentials and a valid signature: forwarded", (d) => d.headers.push(["Authorization", GOOD_BASIC()]), good),
    row(
      "valid credentials, signature over the URL with user:password@ (as Twilio signs it): forwarded",
      (d) => {
        d.signedUrl = d.signedUrl.replace("http://", `http://${BASIC_USER}:${SECRETS.basicPassword}@`);
        d.headers.push(["Authorization", GOOD_BASIC()]);
      },
      good,
    ),
    row("valid credentials, no signature", (d) => ((d.signature = null), d.headers.push(["Authorization", GOOD_BASIC()])), FORBIDDEN),
    row("valid credentials, forged signature", (d) => ((d.signature = randomBytes(20).toString("base64")), d.headers.push(["Authorization", GOOD_BASIC()])), FORBIDDEN),
    row("valid signature, no credentials", () => {}, CHALLENGE),
    row("valid signature, wrong password", (d) => d.headers.push(["Authorization", basicHeader(BASIC_USER, "nope")]), CHALLENGE),
  ];
}

// ---- The heavy variant: seeded random one-character mutations ------------------------------------------------------------


const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/**
 * `count` random one-character substitutions of the signature, a body value or the path of a valid
 * victim message: each must be refused (403), never forwarded or counted.
 */
export function randomMutations(seed: number, count: number): CorpusRow[] {
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const flip = (text: string, at: number): string => {
    let c = pick([...ALPHABET]);
    while (c === text[at]) c = pick([...ALPHABET]);
    return text.slice(0, at) + c + text.slice(at + 1);
  };
  const rows: CorpusRow[] = [];
  for (let i = 0; i < count; i++) {
    const target = pick(["signature", "value", "path"] as const);
    const r1 = random();
    const r2 = random();
    rows.push({
      group: "random",
      name: `random mutation #${i} (seed ${seed}): ${target}`,
      build: (c) =>
        req(c, (d) => {
          if (target === "signature") {
            const s = signatureOf(d);
            // The last two characters are padding and its low bits: changing them may leave the digest as it was.
            d.signature = flip(s, Math.floor(r1 * (s.length - 2)));
          } else if (target === "value") {
            // Not AccountSid: a mutated one is an unknown account, and each costs a capped Twilio lookup.
            const candidates = d.pairs.filter(([k, v]) => v.length > 0 && k !== "AccountSid");
            const [key, value] = candidates[Math.floor(r1 * candidates.length)]!;
            d.pairs = setPair(d.pairs, key, flip(value, Math.floor(r2 * value.length)));
          } else {
            const at = "/webhooks/".length + Math.floor(r1 * 3);
            d.path = flip(d.path, at);
          }
        }),
      expect: FORBIDDEN,
    });
  }
  return rows;
}

// ---- GUARD_MODE=report-only: the same rows, answered as the contract says for that mode -------------------------------

/**
 * The signature rows again, for a Worker in report-only mode: a request that fails a check is
 * forwarded anyway, marked with X-Guard-Verdict and never counted ("Only verified events are counted");
 * oversized bodies and wrong methods are still refused, and /usage-trigger never trips unverified.
 */
export function reportOnlyRows(rows: readonly CorpusRow[]): CorpusRow[] {
  return rows
    .filter((row) => (row.worker ?? "signature") === "signature")
    .map((row): CorpusRow => {
      const refusedButForwarded = (row.expect.status === 403 || row.expect.status === 400) && row.group !== "route";
      return {
        ...row,
        worker: "report-only",
        name: `GUARD_MODE=report-only: ${row.name}`,
        expect: refusedButForwarded
          ? { status: 200, originCalled: true, counted: false, originHeader: { "x-guard-verdict": /^[a-z0-9-]+$/, "x-guard-verified": null, "x-guard-duplicate": null } }
          : row.expect,
      };
    });
}
