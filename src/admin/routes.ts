// /admin and /admin/*: the operator API (CONTRACT.md, "Admin API") and the dashboard page.
//
//   GET  /admin                                   the dashboard (HTML; see below for why no token)
//   GET  /admin/accounts?after=&limit=            one page of accounts (keyset paging, default 50, max 500)
//   GET  /admin/accounts/:sid                     snapshot (state, windows, policy, events, trips, history) + audit
//   PUT  /admin/accounts/:sid/policy              set the account's policy (JSON body; `null` = back to GUARD_POLICY)
//   POST /admin/accounts/:sid/trip                trip now; optional JSON body {"reason": "…"}
//   POST /admin/accounts/:sid/reset               close the breaker, reactivate if the guard suspended
//   POST /admin/accounts/:sid/usage-triggers      mirror the policy's usd limits as Twilio Usage Triggers
//   POST /admin/accounts/:sid/egress-keys         issue an egress key (shown once; only its hash is kept)
//   GET  /admin/accounts/:sid/egress-keys         its keys: id, created, last used, revoked (never a key)
//   DELETE /admin/accounts/:sid/egress-keys/:id   revoke one
//   GET  /admin/metrics                           Prometheus text (src/observability/metrics.ts, docs/metrics.md)
//   POST /admin/elevate                           a fresh TOTP code in, an elevation token (10 min) out
//   GET  /admin/rejections?limit=                 the latest refused requests (src/admin/rejections.ts)
//   GET  /admin/overview                          spend today, warned/open counts, top spenders
//   GET  /admin/accounts/:sid/usage?by=hour|day   spend/events per hour (48 h) or day (90 d), limits, trips
//
// Every failure below is counted for the client's address only (CF-Connecting-IP): an attacker's junk
// locks out the attacker, never an operator elsewhere. OPTIONS (a browser's CORS preflight) is answered
// 204 without CORS headers, before any check, and is no failure: the dashboard is same-origin.
//
// Order of checks, so that nothing changes on a refused call and each refusal costs one gate RPC:
//   1. ADMIN_TOKEN unset → 404 for every /admin route (indistinguishable from a route that does not exist);
//   2. bad or missing bearer token → the failure is counted at the gate → 401, or 429 when locked out;
//      a correct token is still refused (429) while its own address is locked out;
//   3. route, method and input checks (400 naming the field, 404, 405) — after the gate confirmed no lockout;
//   4. mutating call with ADMIN_TOTP_SECRET set: an elevation token checked here, or a code checked here
//      and consumed at the gate (once) → 403/429; a missing code is 403 but no failure;
//   5. the call itself; a mutation appends one audit entry.
import { getConfig, type Config } from "../config/config.ts";
import { FILTERS, MAX_SEARCH_CHARS, SORTS, type ListedAccount, type SummaryFilter, type SummarySort } from "../accounts/summary.ts";
import { isGrain } from "../ledger/buckets.ts";
import { windowId, windowStart, type WindowKind } from "../ledger/windows.ts";
import type { AccountSnapshot } from "../breaker/account-guard.ts";
import type { GuardEnv } from "../config/env.ts";
import { readCappedBody } from "../http/body.ts";
import { GuardError } from "../http/errors.ts";
import type { Logger } from "../observability/log.ts";
import { PolicyError, parsePolicy, type Policy } from "../ledger/policy.ts";
import { TwilioRestError } from "../twilio/rest.ts";
import { twilioClientFor } from "../twilio/client.ts";
import type { RequestTrace } from "../observability/trace.ts";
import {
  BEARER_CHALLENGE,
  ELEVATION_HEADER,
  ELEVATION_TTL_MS,
  TOTP_HEADER,
  bearerToken,
  checkElevation,
  checkTotp,
  clientAddress,
  issueElevation,
  tokenFingerprint,
  tokenMatches,
  totpKeyFor,
  totpSecretId,
} from "./auth.ts";
import { dashboardResponse } from "./dashboard.ts";
import { ADMIN_GATE_NAME, type AdminCall, type AuditEntry } from "./gate.ts";
import { PROMETHEUS_CONTENT_TYPE, metrics, metricsAggregator, renderPrometheus } from "../observability/metrics.ts";
import { REJECTIONS_KEPT, REJECTIONS_NAME } from "./rejections.ts";
import { ProvisioningError, provisionUsageTriggers, triggerCallbackUrl } from "./usage-triggers.ts";
import { issueEgressKey } from "../egress/keys.ts";
import { ACCOUNT_SID } from "../twilio/sids.ts";

