// Smoke test of the benchmark itself: `node bench/run.ts --quick` runs every section end to end with
// tiny sizes (the real Worker in workerd, the Express app, autocannon, the Twilio stand-in), so a change
// that breaks `npm run bench` fails here. Its figures are not measurements and are not checked; what is
// checked is that every section produced its rows and every exactness check held.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { parseTable, type Row } from "../../bench/lib/table.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Measured at ~20 s on a 2-core machine running nothing else; CI runs it beside the other tests. */
const QUICK_RUN_TIMEOUT_MS = 240_000;

let exitCode: number;
let output: string;
let rows: Row[];

beforeAll(async () => {
  ({ exitCode, output } = await new Promise<{ exitCode: number; output: string }>((resolve) => {
    execFile(process.execPath, ["bench/run.ts", "--quick"], { cwd: ROOT, timeout: QUICK_RUN_TIMEOUT_MS, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ exitCode: error ? (typeof error.code === "number" ? error.code : -1) : 0, output: `${stdout}\n${stderr}` });
    });
  }));
  rows = parseTable(output);
}, QUICK_RUN_TIMEOUT_MS + 10_000);

describe("npm run bench (--quick)", () => {
  it("runs to the end", () => {
    expect(exitCode, output.slice(-3000)).toBe(0);
    expect(output).toMatch(/total: \d+ s \(--quick/);
  });

  it("prints rows for every section, 0 to 6", () => {
    const sections = new Set(rows.map((r) => r.section.split(" ")[0]));
    expect([...sections].sort()).toEqual(["0", "1", "2", "3", "4", "5", "6"]);
  });

  it("sends every message of section 6 once, and the gate's ledger counts each once", () => {
    const exact = rows.find((r) => r.section.startsWith("6 ") && r.goal === "exact");
    expect(exact?.result, exact?.measured).toBe("PASS");
  });

  it("verifies every signed request on both sides of section 1", () => {
    const verification = rows.filter((r) => r.section.startsWith("1 "));
    expect(verification.map((r) => r.what)).toEqual([expect.stringContaining("inbound SMS"), expect.stringContaining("status callback"), expect.stringContaining("JSON body")]);
    for (const row of verification) expect(row.measured).toMatch(/^[\d.]+ µs per check in workerd vs twilio-node [\d.]+ µs in Node/);
  });

  it("holds every exactness check: the ledger counted each event once, through the Durable Object, through the Worker and through the egress gate", () => {
    const exact = rows.filter((r) => r.goal === "exact");
    expect(exact).toHaveLength(3);
    for (const row of exact) expect(row, row.measured).toMatchObject({ result: "PASS" });
  });

  it("measures the webhook path against the bare forwarding Worker, with Durable Object storage on tmpfs and on disk", () => {
    const goals = rows.filter((r) => r.section.startsWith("2 ") && !r.goal.startsWith("("));
    expect(goals.map((r) => r.what)).toEqual([
      expect.stringMatching(/^inbound SMS .*tmpfs.*bare forwarding Worker/),
      expect.stringMatching(/^status callback .*tmpfs.*bare forwarding Worker/),
      expect.stringMatching(/^inbound SMS .*disk.*bare forwarding Worker/),
      expect.stringMatching(/^status callback .*disk.*bare forwarding Worker/),
    ]);
    for (const row of goals) expect(row.measured).toMatch(/p99 ratio [\d.]+, CPU ratio [\d.]+$/);
  });

  it("answers the first webhook of every never-seen subaccount (the directory's subaccount listing), on both storages", () => {
    const cold = rows.filter((r) => r.what.startsWith("cold start"));
    expect(cold).toHaveLength(2);
    for (const row of cold) expect(row, row.measured).toMatchObject({ result: "PASS" });
  });

  it("gives every goal row a verdict and reports no Worker errors or stand-in violations", () => {
    for (const row of rows.filter((r) => !r.goal.startsWith("(") && r.goal !== "exact")) expect(["PASS", "MISS"]).toContain(row.result);
    expect(output).not.toMatch(/Worker errors during|stand-in shape violations/);
  });

  it("refuses to write quick figures into docs/benchmarks.md", async () => {
    const refused = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, ["bench/run.ts", "--quick", "--write-docs", "--only=verify"], { cwd: ROOT }, (error, _stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stderr });
      });
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/--quick figures are not measurements/);
  });
});
