// The real Worker for the benchmarks: the production bundle (`wrangler deploy --dry-run --outdir`, i.e.
// exactly what `wrangler deploy` would upload) run by workerd through Miniflare, with this repo's
// wrangler.toml (compatibility date and flags, [vars], Durable Object bindings, SQLite classes).
//
// Why not wrangler's unstable_startWorker (dev/worker.ts)? It puts a
// second workerd process (wrangler dev's reload proxy) and Miniflare's entry worker in front of the
// Worker: measured here, a bare `return new Response("ok")` Worker answers in ~9 ms p50 that way and in
// ~0.7 ms through a direct socket. Neither hop exists in production, so the benchmarks listen on a
// direct socket to the Worker (Miniflare's unsafeDirectSockets); everything behind it (the Worker, its
// Durable Objects, SQLite storage on disk, alarms, outbound fetch) is the same workerd as `wrangler dev`.
//
// Persistence is a directory the caller owns, so a run can start from a prepared state (seeded
// GuardDirectory tokens, see seedDirectoryTokens) and be restarted on it.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { unstable_readConfig } from "wrangler";
import { workerdPids } from "./profile.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/**
 * Where wrangler.toml and src/ are. Profiling experiments point BENCH_WORKER_ROOT at a patched copy of
 * the tree (e.g. bench/.scratch/tree, with the same wrangler.toml) to measure a change without touching
 * src/; `npm run bench` always measures this repository.
 */
const WORKER_ROOT = process.env.BENCH_WORKER_ROOT ?? ROOT;
/**
 * Where Durable Object storage lives (SQLite files). Local workerd commits every Durable Object write
 * with an fsync of the SQLite WAL on its one event-loop thread (perf: ActorSqlite → sqlite3PagerCommit →
 * xSync → fsync), which stalls every request in the process for the disk's flush time; Cloudflare's
 * storage makes writes durable by replicating the WAL off that thread. So by default the state lives on
 * tmpfs (/dev/shm), where that fsync costs nothing; BENCH_STATE_DIR=/tmp measures the on-disk behaviour
 * of `wrangler dev`. (Section 3 also reports the Durable Object's rate on disk.)
 */
export const STATE_DIR = process.env.BENCH_STATE_DIR ?? (existsSync("/dev/shm") ? "/dev/shm" : tmpdir());
export const DISK_STATE_DIR = tmpdir();
const WRANGLER = join(ROOT, "node_modules/.bin/wrangler");

// Loopback only: no Request.cf lookup, no telemetry.
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS = "false";

export interface GuardSettings {
  vars?: Record<string, string>;
  secrets?: Record<string, string>;
  /** Persistence directory. Default: a fresh temporary one. */
  persist?: string;
  /** Remove the persistence directory on stop. Default: only when it is the fresh temporary one. */
  removePersistOnStop?: boolean;
  /** Open workerd's DevTools inspector on this port (CPU profiles). */
  inspectorPort?: number;
  /**
   * A second Worker (ES module source) in the same workerd, bound to the guard's AccountGuard class as
   * ACCOUNT_GUARD, on its own direct socket (`driverUrl`): bench/do-driver.ts.
   */
  driver?: string;
  /** A tree with wrangler.toml and src/ to build instead of this repository (profiling experiments). */
  workerRoot?: string;
  /** Called with every line workerd prints (also V8's, e.g. --trace-gc's: bench/stalls.ts). */
  onLog?: (level: string, message: string) => void;
}

export interface RunningGuard {
  url: string;
  driverUrl: string | null;
  /** The workerd process running this guard. */
  pid: number;
  persist: string;
  /** Console lines the Worker printed (its one JSON line per request, warnings, errors). */
  logLines: number;
  errors: string[];
  stop(): Promise<void>;
}

const bundles = new Map<string, string>();
process.on("exit", () => {
  for (const dir of bundles.values()) rmSync(dir, { recursive: true, force: true });
});

/** Builds the deployable bundle once per process (and tree), with wrangler itself. */
export function buildBundle(root = WORKER_ROOT): string {
  const built = bundles.get(root);
  if (built) return built;
  const out = mkdtempSync(join(tmpdir(), "guard-bench-bundle-"));
  try {
    execFileSync(WRANGLER, ["deploy", "--dry-run", "--outdir", out], { cwd: root, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, FORCE_COLOR: "0" } });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
    throw new Error(`wrangler deploy --dry-run failed (the Worker does not build):\n${stderr}`);
  }
  if (!existsSync(join(out, "index.js"))) throw new Error("wrangler deploy --dry-run produced no index.js");
  bundles.set(root, out);
  return out;
}

