// Reading a webhook request: the size cap, the body bytes (kept exactly, to forward byte-for-byte), and
// the parameters Twilio signed and that the ledger classifies.
import { readCappedBody } from "../http/body.ts";
import { GuardError } from "../http/errors.ts";
import { CLASSIFIED_FIELDS } from "../ledger/classify.ts";
import { FormEncodingError, parseForm, type FormPairs } from "../verification/form.ts";

/** Twilio's webhook bodies are a few KiB at most; 64 KiB (the contract's cap) leaves room and bounds memory. */
export const MAX_WEBHOOK_BODY_BYTES = 64 * 1024;

export type BodyKind = "form" | "json" | "none";

export interface WebhookRequest {
  method: "GET" | "POST";
  url: URL;
  rawBody: Uint8Array<ArrayBuffer>;
  bodyKind: BodyKind;
  /** The POST form parameters Twilio signed, in body order; empty for GET and JSON. */
  formParams: FormPairs;
  /** Flat view of the event's fields for classification: form params (POST), query (GET), top-level JSON strings. */
  fields: Map<string, string>;
  /** The AccountSid the payload claims (unverified until the signature checks out). */
  claimedAccountSid: string | null;
  /**
   * Why the request is not shaped like anything Twilio sends (twilioShaped, an empty POST), or
   * null. Raised by the caller after authentication, so a Basic challenge still comes first.
   */
  notTwilioShaped: GuardError | null;
}

function tooLarge(): GuardError {
  return new GuardError(413, "request body too large", { reason: "body-too-large" });
}

export function malformed(reason: string, message: string): GuardError {
  return new GuardError(400, message, { reason });
}

/** The body bytes, refused with 413 past the cap (checked on the declared length and while streaming). */
export function readBody(request: Request, maxBytes = MAX_WEBHOOK_BODY_BYTES): Promise<Uint8Array<ArrayBuffer>> {
  return readCappedBody(request, maxBytes, tooLarge);
}

function bodyKindOf(contentType: string | null, body: Uint8Array): BodyKind {
  const mediaType = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (mediaType === "application/json") return "json";
  if (mediaType === "application/x-www-form-urlencoded") return "form";
  if (body.byteLength === 0) return "none";
  throw malformed("unsupported-content-type", "unsupported content type: Twilio sends form-encoded or JSON bodies");
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function decodeUtf8(body: Uint8Array): string {
  try {
    return strictUtf8.decode(body);
  } catch {
    throw malformed("body-not-utf8", "request body is not valid UTF-8");
  }
}

function jsonFields(text: string): Map<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw malformed("body-bad-json", "request body is not valid JSON");
  }
  const fields = new Map<string, string>();
  if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
    for (const [key, value] of Object.entries(parsed)) {
      if (typeof value === "string") fields.set(key, value);
      else if (typeof value === "number") fields.set(key, String(value));
    }
  }
  return fields;
}

/**
 * Fields whose value decides what the guard does: what classification reads (classify.ts), the
 * AccountSid, and what a usage trigger reads. A request carrying one of them twice is refused: Twilio
 * never repeats them, and a second value would let a caller choose which one the guard acts on.
 */
const SINGLE_VALUED: ReadonlySet<string> = new Set([
  ...CLASSIFIED_FIELDS,
  "IdempotencyToken", "UsageTriggerSid", "DateFired", "CurrentValue", "TriggerValue", "Recurring", "UsageCategory", "TriggerBy",
]);

/**
 * Whether a parameter string (a form body, a query without its '?') has a piece Twilio never sends:
 * an empty one between '&'s (`&&`, a leading or trailing '&', or nothing at all) or one with an empty
 * name (`=x`). Read off the text, without splitting it again.
 */
function hasEmptyPiece(text: string): boolean {
  const first = text.charCodeAt(0);
  return text === "" || first === AMPERSAND || first === EQUALS || text.charCodeAt(text.length - 1) === AMPERSAND ||
    text.includes("&&") || text.includes("&=");
}
const AMPERSAND = 0x26;
const EQUALS = 0x3d;

