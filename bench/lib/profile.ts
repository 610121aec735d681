// Profiling helpers: workerd's CPU time (from /proc) and V8 CPU profiles of a workerd isolate over the
// DevTools protocol (the inspector Miniflare opens with `inspectorPort`), mapped back to src/ through
// the bundle's source map.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The tree whose bundle is profiled (bench/lib/guard.ts's BENCH_WORKER_ROOT): sources are named relative to it. */
const TREE = process.env.BENCH_WORKER_ROOT ?? ROOT;
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** PIDs of the workerd processes this process started (Miniflare spawns workerd as a direct child). */
export function workerdPids(): number[] {
  const out = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)]).toString();
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, comm]) => comm === "workerd")
    .map(([pid]) => Number(pid));
}

/** User + system CPU milliseconds a process has used so far. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

export function totalCpuMs(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
}

interface CdpProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CdpProfile {
  nodes: CdpProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export class Inspector {
  readonly #ws: WebSocket;
  #id = 0;
  readonly #pending = new Map<number, (value: unknown) => void>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: unknown };
      if (message.id !== undefined) this.#pending.get(message.id)?.(message.error ? Promise.reject(new Error(JSON.stringify(message.error))) : message.result);
    });
  }

  static async connect(port: number, target: string): Promise<Inspector> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/${target}`);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve(), { once: true });
      ws.addEventListener("error", () => reject(new Error(`inspector ${target}: cannot connect`)), { once: true });
    });
    return new Inspector(ws);
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.#id;
    this.#ws.send(JSON.stringify({ id, method, params }));
    return new Promise<T>((resolve) => this.#pending.set(id, resolve as (value: unknown) => void));
  }

  async startProfile(intervalUs = 200): Promise<void> {
    await this.send("Profiler.enable");
    await this.send("Profiler.setSamplingInterval", { interval: intervalUs });
    await this.send("Profiler.start");
  }

  async stopProfile(): Promise<CdpProfile> {
    const { profile } = await this.send<{ profile: CdpProfile }>("Profiler.stop");
    return profile;
  }

  close(): void {
    this.#ws.close();
  }
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  totalMs: number;
}

/** The bundle's source map (null without one), and the profile's nodes by id and their parents. */
function profileTree(profile: CdpProfile, bundleDir: string | null): { map: SourceMap | null; byId: Map<number, CdpProfileNode>; parent: Map<number, number> } {
  let map: SourceMap | null = null;
  if (bundleDir !== null) {
    try {
      map = new SourceMap(JSON.parse(readFileSync(join(bundleDir, "index.js.map"), "utf8")));
    } catch {
      map = null;
    }
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  return { map, byId, parent };
}

/**
 * Self and inclusive time per function (merged over call sites), from sample counts. Bundle positions
 * are mapped back to src/ (and node_modules/) through `bundle/index.js.map`.
 */
export function summarizeProfile(profile: CdpProfile, bundleDir: string | null): { rows: ProfileRow[]; totalMs: number; idleMs: number; jsMs: number } {
  const { map, byId, parent } = profileTree(profile, bundleDir);
  // Time per sample from timeDeltas (exact), attributed to the sampled node.
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const dt = deltas[i + 1] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + dt);
  }
  const keyOf = (n: CdpProfileNode): { key: string; name: string; where: string } => {
    const { functionName, url, lineNumber, columnNumber } = n.callFrame;
    const name = functionName || "(anonymous)";
    let where = url ? `${url.split("/").pop()}:${lineNumber + 1}` : "";
    if (map !== null && url.endsWith("index.js")) {
      const entry = map.findEntry(lineNumber, columnNumber) as { originalSource?: string; originalLine?: number };
      if (entry.originalSource) where = `${relative(TREE, fileURLToPath(new URL(entry.originalSource, `file://${bundleDir}/`)))}:${(entry.originalLine ?? 0) + 1}`;
    }
    return { key: `${name}@${where}`, name, where };
  };
  const rows = new Map<string, ProfileRow>();
  let totalUs = 0;
  let idleUs = 0;
  // Samples in this isolate's own functions (and its GC). "(program)" and "(idle)" are whatever else the
  // thread was doing, including other isolates of the same workerd, so they are not this isolate's time.
  let jsUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    totalUs += us;
    if (node.callFrame.functionName === "(idle)") idleUs += us;
    else if (node.callFrame.functionName !== "(program)" && node.callFrame.functionName !== "(root)") jsUs += us;
    const { key, name, where } = keyOf(node);
    const row = rows.get(key) ?? { name, where, selfMs: 0, totalMs: 0 };
    row.selfMs += us / 1000;
    rows.set(key, row);
    // Inclusive: each distinct function on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = keyOf(byId.get(cur)!);
      if (seen.has(k.key)) continue;
      seen.add(k.key);
      const r = rows.get(k.key) ?? { name: k.name, where: k.where, selfMs: 0, totalMs: 0 };
      r.totalMs += us / 1000;
      rows.set(k.key, r);
    }
  }
  return { rows: [...rows.values()], totalMs: totalUs / 1000, idleMs: idleUs / 1000, jsMs: jsUs / 1000 };
}

