import { afterEach, describe, expect, it, vi } from "vitest";
import type { FormPairs } from "../../src/verification/form.ts";
import {
  KEY_CACHE_LIMIT,
  computeSignature,
  sha256Hex,
  signedPayload,
  verifySignature,
  type SignatureCheck,
} from "../../src/verification/signature.ts";
import {
  legacyQuerystring,
  MAX_URL_CANDIDATES,
  undoAddedEscapes,
  urlCandidates,
} from "../../src/verification/url-candidates.ts";
import { utf8 } from "../../src/util/encoding.ts";

// Vectors from twilio-node's spec/validation.spec.js (the same ones twilio-python, -ruby, -php, -csharp,
// -go and -elixir test): token "12345", this URL and these params.
const TOKEN = "12345";
const URL_ = "https://mycompany.com/myapp.php?foo=1&bar=2";
const PARAMS: FormPairs = [
  ["CallSid", "CA1234567890ABCDE"],
  ["Caller", "+14158675309"],
  ["Digits", "1234"],
  ["From", "+14158675309"],
  ["To", "+18005551212"],
];
const SIG = "RSOYDt4T1cUTdK1PDd93/VVr8B8="; // twilio-node: defaultSignature
const SIG_443 = "kvajT1Ptam85bY51eRf/AJRuM3w="; // twilio-node: "hash of https url with port 443"
const SIG_HTTP_80 = "0ZXoZLH/DfblKGATFgpif+LLRf4="; // twilio-node: "hash of http url with port 80"
const SIG_HTTP_1234 = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="; // twilio-node: "hash of http url with port 1234"
const SIG_CREDS = "CukzLTc1tT5dXEDIHm/tKBanW10="; // twilio-node: https://user:pass@mycompany.com/...
const SIG_USER_ONLY = "2YRLlVAflCqxaNicjMpJcSTgzSs="; // twilio-node: https://user@mycompany.com/...
const SIG_CREDS_443 = "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="; // twilio-node: credentials with port 443
// twilio-node "should validate request body when given": JSON body, hash in the URL.
const JSON_BODY = '{"property": "value", "boolean": true}';
const JSON_BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
const JSON_URL = `${URL_}&bodySHA256=${JSON_BODY_HASH}`;
const JSON_SIG = "a9nBmqA0ju/hNViExpshrM61xv4=";
// twilio-node "should validate request body when empty".
const EMPTY_JSON_HASH = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const EMPTY_JSON_SIG = "Ldidvp12m26NI7eqEvxnEpkd9Hc=";
// twilio-node "should validate request body with only sha param".
const SHORT_JSON_URL = `https://mycompany.com/myapp.php?bodySHA256=${JSON_BODY_HASH}`;
const SHORT_JSON_SIG = "y77kIzt2vzLz71DgmJGsen2scGs=";
// twilio-node "should validate urls with special characters": signed over the raw `'`.
const SPECIAL_URL_RAW = `${URL_}&Body=It's+amazing`;
const SPECIAL_SIG = "dsq4Ehbj6cs+KdTkpF5sSSplOWw=";
// twilio-node "should validate request body with an array parameter" (either value order).
const ARRAY_SIG = "83O6e2vORAoJHUNzJjDWN1jz+BA=";
// twilio-node "should validate request body with multiple params and values": Digits 5678,1234,1234.
const MULTI_SIG = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";

function check(overrides: Partial<SignatureCheck>): SignatureCheck {
  return { url: URL_, params: PARAMS, signature: SIG, ...overrides };
}

describe("computeSignature", () => {
  it("matches Twilio's documented vector", async () => {
    expect(await computeSignature(TOKEN, URL_, PARAMS)).toBe(SIG);
  });

  it("does not depend on the order the params arrive in", async () => {
    expect(await computeSignature(TOKEN, URL_, [...PARAMS].reverse())).toBe(SIG);
  });

  it("signs the URL with :443 as twilio-node's port vector", async () => {
    expect(await computeSignature(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS)).toBe(SIG_443);
  });

  it("signs each distinct value of a repeated key once, sorted (twilio-node array vectors)", async () => {
    const a: FormPairs = [["MessagingBinding.Address", "+1325xxxxxxx"], ["MessagingBinding.Address", "+1415xxxxxxx"]];
    expect(await computeSignature(TOKEN, URL_, a)).toBe(ARRAY_SIG);
    expect(await computeSignature(TOKEN, URL_, [...a].reverse())).toBe(ARRAY_SIG);
    const multi: FormPairs = [["Sid", "CA123"], ["Digits", "5678"], ["SidAccount", "AC123"], ["Digits", "1234"], ["Digits", "1234"]];
    expect(await computeSignature(TOKEN, URL_, multi)).toBe(MULTI_SIG);
  });

  it("rejects an empty token", async () => {
    await expect(computeSignature("", URL_, PARAMS)).rejects.toThrow();
  });
});