/**
 * The flat view of `pairs` for classification (a repeated name keeps its last value, as `new
 * Map(pairs)` would), and why the parameter list is one Twilio never sends, or null. Refused lists are
 * those whose extra parts add nothing to the signed string (Twilio's scheme concatenates keys and
 * values without separators, and twilio-node drops repeats of a pair): an empty piece between '&'s or
 * a pair with an empty name (`&&`, `=&=&=`), a pair repeated verbatim, or a single-valued field given
 * twice. Each would otherwise ride along a genuine signature to the origin. `text` is the string the
 * pairs were parsed from. The first fault found is the reason: the pieces', then the pairs' in order.
 */
export function twilioShaped(text: string, pairs: FormPairs, where: "body" | "query"): { fields: Map<string, string>; notShaped: GuardError | null } {
  const fields = new Map<string, string>();
  let notShaped: GuardError | null = hasEmptyPiece(text) ? malformed("empty-parameter", `${where} has an empty parameter (Twilio never sends one)`) : null;
  for (let i = 0; i < pairs.length; i++) {
    const [key, value] = pairs[i]!;
    if (notShaped === null) {
      if (key === "") notShaped = malformed("empty-parameter", `${where} has a parameter without a name`);
      else if (fields.has(key)) notShaped = repeated(pairs, i, where);
    }
    fields.set(key, value);
  }
  return { fields, notShaped };
}

/** Pair `i`'s name came before: refused if the same pair did, or if the name is single-valued; else null. */
function repeated(pairs: FormPairs, i: number, where: "body" | "query"): GuardError | null {
  const [key, value] = pairs[i]!;
  for (let j = 0; j < i; j++) {
    if (pairs[j]![0] === key && pairs[j]![1] === value) return malformed("repeated-parameter", `${where} repeats a parameter verbatim`);
  }
  return SINGLE_VALUED.has(key) ? malformed("repeated-parameter", `${where} gives ${key} twice`) : null;
}

/** The query's parameters ("" → none) and their shape (twilioShaped). */
function queryShape(url: URL): { fields: Map<string, string>; notShaped: GuardError | null } {
  const query = url.search.slice(1);
  if (query === "") return { fields: new Map(), notShaped: null };
  return twilioShaped(query, [...new URLSearchParams(query)], "query");
}

/** Parses what Twilio signed out of the request line, headers and body bytes; 400 when malformed. `url`: request.url parsed. */
export function parseWebhook(request: Request, rawBody: Uint8Array<ArrayBuffer>, url = new URL(request.url)): WebhookRequest {
  const method = request.method === "GET" ? "GET" : "POST";
  const bodyKind = method === "GET" ? "none" : bodyKindOf(request.headers.get("content-type"), rawBody);

  let formParams: FormPairs = [];
  let fields: Map<string, string>;
  let notTwilioShaped: GuardError | null = null;
  if (method === "POST" && (bodyKind === "none" || rawBody.byteLength === 0)) {
    // Twilio's POST webhooks always carry their parameters in the body; an empty POST is a GET's
    // signature (the URL alone) replayed with another method.
    notTwilioShaped = malformed("post-without-body", "POST without a body: Twilio sends its parameters in the body");
  }
  if (method === "POST") {
    // The configured URL's own query is signed as part of the URL, but twilio-node's legacy-querystring
    // candidate normalizes it (drops empty pieces): refuse what that would let ride along.
    notTwilioShaped ??= queryShape(url).notShaped;
  }
  if (bodyKind === "form") {
    const text = decodeUtf8(rawBody);
    try {
      formParams = parseForm(text);
    } catch (error) {
      if (error instanceof FormEncodingError) throw malformed("body-bad-encoding", "malformed form encoding");
      throw error;
    }
    const shaped = twilioShaped(text, formParams, "body");
    notTwilioShaped ??= shaped.notShaped;
    fields = shaped.fields;
  } else if (bodyKind === "json") {
    if (!url.searchParams.has("bodySHA256")) {
      throw malformed("json-without-body-hash", "JSON body without bodySHA256 query parameter");
    }
    fields = jsonFields(decodeUtf8(rawBody));
  } else {
    const shaped = queryShape(url);
    notTwilioShaped ??= shaped.notShaped;
    fields = shaped.fields;
  }
  const claimed = fields.get("AccountSid") ?? null;
  return { method, url, rawBody, bodyKind, formParams, fields, claimedAccountSid: claimed, notTwilioShaped };
}