/** Where a sample's time goes: a stage of the webhook path, named by the source it was in. */
export type Stage =
  | "router, handler glue"
  | "read body"
  | "parse, classify"
  | "verify (HMAC)"
  | "token resolution"
  | "ledger RPC (Worker side)"
  | "AccountGuard.record (DO)"
  | "forward (fetch, headers, answer)"
  | "log line"
  | "metrics"
  | "rejections log"
  | "other src/"
  | "runtime JS, no src/ frame"
  | "GC"
  | "native, not in a JS frame";

export const STAGES: readonly Stage[] = [
  "router, handler glue",
  "read body",
  "parse, classify",
  "verify (HMAC)",
  "token resolution",
  "ledger RPC (Worker side)",
  "AccountGuard.record (DO)",
  "forward (fetch, headers, answer)",
  "log line",
  "metrics",
  "rejections log",
  "other src/",
  "runtime JS, no src/ frame",
  "GC",
  "native, not in a JS frame",
];

/** The stage of a src/ (or router) frame, from its file and function; null: look further up the stack. */
function stageOfFrame(name: string, where: string): Stage | null {
  const file = where.replace(/:\d+$/, "");
  if (file.startsWith("node_modules/itty-router")) return "router, handler glue";
  if (!file.startsWith("src/")) return null;
  switch (file) {
    case "src/http/body.ts":
      return "read body";
    case "src/webhooks/read.ts":
    case "src/verification/form.ts":
    case "src/ledger/classify.ts":
      return "parse, classify";
    case "src/accounts/token-cache.ts":
      return "token resolution";
    case "src/breaker/ledger-queue.ts":
    case "src/ledger/port.ts":
      return "ledger RPC (Worker side)";
    case "src/webhooks/forward.ts":
      return "forward (fetch, headers, answer)";
    case "src/observability/log.ts":
    case "src/util/redact.ts":
      return "log line";
    case "src/observability/metrics.ts":
      return "metrics";
    case "src/admin/rejections.ts":
      return "rejections log";
    case "src/webhooks/handler.ts":
    case "src/webhooks/twiml.ts":
    case "src/webhooks/recent.ts":
    case "src/http/errors.ts":
    case "src/config/config.ts":
      return "router, handler glue";
    case "src/app.ts":
      if (name === "countRequest") return "metrics";
      if (name === "noteRejection") return "rejections log";
      if (name === "tokenResolver" || name === "subaccountToken" || name === "directoryTokens") return "token resolution";
      if (name === "durableLedger" || name === "accountGuard" || name === "record" || name === "recordStatus") return "ledger RPC (Worker side)";
      return null; // an anonymous closure: decided by the callee (or the router) below
  }
  if (file.startsWith("src/verification/") || file === "src/webhooks/authenticate.ts") return "verify (HMAC)";
  if (file.startsWith("src/breaker/") || file.startsWith("src/ledger/") || file.startsWith("src/durable/") || file.startsWith("src/egress/store.ts")) {
    return "AccountGuard.record (DO)";
  }
  return "other src/";
}

