// tools/webhook.ts end to end: run the CLI in a child Node against a loopback server and check, with
// the official `twilio` package, that what arrived is a validly signed Twilio webhook.
import { execFile } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import querystring from "node:querystring";
import { fileURLToPath } from "node:url";
import twilio from "twilio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifySignature } from "../../src/verification/signature.ts";
import { parseForm } from "../../src/verification/form.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TOKEN = "cli-test-token-0123456789abcdef";

interface Received {
  method: string;
  url: string; // request-target as sent
  headers: IncomingMessage["headers"];
  body: string;
}

let server: Server;
let base: string;
const received: Received[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      const status = req.url?.startsWith("/forbidden") ? 403 : 200;
      res.writeHead(status, { "content-type": "text/xml", "x-test": "yes" });
      res.end(status === 200 ? "<Response/>" : "Twilio Request Validation Failed.");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string | undefined> = { TWILIO_AUTH_TOKEN: TOKEN }): Promise<Run> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "TWILIO_AUTH_TOKEN") childEnv[k] = v;
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, ["tools/webhook.ts", ...args], { cwd: ROOT, env: childEnv }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function lastRequestAfter(run: Run): Promise<Received> {
  expect(run.stdout + run.stderr).not.toContain(TOKEN);
  const last = received.at(-1);
  expect(last).toBeDefined();
  return last!;
}