describe("signedPayload", () => {
  it("is the URL then key+value sorted by key", () => {
    expect(signedPayload(URL_, PARAMS)).toBe(
      `${URL_}CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212`,
    );
  });

  it("sorts keys by UTF-16 code units, keeps empty values, dedupes and sorts repeated values", () => {
    const params: FormPairs = [["b", "2"], ["a", ""], ["B", "x"], ["b", "1"], ["b", "2"], ["é", "1"], ["😀", "2"], ["\uffff", "3"]];
    // "😀" is a surrogate pair (0xD83D…) so it sorts before U+FFFF, as JS Array.prototype.sort does.
    expect(signedPayload("u", params)).toBe("uBxab1b2é1😀2\uffff3");
  });

  it("is just the URL with no params", () => {
    expect(signedPayload(URL_, [])).toBe(URL_);
  });
});

describe("sha256Hex", () => {
  it("hashes twilio-node's JSON body vector", async () => {
    expect(await sha256Hex(utf8(JSON_BODY))).toBe(JSON_BODY_HASH);
    expect(await sha256Hex(utf8("{}"))).toBe(EMPTY_JSON_HASH);
  });

  it("hashes a view into a larger buffer by its own bytes only", async () => {
    const big = utf8(`xx${JSON_BODY}yy`);
    expect(await sha256Hex(big.subarray(2, big.length - 2))).toBe(JSON_BODY_HASH);
  });
});

