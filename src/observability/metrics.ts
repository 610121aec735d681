// Guard metrics: in-isolate counters, flushed as deltas to one aggregating Durable Object, rendered as
// Prometheus text by GET /admin/metrics. See docs/metrics.md.
//
// How the figures are aggregated, and how fresh they are:
//   - Code anywhere (the Worker's request path, every Durable Object) calls `metrics.inc(name, labels, n)`:
//     a Map update in this isolate's memory, nothing else, so it costs nothing on the hot path.
//   - `metrics.flush(env, waitUntil)` (called once per request, and by Durable Objects after their work)
//     sends the accumulated *deltas* to the MetricsAggregator Durable Object (src/observability/aggregator.ts,
//     its one instance named "metrics") over RPC, at most once per
//     METRICS_FLUSH_INTERVAL_MS per isolate. A flush that comes too soon schedules one delayed send (kept
//     alive by waitUntil) for when the interval is up, so an isolate that goes quiet still reports.
//   - The aggregator adds the deltas up in SQLite: the figures are global, across every isolate and
//     every Durable Object, and survive restarts. GET /admin/metrics also pushes its own isolate's
//     pending deltas before reading.
//   - So a figure is at most ~5 s behind what happened, plus whatever an isolate had not flushed when it
//     was evicted (lost: counters are best-effort, the spend ledger is not). A send that fails is merged
//     back and retried with the next flush; a send that reached the aggregator but whose answer was lost
//     is counted again (rare; counters may over-count by one batch, never go backwards).
//   - Open breakers are not a counter but a state: each report carries `(sid, open, atMs)` and the
//     aggregator keeps the latest per account, so the gauge cannot drift when a report is lost or repeated.
//
// For the webhook handler and the AccountGuard: `import { metrics } from "../observability/metrics.ts"`, then
//   metrics.inc("guard_requests_verified_total", { via: "signature" });
//   metrics.inc("guard_requests_rejected_total", { reason: error.reason });
//   metrics.inc("guard_breaker_trips_total", { reason: "limit" });
//   metrics.breaker(sid, "open", nowMs);
//   createTwilioClient({ ..., onCall: restCallObserver() });   (src/twilio/client.ts does this)
//   metrics.flush(env, (p) => ctx.waitUntil(p));   // once per request / after a Durable Object's work
// Counter names and their labels are typed: a typo or a missing label fails the typecheck.
import type { GuardEnv } from "../config/env.ts";
import type { RestPurpose, RestStatus } from "../twilio/rest.ts";

/** At most one RPC to the aggregator per isolate per 5 s: bounded load on one Durable Object, ~5 s fresh. */
export const METRICS_FLUSH_INTERVAL_MS = 5_000;
/** A scheduled send that has not happened this long after its time was lost (its request context ended). */
/** Distinct label sets one isolate accumulates per counter before folding new ones into "other". */
const MAX_SERIES_PER_COUNTER = 200;
/** Label values are identifiers (reasons, purposes, statuses); anything longer is cut. */
const MAX_LABEL_VALUE_CHARS = 64;
/** The label value new series fold into once a counter has MAX_SERIES_PER_COUNTER of them. */
export const OVERFLOW_LABEL_VALUE = "other";
/** The name of the one MetricsAggregator instance (binding METRICS) every isolate flushes to. */
export const METRICS_AGGREGATOR_NAME = "metrics";

interface CounterSpec {
  help: string;
  labels: readonly string[];
}