export interface AdminContext {
  env: GuardEnv;
  logger: Logger;
  now: () => number;
  waitUntil: (promise: Promise<unknown>) => void;
  trace: RequestTrace;
}

/** CONTRACT: listing pages default to 50 accounts… */
export const DEFAULT_PAGE_SIZE = 50;
/** …and at most 500 (the directory's own cap): 500 snapshot RPCs in parallel is the most one page should cost. */
export const MAX_PAGE_SIZE = 500;
/** A policy is a few hundred bytes; 64 KiB (the webhook body cap too) is far more than any request needs. */
const MAX_BODY_BYTES = 64 * 1024;
/** An operator's trip reason is a sentence, not a document; it is stored in the trip history. */
const MAX_REASON_CHARS = 200;
/** The reason recorded when an operator trips without giving one. */
const DEFAULT_TRIP_REASON = "tripped by an operator";
/** The account page shows this many audit entries. */
const ACCOUNT_AUDIT_ENTRIES = 100;

type Operation =
  | { kind: "list" }
  | { kind: "metrics" }
  | { kind: "overview" }
  | { kind: "rejections" }
  | { kind: "elevate" }
  | { kind: "usage"; sid: string }
  | { kind: "account"; sid: string }
  | { kind: "policy"; sid: string }
  | { kind: "trip"; sid: string }
  | { kind: "reset"; sid: string }
  | { kind: "usage-triggers"; sid: string }
  | { kind: "egress-keys"; sid: string }
  | { kind: "egress-key-issue"; sid: string }
  | { kind: "egress-key-revoke"; sid: string; keyId: string };

type Mutation = Extract<Operation, { kind: Exclude<AdminCall, "elevate"> }>;

const ACCOUNT_ROUTE = /^\/admin\/accounts\/([^/]+)(?:\/(policy|trip|reset|usage-triggers|usage))?$/;
const EGRESS_KEYS_ROUTE = /^\/admin\/accounts\/([^/]+)\/egress-keys(?:\/([^/]+))?$/;
/** An egress key's id (src/egress/keys.ts): 16 hex. */
const EGRESS_KEY_ID = /^[0-9a-f]{16}$/;

const FIXED_ROUTES: Record<string, Operation> = {
  "/admin/accounts": { kind: "list" },
  "/admin/metrics": { kind: "metrics" },
  "/admin/overview": { kind: "overview" },
  "/admin/rejections": { kind: "rejections" },
  "/admin/elevate": { kind: "elevate" },
};

const ROUTE_METHODS: Record<Operation["kind"], string> = {
  list: "GET",
  metrics: "GET",
  overview: "GET",
  rejections: "GET",
  elevate: "POST",
  usage: "GET",
  account: "GET",
  policy: "PUT",
  trip: "POST",
  reset: "POST",
  "usage-triggers": "POST",
  "egress-keys": "GET",
  "egress-key-issue": "POST",
  "egress-key-revoke": "DELETE",
};

const CALL_NAMES: Record<AdminCall, string> = {
  policy: "PUT /admin/accounts/:sid/policy",
  trip: "POST /admin/accounts/:sid/trip",
  reset: "POST /admin/accounts/:sid/reset",
  "usage-triggers": "POST /admin/accounts/:sid/usage-triggers",
  "egress-key-issue": "POST /admin/accounts/:sid/egress-keys",
  "egress-key-revoke": "DELETE /admin/accounts/:sid/egress-keys/:id",
  elevate: "POST /admin/elevate",
};

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

function adminError(status: number, reason: string, message: string, details: Record<string, unknown> = {}, headers: Record<string, string> = {}): GuardError {
  return new GuardError(status, message, { reason, details, headers: { "cache-control": "no-store", ...headers }, format: "json" });
}

function badField(field: string, message: string, reason = "invalid-request"): GuardError {
  return adminError(400, reason, message, { field });
}

function rateLimited(limit: { retryAfterS: number }): GuardError {
  return adminError(429, "admin-rate-limited", "too many failed admin attempts this minute; try again later", { retryAfter: limit.retryAfterS }, {
    "retry-after": String(limit.retryAfterS),
  });
}

