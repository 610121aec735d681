#!/usr/bin/env node
// `npm test`: the whole check, in the order a failure is cheapest to explain.
//   1. typecheck (Worker code and Node-side code), 2. Env types from `wrangler types` are current,
//   3. `wrangler deploy --dry-run` bundles the Worker as a deploy would (no Cloudflare login needed),
//   4. both vitest projects (workerd and Node), side by side.
// The last line is the plain summary CI reads: "N passed, N failed" over every test and check that ran.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const results = join(".test-results");
mkdirSync(results, { recursive: true });

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

// The two vitest projects run side by side, each its files one after the other: the node project mostly
// waits on the processes it starts (workerd, Chromium, the CLIs), the workers project computes in its
// own workerd, so on CI's two cores the pair takes about the longer of the two instead of their sum.
// Each prints its lines with its project's name in front; each writes its own JSON report.
function vitestProject(project) {
  const json = join(results, `vitest-${project}.json`);
  rmSync(json, { force: true });
  const started = Date.now();
  console.log(`\n▶ vitest (${project}): vitest run --project ${project}`);
  const child = spawn("vitest", ["run", "--project", project, "--reporter=default", "--reporter=json", `--outputFile.json=${json}`], {
    stdio: ["ignore", "pipe", "pipe"],
    env: process.env,
  });
  for (const [stream, out] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
    createInterface({ input: stream }).on("line", (line) => out.write(`[${project}] ${line}\n`));
  }
  return new Promise((resolve) => {
    child.on("close", (code) => {
      const ok = code === 0;
      console.log(`${ok ? "✔" : "✘"} vitest (${project}) (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      resolve({ ok, json });
    });
    child.on("error", () => resolve({ ok: false, json }));
  });
}

for (const { ok, json } of await Promise.all([vitestProject("node"), vitestProject("workers")])) {
  let counted = false;
  let failedHere = 0;
  try {
    const report = JSON.parse(readFileSync(json, "utf8"));
    passed += report.numPassedTests ?? 0;
    failedHere += report.numFailedTests ?? 0;
    counted = true;
    // A suite that failed to load counts no tests of its own: count it as a failure so it cannot hide.
    for (const file of report.testResults ?? []) {
      if (file.status === "failed" && (file.assertionResults ?? []).length === 0) failedHere += 1;
    }
  } catch {
    // No report means vitest itself failed before running: that is a failure too.
  }
  if (!counted || (!ok && failedHere === 0)) failedHere += 1;
  failed += failedHere;
}

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