/**
 * CPU of one isolate per stage, in µs per request: every sample goes to the stage of the innermost
 * src/ frame on its stack (native calls such as `fetch` or `sql.exec` count for the JavaScript that
 * made them). Closures of src/app.ts are resolved by the line they are on (`appLines`: line → stage).
 * "(program)" samples (native work outside JavaScript, and, since workerd runs every isolate on one
 * thread, other isolates' time) are shown apart.
 */
export function stageBreakdown(profile: CdpProfile, bundleDir: string | null, requests: number, appLines: ReadonlyMap<number, Stage> = appStageLines()): Map<Stage, number> {
  const { map, byId, parent } = profileTree(profile, bundleDir);
  const whereOf = new Map<number, { name: string; where: string; line: number }>();
  const locate = (n: CdpProfileNode) => {
    let found = whereOf.get(n.id);
    if (found) return found;
    const { functionName, url, lineNumber, columnNumber } = n.callFrame;
    let where = "";
    let line = 0;
    if (map !== null && url.endsWith("index.js")) {
      const entry = map.findEntry(lineNumber, columnNumber) as { originalSource?: string; originalLine?: number };
      if (entry.originalSource) {
        line = (entry.originalLine ?? 0) + 1;
        where = `${relative(TREE, fileURLToPath(new URL(entry.originalSource, `file://${bundleDir}/`)))}:${line}`;
      }
    }
    found = { name: functionName, where, line };
    whereOf.set(n.id, found);
    return found;
  };
  const stageOf = new Map<number, Stage | "idle">();
  const classify = (id: number): Stage | "idle" => {
    const known = stageOf.get(id);
    if (known) return known;
    const leaf = byId.get(id)!;
    let stage: Stage | "idle" | null = null;
    if (leaf.callFrame.functionName === "(idle)") stage = "idle";
    else if (leaf.callFrame.functionName === "(garbage collector)") stage = "GC";
    else if (leaf.callFrame.functionName === "(program)") stage = "native, not in a JS frame";
    for (let cur: number | undefined = id; stage === null && cur !== undefined; cur = parent.get(cur)) {
      const { name, where, line } = locate(byId.get(cur)!);
      if (where.startsWith("src/app.ts") && appLines.has(line)) stage = appLines.get(line)!;
      else stage = stageOfFrame(name, where);
      if (stage === null && where.startsWith("src/app.ts")) {
        // an anonymous closure of app.ts not listed: the router's, unless a caller says otherwise
        const up = parent.get(cur);
        if (up === undefined || !locate(byId.get(up)!).where.startsWith("src/")) stage = "router, handler glue";
      }
    }
    stage ??= "runtime JS, no src/ frame";
    stageOf.set(id, stage);
    return stage;
  };
  const us = new Map<Stage, number>(STAGES.map((s) => [s, 0]));
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const stage = classify(samples[i]!);
    if (stage === "idle") continue;
    us.set(stage, us.get(stage)! + (deltas[i + 1] ?? 0));
  }
  for (const [stage, total] of us) us.set(stage, total / requests);
  return us;
}

/** The lines of src/app.ts's top-level helpers that belong to a stage (their closures are anonymous in a profile). */
export function appStageLines(root = TREE): Map<number, Stage> {
  const helpers: Record<string, Stage> = {
    durableLedger: "ledger RPC (Worker side)",
    accountGuard: "ledger RPC (Worker side)",
    directoryTokens: "token resolution",
    tokenResolver: "token resolution",
    countRequest: "metrics",
    noteRejection: "rejections log",
  };
  const lines = new Map<number, Stage>();
  let current: Stage | null = null;
  readFileSync(join(root, "src/app.ts"), "utf8")
    .split("\n")
    .forEach((text, i) => {
      const opens = /^(?:export )?function (\w+)/.exec(text);
      if (opens) current = helpers[opens[1]!] ?? null;
      if (current !== null) lines.set(i + 1, current);
      if (text === "}") current = null;
    });
  return lines;
}