function text(value: string | undefined): string | null {
  const trimmed = (value ?? "").trim();
  return trimmed === "" ? null : trimmed;
}

/** Which operation a path and method name: a GuardError (404/405/400) when none. */
function resolve(method: string, path: string): Operation | GuardError {
  const keys = EGRESS_KEYS_ROUTE.exec(path);
  if (keys) return resolveEgressKeys(method, keys[1]!, keys[2]);
  let op: Operation | null = FIXED_ROUTES[path] ?? null;
  if (op === null) {
    const m = ACCOUNT_ROUTE.exec(path);
    if (m) {
      const sid = m[1]!;
      const kind = (m[2] ?? "account") as Extract<Operation, { sid: string }>["kind"];
      if (ROUTE_METHODS[kind] !== method) {
        return adminError(405, "method-not-allowed", `method not allowed: use ${ROUTE_METHODS[kind]}`, {}, { allow: ROUTE_METHODS[kind] });
      }
      if (!ACCOUNT_SID.test(sid)) return badField("sid", "sid: must be AC followed by 32 lowercase hex characters", "invalid-sid");
      return { kind, sid } as Operation;
    }
  }
  if (op === null) return adminError(404, "not-found", "no such admin route");
  if (ROUTE_METHODS[op.kind] !== method) {
    return adminError(405, "method-not-allowed", `method not allowed: use ${ROUTE_METHODS[op.kind]}`, {}, { allow: ROUTE_METHODS[op.kind] });
  }
  return op;
}

/** /admin/accounts/:sid/egress-keys (GET, POST) and /admin/accounts/:sid/egress-keys/:id (DELETE). */
function resolveEgressKeys(method: string, sid: string, keyId: string | undefined): Operation | GuardError {
  const allowed = keyId === undefined ? "GET, POST" : "DELETE";
  if (!allowed.split(", ").includes(method)) {
    return adminError(405, "method-not-allowed", `method not allowed: use ${allowed}`, {}, { allow: allowed });
  }
  if (!ACCOUNT_SID.test(sid)) return badField("sid", "sid: must be AC followed by 32 lowercase hex characters", "invalid-sid");
  if (keyId !== undefined) {
    if (!EGRESS_KEY_ID.test(keyId)) return badField("id", "id: must be an egress key id (16 hex characters)");
    return { kind: "egress-key-revoke", sid, keyId };
  }
  return method === "GET" ? { kind: "egress-keys", sid } : { kind: "egress-key-issue", sid };
}

async function readJsonBody(request: Request, optional: boolean): Promise<unknown> {
  const bytes = await readCappedBody(request, MAX_BODY_BYTES, () => adminError(413, "body-too-large", `body over ${MAX_BODY_BYTES} bytes`));
  const body = new TextDecoder().decode(bytes);
  if (body.trim() === "") {
    if (optional) return undefined;
    throw badField("(json)", "(json): a JSON body is required");
  }
  try {
    return JSON.parse(body) as unknown;
  } catch {
    throw badField("(json)", "(json): body is not valid JSON");
  }
}

type MutationInput = { policy: Policy | null } | { reason: string } | Record<string, never>;

/** Validates a mutation's input before any code is consumed: an invalid call changes nothing. */
async function mutationInput(op: Mutation, request: Request): Promise<MutationInput> {
  if (op.kind === "policy") {
    const body = await readJsonBody(request, false);
    if (body === null) return { policy: null };
    try {
      return { policy: parsePolicy(body) };
    } catch (error) {
      if (error instanceof PolicyError) throw badField(error.field, error.message, "invalid-policy");
      throw error;
    }
  }
  if (op.kind === "trip") {
    const body = await readJsonBody(request, true);
    if (body === undefined) return { reason: DEFAULT_TRIP_REASON };
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw badField("(json)", "(json): must be an object like {\"reason\": \"…\"}");
    const extra = Object.keys(body).find((k) => k !== "reason");
    if (extra !== undefined) throw badField(extra, `${extra}: unknown field`);
    const reason = (body as { reason?: unknown }).reason;
    if (reason === undefined) return { reason: DEFAULT_TRIP_REASON };
    if (typeof reason !== "string" || reason.trim() === "" || reason.length > MAX_REASON_CHARS) {
      throw badField("reason", `reason: must be a non-empty string of at most ${MAX_REASON_CHARS} characters`);
    }
    return { reason: reason.trim() };
  }
  // reset and usage-triggers take no input; a body is ignored.
  return {};
}

