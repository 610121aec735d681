// The Worker's HTTP surface: routes from CONTRACT.md on an itty-router Router whose `catch` is our
// error funnel (AutoRouter's default would put internal error messages in the response), and one
// structured log line per request. Everything stateful is reached through `deps`, so tests can inject clocks and fakes.
import { Router, type IRequest } from "itty-router";
import { TokenCache, type TokenSource } from "./accounts/token-cache.ts";
import { getConfig, type Config } from "./config/config.ts";
import type { GuardEnv } from "./config/env.ts";
import { ConfigError, GuardError, toErrorResponse } from "./http/errors.ts";
import { Logger } from "./observability/log.ts";
import { metrics } from "./observability/metrics.ts";
import { totpKeyFor } from "./admin/auth.ts";
import { handleAdmin } from "./admin/routes.ts";
import { isRefusal, rejections } from "./admin/rejections.ts";
import { recordAtLeastOnce, type LedgerWrite } from "./breaker/ledger-queue.ts";
import { handleUsageTrigger } from "./webhooks/usage-trigger.ts";
import { handleWebhook } from "./webhooks/handler.ts";
import type { LedgerPort, RecordVerdict } from "./ledger/port.ts";
import type { RequestTrace } from "./observability/trace.ts";
import { AuthLimiter } from "./egress/auth-limit.ts";
import { handleEgress } from "./egress/gate.ts";
import { ReservationBatcher } from "./egress/reservation-batches.ts";
import { SettlementQueue } from "./egress/settlements.ts";
import { RecordBatcher, recordCall, verdictOf } from "./breaker/record-batches.ts";
import type { BillableEvent } from "./ledger/classify.ts";


/** A Logger holds nothing but its secrets in redaction order: one per configuration (getConfig keeps one per
 * isolate) and one without secrets, instead of one per request. */
const PLAIN_LOGGER = new Logger();
const loggers = new WeakMap<Config, Logger>();

function loggerFor(config: Config): Logger {
  let logger = loggers.get(config);
  if (logger === undefined) {
    logger = new Logger(config.secrets);
    loggers.set(config, logger);
  }
  return logger;
}

export interface AppDeps {
  /** The clock the ledger's windows use; injected by tests that cross UTC midnight without sleeping. */
  now: () => number;
  /** How long the origin may take; CONTRACT: 10 s. Tests shorten it. */
  originTimeoutMs?: number;
  /** Outbound fetch for the origin; defaults to the global one. */
  fetch?: typeof fetch;
  tokenCache: TokenCache;
  /** How long the egress gate waits for Twilio (default DEFAULT_UPSTREAM_TIMEOUT_MS). Tests shorten it. */
  upstreamTimeoutMs?: number;
  /** The egress gate's settlements waiting to be written (default: one queue per app, i.e. per isolate). */
  egressSettlements?: SettlementQueue;
  /** The egress gate's reservations waiting to share a call, per account (default: one per app, i.e. per isolate). */
  egressReservations?: ReservationBatcher;
  /** The webhook path's ledger writes waiting to share a call, per account (default: one per app, i.e. per isolate). */
  ledgerBatches?: RecordBatcher;
}

/**
 * The two hot routes, as itty-router would match `router.all("/webhooks/*")` and `router.all("/twilio/*")`
 * (its patterns compile to these expressions, matched against the URL's pathname): the webhook path and
 * the egress gate, dispatched without the router, whose every request would parse request.url again for
 * a query object, set `query`, `params` and `route` on the Request and await a catch and a finally stage.
 * Answers and errors are the same: a handler's error goes through the same funnel (toErrorResponse) as
 * the router's.
 */
export const WEBHOOK_ROUTE = /^\/webhooks(\/.*)?\/*$/;
export const EGRESS_ROUTE = /^\/twilio(\/.*)?\/*$/;

interface RequestState {
  /** request.url parsed once, for the handler and the log line. */
  url: URL;
  route: string;
  trace: RequestTrace;
  logger: Logger;
  error?: unknown;
}

type Args = [GuardEnv, ExecutionContext, RequestState];

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8" } });
}

export function accountGuard(env: GuardEnv, sid: string) {
  return env.ACCOUNT_GUARD.getByName(sid);
}

/**
 * The ledger port over the account's AccountGuard: each event goes through this isolate's
 * RecordBatcher (breaker/record-batches.ts), which sends an account's events that arrive together in
 * one call; a status callback's write is at least once (a failed one goes to LEDGER_RETRY).
 */
