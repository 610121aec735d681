// Profiling helpers: workerd's CPU time (from /proc) and V8 CPU profiles of a workerd isolate over the
// DevTools protocol (the inspector Miniflare opens with `inspectorPort`), mapped back to src/ through
// the bundle's source map.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
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

/**
 * Self and inclusive time per function (merged over call sites), from sample counts. Bundle positions
 * are mapped back to src/ (and node_modules/) through `bundle/index.js.map`.
 */
export function summarizeProfile(profile: CdpProfile, bundleDir: string | null): { rows: ProfileRow[]; totalMs: number; idleMs: number; jsMs: number } {
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
      if (entry.originalSource) where = `${relative(ROOT, fileURLToPath(new URL(entry.originalSource, `file://${bundleDir}/`)))}:${(entry.originalLine ?? 0) + 1}`;
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
