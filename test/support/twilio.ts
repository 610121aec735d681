// Test helpers: SIDs that never collide between tests, and requests signed exactly as Twilio signs them
// (with our signer, which test/node/signature.differential.test.ts proves equal to twilio-node's).
import { computeSignature, sha256Hex } from "../../src/verification/signature.ts";
import { encodeForm } from "../../src/verification/form.ts";

export const PARENT_SID = "AC00000000000000000000000000000001";
export const PRIMARY_TOKEN = "test-primary-token-not-a-secret";
export const SECONDARY_TOKEN = "test-secondary-token-not-a-secret";

let counter = 0;
function hex32(prefixDigit: string): string {
  counter += 1;
  const random = crypto.getRandomValues(new Uint8Array(12));
  const tail = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  return (prefixDigit + counter.toString(16).padStart(7, "0") + tail).slice(0, 32);
}

export function uniqueSid(prefix: "AC" | "SM" | "CA" | "MM" | "UT" = "AC"): string {
  return prefix + hex32("f");
}

export type Params = Array<[string, string]>;

/** An HTTP Basic Authorization header value (Twilio's REST auth, and webhooks under WEBHOOK_AUTH=basic). */
export function basicAuth(user: string, secret: string): string {
  return `Basic ${btoa(`${user}:${secret}`)}`;
}

export async function signedForm(
  url: string,
  params: Params,
  options: { token?: string; headers?: Record<string, string>; signedUrl?: string } = {},
): Promise<Request> {
  const signature = await computeSignature(options.token ?? PRIMARY_TOKEN, options.signedUrl ?? url, params);
  return new Request(url, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": signature,
      ...options.headers,
    },
    body: encodeForm(params),
  });
}

export async function signedGet(url: string, params: Params, options: { token?: string; headers?: Record<string, string> } = {}): Promise<Request> {
  const target = new URL(url);
  for (const [k, v] of params) target.searchParams.append(k, v);
  const signature = await computeSignature(options.token ?? PRIMARY_TOKEN, target.href, []);
  return new Request(target.href, { method: "GET", headers: { "x-twilio-signature": signature, ...options.headers } });
}

export async function signedJson(url: string, body: string, options: { token?: string; bodyHash?: string } = {}): Promise<Request> {
  const target = new URL(url);
  target.searchParams.set("bodySHA256", options.bodyHash ?? (await sha256Hex(new TextEncoder().encode(body))));
  const signature = await computeSignature(options.token ?? PRIMARY_TOKEN, target.href, []);
  return new Request(target.href, {
    method: "POST",
    headers: { "content-type": "application/json", "x-twilio-signature": signature },
    body,
  });
}

export function inboundSms(account: string, overrides: Record<string, string> = {}): Params {
  const sid = uniqueSid("SM");
  const base: Record<string, string> = {
    ToCountry: "US",
    SmsMessageSid: sid,
    NumMedia: "0",
    SmsSid: sid,
    SmsStatus: "received",
    Body: "hello",
    To: "+15005550006",
    NumSegments: "1",
    MessageSid: sid,
    AccountSid: account,
    From: "+14155550100",
    ApiVersion: "2010-04-01",
    ...overrides,
  };
  return Object.entries(base);
}

export function inboundCall(account: string, overrides: Record<string, string> = {}): Params {
  const base: Record<string, string> = {
    CallSid: uniqueSid("CA"),
    AccountSid: account,
    From: "+14155550100",
    To: "+15005550006",
    CallStatus: "ringing",
    Direction: "inbound",
    ApiVersion: "2010-04-01",
    ...overrides,
  };
  return Object.entries(base);
}

export function messageStatus(account: string, messageSid: string, status: string, overrides: Record<string, string> = {}): Params {
  const base: Record<string, string> = {
    MessageSid: messageSid,
    SmsSid: messageSid,
    MessageStatus: status,
    SmsStatus: status,
    AccountSid: account,
    From: "+15005550006",
    To: "+14155550100",
    ApiVersion: "2010-04-01",
    ...overrides,
  };
  return Object.entries(base);
}

export function callStatus(account: string, callSid: string, status: string, overrides: Record<string, string> = {}): Params {
  const base: Record<string, string> = {
    CallSid: callSid,
    AccountSid: account,
    CallStatus: status,
    Direction: "outbound-api",
    From: "+15005550006",
    To: "+14155550100",
    ApiVersion: "2010-04-01",
    ...overrides,
  };
  return Object.entries(base);
}