function gate(env: GuardEnv) {
  return env.ADMIN_GATE.getByName(ADMIN_GATE_NAME);
}

function guard(env: GuardEnv, sid: string) {
  return env.ACCOUNT_GUARD.getByName(sid);
}

async function ensureNotLimited(env: GuardEnv, now: number, client: string): Promise<void> {
  const limit = await gate(env).check(now, client);
  if (limit.limited) throw rateLimited(limit);
}

async function refuse(env: GuardEnv, now: number, client: string, status: 401 | 403, reason: string, message: string): Promise<never> {
  const limit = await gate(env).fail(now, client);
  metrics.inc("guard_admin_auth_failures_total", { reason });
  if (limit.limited) throw rateLimited(limit);
  if (status === 401) throw adminError(401, reason, message, {}, { "www-authenticate": BEARER_CHALLENGE });
  throw adminError(403, reason, message);
}

/** A refusal that is no guess (a forgotten code, an elevation that ran out): not counted, but still 429 when locked out. */
async function refuseUncounted(env: GuardEnv, now: number, client: string, reason: string, message: string): Promise<never> {
  await ensureNotLimited(env, now, client);
  metrics.inc("guard_admin_auth_failures_total", { reason });
  throw adminError(403, reason, message);
}

interface Caller {
  client: string;
  bearer: string;
}

/** Checks and consumes a fresh TOTP code (X-Guard-TOTP): once per code, at the gate. */
async function consumeCode(request: Request, secret: string, env: GuardEnv, now: number, client: string): Promise<void> {
  const key = await totpKeyFor(secret);
  const check = await checkTotp(key, request.headers.get(TOTP_HEADER), now);
  if (check.status === "missing") return refuseUncounted(env, now, client, "totp-required", `this call needs a TOTP code in ${TOTP_HEADER}`);
  if (check.status === "invalid") return refuse(env, now, client, 403, "totp-invalid", "TOTP code is wrong or expired");
  const consumed = await gate(env).consumeTotp(await totpSecretId(secret), check.step, now, client);
  if (consumed.status === "limited") throw rateLimited(consumed);
  if (consumed.status === "reused") {
    metrics.inc("guard_admin_auth_failures_total", { reason: "totp-reused" });
    throw adminError(403, "totp-reused", "this TOTP code was already used; wait for the next one");
  }
}

/**
 * The second factor of a mutating call: an elevation token (X-Guard-Elevation) when one is sent,
 * otherwise a fresh code. Returns how it was satisfied: "none" when ADMIN_TOTP_SECRET is unset.
 */
async function secondFactor(request: Request, config: Config, env: GuardEnv, now: number, caller: Caller): Promise<"none" | "totp" | "elevation"> {
  if (config.adminTotpSecret === null) {
    await ensureNotLimited(env, now, caller.client);
    return "none";
  }
  const elevation = request.headers.get(ELEVATION_HEADER);
  if (elevation !== null && elevation.trim() !== "") {
    const check = await checkElevation(config.adminTotpSecret, caller.bearer, elevation.trim(), now);
    if (check.status === "invalid") return refuse(env, now, caller.client, 403, "elevation-invalid", "the elevation token is not valid for this bearer token");
    if (check.status === "expired") return refuseUncounted(env, now, caller.client, "elevation-expired", "the elevation has expired: POST /admin/elevate with a fresh code");
    await ensureNotLimited(env, now, caller.client);
    return "elevation";
  }
  await consumeCode(request, config.adminTotpSecret, env, now, caller.client);
  return "totp";
}

/** The page of the dashboard: served without a bearer token (see handleAdmin), never with data. */
async function servePage(request: Request, env: GuardEnv, now: number, client: string): Promise<Response> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    throw adminError(405, "method-not-allowed", "method not allowed: use GET", {}, { allow: "GET" });
  }
  await ensureNotLimited(env, now, client);
  return dashboardResponse(request.method === "HEAD");
}

export async function handleAdmin(request: Request, ctx: AdminContext): Promise<Response> {
  const { env } = ctx;
  const adminToken = text(env.ADMIN_TOKEN);
  // The admin API is off until ADMIN_TOKEN is set: every /admin route is a plain 404, like a route that
  // does not exist, so an unconfigured deployment does not even reveal that it has an admin console.
  if (adminToken === null) throw new GuardError(404, "not found", { reason: "admin-off" });
  try {
    return await routeAdmin(request, ctx, adminToken);
  } finally {
    metrics.flush(env, ctx.waitUntil);
  }
}

