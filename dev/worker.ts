// The real Worker in workerd, started from Node: for the dashboard test, the end-to-end suite and the
// benchmarks. Node-only (wrangler's unstable_startWorker); never import it from workerd tests.
//
//   const guard = await startGuard({
//     vars: { TWILIO_ACCOUNT_SID: "AC…", TWILIO_API_BASE: standin.url },   // [vars] overrides
//     secrets: { TWILIO_AUTH_TOKEN: "…", ADMIN_TOKEN: "…" },             // any secret, optional ones too
//   });
//   await fetch(`${guard.url}/healthz`);                                   // http://127.0.0.1:<port>
//   await guard.stop();                                                    // idempotent; removes the storage
//
// What it runs: this repo's wrangler.toml (main, compatibility date, [vars], Durable Object bindings and
// SQLite migrations), bundled by wrangler exactly as `wrangler dev` bundles it, on 127.0.0.1 and an
// ephemeral port (pass `port` to pin one). Durable Object storage is local and persisted in a fresh
// temporary directory (removed by stop()), or in `persist` when given (kept, so a run can restart on
// it). Nothing leaves loopback: no Request.cf lookup, no telemetry, no inspector, no file watching.
// `vars` and `secrets` become plain-text and secret bindings; values in wrangler.toml's [vars] that
// are not overridden keep their defaults. Starting takes about a second (one esbuild bundle, one workerd).
// `logs` collects every console line of the Worker and its Durable Objects, in order.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_startWorker } from "wrangler";

const CONFIG_PATH = fileURLToPath(new URL("../wrangler.toml", import.meta.url));

export interface GuardSettings {
  /** [vars] overrides (plain-text bindings); everything else comes from wrangler.toml. */
  vars?: Record<string, string>;
  /** Secret bindings: TWILIO_AUTH_TOKEN, ADMIN_TOKEN, ADMIN_TOTP_SECRET, BASIC_AUTH_PASSWORD, … */
  secrets?: Record<string, string>;
  /** Directory for Durable Object storage (created if missing, kept by stop()). Default: a fresh temp dir, removed by stop(). */
  persist?: string;
  /** A fixed loopback port; default: an ephemeral one. */
  port?: number;
}

export interface GuardLogLine {
  at: number;
  level: string;
  message: string;
}

export interface StartedGuard {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  /** Console output of the Worker and its Durable Objects, in order. */
  logs: GuardLogLine[];
  /** Durable Object storage directory of this run. */
  persist: string;
  /** Stops workerd (and removes the temporary storage). Safe to call more than once. */
  stop(): Promise<void>;
}

// Miniflare would otherwise fetch the `Request.cf` placeholder from workers.cloudflare.com, and wrangler
// would send telemetry: a test run stays on loopback.
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS = "false";
// wrangler prints a banner and a bindings table at info level; tests read `logs` instead.
process.env.WRANGLER_LOG ??= "warn";

export async function startGuard(settings: GuardSettings = {}): Promise<StartedGuard> {
  const ownsPersist = settings.persist === undefined;
  const persist = settings.persist ?? mkdtempSync(join(tmpdir(), "twilio-edge-guard-"));
  if (!ownsPersist) mkdirSync(persist, { recursive: true });
  const cleanup = () => {
    if (ownsPersist) rmSync(persist, { recursive: true, force: true });
  };
  const logs: GuardLogLine[] = [];
  const bindings: Record<string, { type: "plain_text" | "secret_text"; value: string }> = {};
  for (const [name, value] of Object.entries(settings.vars ?? {})) bindings[name] = { type: "plain_text", value };
  for (const [name, value] of Object.entries(settings.secrets ?? {})) bindings[name] = { type: "secret_text", value };

  const worker = await unstable_startWorker({
    config: CONFIG_PATH,
    bindings,
    dev: {
      server: { hostname: "127.0.0.1", port: settings.port ?? 0 },
      inspector: false,
      watch: false,
      persist,
      structuredLogsHandler: (log: { timestamp: number; level: string; message: string }) => {
        logs.push({ at: log.timestamp, level: log.level, message: log.message });
      },
    },
    // `structuredLogsHandler` is accepted at runtime but missing from some wrangler type versions.
  } as Parameters<typeof unstable_startWorker>[0]);
  try {
    await worker.ready;
  } catch (error) {
    await worker.dispose().catch(() => {});
    cleanup();
    throw error;
  }
  const url = (await worker.url).href.replace(/\/$/, "");
  let stopped: Promise<void> | null = null;
  return {
    url,
    logs,
    persist,
    stop() {
      stopped ??= worker.dispose().finally(cleanup);
      return stopped;
    },
  };
}