function durableLedger(env: GuardEnv, now: () => number, logger: Logger, batches: RecordBatcher, waitUntil: (promise: Promise<unknown>) => void): LedgerPort {
  const call = (account: string) => recordCall(account, () => accountGuard(env, account));
  const write = (event: BillableEvent, idempotencyToken: string | null, reservationId?: string): LedgerWrite =>
    ({ event, idempotencyToken, atMs: now(), ...(reservationId ? { reservationId } : {}) });
  // LEDGER_BATCHING=off (config/env.ts): each event in a call of its own.
  const alone = env.LEDGER_BATCHING === "off";
  const record = (w: LedgerWrite, status: boolean): Promise<RecordVerdict | void> =>
    alone ? call(w.event.accountSid)([w]).then(([outcome]) => verdictOf(outcome!))
    : status ? batches.recordStatus(w, call(w.event.accountSid), waitUntil)
    : batches.record(w, call(w.event.accountSid), waitUntil);
  return {
    record: (event, idempotencyToken, reservationId) => record(write(event, idempotencyToken, reservationId), false) as Promise<RecordVerdict>,
    recordStatus: (event, idempotencyToken, reservationId) =>
      recordAtLeastOnce(write(event, idempotencyToken, reservationId), { record: (w) => record(w, true), queue: env.LEDGER_RETRY, logger }),
  };
}

function directoryTokens(env: GuardEnv): TokenSource {
  return {
    async subaccountToken(sid, options) {
      const result = await env.DIRECTORY.getByName("directory").subaccountToken(sid, options);
      if (result.status === "ok") return result.token;
      if (result.status === "unknown") return null;
      throw new GuardError(503, "account lookup unavailable, try again", { reason: "account-lookup-unavailable" });
    },
  };
}

function tokenResolver(env: GuardEnv, config: Config, cache: TokenCache) {
  const parent = { sid: config.accountSid, tokens: config.authTokens };
  const source = directoryTokens(env);
  return (sid: string, options?: { refresh?: boolean }) => cache.tokensFor(sid, parent, source, options ?? {});
}

/** Request-level counters, from what the handler learned (its trace) and the answer. */
function countRequest(state: RequestState, status: number): void {
  if (state.route !== "webhooks" && state.route !== "usage-trigger") return;
  const verdict = state.trace.verdict ?? (state.error instanceof GuardError ? state.error.reason : "error");
  if (verdict.startsWith("verified-")) metrics.inc("guard_requests_verified_total", { via: verdict.slice("verified-".length) });
  else metrics.inc("guard_requests_rejected_total", { reason: verdict });
  if (state.trace.duplicate) metrics.inc("guard_duplicates_total");
  if (state.trace.breaker === "open" && state.route === "webhooks") metrics.inc("guard_requests_blocked_total");
  else if (state.route === "webhooks" && state.trace.forwarded) {
    metrics.inc("guard_requests_forwarded_total", { status: status >= 500 ? "5xx" : status >= 400 ? "4xx" : "2xx" });
  }
}

/**
 * Refused requests (and, in report-only mode, those that would have been) go to the rejections log
 * (src/admin/rejections.ts): metadata only, after the answer. A healthz probe or an unknown path is noise, not a refusal.
 */
function noteRejection(request: Request, state: RequestState, status: number, atMs: number): void {
  if (state.route !== "webhooks" && state.route !== "usage-trigger" && state.route !== "admin") return;
  const reason = state.trace.verdict ?? (state.error instanceof GuardError ? state.error.reason : undefined);
  const wouldRefuse = reason !== undefined && !reason.startsWith("verified-") && status < 400;
  if (!isRefusal(status) && !wouldRefuse) return;
  rejections.note({
    atMs,
    route: state.route,
    method: request.method,
    path: state.url.pathname,
    status,
    reason: (wouldRefuse ? "report-only:" : "") + (reason ?? `http-${status}`),
    client: request.headers.get("cf-connecting-ip") ?? "unknown",
    account: state.trace.account ?? null,
  });
}

