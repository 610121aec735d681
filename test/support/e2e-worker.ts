// The real Worker in workerd for the end-to-end tests (test/node/e2e/): this repo's wrangler.toml,
// bundled by wrangler exactly as `wrangler dev` does, on 127.0.0.1 and an ephemeral port, with fresh
// local Durable Object storage in a temporary directory. Node-only (wrangler's unstable_startWorker).
//
// Same shape as dev/worker.ts's startGuard, plus `logs`: every console line the Worker and
// its Durable Objects printed (workerd's structured logs), so tests can check what the guard logs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_startWorker } from "wrangler";

const CONFIG_PATH = fileURLToPath(new URL("../../wrangler.toml", import.meta.url));

export interface GuardLogLine {
  at: number;
  level: string;
  message: string;
}

export interface StartedGuard {
  url: string;
  stop(): Promise<void>;
  /** Console output of the Worker and its Durable Objects, in order. */
  logs: GuardLogLine[];
}

export interface GuardSettings {
  /** [vars] overrides: everything else comes from wrangler.toml. */
  vars?: Record<string, string>;
  /** Secrets (TWILIO_AUTH_TOKEN, BASIC_AUTH_PASSWORD, ADMIN_TOKEN, …). */
  secrets?: Record<string, string>;
}

// Miniflare would otherwise fetch the `Request.cf` placeholder from workers.cloudflare.com, and
// wrangler would send telemetry: the end-to-end run stays on loopback.
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS = "false";
// wrangler prints its banner and a bindings table at info level; the tests read `logs` instead.
process.env.WRANGLER_LOG ??= "warn";

export async function startGuard(settings: GuardSettings = {}): Promise<StartedGuard> {
  const persist = mkdtempSync(join(tmpdir(), "twilio-edge-guard-e2e-"));
  const logs: GuardLogLine[] = [];
  const bindings: Record<string, { type: "plain_text" | "secret_text"; value: string }> = {};
  for (const [name, value] of Object.entries(settings.vars ?? {})) bindings[name] = { type: "plain_text", value };
  for (const [name, value] of Object.entries(settings.secrets ?? {})) bindings[name] = { type: "secret_text", value };
  const worker = await unstable_startWorker({
    config: CONFIG_PATH,
    bindings,
    dev: {
      server: { hostname: "127.0.0.1", port: 0 },
      inspector: false,
      watch: false,
      persist,
      structuredLogsHandler: (log: { timestamp: number; level: string; message: string }) => {
        logs.push({ at: log.timestamp, level: log.level, message: log.message });
      },
    },
  } as Parameters<typeof unstable_startWorker>[0]);
  try {
    await worker.ready;
  } catch (error) {
    await worker.dispose().catch(() => {});
    rmSync(persist, { recursive: true, force: true });
    throw error;
  }
  const url = (await worker.url).href.replace(/\/$/, "");
  let stopped: Promise<void> | null = null;
  return {
    url,
    logs,
    stop() {
      stopped ??= worker.dispose().finally(() => rmSync(persist, { recursive: true, force: true }));
      return stopped;
    },
  };
}
