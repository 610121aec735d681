#!/usr/bin/env node
// `npm test`: the whole check, in the order a failure is cheapest to explain.
//   1. typecheck (Worker code and Node-side code), 2. Env types from `wrangler types` are current,
//   3. `wrangler deploy --dry-run` bundles the Worker as a deploy would (no Cloudflare login needed),
//   4. every vitest project (workerd and Node).
// The last line is the plain summary CI reads: "N passed, N failed" over every test and check that ran.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const results = join(".test-results");
mkdirSync(results, { recursive: true });
const vitestJson = join(results, "vitest.json");
rmSync(vitestJson, { force: true });

let passed = 0;
let failed = 0;

function step(name, command, args, env = {}) {
  const started = Date.now();
  console.log(`\n▶ ${name}: ${command} ${args.join(" ")}`);
  const run = spawnSync(command, args, { stdio: "inherit", env: { ...process.env, ...env } });
  const ok = run.status === 0;
  console.log(`${ok ? "✔" : "✘"} ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return ok;
}

function check(name, command, args, env) {
  if (step(name, command, args, env)) passed += 1;
  else failed += 1;
}

check("typecheck (worker)", "tsc", ["-p", "tsconfig.json", "--noEmit"]);
check("typecheck (node side)", "tsc", ["-p", "tsconfig.node.json", "--noEmit"]);
check("env types are current", "wrangler", ["types", "--strict-vars=false", "--check"]);
const outdir = join(tmpdir(), `twilio-edge-guard-dry-run-${process.pid}`);
check("wrangler deploy --dry-run", "wrangler", ["deploy", "--dry-run", "--outdir", outdir], { WRANGLER_SEND_METRICS: "false" });
rmSync(outdir, { recursive: true, force: true });

const vitestOk = step("vitest", "vitest", ["run", "--reporter=default", "--reporter=json", `--outputFile.json=${vitestJson}`]);
let counted = false;
try {
  const report = JSON.parse(readFileSync(vitestJson, "utf8"));
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  counted = true;
  // A suite that failed to load counts no tests of its own: count it as a failure so it cannot hide.
  for (const file of report.testResults ?? []) {
    if (file.status === "failed" && (file.assertionResults ?? []).length === 0) failed += 1;
  }
} catch {
  // No report means vitest itself failed before running: that is a failure too.
}
if (!counted || (!vitestOk && failed === 0)) failed += 1;

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
