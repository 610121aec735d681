// Strict application/x-www-form-urlencoded parsing and encoding for Twilio webhook bodies. Pure; no
// Worker types (the CLI runs it in Node too).
//
// Twilio signs the *decoded* POST parameters (https://www.twilio.com/docs/usage/webhooks/webhooks-security),
// so every byte of the body must decode to exactly one value: unlike URLSearchParams, which turns
// "%zz" or truncated UTF-8 into U+FFFD silently, this parser rejects them with FormEncodingError.

/** Key/value pairs in body order, repeated keys and empty values kept. */
export type FormPairs = ReadonlyArray<readonly [string, string]>;

/** The body is not valid application/x-www-form-urlencoded (bad percent-encoding or bad UTF-8). */
export class FormEncodingError extends Error {
  override name = "FormEncodingError";
}

const PLUS = /\+/g;
// A '%' not followed by two hex digits.
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;

function decodeComponent(raw: string): string {
  // '+' is a space in this format (WHATWG URL §5.1); replace it first so "%2B" stays a literal '+'.
  // A global regex replace builds one flat string; replaceAll(string) concatenates a piece per match.
  const text = raw.includes("+") ? raw.replace(PLUS, " ") : raw;
  if (!text.includes("%")) return text;
  try {
    // decodeURIComponent rejects a '%' without two hex digits, and invalid UTF-8 (truncated, overlong,
    // surrogates), instead of replacing them; which of the two only the error's message says.
    return decodeURIComponent(text);
  } catch {
    if (BAD_PERCENT.test(text)) throw new FormEncodingError("malformed percent-encoding in form body");
    throw new FormEncodingError("percent-encoded bytes in form body are not valid UTF-8");
  }
}

/**
 * Parses a form body. "" → []; "a" → [["a", ""]]; empty pieces between '&'s are skipped (as the WHATWG
 * parser does); duplicates and empty values are kept in body order.
 */
export function parseForm(body: string): FormPairs {
  const pairs: Array<readonly [string, string]> = [];
  if (body === "") return pairs;
  for (const piece of body.split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    const key = eq === -1 ? piece : piece.slice(0, eq);
    const value = eq === -1 ? "" : piece.slice(eq + 1);
    pairs.push([decodeComponent(key), decodeComponent(value)]);
  }
  return pairs;
}

function encodeComponent(text: string): string {
  // encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) as they are; a space becomes '+'.
  return encodeURIComponent(text.toWellFormed()).replaceAll("%20", "+");
}

/** The inverse of parseForm, as Twilio sends a form body (encodeURIComponent-style, space as '+'). */
export function encodeForm(pairs: FormPairs): string {
  return pairs.map(([key, value]) => `${encodeComponent(key)}=${encodeComponent(value)}`).join("&");
}