async function routeAdmin(request: Request, ctx: AdminContext, adminToken: string): Promise<Response> {
  const { env } = ctx;
  const now = ctx.now();
  const url = new URL(request.url);
  const path = url.pathname.replace(/\/+$/, "");
  const client = clientAddress(request.headers);

  // A CORS preflight carries no credentials by design (Fetch standard): it is no failed sign-in. The
  // answer grants nothing (no Access-Control-Allow-* headers), so a cross-origin page still cannot call.
  if (request.method === "OPTIONS") {
    return new Response(null, { status: 204, headers: { allow: "GET, HEAD, POST, PUT, OPTIONS", "cache-control": "no-store" } });
  }

  // GET /admin is the dashboard page and is served WITHOUT a bearer token: a browser navigation cannot
  // send an Authorization header, and the page is static (inline code, no data). The operator signs in
  // on the page; every data call it makes is an /admin/* API call with the token. Only when ADMIN_TOKEN
  // is set (checked above), and still subject to the failure lockout of the caller's address.
  if (path === "/admin") return servePage(request, env, now, client);

  const presented = bearerToken(request.headers.get("authorization"));
  if (presented === null || !(await tokenMatches(presented, adminToken))) {
    return refuse(env, now, client, 401, presented === null ? "token-missing" : "token-invalid", "a valid admin bearer token is required");
  }
  const caller: Caller = { client, bearer: presented };
  const config = getConfig(env);
  const op = resolve(request.method, path);

  if (op instanceof GuardError || !isMutation(op)) {
    await ensureNotLimited(env, now, client);
    if (op instanceof GuardError) throw op;
    if ("sid" in op) ctx.trace.account = op.sid;
    switch (op.kind) {
      case "list":
        return listAccounts(env, config, url, now);
      case "metrics":
        return metricsText(env);
      case "overview":
        return overview(env, now);
      case "rejections":
        return rejectionList(env, url);
      case "elevate":
        return elevate(request, env, config, now, caller);
      case "usage":
        return usageSeries(env, op.sid, url, now);
      case "egress-keys":
        return json({ keys: await guard(env, op.sid).listEgressKeys() });
      case "account":
        return accountDetail(env, config, op.sid);
    }
  }

  ctx.trace.account = op.sid;
  let input: MutationInput;
  try {
    input = await mutationInput(op, request);
  } catch (error) {
    // A locked-out caller learns nothing, not even that its input was wrong.
    await ensureNotLimited(env, now, client);
    throw error;
  }
  const factor = await secondFactor(request, config, env, now, caller);
  return mutate(op, input, { env, config, now, totp: factor !== "none", url, logger: ctx.logger, token: await tokenFingerprint(adminToken) });
}

/** POST /admin/elevate: consumes one fresh code, answers a token good for ELEVATION_TTL_MS for this bearer token. */
async function elevate(request: Request, env: GuardEnv, config: Config, now: number, caller: Caller): Promise<Response> {
  if (config.adminTotpSecret === null) {
    throw adminError(409, "totp-off", "ADMIN_TOTP_SECRET is not set: mutating calls need no second factor, so there is nothing to elevate");
  }
  await consumeCode(request, config.adminTotpSecret, env, now, caller.client);
  const elevation = await issueElevation(config.adminTotpSecret, caller.bearer, now);
  const fingerprint = await tokenFingerprint(caller.bearer);
  try {
    await gate(env).appendAudit({
      atMs: now, call: "POST /admin/elevate", action: "elevate", account: "", tokenFingerprint: fingerprint, totp: true,
      beforeJson: "null", afterJson: JSON.stringify({ expiresAt: elevation.expiresAtMs }), outcome: "ok", detail: `elevated from ${caller.client}`,
    });
  } catch {
    // The elevation is stateless and already issued; its audit line is best effort (logged by the caller's line).
  }
  metrics.inc("guard_admin_mutations_total", { call: "elevate", outcome: "ok" });
  return json({ elevation: elevation.token, expiresAt: elevation.expiresAtMs, ttlSeconds: ELEVATION_TTL_MS / 1000, header: "X-Guard-Elevation" });
}

