// Admin API calls from workerd tests: the app with admin settings and an injected clock, requests with a
// bearer token, an optional TOTP code or elevation token, and a client address (CF-Connecting-IP).
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { base32Decode } from "../../src/admin/base32.ts";
import { importTotpKey, totpAt } from "../../src/admin/totp.ts";

export const WORKER = "https://guard.example.com";
export const TEST_ADMIN_TOKEN = "test-admin-token-for-console-tests";

export interface AdminCall {
  token?: string | null;
  totp?: string;
  elevation?: string;
  ip?: string;
  /** JSON-encoded unless a string; a string is sent as is (its content-type from `headers`, else JSON). */
  body?: unknown;
  headers?: Record<string, string>;
  /** The origin the request is addressed to (default WORKER). */
  host?: string;
}

export type AdminCaller = (method: string, path: string, call?: AdminCall) => Promise<Response>;

/**
 * The app with admin settings. `now` is the clock: a function (read on every call, so a test can move
 * it) or a pinned instant. `adminToken: null` leaves ADMIN_TOKEN unset (admin off); calls still send
 * TEST_ADMIN_TOKEN unless they say otherwise. `vars`: more settings. Each call returns once the
 * request's after-the-answer work (waitUntil) is done.
 */
export function adminCaller(
  options: { now?: number | (() => number); totpSecret?: string | null; adminToken?: string | null; vars?: Partial<GuardEnv> } = {},
): AdminCaller {
  const pinned = options.now;
  const now = typeof pinned === "number" ? () => pinned : pinned;
  const app = createApp(now === undefined ? {} : { now });
  const adminEnv: GuardEnv = { ...(env as GuardEnv), ...options.vars };
  if (options.adminToken !== null) adminEnv.ADMIN_TOKEN = options.adminToken ?? TEST_ADMIN_TOKEN;
  if (options.totpSecret) adminEnv.ADMIN_TOTP_SECRET = options.totpSecret;
  return async (method, path, call = {}) => {
    const headers = new Headers(call.headers);
    const token = call.token === undefined ? (options.adminToken ?? TEST_ADMIN_TOKEN) : call.token;
    if (token !== null) headers.set("authorization", `Bearer ${token}`);
    if (call.totp !== undefined) headers.set("x-guard-totp", call.totp);
    if (call.elevation !== undefined) headers.set("x-guard-elevation", call.elevation);
    if (call.ip !== undefined) headers.set("cf-connecting-ip", call.ip);
    let body: string | undefined;
    if (call.body !== undefined) {
      body = typeof call.body === "string" ? call.body : JSON.stringify(call.body);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
    }
    const ctx = createExecutionContext();
    const response = await app.fetch(new Request(`${call.host ?? WORKER}${path}`, { method, headers, body }), adminEnv, ctx);
    await waitOnExecutionContext(ctx);
    return response;
  };
}

export async function totpCodeAt(secret: string, atMs: number): Promise<string> {
  return totpAt(await importTotpKey(base32Decode(secret)), atMs / 1000);
}

/** Private minutes start at the UTC new year five years ahead of the real clock (derived, never a fixed date). */
const PRIVATE_MINUTES_FROM = Date.UTC(new Date().getUTCFullYear() + 5, 0, 1);
let minuteCounter = 0;
/**
 * A UTC minute no other test uses (far from real time), and an instant `offsetS` seconds into it.
 * Minutes are multiples of 60 s, hence of the 30 s TOTP step: offsets 0–29 s are the minute's first step.
 */
export function privateMinute(offsetS = 10): number {
  minuteCounter += 1;
  const random = Math.floor(Math.random() * 1_000_000);
  return PRIVATE_MINUTES_FROM + (random * 100 + minuteCounter) * 60_000 + offsetS * 1000;
}

/** A client address no other test uses. */
export function uniqueIp(): string {
  const b = crypto.getRandomValues(new Uint8Array(3));
  return `10.${b[0]}.${b[1]}.${b[2]}`;
}