describe("verifySignature: Twilio's vectors", () => {
  it("accepts the documented vector with the primary token", async () => {
    expect(await verifySignature([TOKEN], check({}))).toEqual({ ok: true, tokenIndex: 0 });
  });

  it("accepts it with the secondary token and says which matched", async () => {
    expect(await verifySignature(["other-token", TOKEN], check({}))).toEqual({ ok: true, tokenIndex: 1 });
  });

  it("rejects it with any other token", async () => {
    expect(await verifySignature(["1234", "123456", "other"], check({}))).toEqual({ ok: false, reason: "bad-signature" });
  });

  it("rejects when no token is configured", async () => {
    expect(await verifySignature([], check({}))).toEqual({ ok: false, reason: "bad-signature" });
    expect(await verifySignature([""], check({}))).toEqual({ ok: false, reason: "bad-signature" });
  });

  it("reports a missing or empty header as missing-signature", async () => {
    expect(await verifySignature([TOKEN], check({ signature: null }))).toEqual({ ok: false, reason: "missing-signature" });
    expect(await verifySignature([TOKEN], check({ signature: "" }))).toEqual({ ok: false, reason: "missing-signature" });
  });

  it("rejects a tampered param, an added param, a dropped param and a changed URL", async () => {
    const tampered: FormPairs = PARAMS.map(([k, v]) => [k, k === "Digits" ? "9999" : v] as const);
    expect((await verifySignature([TOKEN], check({ params: tampered }))).ok).toBe(false);
    expect((await verifySignature([TOKEN], check({ params: [...PARAMS, ["Extra", ""]] }))).ok).toBe(false);
    expect((await verifySignature([TOKEN], check({ params: PARAMS.slice(1) }))).ok).toBe(false);
    expect((await verifySignature([TOKEN], check({ url: `${URL_}&baz=3` }))).ok).toBe(false);
    expect((await verifySignature([TOKEN], check({ url: "https://evil.example/myapp.php?foo=1&bar=2" }))).ok).toBe(false);
    expect((await verifySignature([TOKEN], check({ url: URL_.replace("https:", "http:") }))).ok).toBe(false);
  });

  it("rejects malformed, truncated and non-canonical base64 signatures", async () => {
    for (const signature of ["WRONG_SIGNATURE", SIG.slice(0, -1), `${SIG}=`, ` ${SIG}`, SIG.toLowerCase(), SIG.replace("=", "A")]) {
      expect(await verifySignature([TOKEN], check({ signature }))).toEqual({ ok: false, reason: "bad-signature" });
    }
    // 'B8=' → '9=' changes only the 2 unused bits: a lenient decoder would return the same 20 bytes.
    const sameBytes = SIG.replace("8B8=", "8B9=");
    expect(await verifySignature([TOKEN], check({ signature: sameBytes }))).toEqual({ ok: false, reason: "bad-signature" });
  });

  it("accepts a URL that gained :443 or :80, as twilio-node's port vectors do", async () => {
    expect((await verifySignature([TOKEN], check({ signature: SIG_443 }))).ok).toBe(true);
    const http = URL_.replace("https:", "http:");
    expect((await verifySignature([TOKEN], check({ url: http, signature: SIG_HTTP_80 }))).ok).toBe(true);
    // …and the default port is never the other scheme's.
    expect((await verifySignature([TOKEN], check({ url: http, signature: SIG_443 }))).ok).toBe(false);
  });

  it("accepts a non-default port both signed and stripped, as twilio-node does", async () => {
    const https1234 = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    expect((await verifySignature([TOKEN], check({ url: https1234 }))).ok).toBe(true);
    const http1234 = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
    expect((await verifySignature([TOKEN], check({ url: http1234, signature: SIG_HTTP_1234 }))).ok).toBe(true);
    expect((await verifySignature([TOKEN], check({ url: "http://mycompany.com:1235/myapp.php?foo=1&bar=2", signature: SIG_HTTP_1234 }))).ok).toBe(false);
  });

  it("accepts URLs signed with userinfo when basicAuth is configured (twilio-node's credential vectors)", async () => {
    const basicAuth = { user: "user", password: "pass" };
    expect(await verifySignature([TOKEN], check({ basicAuth, signature: SIG_CREDS }))).toEqual({ ok: true, tokenIndex: 0 });
    expect((await verifySignature([TOKEN], check({ basicAuth, signature: SIG_CREDS_443 }))).ok).toBe(true);
    expect((await verifySignature([TOKEN], check({ basicAuth: { user: "user", password: "" }, signature: SIG_USER_ONLY }))).ok).toBe(true);
    // …and without userinfo too (Twilio drops it), but not with other credentials or without basicAuth.
    expect((await verifySignature([TOKEN], check({ basicAuth }))).ok).toBe(true);
    expect((await verifySignature([TOKEN], check({ basicAuth: { user: "user", password: "pas" }, signature: SIG_CREDS }))).ok).toBe(false);
    expect((await verifySignature([TOKEN], check({ signature: SIG_CREDS }))).ok).toBe(false);
  });

  it("accepts twilio-node's special-character vector from the URL the Worker sees (%27), which twilio-node rejects (#1183)", async () => {
    const seen = new URL(SPECIAL_URL_RAW).href;
    expect(seen).toBe(`${URL_}&Body=It%27s+amazing`);
    expect(await verifySignature([TOKEN], check({ url: seen, signature: SPECIAL_SIG }))).toEqual({ ok: true, tokenIndex: 0 });
    expect((await verifySignature([TOKEN], check({ url: SPECIAL_URL_RAW, signature: SPECIAL_SIG }))).ok).toBe(true);
  });

  it("accepts the array vectors from a form body in either order", async () => {
    const pairs: FormPairs = [["MessagingBinding.Address", "+1415xxxxxxx"], ["MessagingBinding.Address", "+1325xxxxxxx"]];
    expect((await verifySignature([TOKEN], check({ params: pairs, signature: ARRAY_SIG }))).ok).toBe(true);
    const multi: FormPairs = [["Digits", "1234"], ["Sid", "CA123"], ["Digits", "5678"], ["Digits", "1234"], ["SidAccount", "AC123"]];
    expect((await verifySignature([TOKEN], check({ params: multi, signature: MULTI_SIG }))).ok).toBe(true);
    expect((await verifySignature([TOKEN], check({ params: multi.slice(1), signature: MULTI_SIG }))).ok).toBe(true); // same distinct values
    expect((await verifySignature([TOKEN], check({ params: multi.slice(0, 2), signature: MULTI_SIG }))).ok).toBe(false);
  });
});