function isMutation(op: Operation): op is Mutation {
  return op.kind === "policy" || op.kind === "trip" || op.kind === "reset" || op.kind === "usage-triggers" || op.kind === "egress-key-issue" || op.kind === "egress-key-revoke";
}

async function rejectionList(env: GuardEnv, url: URL): Promise<Response> {
  const raw = url.searchParams.get("limit");
  let limit = 200;
  if (raw !== null && raw !== "") {
    if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || Number(raw) > REJECTIONS_KEPT) {
      throw badField("limit", `limit: must be a whole number from 1 to ${REJECTIONS_KEPT}`);
    }
    limit = Number(raw);
  }
  const result = await env.ADMIN_GATE.getByName(REJECTIONS_NAME).rejections(limit);
  return json({ ...result, kept: REJECTIONS_KEPT });
}

// ---------------------------------------------------------------- reads

function breakerView(s: Pick<AccountSnapshot, "breaker">) {
  const b = s.breaker;
  return {
    state: b.state,
    suspension: b.suspension,
    reason: b.reason ?? null,
    openedAt: b.openedAt ?? null,
    blocks: b.blocks,
    retrying: b.retrying,
  };
}

function parsePageSize(value: string | null): number {
  if (value === null || value === "") return DEFAULT_PAGE_SIZE;
  if (!/^[0-9]+$/.test(value)) throw badField("limit", `limit: must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
  const n = Number(value);
  if (n < 1 || n > MAX_PAGE_SIZE) throw badField("limit", `limit: must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
  return n;
}

function oneOf<T extends string>(url: URL, name: string, allowed: readonly T[], fallback: T): T {
  const value = url.searchParams.get(name);
  if (value === null || value === "") return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw badField(name, `${name}: must be one of ${allowed.join(", ")}`);
  return value as T;
}

/** A listed window that has rolled over since the account's last push counts nothing (it is a new window). */
function currentWindows(row: ListedAccount, now: number): ListedAccount["windows"] {
  return row.windows.map((w) =>
    w.windowId === windowId(w.window as WindowKind, now) ? w : { ...w, windowId: windowId(w.window as WindowKind, now), usd: 0, events: 0, limits: w.limits.map((l) => ({ ...l, used: 0 })) },
  );
}

/**
 * GET /admin/accounts?q=&sort=spend|state|activity|sid&filter=all|open|warned&limit=&offset=|after=
 * Served from the directory's light summary (src/accounts/summary.ts): one query per page at any size.
 * Only an account the summary does not know yet (registered before it existed, quiet since) is asked
 * directly, once; it then pushes its summary.
 */
async function listAccounts(env: GuardEnv, config: Config, url: URL, now: number): Promise<Response> {
  const limit = parsePageSize(url.searchParams.get("limit"));
  const after = url.searchParams.get("after") ?? "";
  if (after !== "" && !ACCOUNT_SID.test(after)) throw badField("after", "after: must be an Account SID (the `next` of the previous page)");
  const q = (url.searchParams.get("q") ?? "").trim();
  if (q.length > MAX_SEARCH_CHARS) throw badField("q", `q: at most ${MAX_SEARCH_CHARS} characters`);
  const sort = oneOf<SummarySort>(url, "sort", SORTS, "sid");
  const filter = oneOf<SummaryFilter>(url, "filter", FILTERS, "all");
  const rawOffset = url.searchParams.get("offset") ?? "";
  if (rawOffset !== "" && (!/^[0-9]{1,6}$/.test(rawOffset))) throw badField("offset", "offset: must be a whole number");
  if (rawOffset !== "" && after !== "") throw badField("offset", "offset: use either after (SID order) or offset, not both");
  const offset = rawOffset === "" ? 0 : Number(rawOffset);
  const directory = env.DIRECTORY.getByName("directory");
  const page = await directory.querySummaries({ q, sort, filter, limit: limit + 1, offset, after }, now, windowStart("day", now));
  const rows = page.accounts.slice(0, limit);
  const missing = rows.filter((r) => !r.summarised);
  const fetched = new Map(
    await Promise.all(missing.map(async (r) => [r.sid, await guard(env, r.sid).summary(now).catch(() => null)] as const)),
  );
  const accounts = rows.map((r) => {
    const s = fetched.get(r.sid);
    const row: ListedAccount =
      s === undefined || s === null
        ? r
        : {
            ...r, summarised: true, breaker: { state: s.state, suspension: s.suspension }, action: s.action, spendTodayUsd: s.spendTodayMicros / 1e6,
            eventsToday: s.eventsToday, warned: s.state === "closed" && s.warnedUntilMs > now, maxUsed: s.maxUsed,
            lastActivityAt: s.lastActivityMs || null, policySource: s.policySource, windows: s.windows,
          };
    return { ...row, windows: currentWindows(row, now) };
  });
  const more = page.accounts.length > limit;
  return json({
    accounts,
    next: more && sort === "sid" && rawOffset === "" ? rows[rows.length - 1]!.sid : null,
    nextOffset: more ? offset + limit : null,
    total: page.total,
    sort,
    filter,
    totpRequired: config.adminTotpSecret !== null,
  });
}

/** GET /admin/overview: spend today across accounts, warned and open counts, top spenders. */
async function overview(env: GuardEnv, now: number): Promise<Response> {
  const summary = await env.DIRECTORY.getByName("directory").overview(now, windowStart("day", now));
  return json({ ...summary, day: windowId("day", now).slice(4), at: now });
}

/** GET /admin/accounts/:sid/usage?by=hour|day */
async function usageSeries(env: GuardEnv, sid: string, url: URL, now: number): Promise<Response> {
  const by = url.searchParams.get("by") ?? "hour";
  if (!isGrain(by)) throw badField("by", "by: must be hour or day");
  const series = await guard(env, sid).usage(by, now);
  return json({ sid, ...series });
}

async function accountDetail(env: GuardEnv, config: Config, sid: string): Promise<Response> {
  const observedAt = Date.now();
  const [snapshot, records] = await Promise.all([guard(env, sid).snapshot(), gate(env).audit({ account: sid, limit: ACCOUNT_AUDIT_ENTRIES })]);
  const audit = records.map(({ beforeJson, afterJson, ...rest }) => ({ ...rest, before: JSON.parse(beforeJson) as unknown, after: JSON.parse(afterJson) as unknown }));
  if (snapshot.sid === "" && audit.length === 0) {
    throw adminError(404, "unknown-account", "the guard has recorded nothing for this account yet");
  }
  if (snapshot.sid !== "") metrics.breaker(sid, snapshot.breaker.state, observedAt);
  return json({ account: { ...snapshot, sid }, audit, totpRequired: config.adminTotpSecret !== null });
}

async function metricsText(env: GuardEnv): Promise<Response> {
  // This isolate's own pending deltas first, so a scrape always includes what it can see locally.
  await metrics.flushNow(env);
  const [aggregate, accounts] = await Promise.all([
    metricsAggregator(env).readMetrics(),
    env.DIRECTORY.getByName("directory").countAccounts().catch(() => null),
  ]);
  return new Response(renderPrometheus(aggregate, { accounts }), {
    headers: { "content-type": PROMETHEUS_CONTENT_TYPE, "cache-control": "no-store" },
  });
}

// ---------------------------------------------------------------- mutations

interface MutationContext {
  env: GuardEnv;
  config: Config;
  now: number;
  totp: boolean;
  url: URL;
  logger: Logger;
  token: string;
}

interface MutationResult {
  response: Response;
  before: unknown;
  after: unknown;
  outcome: string;
  detail: string;
}

async function mutate(op: Mutation, input: MutationInput, m: MutationContext): Promise<Response> {
  const entry = (r: Omit<MutationResult, "response">): AuditEntry => ({
    atMs: m.now,
    call: CALL_NAMES[op.kind],
    action: op.kind,
    account: op.sid,
    tokenFingerprint: m.token,
    totp: m.totp,
    beforeJson: JSON.stringify(r.before ?? null),
    afterJson: JSON.stringify(r.after ?? null),
    outcome: r.outcome,
    detail: r.detail,
  });
  let result: MutationResult;
  try {
    result = await execute(op, input, m);
  } catch (error) {
    // The call was authorised and attempted: its failure is audited too, then answered by the funnel.
    const detail = error instanceof GuardError ? error.publicMessage : error instanceof Error ? m.logger.redact(error.message) : "failed";
    metrics.inc("guard_admin_mutations_total", { call: op.kind, outcome: "error" });
    await appendAudit(m, entry({ before: null, after: null, outcome: "error", detail }));
    throw error;
  }
  metrics.inc("guard_admin_mutations_total", { call: op.kind, outcome: result.outcome === "ok" ? "ok" : "error" });
  await appendAudit(m, entry(result));
  return result.response;
}

async function appendAudit(m: MutationContext, entry: AuditEntry): Promise<void> {
  try {
    await gate(m.env).appendAudit(entry);
  } catch (error) {
    // The mutation is done and cannot be undone; losing its audit line must at least be loud.
    m.logger.error("admin-audit-failed", error, { account: entry.account, call: entry.call });
  }
}

async function execute(op: Mutation, input: MutationInput, m: MutationContext): Promise<MutationResult> {
  const stub = guard(m.env, op.sid);
  switch (op.kind) {
    case "policy": {
      const policy = (input as { policy: Policy | null }).policy;
      const before = await stub.snapshot();
      const after = await stub.setPolicy(op.sid, policy);
      return {
        response: json({ account: after }),
        before: { policy: before.policy, policySource: before.policySource },
        after: { policy: after.policy, policySource: after.policySource },
        outcome: "ok",
        detail: policy === null ? "policy removed: GUARD_POLICY applies" : "account policy set",
      };
    }
    case "trip": {
      const reason = (input as { reason: string }).reason;
      const before = await stub.snapshot();
      const after = await stub.tripNow(op.sid, reason, m.now);
      // Gauge reports carry real time (not the injectable clock): the latest observation must win.
      metrics.breaker(op.sid, after.breaker.state, Date.now());
      const already = before.breaker.state === "open";
      return {
        response: json({ account: after, tripped: !already }),
        before: breakerView(before),
        after: breakerView(after),
        outcome: "ok",
        detail: already ? "breaker was already open: nothing changed" : `breaker opened: ${reason}`,
      };
    }
    case "reset": {
      const before = await stub.snapshot();
      const { snapshot: after, reactivation } = await stub.reset(op.sid, m.now);
      metrics.breaker(op.sid, after.breaker.state, Date.now());
      return {
        // changed: false says plainly that a closed breaker was reset: nothing happened.
        response: json({ account: after, reactivation, changed: before.breaker.state === "open" }),
        before: breakerView(before),
        after: { ...breakerView(after), reactivation },
        outcome: "ok",
        detail: `${before.breaker.state === "open" ? "breaker closed" : "breaker was already closed"}; reactivation ${reactivation}`,
      };
    }
    case "egress-key-issue": {
      const issued = await issueEgressKey();
      const result = await stub.issueEgressKey(op.sid, issued.id, issued.hash, m.now);
      if (!result.ok) throw adminError(409, "too-many-egress-keys", result.why);
      // The key is in this answer only: the guard keeps its SHA-256, and the audit trail its id.
      return {
        response: json({ id: issued.id, key: issued.key, account: op.sid, createdAt: m.now, note: "shown once: store it now; the guard keeps only its hash" }, 201),
        before: null,
        after: { id: issued.id },
        outcome: "ok",
        detail: `egress key ${issued.id} issued`,
      };
    }
    case "egress-key-revoke": {
      const revoked = await stub.revokeEgressKey(op.sid, op.keyId, m.now);
      if (!revoked) throw adminError(404, "unknown-egress-key", "no live egress key with this id for this account");
      return { response: json({ id: op.keyId, revoked: true }), before: { id: op.keyId }, after: { id: op.keyId, revoked: true }, outcome: "ok", detail: `egress key ${op.keyId} revoked` };
    }
    case "usage-triggers": {
      const snapshot = await stub.snapshot();
      const client = twilioClientFor(m.config);
      const callbackUrl = triggerCallbackUrl(m.config.publicUrl, m.url.href);
      try {
        const report = await provisionUsageTriggers(client, op.sid, snapshot.policy, callbackUrl);
        return {
          response: json(report),
          before: null,
          after: report,
          outcome: "ok",
          detail: `${report.created.length} created, ${report.kept.length} kept, ${report.deleted.length} deleted, ${report.skipped.length} skipped`,
        };
      } catch (error) {
        if (!(error instanceof ProvisioningError)) throw error;
        const cause = error.cause;
        const message = cause instanceof TwilioRestError ? cause.message : "Twilio REST call failed";
        return {
          response: json({ error: "twilio-rest-failed", message, ...error.partial }, 502),
          before: null,
          after: error.partial,
          outcome: "error",
          detail: message,
        };
      }
    }
  }
}