/** Every counter the guard exports. Prometheus convention: counters end in _total. */
export const COUNTERS = {
  guard_requests_verified_total: {
    help: "Webhook and usage-trigger requests that passed verification, by method (signature, basic).",
    labels: ["via"],
  },
  guard_requests_rejected_total: {
    help: "Requests refused before forwarding, by reason (the GuardError reason, e.g. bad-signature, body-too-large).",
    labels: ["reason"],
  },
  guard_requests_forwarded_total: {
    help: "Verified webhooks forwarded to ORIGIN_URL, by the origin's status class (2xx, 4xx, 5xx, error).",
    labels: ["status"],
  },
  guard_requests_blocked_total: {
    help: "Inbound messages and calls answered at the edge because the account's breaker is open.",
    labels: [],
  },
  guard_duplicates_total: {
    help: "Webhooks seen before (Twilio retries), forwarded with X-Guard-Duplicate and counted once.",
    labels: [],
  },
  guard_breaker_trips_total: {
    help: "Breakers opened, by cause (limit, usage-trigger, operator).",
    labels: ["reason"],
  },
  guard_warnings_total: {
    help: "Spend warnings raised (a limit's warnAt share reached), once per limit and window.",
    labels: [],
  },
  guard_rest_calls_total: {
    help: "HTTP requests made to the Twilio REST API, by purpose.",
    labels: ["purpose"],
  },
  guard_rest_failures_total: {
    help: "Twilio REST requests that failed, by purpose and status (HTTP status, timeout, network).",
    labels: ["purpose", "status"],
  },
  guard_effects_given_up_total: {
    help: "Outbox effects given up after their last attempt, by kind (suspend, reactivate, end-calls, alert-webhook, alert-sms); each but alerts is alerted.",
    labels: ["kind"],
  },
  guard_ledger_write_failures_total: {
    help: "Status-callback ledger writes that failed, by stage: direct (the Durable Object call; retried through the queue), retry (a queued attempt; retried again), enqueue (the queue refused it; retried), lost (given up).",
    labels: ["stage"],
  },
  guard_ledger_calls_total: {
    help: "The webhook path's calls to an account's Durable Object (breaker/record-batches.ts), by how many events each carried (1, 2-4, 5-16, 17-64).",
    labels: ["events"],
  },
  guard_ledger_call_events_total: {
    help: "Events those calls carried: divided by guard_ledger_calls_total, the events per call that grouping achieved.",
    labels: [],
  },
  guard_egress_reserve_calls_total: {
    help: "The egress gate's reservation calls to an account's Durable Object (egress/reservation-batches.ts), by how many sends each carried (1, 2-4, 5-16, 17-64).",
    labels: ["sends"],
  },
  guard_egress_reserve_call_sends_total: {
    help: "Sends those calls carried: divided by guard_egress_reserve_calls_total, the sends per call that grouping achieved.",
    labels: [],
  },
  guard_egress_settle_failures_total: {
    help: "Egress gate settlement batches whose write failed, by stage: direct (the Durable Object call; retried through the queue), retry (a queued attempt; retried again), enqueue (the queue refused it; retried), lost (given up).",
    labels: ["stage"],
  },
  guard_admin_auth_failures_total: {
    help: "Refused admin calls, by reason (token-missing, token-invalid, totp-required, totp-invalid, totp-reused).",
    labels: ["reason"],
  },
  guard_admin_mutations_total: {
    help: "Admin API mutations executed, by call (policy, trip, reset, usage-triggers) and outcome (ok, error).",
    labels: ["call", "outcome"],
  },
  guard_egress_sends_total: {
    help: "Sends through the REST egress gate, by outcome (allowed, refused, report-only: forwarded though enforce would refuse) and reason (none, country, per-prefix, per-destination, limit, breaker-open).",
    labels: ["outcome", "reason"],
  },
  guard_price_lookups_total: {
    help: "Lookups of a gate send's real price (GET its Message or Call), by outcome: applied (the real price replaced the estimate), unchanged (it already had it), given-up (no price within the horizon, or none to apply), over-bound (too many waiting: not looked up).",
    labels: ["outcome"],
  },
  guard_egress_refused_total: {
    help: "Requests the REST egress gate refused before any send was priced, by reason (credentials, rate-limited-auth, scope, host-not-allowed).",
    labels: ["reason"],
  },
} as const satisfies Record<string, CounterSpec>;