describe("verifySignature: JSON bodies (bodySHA256)", () => {
  const json = (overrides: Partial<SignatureCheck>) =>
    check({ url: JSON_URL, params: [], rawBody: utf8(JSON_BODY), signature: JSON_SIG, ...overrides });

  it("accepts twilio-node's body vector", async () => {
    expect(await verifySignature([TOKEN], json({}))).toEqual({ ok: true, tokenIndex: 0 });
  });

  it("accepts the empty-body and the hash-only-query vectors", async () => {
    const emptyUrl = `${URL_}&bodySHA256=${EMPTY_JSON_HASH}`;
    expect((await verifySignature([TOKEN], json({ url: emptyUrl, rawBody: utf8("{}"), signature: EMPTY_JSON_SIG }))).ok).toBe(true);
    expect((await verifySignature([TOKEN], json({ url: SHORT_JSON_URL, signature: SHORT_JSON_SIG }))).ok).toBe(true);
  });

  it("signs with no params even if some are passed", async () => {
    expect((await verifySignature([TOKEN], json({ params: PARAMS }))).ok).toBe(true);
  });

  it("reports body-hash-mismatch when the signature is good but the body is not", async () => {
    expect(await verifySignature([TOKEN], json({ rawBody: utf8(`${JSON_BODY} `) }))).toEqual({ ok: false, reason: "body-hash-mismatch" });
  });

  it("treats a missing body as a mismatch", async () => {
    expect(await verifySignature([TOKEN], json({ rawBody: undefined }))).toEqual({ ok: false, reason: "body-hash-mismatch" });
  });

  it("reports bad-signature, not a body problem, when the signature is wrong", async () => {
    expect(await verifySignature([TOKEN], json({ rawBody: utf8("nope"), signature: SIG }))).toEqual({ ok: false, reason: "bad-signature" });
    expect(await verifySignature(["other"], json({}))).toEqual({ ok: false, reason: "bad-signature" });
  });

  describe("reads bodySHA256 as URLSearchParams.get does (twilio-node)", () => {
    const base = "https://mycompany.com/hook";
    async function withQuery(query: string, body = JSON_BODY) {
      const url = `${base}?${query}`;
      return verifySignature([TOKEN], { url, params: [], rawBody: utf8(body), signature: await computeSignature(TOKEN, url, []) });
    }

    it("takes the first of two bodySHA256 values", async () => {
      expect(await withQuery(`bodySHA256=${JSON_BODY_HASH}&bodySHA256=${EMPTY_JSON_HASH}`)).toEqual({ ok: true, tokenIndex: 0 });
      expect(await withQuery(`bodySHA256=${EMPTY_JSON_HASH}&bodySHA256=${JSON_BODY_HASH}`)).toEqual({ ok: false, reason: "body-hash-mismatch" });
    });

    it("does not take names that only contain it", async () => {
      // No bodySHA256 parameter: the URL is signed as a form URL with no parameters, and the body is not checked.
      expect(await withQuery(`xbodySHA256=${EMPTY_JSON_HASH}&bodySHA256x=${EMPTY_JSON_HASH}`)).toEqual({ ok: true, tokenIndex: 0 });
      expect(await withQuery(`xbodySHA256=${EMPTY_JSON_HASH}&bodySHA256=${JSON_BODY_HASH}`)).toEqual({ ok: true, tokenIndex: 0 });
      expect(await withQuery(`xbodySHA256=${JSON_BODY_HASH}&bodySHA256=${EMPTY_JSON_HASH}`)).toEqual({ ok: false, reason: "body-hash-mismatch" });
    });

    it("decodes a percent-encoded name, and '+' or %XX in the value", async () => {
      expect(await withQuery(`body%53HA256=${EMPTY_JSON_HASH}`)).toEqual({ ok: false, reason: "body-hash-mismatch" });
      expect(await withQuery(`body%53HA256=${JSON_BODY_HASH}`)).toEqual({ ok: true, tokenIndex: 0 });
      expect(await withQuery(`a=b+c&bodySHA256=${JSON_BODY_HASH.slice(0, 10)}%3${JSON_BODY_HASH.slice(11)}`)).toEqual({ ok: false, reason: "body-hash-mismatch" });
    });

    it("treats a bare name as an empty hash", async () => {
      expect(await withQuery("bodySHA256")).toEqual({ ok: false, reason: "body-hash-mismatch" });
      expect(await withQuery("bodySHA256&x=1")).toEqual({ ok: false, reason: "body-hash-mismatch" });
    });
  });

  it("rejects a changed hash in the URL (it is signed)", async () => {
    const url = JSON_URL.replace(/.$/, "1");
    expect(await verifySignature([TOKEN], json({ url }))).toEqual({ ok: false, reason: "bad-signature" });
  });
});