export function workerdVersion(): string {
  return execFileSync(join(ROOT, "node_modules/.bin/workerd"), ["--version"]).toString().trim();
}

export async function startGuard(settings: GuardSettings = {}): Promise<RunningGuard> {
  const root = settings.workerRoot ?? WORKER_ROOT;
  const config = unstable_readConfig({ config: join(root, "wrangler.toml") });
  const bundle = buildBundle(root);
  const sqliteClasses = new Set(config.migrations.flatMap((m: { new_sqlite_classes?: string[] }) => m.new_sqlite_classes ?? []));
  const durableObjects: Record<string, { className: string; useSQLite: boolean }> = {};
  for (const binding of config.durable_objects.bindings) {
    durableObjects[binding.name] = { className: binding.class_name, useSQLite: sqliteClasses.has(binding.class_name) };
  }
  const bindings: Record<string, string> = {};
  for (const [name, value] of Object.entries(config.vars ?? {})) bindings[name] = typeof value === "string" ? value : JSON.stringify(value);
  Object.assign(bindings, settings.vars ?? {}, settings.secrets ?? {});

  const ownPersist = settings.removePersistOnStop ?? settings.persist === undefined;
  const persist = settings.persist ?? mkdtempSync(join(STATE_DIR, "guard-bench-state-"));
  const errors: string[] = [];
  let logLines = 0;
  const options = convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: 0,
      cf: false,
      ...(settings.inspectorPort !== undefined ? { inspectorPort: settings.inspectorPort } : {}),
      // The Worker's console lines (one JSON line per request) are counted, errors kept, nothing printed.
      handleStructuredLogs(log: { level: string; message: string }) {
        logLines++;
        settings.onLog?.(log.level, log.message);
        if (log.level === "error" || /"level":"error"/.test(log.message)) errors.push(log.message.slice(0, 500));
      },
      workers: [
        {
          name: config.name,
          compatibilityDate: config.compatibility_date,
          compatibilityFlags: config.compatibility_flags,
          modules: true,
          scriptPath: join(bundle, "index.js"),
          modulesRoot: bundle,
          bindings,
          durableObjects,
          unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
        },
        ...(settings.driver !== undefined
          ? [
              {
                name: "do-driver",
                compatibilityDate: config.compatibility_date,
                compatibilityFlags: config.compatibility_flags,
                modules: [{ type: "ESModule", path: "do-driver.js", contents: settings.driver }],
                durableObjects: { ACCOUNT_GUARD: { className: "AccountGuard", scriptName: config.name, useSQLite: true } },
                unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
              },
            ]
          : []),
      ],
    } as Parameters<typeof convertV4MiniflareOptions>[0]);
  // Miniflare 5 names persistence here (the v4 `durableObjectsPersist` is not carried over); no request log.
  const pidsBefore = new Set(workerdPids());
  const mf = new Miniflare({ ...options, resourcePersistencePath: persist, logRequests: false } as ConstructorParameters<typeof Miniflare>[0]);
  try {
    await mf.ready;
  } catch (error) {
    await mf.dispose().catch(() => {});
    if (ownPersist) rmSync(persist, { recursive: true, force: true });
    throw error;
  }
  const pid = workerdPids().find((p) => !pidsBefore.has(p)) ?? -1;
  const url = (await mf.unsafeGetDirectURL(config.name)).href.replace(/\/$/, "");
  const driverUrl = settings.driver !== undefined ? (await mf.unsafeGetDirectURL("do-driver")).href.replace(/\/$/, "") : null;
  let stopped: Promise<void> | null = null;
  return {
    url,
    driverUrl,
    pid,
    persist,
    get logLines() {
      return logLines;
    },
    errors,
    stop() {
      stopped ??= mf.dispose().finally(() => {
        if (ownPersist) rmSync(persist, { recursive: true, force: true });
      });
      return stopped;
    },
  };
}

/** Every SQLite file of a Durable Object class under a persistence directory. */
export function durableObjectFiles(persist: string, className: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.includes(className) && entry.endsWith(".sqlite") && entry !== "metadata.sqlite") found.push(path);
    }
  };
  if (existsSync(persist)) walk(persist);
  return found;
}