export type CounterName = keyof typeof COUNTERS;
/** The labels a counter takes: exactly the names its spec lists, each a string. */
export type CounterLabels<N extends CounterName> = { [K in (typeof COUNTERS)[N]["labels"][number]]: string };

/** What one flush carries to the aggregator. Plain data: it crosses an RPC boundary. */
export interface MetricsBatch {
  /** `labels` is the canonical JSON of the label object (keys in the spec's order). */
  counters: Array<{ name: string; labels: string; n: number }>;
  breakers: Array<{ sid: string; open: boolean; atMs: number }>;
}

/** What the aggregator holds; the read side of GET /admin/metrics. */
export interface AggregatedMetrics {
  counters: Array<{ name: string; labels: string; value: number }>;
  openBreakers: number;
  batches: number;
  lastBatchAtMs: number | null;
}

/** Where a batch goes; in production the MetricsAggregator "metrics" instance, in unit tests anything. */
export type MetricsSink = (batch: MetricsBatch) => Promise<void>;

function canonicalLabels(labels: Record<string, string>, spec: CounterSpec): string {
  // Looked up by the label values themselves (nested Maps): no object or JSON made per increment.
  let node: LabelKeyNode | undefined = labelKeyRoots.get(spec);
  if (node === undefined) {
    node = { next: new Map(), key: null };
    labelKeyRoots.set(spec, node);
  }
  for (let i = 0; i < spec.labels.length; i++) {
    const value = labels[spec.labels[i]!];
    let child: LabelKeyNode | undefined = node.next.get(value);
    if (child === undefined) {
      if (labelKeyNodes >= MAX_LABEL_KEY_NODES) return buildCanonicalLabels(labels, spec);
      child = { next: new Map(), key: null };
      labelKeyNodes++;
      node.next.set(value, child);
    }
    node = child;
  }
  return (node.key ??= buildCanonicalLabels(labels, spec));
}

function buildCanonicalLabels(labels: Record<string, string>, spec: CounterSpec): string {
  const out: Record<string, string> = {};
  for (const label of spec.labels) out[label] = String(labels[label] ?? "").slice(0, MAX_LABEL_VALUE_CHARS);
  return JSON.stringify(out);
}

/** A counter's label values, one level per label, to the canonical JSON of that label set (built once). */
interface LabelKeyNode {
  next: Map<unknown, LabelKeyNode>;
  key: string | null;
}
const labelKeyRoots = new Map<CounterSpec, LabelKeyNode>();
/**
 * Label-set nodes kept per isolate: the label sets the guard uses are a few hundred; past this bound
 * (values from the outside, e.g. a reason string) keys are built per increment again, memory stays bounded.
 */
const MAX_LABEL_KEY_NODES = 4096;
let labelKeyNodes = 0;

function overflowLabels(spec: CounterSpec): string {
  const out: Record<string, string> = {};
  for (const label of spec.labels) out[label] = OVERFLOW_LABEL_VALUE;
  return JSON.stringify(out);
}


export interface MetricsRegistryOptions {
  intervalMs?: number;
  /** The clock the flush interval is measured with (injected by unit tests). */
  now?: () => number;
}

export class MetricsRegistry {
  readonly #intervalMs: number;
  readonly #now: () => number;
  /** name → canonical labels → pending delta */
  #counters = new Map<string, Map<string, number>>();
  #breakers = new Map<string, { open: boolean; atMs: number }>();
  #lastSendAt = Number.NEGATIVE_INFINITY;

  constructor(options: MetricsRegistryOptions = {}) {
    this.#intervalMs = options.intervalMs ?? METRICS_FLUSH_INTERVAL_MS;
    this.#now = options.now ?? Date.now;
  }