describe("verifySignature: URLs as the Worker sees them", () => {
  const token = "worker-url-token";
  async function signedRawSeenByWorker(raw: string, params: FormPairs = []) {
    const signature = await computeSignature(token, raw, params);
    const seen = new Request(raw).url; // workerd's own parser, as request.url
    return { seen, verdict: await verifySignature([token], { url: seen, params, signature }) };
  }

  it.each([
    ["an apostrophe and '+' in the query (#1183's William+O'hara)", "https://h.example/sms?name=William+O'hara"],
    ["spaces, quotes and angle brackets in the query", 'https://h.example/sms?q=a b"<c>'],
    ["non-ASCII in path and query", "https://h.example/réponse/日本?ville=Trezzo Sull'Adda&n=Zoë"],
    ["characters workerd escapes in paths", "https://h.example/a b/\"x\"/<y>/`{z}`/^"],
    ["RFC 3986-illegal characters kept raw in the query", "https://h.example/q?x={a}|b^c`d\\e"],
    ["an explicit default port", "https://h.example:443/sms?x=1"],
    ["an explicit http default port", "http://h.example:80/sms"],
    ["an empty path", "https://h.example?x=1"],
    ["an empty path and no query", "https://h.example"],
    ["an odd port and escapes together", "https://h.example:8443/a b?x='y'"],
    ["a literal %27 Twilio signed as typed", "https://h.example/sms?x=%27y%27"],
    ["percent signs that are not escapes", "https://h.example/sms?x=100%&y=%zz"],
  ])("accepts a signature over the raw URL with %s", async (_label, raw) => {
    const { seen, verdict } = await signedRawSeenByWorker(raw, [["Body", "hi"]]);
    expect(verdict, seen).toEqual({ ok: true, tokenIndex: 0 });
  });

  it("still rejects when the signed raw URL mixes a typed escape with a raw character of the same kind (known limit)", async () => {
    const { seen, verdict } = await signedRawSeenByWorker("https://h.example/sms?x=%27a'");
    expect(seen).toBe("https://h.example/sms?x=%27a%27");
    expect(verdict.ok).toBe(false);
  });

  it("cannot recover what the parser removed: upper-case host, dot segments (known limit)", async () => {
    expect((await signedRawSeenByWorker("https://H.Example/sms")).verdict.ok).toBe(false);
    expect((await signedRawSeenByWorker("https://h.example/a/../sms")).verdict.ok).toBe(false);
  });

  it("accepts twilio-node's legacy-querystring form (a back end that signed %20 for '+')", async () => {
    const seen = "https://h.example/sms?name=William+O%27hara";
    const signature = await computeSignature(token, "https://h.example/sms?name=William%20O'hara", []);
    expect((await verifySignature([token], { url: seen, params: [], signature })).ok).toBe(true);
  });
});

