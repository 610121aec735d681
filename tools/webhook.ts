#!/usr/bin/env node
// Sends a request signed exactly as Twilio signs its webhooks, using the guard's own signer, so a
// deployed guard (or any Twilio webhook handler) can be exercised without Twilio:
//
//   npm run webhook -- https://guard.example/webhooks/sms -p From=+14158675309 -p Body=hi
//
// Runs straight from source on Node 22 (type stripping); never prints the auth token.
import { parseArgs } from "node:util";
import { encodeForm, type FormPairs } from "../src/verification/form.ts";
import { computeSignature, sha256Hex } from "../src/verification/signature.ts";
import { splitUrl } from "../src/verification/url-candidates.ts";
import { toBase64, utf8 } from "../src/util/encoding.ts";
import { redactSecrets } from "../src/util/redact.ts";

const USAGE = `Usage: npm run webhook -- <url> [options]

Sends a request to <url> signed the way Twilio signs webhooks (X-Twilio-Signature), then prints
the response status line, headers and body.

Options:
  -p, --param Key=Value  a parameter (repeatable): form body by default, query string with --get
      --get              GET: parameters appended to the query, the whole URL signed
      --json '<json>'    JSON body: bodySHA256=<hex SHA-256 of the body> appended to the query,
                         the URL signed with no parameters, content-type application/json
      --token T          auth token to sign with (default: $TWILIO_AUTH_TOKEN)
  -H, --header K:V       extra request header (repeatable; may override the defaults)
  -h, --help             show this help

user:password@ in <url> is sent as HTTP Basic credentials and left out of the signed URL, as
Twilio does. Exit status: 0 on a 2xx response, 1 on any other response or a network error,
2 on a usage error.`;

/** Exit statuses: documented in USAGE. */
const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** What Twilio sends its webhooks with (twilio.com/docs/usage/webhooks/webhooks-overview). */
const TWILIO_USER_AGENT = "TwilioProxy/1.1";
const FORM_CONTENT_TYPE = "application/x-www-form-urlencoded";
const JSON_CONTENT_TYPE = "application/json";

class UsageError extends Error {}

/** Every token value this run might know about, so no message can echo one. */
function knownSecrets(argv: readonly string[]): string[] {
  const secrets = [process.env.TWILIO_AUTH_TOKEN ?? ""];
  argv.forEach((arg, i) => {
    if (arg === "--token") secrets.push(argv[i + 1] ?? "");
    else if (arg.startsWith("--token=")) secrets.push(arg.slice("--token=".length));
  });
  return secrets.filter((s) => s.length > 0);
}


function splitOnce(text: string, separator: string, what: string): [string, string] {
  const at = text.indexOf(separator);
  if (at === -1) throw new UsageError(`${what} must look like ${what === "--header" ? "Name:Value" : "Key=Value"}: ${JSON.stringify(text)}`);
  return [text.slice(0, at), text.slice(at + 1)];
}

function appendQuery(url: string, query: string): string {
  if (query === "") return url;
  const separator = !url.includes("?") ? "?" : url.endsWith("?") || url.endsWith("&") ? "" : "&";
  return `${url}${separator}${query}`;
}

interface Plan {
  method: "GET" | "POST";
  signedUrl: string; // also the URL fetched
  params: FormPairs; // signed as body parameters
  body: string | undefined;
  headers: Headers;
}

async function plan(token: string, values: ReturnType<typeof parse>["values"], rawUrl: string): Promise<Plan> {
  let parsed: URL;
  try {
    parsed = new URL(rawUrl);
  } catch {
    throw new UsageError(`not an absolute URL: ${JSON.stringify(rawUrl)}`);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new UsageError("the URL must be http:// or https://");
  if (rawUrl.includes("#")) throw new UsageError("the URL must not have a #fragment (Twilio never sends one)");

  // Twilio drops user:password@ from what it signs and sends it as HTTP Basic credentials instead.
  const parts = splitUrl(rawUrl);
  const baseUrl = parts ? `${parts.scheme}${parts.host}${parts.port}${parts.path}${parts.query}` : rawUrl;

  const params: Array<[string, string]> = (values.param ?? []).map((p) => splitOnce(p, "=", "-p"));
  if (values.get && values.json !== undefined) throw new UsageError("--get and --json cannot be combined");
  if (values.json !== undefined && params.length > 0) throw new UsageError("--json takes no -p parameters; put them in the URL's query");

  const headers = new Headers({ "user-agent": TWILIO_USER_AGENT });
  if (parsed.username || parsed.password) {
    const credentials = `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`;
    headers.set("authorization", `Basic ${toBase64(utf8(credentials))}`);
  }

  let result: Plan;
  if (values.json !== undefined) {
    try {
      JSON.parse(values.json);
    } catch {
      throw new UsageError("--json is not valid JSON");
    }
    const signedUrl = appendQuery(baseUrl, `bodySHA256=${await sha256Hex(utf8(values.json))}`);
    headers.set("content-type", JSON_CONTENT_TYPE);
    result = { method: "POST", signedUrl, params: [], body: values.json, headers };
  } else if (values.get) {
    result = { method: "GET", signedUrl: appendQuery(baseUrl, encodeForm(params)), params: [], body: undefined, headers };
  } else {
    headers.set("content-type", FORM_CONTENT_TYPE);
    result = { method: "POST", signedUrl: baseUrl, params, body: encodeForm(params), headers };
  }
  result.headers.set("x-twilio-signature", await computeSignature(token, result.signedUrl, result.params));
  for (const header of values.header ?? []) {
    const [name, value] = splitOnce(header, ":", "--header");
    result.headers.set(name.trim(), value.trim());
  }
  return result;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      param: { type: "string", short: "p", multiple: true },
      get: { type: "boolean" },
      json: { type: "string" },
      token: { type: "string" },
      header: { type: "string", short: "H", multiple: true },
      help: { type: "boolean", short: "h" },
    },
  });
}

async function main(argv: string[]): Promise<number> {
  const secrets = knownSecrets(argv);
  const fail = (message: string, status: number) => {
    process.stderr.write(`webhook: ${redactSecrets(message, secrets)}\n`);
    return status;
  };
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (error) {
    return fail(`${(error as Error).message}\n\n${USAGE}`, EXIT_USAGE);
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  if (args.positionals.length !== 1) return fail(`expected exactly one URL\n\n${USAGE}`, EXIT_USAGE);
  const token = args.values.token ?? process.env.TWILIO_AUTH_TOKEN ?? "";
  if (token === "") return fail("no auth token: pass --token or set TWILIO_AUTH_TOKEN", EXIT_USAGE);

  let request: Plan;
  try {
    request = await plan(token, args.values, args.positionals[0]!);
  } catch (error) {
    if (error instanceof UsageError) return fail(error.message, EXIT_USAGE);
    throw error;
  }

  process.stderr.write(`> ${request.method} ${request.signedUrl}\n> x-twilio-signature: ${request.headers.get("x-twilio-signature")}\n`);
  let response: Response;
  try {
    response = await fetch(request.signedUrl, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      redirect: "manual",
    });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    return fail(`request failed: ${(error as Error).message}${cause ? ` (${cause})` : ""}`, EXIT_FAILED);
  }
  let out = `HTTP ${response.status} ${response.statusText}\n`;
  response.headers.forEach((value, name) => {
    out += `${name}: ${value}\n`;
  });
  out += `\n${await response.text()}\n`;
  process.stdout.write(redactSecrets(out, secrets));
  return response.ok ? EXIT_OK : EXIT_FAILED;
}

process.exitCode = await main(process.argv.slice(2));