describe("tools/webhook.ts", () => {
  it("POSTs a form body that twilio.validateRequest accepts", async () => {
    const run = await cli([`${base}/webhooks/sms?x=1`, "-p", "From=+14158675309", "-p", "Body=Hello wörld & 100% 😀", "-p", "Body=second", "-p", "Empty="]);
    expect(run.code, run.stderr).toBe(0);
    const req = await lastRequestAfter(run);
    expect(req.method).toBe("POST");
    expect(req.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(req.body).toBe("From=%2B14158675309&Body=Hello+w%C3%B6rld+%26+100%25+%F0%9F%98%80&Body=second&Empty=");
    const signature = String(req.headers["x-twilio-signature"]);
    const params = querystring.parse(req.body);
    expect(twilio.validateRequest(TOKEN, signature, `${base}${req.url}`, params)).toBe(true);
    expect(twilio.validateRequest("another-token", signature, `${base}${req.url}`, params)).toBe(false);
    expect(run.stdout).toMatch(/^HTTP 200 OK\n/);
    expect(run.stdout).toContain("x-test: yes");
    expect(run.stdout).toContain("<Response/>");
  });

  it("GETs with the params in the query, signed as twilio.validateRequest expects", async () => {
    const run = await cli([`${base}/webhooks/voice?configured=1`, "--get", "-p", "CallSid=CA123", "-p", "From=+14158675309", "-p", "Speech=yes please"]);
    expect(run.code, run.stderr).toBe(0);
    const req = await lastRequestAfter(run);
    expect(req.method).toBe("GET");
    expect(req.body).toBe("");
    expect(req.url).toBe("/webhooks/voice?configured=1&CallSid=CA123&From=%2B14158675309&Speech=yes+please");
    expect(twilio.validateRequest(TOKEN, String(req.headers["x-twilio-signature"]), `${base}${req.url}`, {})).toBe(true);
  });

  it("sends a JSON body with bodySHA256 that twilio.validateRequestWithBody accepts", async () => {
    const json = '{"event":"call.state","name":"Zoë","n":1}';
    const run = await cli([`${base}/webhooks/events`, "--json", json]);
    expect(run.code, run.stderr).toBe(0);
    const req = await lastRequestAfter(run);
    expect(req.method).toBe("POST");
    expect(req.headers["content-type"]).toBe("application/json");
    expect(req.body).toBe(json);
    expect(req.url).toBe(`/webhooks/events?bodySHA256=${twilio.getExpectedBodyHash(json)}`);
    const signature = String(req.headers["x-twilio-signature"]);
    expect(twilio.validateRequestWithBody(TOKEN, signature, `${base}${req.url}`, json)).toBe(true);
    expect(twilio.validateRequestWithBody(TOKEN, signature, `${base}${req.url}`, `${json} `)).toBe(false);
  });

  it("signs the URL as typed, which our verifier accepts from the re-encoded URL the server sees", async () => {
    const run = await cli([`${base}/webhooks/sms?name=William+O'hara&city=Zoë`, "-p", "Body=hi"]);
    expect(run.code, run.stderr).toBe(0);
    const req = await lastRequestAfter(run);
    expect(req.url).toBe("/webhooks/sms?name=William+O%27hara&city=Zo%C3%AB"); // fetch re-encoded it
    const verdict = await verifySignature([TOKEN], {
      url: `${base}${req.url}`,
      params: parseForm(req.body),
      signature: String(req.headers["x-twilio-signature"]),
    });
    expect(verdict).toEqual({ ok: true, tokenIndex: 0 });
  });

  it("uses --token over the environment and sends extra headers", async () => {
    const other = "flag-token-fedcba9876543210";
    const run = await cli([`${base}/webhooks/sms`, "--token", other, "-p", "a=b", "-H", "X-Extra: 1", "--header", "I-Twilio-Idempotency-Token:abc"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout + run.stderr).not.toContain(other);
    const req = await lastRequestAfter(run);
    expect(req.headers["x-extra"]).toBe("1");
    expect(req.headers["i-twilio-idempotency-token"]).toBe("abc");
    expect(twilio.validateRequest(other, String(req.headers["x-twilio-signature"]), `${base}${req.url}`, querystring.parse(req.body))).toBe(true);
  });

  it("sends user:password@ as Basic credentials and signs the URL without them", async () => {
    const port = new URL(base).port;
    const run = await cli([`http://twilio:p%40ss@127.0.0.1:${port}/webhooks/sms`, "-p", "a=b"]);
    expect(run.code, run.stderr).toBe(0);
    const req = await lastRequestAfter(run);
    expect(req.headers.authorization).toBe(`Basic ${Buffer.from("twilio:p@ss").toString("base64")}`);
    expect(twilio.validateRequest(TOKEN, String(req.headers["x-twilio-signature"]), `${base}${req.url}`, { a: "b" })).toBe(true);
  });

  it("exits 1 on a non-2xx response and still prints it", async () => {
    const run = await cli([`${base}/forbidden`, "-p", "a=b"]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^HTTP 403 Forbidden\n/);
    expect(run.stdout).toContain("Twilio Request Validation Failed.");
  });

  it("exits 1 when the server cannot be reached", async () => {
    const run = await cli(["http://127.0.0.1:1/unreachable", "-p", "a=b"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("request failed");
  });

  it("exits 2 with a clear message and no request when there is no token", async () => {
    const before = received.length;
    const run = await cli([`${base}/webhooks/sms`, "-p", "a=b"], {});
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("TWILIO_AUTH_TOKEN");
    expect(received.length).toBe(before);
  });

  it.each([
    [["--json", "{nope"], "not valid JSON"],
    [["--json", "{}", "--get"], "cannot be combined"],
    [["--json", "{}", "-p", "a=b"], "--json takes no -p"],
    [["-p", "novalue"], "Key=Value"],
    [["-H", "NoColon"], "Name:Value"],
  ])("exits 2 on bad usage %j", async (args, message) => {
    const run = await cli([`${base}/webhooks/sms`, ...args]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
  });

  it("exits 2 on a missing or relative URL and an unknown option, without echoing a token", async () => {
    expect((await cli([])).code).toBe(2);
    expect((await cli(["/relative"])).code).toBe(2);
    const run = await cli([`--tokne=${TOKEN}`, `${base}/x`]);
    expect(run.code).toBe(2);
    expect(run.stderr).not.toContain(TOKEN);
  });

  it("prints usage with --help and exits 0", async () => {
    const run = await cli(["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("Usage: npm run webhook -- <url>");
  });
});