describe("verifySignature: PUBLIC_URL", () => {
  const token = "public-url-token";
  const seen = "https://guard.workers.dev/webhooks/sms?x=1";

  it.each([
    ["https://h.example/p", "https://h.example/p/webhooks/sms?x=1"],
    ["https://h.example/p/", "https://h.example/p/webhooks/sms?x=1"],
    ["https://h.example", "https://h.example/webhooks/sms?x=1"],
    ["https://h.example:8443/", "https://h.example:8443/webhooks/sms?x=1"],
    ["https://H.Example/Twilio", "https://H.Example/Twilio/webhooks/sms?x=1"],
  ])("PUBLIC_URL %s verifies a signature over %s", async (publicUrl, signedUrl) => {
    const signature = await computeSignature(token, signedUrl, PARAMS);
    expect(await verifySignature([token], { url: seen, publicUrl, params: PARAMS, signature })).toEqual({ ok: true, tokenIndex: 0 });
    // The Worker's own URL is not a candidate once PUBLIC_URL is set.
    const own = await computeSignature(token, seen, PARAMS);
    expect((await verifySignature([token], { url: seen, publicUrl, params: PARAMS, signature: own })).ok).toBe(false);
  });

  it("undoes escapes in the request part but keeps PUBLIC_URL verbatim", async () => {
    const signature = await computeSignature(token, "https://h.example/p%20q/hooks/a b?n=O'hara", []);
    const url = new Request("https://guard.workers.dev/hooks/a b?n=O'hara").url;
    expect((await verifySignature([token], { url, publicUrl: "https://h.example/p%20q", params: [], signature })).ok).toBe(true);
  });

  it("handles the request root with a PUBLIC_URL path", async () => {
    const signature = await computeSignature(token, "https://h.example/p", []);
    expect((await verifySignature([token], { url: "https://guard.workers.dev/", publicUrl: "https://h.example/p", params: [], signature })).ok).toBe(true);
  });
});

describe("urlCandidates", () => {
  it("puts the URL as seen first and has one entry per distinct form", () => {
    expect(urlCandidates({ url: URL_ })).toEqual([URL_, "https://mycompany.com:443/myapp.php?foo=1&bar=2"]);
  });

  it("lists as-seen, undone, path-only, query-only and legacy forms, each with and without the default port", () => {
    expect(urlCandidates({ url: "https://h.example/a%20b?n=O%27h+x" })).toEqual([
      "https://h.example/a%20b?n=O%27h+x",
      "https://h.example:443/a%20b?n=O%27h+x",
      "https://h.example/a b?n=O'h+x",
      "https://h.example:443/a b?n=O'h+x",
      "https://h.example/a b?n=O%27h+x",
      "https://h.example:443/a b?n=O%27h+x",
      "https://h.example/a%20b?n=O'h+x",
      "https://h.example:443/a%20b?n=O'h+x",
      "https://h.example/a%20b?n=O'h%20x",
      "https://h.example:443/a%20b?n=O'h%20x",
    ]);
  });

  it("drops the '/' the parser added to an empty path", () => {
    expect(urlCandidates({ url: "https://h.example/?x=%22" })).toEqual([
      "https://h.example/?x=%22",
      "https://h.example:443/?x=%22",
      'https://h.example/?x="',
      'https://h.example:443/?x="',
      "https://h.example?x=%22",
      "https://h.example:443?x=%22",
      'https://h.example?x="',
      'https://h.example:443?x="',
    ]);
  });

  it("accepts a GET URL whose configured path had raw characters and whose query Twilio encoded", async () => {
    const raw = "https://h.example/réponse?From=%2B14158675309&Body=%3Chi%3E";
    const signature = await computeSignature("get-token", raw, []);
    const url = new Request(raw).url;
    expect((await verifySignature(["get-token"], { url, params: [], signature })).ok).toBe(true);
  });

  it("tries a present port, then none", () => {
    expect(urlCandidates({ url: "http://h.example:8080/x" })).toEqual(["http://h.example:8080/x", "http://h.example/x"]);
  });

  it("adds userinfo variants after the plain ones, percent-encoded like a URL's", () => {
    expect(urlCandidates({ url: "https://h.example/x", basicAuth: { user: "tw ilio", password: "p@ss:w" } })).toEqual([
      "https://h.example/x",
      "https://h.example:443/x",
      "https://tw%20ilio:p%40ss%3Aw@h.example/x",
      "https://tw%20ilio:p%40ss%3Aw@h.example:443/x",
    ]);
  });

  it(`never returns more than ${MAX_URL_CANDIDATES}`, () => {
    const all = urlCandidates({ url: "https://h.example/a%20%7B?n=O%27h+x%20%3C%C3%A9", basicAuth: { user: "u", password: "p" } });
    expect(all.length).toBe(MAX_URL_CANDIDATES);
    expect(new Set(all).size).toBe(all.length);
  });

  it("returns a non-absolute URL unchanged", () => {
    expect(urlCandidates({ url: "/relative?x" })).toEqual(["/relative?x"]);
  });
});