  /** Adds n (default 1) to a counter. Never throws; negative or non-finite n are ignored. */
  inc<N extends CounterName>(name: N, labels: CounterLabels<N> = {} as CounterLabels<N>, n = 1): void {
    if (!Number.isFinite(n) || n <= 0) return;
    const spec: CounterSpec = COUNTERS[name];
    let series = this.#counters.get(name);
    if (series === undefined) {
      series = new Map();
      this.#counters.set(name, series);
    }
    let key = canonicalLabels(labels as Record<string, string>, spec);
    if (!series.has(key) && series.size >= MAX_SERIES_PER_COUNTER) key = overflowLabels(spec);
    series.set(key, (series.get(key) ?? 0) + n);
  }

  /** Reports an account's breaker state (the latest report per account wins at the aggregator). */
  breaker(sid: string, state: "open" | "closed", atMs: number): void {
    const prior = this.#breakers.get(sid);
    if (prior === undefined || prior.atMs <= atMs) this.#breakers.set(sid, { open: state === "open", atMs });
  }

  hasPending(): boolean {
    return this.#counters.size > 0 || this.#breakers.size > 0;
  }

  /** Takes everything pending (the registry is empty afterwards); null when there is nothing. */
  take(): MetricsBatch | null {
    if (!this.hasPending()) return null;
    const batch: MetricsBatch = { counters: [], breakers: [] };
    for (const [name, series] of this.#counters) for (const [labels, n] of series) batch.counters.push({ name, labels, n });
    for (const [sid, b] of this.#breakers) batch.breakers.push({ sid, open: b.open, atMs: b.atMs });
    this.#counters = new Map();
    this.#breakers = new Map();
    return batch;
  }

  /** Puts a batch that could not be delivered back, merged with whatever accumulated since. */
  restore(batch: MetricsBatch): void {
    for (const c of batch.counters) {
      let series = this.#counters.get(c.name);
      if (series === undefined) {
        series = new Map();
        this.#counters.set(c.name, series);
      }
      series.set(c.labels, (series.get(c.labels) ?? 0) + c.n);
    }
    for (const b of batch.breakers) {
      const prior = this.#breakers.get(b.sid);
      if (prior === undefined || prior.atMs < b.atMs) this.#breakers.set(b.sid, { open: b.open, atMs: b.atMs });
    }
  }

  /**
   * Sends pending deltas to `sink` now when the last send is at least the interval ago; otherwise
   * leaves them pending for the next flush after the interval. Nothing is scheduled: a request's
   * waitUntil never sleeps on our behalf (that would hold every request open for up to the interval).
   * Never throws, never delays the caller.
   */
  flushTo(sink: MetricsSink, waitUntil: (promise: Promise<unknown>) => void): void {
    if (!this.hasPending()) return;
    if (this.#now() < this.#lastSendAt + this.#intervalMs) return;
    waitUntil(this.sendNow(sink));
  }

  /** Sends pending deltas to `sink` now and waits for it. A failed send is merged back. Never throws. */
  async sendNow(sink: MetricsSink): Promise<void> {
    this.#lastSendAt = this.#now();
    const batch = this.take();
    if (batch === null) return;
    try {
      await sink(batch);
    } catch {
      this.restore(batch);
    }
  }

  /** flushTo the guard's aggregator; a no-op where the METRICS binding does not exist. */
  flush(env: Pick<GuardEnv, "METRICS">, waitUntil: (promise: Promise<unknown>) => void): void {
    if (env.METRICS === undefined) return;
    this.flushTo(aggregatorSink(env), waitUntil);
  }

  /** sendNow to the guard's aggregator (GET /admin/metrics does this before reading). */
  flushNow(env: Pick<GuardEnv, "METRICS">): Promise<void> {
    if (env.METRICS === undefined) return Promise.resolve();
    return this.sendNow(aggregatorSink(env));
  }
}

/** The MetricsAggregator Durable Object's one instance (src/observability/aggregator.ts). */
export function metricsAggregator(env: Pick<GuardEnv, "METRICS">) {
  return env.METRICS.getByName(METRICS_AGGREGATOR_NAME);
}

function aggregatorSink(env: Pick<GuardEnv, "METRICS">): MetricsSink {
  return async (batch) => {
    await metricsAggregator(env).addMetrics(batch);
  };
}

/** This isolate's registry: the Worker and every Durable Object running in the isolate share it. */
export const metrics = new MetricsRegistry();

/** An `onCall` for createTwilioClient that counts every REST request (and its failures) by purpose. */
export function restCallObserver(registry: MetricsRegistry = metrics) {
  return (purpose: RestPurpose, outcome: "ok" | "error", status: RestStatus): void => {
    registry.inc("guard_rest_calls_total", { purpose });
    if (outcome === "error") registry.inc("guard_rest_failures_total", { purpose, status: String(status) });
  };
}

// ---------------------------------------------------------------- Prometheus text exposition (0.0.4)

/** The content type Prometheus expects for the text format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Exposition format: label values escape backslash, double quote and line feed. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text escapes backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function labelText(labelsJson: string): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(labelsJson);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return null;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (!LABEL_NAME.test(k) || k.startsWith("__")) return null;
    parts.push(`${k}="${escapeLabelValue(String(v))}"`);
  }
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

export interface Gauges {
  /** Accounts the directory knows. */
  accounts: number | null;
}

/**
 * Renders the aggregate in the Prometheus text exposition format: a HELP and TYPE line per metric,
 * then its samples, sorted; every known counter appears (label-less ones with 0), and counters the
 * aggregator knows but this version does not (a newer isolate mid-deploy) are kept, without HELP.
 */
export function renderPrometheus(aggregate: AggregatedMetrics, gauges: Gauges): string {
  const lines: string[] = [];
  const byName = new Map<string, Array<{ labels: string; value: number }>>();
  for (const c of aggregate.counters) {
    if (!METRIC_NAME.test(c.name)) continue;
    const text = labelText(c.labels);
    if (text === null) continue;
    let list = byName.get(c.name);
    if (list === undefined) byName.set(c.name, (list = []));
    list.push({ labels: text, value: c.value });
  }
  const names = [...new Set([...Object.keys(COUNTERS), ...byName.keys()])].sort();
  for (const name of names) {
    const spec = (COUNTERS as Record<string, CounterSpec>)[name];
    if (spec !== undefined) lines.push(`# HELP ${name} ${escapeHelp(spec.help)}`);
    lines.push(`# TYPE ${name} counter`);
    const samples = (byName.get(name) ?? []).sort((a, b) => (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0));
    if (samples.length === 0 && spec !== undefined && spec.labels.length === 0) lines.push(`${name} 0`);
    for (const s of samples) lines.push(`${name}${s.labels} ${s.value}`);
  }
  lines.push("# HELP guard_breakers_open Accounts whose breaker is open now (latest state each account reported).");
  lines.push("# TYPE guard_breakers_open gauge");
  lines.push(`guard_breakers_open ${aggregate.openBreakers}`);
  if (gauges.accounts !== null) {
    lines.push("# HELP guard_accounts Accounts the guard has seen (the directory's registry).");
    lines.push("# TYPE guard_accounts gauge");
    lines.push(`guard_accounts ${gauges.accounts}`);
  }
  lines.push("# HELP guard_metrics_batches_total Metric batches the aggregator received from isolates and Durable Objects.");
  lines.push("# TYPE guard_metrics_batches_total counter");
  lines.push(`guard_metrics_batches_total ${aggregate.batches}`);
  lines.push("# HELP guard_metrics_last_batch_timestamp_seconds When the aggregator last received a batch (Unix seconds).");
  lines.push("# TYPE guard_metrics_last_batch_timestamp_seconds gauge");
  lines.push(`guard_metrics_last_batch_timestamp_seconds ${aggregate.lastBatchAtMs === null ? 0 : aggregate.lastBatchAtMs / 1000}`);
  return `${lines.join("\n")}\n`;
}
