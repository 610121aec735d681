// Worker entry point: the HTTP app, the ledger retry queue's consumer, and the Durable Object classes
// wrangler binds (wrangler.toml).
import { createApp } from "./app.ts";
import { consumeLedgerQueue } from "./breaker/ledger-queue.ts";
import { metrics } from "./observability/metrics.ts";
import { getConfig } from "./config/config.ts";
import type { GuardEnv } from "./config/env.ts";
import { Logger } from "./observability/log.ts";

export { AccountGuard } from "./breaker/account-guard.ts";
export { GuardDirectory } from "./accounts/directory.ts";
export { AdminGate } from "./admin/gate.ts";
export { MetricsAggregator } from "./observability/aggregator.ts";

const app = createApp();

function secrets(env: GuardEnv): readonly string[] {
  try {
    return getConfig(env).secrets;
  } catch {
    return [];
  }
}

export default {
  fetch: app.fetch,
  /** LEDGER_RETRY's consumer: status-callback ledger writes that failed on the request path (src/breaker/ledger-queue.ts). */
  async queue(batch, env, ctx) {
    await consumeLedgerQueue(batch, env, new Logger(secrets(env)));
    metrics.flush(env, (promise) => ctx.waitUntil(promise));
  },
} satisfies ExportedHandler<Env>;