describe("undoAddedEscapes", () => {
  it("in a query, decodes exactly the WHATWG query set and ' (what the parser adds), keeps the rest", () => {
    expect(undoAddedEscapes("%20%22%27%3C%3E%5C%5E%60%7B%7C%7D", "query")).toBe(" \"'<>%5C%5E%60%7B%7C%7D");
    expect(undoAddedEscapes("%C3%A9%E6%97%A5%F0%9F%98%80", "query")).toBe("é日😀");
    expect(undoAddedEscapes("%25%2B%26%3D%2F%3F%23%41%c3%a9%7e", "query")).toBe("%25%2B%26%3D%2F%3F%23%41%c3%a9%7e");
  });

  it("in a path, decodes exactly the WHATWG path set (no ', which paths keep raw)", () => {
    expect(undoAddedEscapes("%20%22%27%3C%3E%5C%5E%60%7B%7C%7D", "path")).toBe(' "%27<>%5C^`{%7C}');
    expect(undoAddedEscapes("%C3%A9", "path")).toBe("é");
  });

  it("keeps invalid UTF-8 escaped", () => {
    expect(undoAddedEscapes("%E0%A4%20%C3%28%ED%A0%80%C0%AF%FF", "query")).toBe("%E0%A4 %C3(%ED%A0%80%C0%AF%FF".replace("(", "%28"));
  });
});

describe("legacyQuerystring", () => {
  it("reproduces node:querystring's parse/stringify round trip", () => {
    // Expected strings from Node 22: querystring.stringify(querystring.parse(q)).
    expect(legacyQuerystring("b=1&2=x&a=3&1=y&b=2&=&&c")).toBe("1=y&2=x&b=1&b=2&a=3&=&c=");
    expect(legacyQuerystring("x=a+b%20c%27&&")).toBe("x=a%20b%20c'");
    expect(legacyQuerystring("%zz=%C3%28&k=%E0%A4")).toBe("%25zz=%EF%BF%BD(&k=%EF%BF%BD");
  });
});

describe("verifySignature: cost", () => {
  afterEach(() => vi.restoreAllMocks());

  /** Every HMAC WebCrypto computes, by sign() or verify(). */
  function hmacCalls(): () => number {
    const sign = vi.spyOn(crypto.subtle, "sign");
    const verify = vi.spyOn(crypto.subtle, "verify");
    return () => sign.mock.calls.length + verify.mock.calls.length;
  }

  it("computes one HMAC for a valid request with the primary token", async () => {
    const calls = hmacCalls();
    expect((await verifySignature([TOKEN, "secondary"], check({}))).ok).toBe(true);
    expect(calls()).toBe(1);
  });

  it(`computes at most ${MAX_URL_CANDIDATES} HMACs per token for a bad signature`, async () => {
    const calls = hmacCalls();
    const url = "https://h.example/a%20%7B?n=O%27h+x%20%3C%C3%A9";
    const verdict = await verifySignature(["a", "b"], { url, params: [], signature: SIG, basicAuth: { user: "u", password: "p" } });
    expect(verdict.ok).toBe(false);
    expect(calls()).toBe(2 * MAX_URL_CANDIDATES);
  });

  it("does not hash at all for a header that is not a 20-byte base64 value", async () => {
    const calls = hmacCalls();
    await verifySignature([TOKEN], check({ signature: "AAAA" }));
    expect(calls()).toBe(0);
  });

  it("lets WebCrypto compare: the check is verify() with the header's bytes, not a digest compared in JS", async () => {
    const verify = vi.spyOn(crypto.subtle, "verify");
    expect((await verifySignature([TOKEN], check({}))).ok).toBe(true);
    expect(verify).toHaveBeenCalledTimes(1);
    expect(verify.mock.calls[0]![0]).toBe("HMAC");
    expect(new Uint8Array(verify.mock.calls[0]![2] as Uint8Array)).toHaveLength(20);
  });

  it("reuses imported keys", async () => {
    const importKey = vi.spyOn(crypto.subtle, "importKey");
    const token = "cache-test-token";
    await computeSignature(token, URL_, PARAMS);
    await computeSignature(token, URL_, PARAMS);
    await verifySignature([token], check({}));
    expect(importKey).toHaveBeenCalledTimes(1);
  });

  it(`keeps as many keys as the token cache keeps accounts (${KEY_CACHE_LIMIT}), evicting the oldest past that`, async () => {
    const importKey = vi.spyOn(crypto.subtle, "importKey");
    // Fill the cache with fresh tokens (other tests' tokens may be in it too: they go first).
    await computeSignature("evict-0", URL_, []);
    for (let i = 1; i <= KEY_CACHE_LIMIT; i++) await computeSignature(`evict-${i}`, URL_, []);
    await computeSignature(`evict-${KEY_CACHE_LIMIT}`, URL_, []); // newest: still cached
    expect(importKey).toHaveBeenCalledTimes(KEY_CACHE_LIMIT + 1);
    await computeSignature("evict-0", URL_, []); // oldest: evicted, imported again
    expect(importKey).toHaveBeenCalledTimes(KEY_CACHE_LIMIT + 2);
  });
});

