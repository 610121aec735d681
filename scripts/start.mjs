#!/usr/bin/env node
// `npm start`: the guard on http://127.0.0.1:8787 under `wrangler dev`, with local Durable Object
// storage in .wrangler/state. Your settings come from .dev.vars when it exists; on a fresh clone the
// safe demo settings of .dev.vars.example are used instead (fake account, demo tokens, loopback origin
// and Twilio stand-in from `npm run origin`), so nothing real is ever needed to try it.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";

const args = ["dev", "--ip", "127.0.0.1", "--port", process.env.PORT ?? "8787", "--local", "--persist-to", ".wrangler/state", "--show-interactive-dev-session=false"];
if (!existsSync(".dev.vars")) {
  console.log("No .dev.vars: starting with the demo settings of .dev.vars.example (see README, 'Local demo').");
  args.push("--env-file", ".dev.vars.example");
}
// Local only: no Request.cf lookup at workers.cloudflare.com, no telemetry.
const env = { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", ...process.env };
const child = spawn("wrangler", [...args, ...process.argv.slice(2)], { stdio: "inherit", env });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