export function createApp(overrides: Partial<AppDeps> = {}) {
  const deps: AppDeps = { now: Date.now, tokenCache: new TokenCache(), ...overrides };
  const egressLimiter = new AuthLimiter();
  const egressSettlements = deps.egressSettlements ?? new SettlementQueue();
  const ledgerBatches = deps.ledgerBatches ?? new RecordBatcher();
  const egressReservations = deps.egressReservations ?? new ReservationBatcher();

  // Router, not AutoRouter: every route answers a Response itself, so AutoRouter's stages (a Proxy
  // around each request for `withParams`, the JSON formatter) would only cost time on every request.
  const funnel = (error: unknown, _request: IRequest | Request, _env: GuardEnv, _ctx: ExecutionContext, state: RequestState) => {
    state.error = error;
    return toErrorResponse(error);
  };
  const router = Router<IRequest, Args>({
    catch: funnel,
    finally: [(response: Response | undefined) => response ?? toErrorResponse(new GuardError(404, "not found", { reason: "not-found" }))],
  });

  // CONTRACT: 200 {"ok":true}, or 503 {"ok":false,"setting":"<NAME>"} while a setting that some route
  // needs is missing or malformed (the route itself answers 500 naming it). No secrets, no account data.
  router.get("/healthz", async (_request, env, _ctx, state) => {
    state.route = "healthz";
    try {
      const config = getConfig(env);
      if (config.originUrl === null) throw new ConfigError("ORIGIN_URL", "is required for forwarding");
      if (config.adminTotpSecret !== null) await totpKeyFor(config.adminTotpSecret);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      state.logger.error("config-invalid", error, { setting: error.setting });
      return json({ ok: false, setting: error.setting }, 503);
    }
    return json({ ok: true });
  });

  // ANY /webhooks/*: dispatched by fetch below before the router (see WEBHOOK_ROUTE).
  // Async: a setting that getConfig refuses is a rejection, into the same funnel.
  const webhooks = async (request: Request, env: GuardEnv, ctx: ExecutionContext, state: RequestState): Promise<Response> => {
    state.route = "webhooks";
    const config = getConfig(env);
    state.logger = loggerFor(config);
    return handleWebhook(
      request,
      {
        config,
        logger: state.logger,
        resolveTokens: tokenResolver(env, config, deps.tokenCache),
        ledger: durableLedger(env, deps.now, state.logger, ledgerBatches, (promise) => ctx.waitUntil(promise)),
        waitUntil: (promise) => ctx.waitUntil(promise),
        ...(deps.originTimeoutMs !== undefined ? { originTimeoutMs: deps.originTimeoutMs } : {}),
        ...(deps.fetch !== undefined ? { fetch: deps.fetch } : {}),
      },
      state.trace,
      state.url,
    );
  };

  router.all("/usage-trigger", (request, env, _ctx, state) => {
    state.route = "usage-trigger";
    const config = getConfig(env);
    state.logger = loggerFor(config);
    return handleUsageTrigger(request, {
      config,
      logger: state.logger,
      resolveTokens: tokenResolver(env, config, deps.tokenCache),
      guard: (sid) => accountGuard(env, sid),
      now: deps.now,
    }, state.trace);
  });

  const egress = async (request: Request, env: GuardEnv, ctx: ExecutionContext, state: RequestState) => {
    state.route = "egress";
    const config = getConfig(env);
    state.logger = loggerFor(config);
    const tokens = tokenResolver(env, config, deps.tokenCache);
    return handleEgress(
      request,
      {
        config,
        logger: state.logger,
        mode: config.egressMode,
        now: deps.now,
        resolveTokens: tokens,
        ledger: (sid) => accountGuard(env, sid),
        // Failed credentials are counted per client address, in an AdminGate instance of that address.
        failures: { fail: (address, now) => env.ADMIN_GATE.getByName(`egress-auth:${address}`).fail(now, address) },
        limiter: egressLimiter,
        // LEDGER_BATCHING=off (config/env.ts): each send's reservation in a call of its own.
        reservations: env.LEDGER_BATCHING === "off" ? null : egressReservations,
        settlements: egressSettlements,
        retryQueue: env.LEDGER_RETRY,
        waitUntil: (promise) => ctx.waitUntil(promise),
        ...(deps.fetch !== undefined ? { fetch: deps.fetch } : {}),
        ...(deps.upstreamTimeoutMs !== undefined ? { upstreamTimeoutMs: deps.upstreamTimeoutMs } : {}),
      },
      state.trace,
      state.url,
    );
  };
  // ANY /twilio/*: dispatched by fetch below before the router (see EGRESS_ROUTE).

  const admin = (request: IRequest, env: GuardEnv, ctx: ExecutionContext, state: RequestState) => {
    state.route = "admin";
    return handleAdmin(request, {
      env,
      logger: state.logger,
      now: deps.now,
      waitUntil: (promise) => ctx.waitUntil(promise),
      trace: state.trace,
    });
  };
  router.all("/admin", admin);
  router.all("/admin/*", admin);

  return {
    async fetch(request: Request, env: GuardEnv, ctx: ExecutionContext): Promise<Response> {
      const started = Date.now();
      const state: RequestState = { url: new URL(request.url), route: "other", trace: {}, logger: PLAIN_LOGGER };
      // The two hot routes (WEBHOOK_ROUTE, EGRESS_ROUTE) are called as the router would call them, with the
      // same error funnel, but without the router's per-request work (docs/benchmarks.md, section 6 and
      // "The Worker-side code against the floor"); every other path goes through the router.
      const path = state.url.pathname;
      const hot = WEBHOOK_ROUTE.test(path) ? webhooks : EGRESS_ROUTE.test(path) ? egress : null;
      const response: Response = hot === null
        ? await router.fetch(request, env, ctx, state)
        : await hot(request, env, ctx, state).catch((error: unknown) => funnel(error, request, env, ctx, state));
      const line = {
        route: state.route,
        method: request.method,
        path: state.url.pathname,
        status: response.status,
        durationMs: Date.now() - started,
        ...state.trace,
      };
      if (state.error !== undefined && !(state.error instanceof GuardError)) {
        state.logger.error("unhandled", state.error, line);
      } else if (state.error instanceof GuardError && !line.verdict) {
        line.verdict = state.error.reason;
      }
      state.logger.request(line);
      countRequest(state, response.status);
      noteRejection(request, state, response.status, deps.now());
      metrics.flush(env, (promise) => ctx.waitUntil(promise));
      rejections.flush(env, (promise) => ctx.waitUntil(promise));
      return response;
    },
  };
}