describe("URL candidates that cannot be bent (issue 11)", () => {
  const token = "issue-11-token";

  it("accepts a query mixing typed escapes and a raw apostrophe: only the parser's %27 is undone", async () => {
    const configured = "https://guard.example.com/webhooks/sms?tenant=t54&note=%C3%A9%3D+%3E&who=It's";
    const seen = new URL(configured).href;
    expect(seen).toBe("https://guard.example.com/webhooks/sms?tenant=t54&note=%C3%A9%3D+%3E&who=It%27s");
    const signature = await computeSignature(token, configured, PARAMS);
    expect((await verifySignature([token], { url: seen, params: PARAMS, signature })).ok).toBe(true);
  });

  it.each([
    ["typed %3C and raw é in the query", "https://h.example/x?a=%3Cb&c=é"],
    ["typed %C3%A9, raw space and raw ' in the query", "https://h.example/x?a=%C3%A9&b=x y&c=O'h"],
    ["typed %20 and raw { in the path, raw ' in the query", "https://h.example/a%20b/{c}?n=O'h"],
    ["typed %7B and raw space in the path", "https://h.example/a%7Bb/c d"],
  ])("accepts %s", async (_name, configured) => {
    const seen = new URL(configured).href;
    const signature = await computeSignature(token, configured, []);
    expect((await verifySignature([token], { url: seen, params: [], signature })).ok).toBe(true);
  });

  it("accepts a signature over any of several PUBLIC_URL bases, and over none other", async () => {
    const publicUrl = ["https://hooks.example.com", "https://guard.acme.workers.dev"];
    const seen = "https://guard.acme.workers.dev/webhooks/sms";
    for (const base of publicUrl) {
      const signature = await computeSignature(token, `${base}/webhooks/sms`, PARAMS);
      expect((await verifySignature([token], { url: seen, publicUrl, params: PARAMS, signature })).ok, base).toBe(true);
    }
    // A Host header naming another host bound to the Worker does not move the signed URL there.
    const moved = "https://other-zone.example/webhooks/sms";
    const signature = await computeSignature(token, moved, PARAMS);
    expect((await verifySignature([token], { url: moved, publicUrl, params: PARAMS, signature })).ok).toBe(false);
    expect(urlCandidates({ url: moved, publicUrl }).every((u) => !u.includes("other-zone"))).toBe(true);
  });

  it("without PUBLIC_URL tries only the request's own host", () => {
    const all = urlCandidates({ url: "https://guard.example.com/a%20b?x=%27", basicAuth: { user: "u", password: "p" } });
    expect(all.every((u) => new URL(u).hostname === "guard.example.com")).toBe(true);
  });

  it("has no legacy-querystring candidate past 1000 pieces, so appended pairs are never left unsigned", async () => {
    const captured = "https://guard.example.com/webhooks/sms?AccountSid=AC1&MessageSid=SM1&Body=hi";
    const signature = await computeSignature(token, captured, []);
    const smuggled = `${captured}${"&".repeat(998)}&MessageSid=SM2&Price=-999.00`;
    expect((await verifySignature([token], { url: smuggled, params: [], signature })).ok).toBe(false);
    expect(legacyQuerystring(smuggled.split("?")[1]!)).toBeNull();
    expect(legacyQuerystring("a=1&&b=2")).toBe("a=1&b=2");
  });
});
