// The Worker's HTTP surface: routes from CONTRACT.md on an itty-router AutoRouter whose `catch` is our
// error funnel (its default would put internal error messages in the response), and one structured log
// line per request. Everything stateful is reached through `deps`, so tests can inject clocks and fakes.
import { AutoRouter, type IRequest } from "itty-router";
import { TokenCache, type TokenSource } from "./accounts/token-cache.ts";
import { getConfig, type Config } from "./config/config.ts";
import type { GuardEnv } from "./config/env.ts";
import { GuardError, toErrorResponse } from "./http/errors.ts";
import { Logger } from "./http/log.ts";
import { metrics } from "./admin/metrics.ts";
import { handleAdmin } from "./admin/routes.ts";
import { recordAtLeastOnce, type LedgerWrite } from "./breaker/ledger-queue.ts";
import { handleUsageTrigger } from "./breaker/usage-trigger.ts";
import { handleWebhook, type LedgerPort, type WebhookTrace } from "./webhooks/handler.ts";

export interface AppDeps {
  /** The clock the ledger's windows use; injected by tests that cross UTC midnight without sleeping. */
  now: () => number;
  /** How long the origin may take; CONTRACT: 10 s. Tests shorten it. */
  originTimeoutMs?: number;
  /** Outbound fetch for the origin; defaults to the global one. */
  fetch?: typeof fetch;
  tokenCache: TokenCache;
}

interface RequestState {
  route: string;
  trace: WebhookTrace;
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

function durableLedger(env: GuardEnv, now: () => number, logger: Logger): LedgerPort {
  const record = (write: LedgerWrite) => accountGuard(env, write.event.accountSid).record(write.event, write.idempotencyToken, write.atMs);
  return {
    record: (event, idempotencyToken) => record({ event, idempotencyToken, atMs: now() }),
    recordStatus: (event, idempotencyToken) => recordAtLeastOnce({ event, idempotencyToken, atMs: now() }, { record, queue: env.LEDGER_RETRY, logger }),
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

export function createApp(overrides: Partial<AppDeps> = {}) {
  const deps: AppDeps = { now: Date.now, tokenCache: new TokenCache(), ...overrides };

  const router = AutoRouter<IRequest, Args>({
    catch: (error: unknown, _request: IRequest, _env: GuardEnv, _ctx: ExecutionContext, state: RequestState) => {
      state.error = error;
      return toErrorResponse(error);
    },
    missing: () => toErrorResponse(new GuardError(404, "not found", { reason: "not-found" })),
  });

  router.get("/healthz", (_request, _env, _ctx, state) => {
    state.route = "healthz";
    return json({ ok: true });
  });

  router.all("/webhooks/*", (request, env, ctx, state) => {
    state.route = "webhooks";
    const config = getConfig(env);
    state.logger = new Logger(config.secrets);
    return handleWebhook(
      request,
      {
        config,
        logger: state.logger,
        resolveTokens: tokenResolver(env, config, deps.tokenCache),
        ledger: durableLedger(env, deps.now, state.logger),
        waitUntil: (promise) => ctx.waitUntil(promise),
        ...(deps.originTimeoutMs !== undefined ? { originTimeoutMs: deps.originTimeoutMs } : {}),
        ...(deps.fetch !== undefined ? { fetch: deps.fetch } : {}),
      },
      state.trace,
    );
  });

  router.all("/usage-trigger", (request, env, _ctx, state) => {
    state.route = "usage-trigger";
    const config = getConfig(env);
    state.logger = new Logger(config.secrets);
    return handleUsageTrigger(request, {
      config,
      logger: state.logger,
      resolveTokens: tokenResolver(env, config, deps.tokenCache),
      guard: (sid) => accountGuard(env, sid),
      now: deps.now,
    }, state.trace);
  });

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
      const state: RequestState = { route: "other", trace: {}, logger: new Logger() };
      const response: Response = await router.fetch(request, env, ctx, state);
      const line = {
        route: state.route,
        method: request.method,
        path: new URL(request.url).pathname,
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
      metrics.flush(env, (promise) => ctx.waitUntil(promise));
      return response;
    },
  };
}