/**
 * How long ago the seeded listing ran: longer than the directory's LISTING_MIN_INTERVAL_MS (1 minute),
 * as in a deployment whose last listing is not a moment old, so that a never-seen subaccount's first
 * webhook may list again (the cold-start row), and far less than its LISTING_MAX_AGE_MS (1 hour), so
 * that known subaccounts are not re-listed during the run.
 */
const LISTED_AGO_MS = 2 * 60_000;

/**
 * Writes subaccount tokens into the GuardDirectory's own table, as if its account listing had returned
 * them LISTED_AGO_MS ago (fresh for LISTING_MAX_AGE_MS). The directory must exist (the
 * guard has looked up at least one subaccount) and the guard must be stopped.
 *
 * Why: the benchmark measures the steady state a long-running deployment reaches, with every
 * subaccount already listed, and the stand-in's listing of 10,000 accounts is not what it measures.
 */
export async function seedDirectoryTokens(persist: string, tokens: ReadonlyMap<string, string>): Promise<number> {
  const files = durableObjectFiles(persist, "GuardDirectory");
  if (files.length !== 1) throw new Error(`expected one GuardDirectory database under ${persist}, found ${files.length}`);
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(files[0]!);
  const now = Date.now();
  const insert = db.prepare("INSERT OR REPLACE INTO subaccounts (sid, token, friendly_name, status) VALUES (?, ?, ?, 'active')");
  db.exec("BEGIN");
  for (const [sid, token] of tokens) insert.run(sid, token, sid);
  db.prepare("INSERT OR REPLACE INTO listing (id, listed_at, attempted_at) VALUES (1, ?, ?)").run(now - LISTED_AGO_MS, now - LISTED_AGO_MS);
  db.exec("COMMIT");
  const count = (db.prepare("SELECT COUNT(*) AS n FROM subaccounts").get() as { n: number }).n;
  db.close();
  return count;
}

/** A copy of a prepared persistence directory, so each scenario starts from the same state. */
export function clonePersist(from: string, stateDir = STATE_DIR): string {
  const to = mkdtempSync(join(stateDir, "guard-bench-state-"));
  cpSync(from, to, { recursive: true });
  return to;
}

/**
 * The runtime's floor for a forwarding Worker: the same workerd setup (direct socket, compatibility
 * date), a Worker that only reads the body, forwards it with the request's headers to `originUrl` + the
 * path after `stripPrefix` (a regular expression's source: /webhooks, or /twilio/<host> for the egress
 * gate's floor), and relays the answer. No verification, no ledger, no logging.
 */
export async function startBareForwarder(originUrl: string, stripPrefix = "^\\/webhooks", options: { inspectorPort?: number; onLog?: GuardSettings["onLog"] } = {}): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const config = unstable_readConfig({ config: join(WORKER_ROOT, "wrangler.toml") });
  const script = `export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const body = request.method === "GET" ? null : await request.arrayBuffer();
    const answer = await fetch(env.ORIGIN_URL + url.pathname.replace(/${stripPrefix}/, "") + url.search, { method: request.method, headers: request.headers, body });
    return new Response(await answer.arrayBuffer(), { status: answer.status, headers: { "content-type": answer.headers.get("content-type") ?? "text/plain" } });
  },
};`;
  const pidsBefore = new Set(workerdPids());
  const miniflareOptions = convertV4MiniflareOptions({
    host: "127.0.0.1",
    port: 0,
    cf: false,
    ...(options.inspectorPort !== undefined ? { inspectorPort: options.inspectorPort } : {}),
    ...(options.onLog ? { handleStructuredLogs: (log: { level: string; message: string }) => options.onLog!(log.level, log.message) } : {}),
    workers: [
      {
        name: "bare-forwarder",
        compatibilityDate: config.compatibility_date,
        compatibilityFlags: config.compatibility_flags,
        modules: [{ type: "ESModule", path: "forwarder.js", contents: script }],
        bindings: { ORIGIN_URL: originUrl },
        unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
      },
    ],
  } as Parameters<typeof convertV4MiniflareOptions>[0]);
  const mf = new Miniflare({ ...miniflareOptions, logRequests: false } as ConstructorParameters<typeof Miniflare>[0]);
  await mf.ready;
  const pid = workerdPids().find((p) => !pidsBefore.has(p)) ?? -1;
  const url = (await mf.unsafeGetDirectURL("bare-forwarder")).href.replace(/\/$/, "");
  return { url, pid, stop: () => mf.dispose() };
}
