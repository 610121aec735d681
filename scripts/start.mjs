#!/usr/bin/env node
// `npm start`: the guard on http://127.0.0.1:8787 under wrangler's local dev server (workerd), with
// local Durable Object storage in .wrangler/state. Your settings come from .dev.vars when it exists; on
// a fresh clone the safe demo settings of .dev.vars.example are used instead (fake account, demo tokens,
// loopback origin and Twilio stand-in from `npm run origin`), so nothing real is ever needed to try it.
//
// Every name in that file reaches the Worker. `wrangler dev` alone would not deliver them all: since
// wrangler.toml declares `[secrets] required` (what `wrangler types` and `wrangler deploy` check), wrangler
// 4 loads from .dev.vars / --env-file only the names under `[vars]` and `[secrets] required`, and drops
// the optional secrets (ADMIN_TOKEN, ADMIN_TOTP_SECRET, BASIC_AUTH_*, TWILIO_AUTH_TOKEN_SECONDARY,
// TWILIO_WEBHOOK_SHARED_KEYS). So this script reads the file itself and starts the same dev server
// through wrangler's API (unstable_startWorker, what `wrangler dev` runs inside) with each setting as a
// secret binding: hidden in wrangler's output, never on a command line. Production is untouched: vars
// come from wrangler.toml / --var, secrets from `wrangler secret put` (README, "Deploying").
//
// PORT changes the port (default 8787).
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseEnv } from "node:util";

// Local only: no Request.cf lookup at workers.cloudflare.com, no telemetry. Set before wrangler loads.
process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
process.env.WRANGLER_SEND_METRICS ??= "false";
// The settings file below is the only source: wrangler must not add .env files or process.env values.
process.env.CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV = "false";
const { unstable_startWorker: startWorker } = await import("wrangler");

/** The settings file: .dev.vars, else the demo settings. */
function settingsFile() {
  if (existsSync(".dev.vars")) return ".dev.vars";
  console.log("No .dev.vars: starting with the demo settings of .dev.vars.example (see README, 'Local demo').");
  return ".dev.vars.example";
}

const file = settingsFile();
const settings = parseEnv(readFileSync(file, "utf8"));
const bindings = Object.fromEntries(Object.entries(settings).map(([name, value]) => [name, { type: "secret_text", value }]));
console.log(`Settings from ${file}: ${Object.keys(settings).sort().join(", ") || "(none)"}`);

const port = Number(process.env.PORT ?? "8787");
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT=${process.env.PORT} is not a port number`);
  process.exit(2);
}

const worker = await startWorker({
  config: resolve("wrangler.toml"),
  // Given, so wrangler reads no .dev.vars of its own (and, with the variable above, no .env either).
  envFiles: [resolve(file)],
  bindings,
  dev: {
    remote: false,
    server: { hostname: "127.0.0.1", port },
    inspector: false,
    persist: resolve(".wrangler/state"),
    watch: true,
  },
});
const url = await worker.url;
console.log(`Ready on ${url.origin}`);
// Ctrl-C / SIGTERM: miniflare's exit hook stops workerd and exits (130 / 143), as under `wrangler dev`.
