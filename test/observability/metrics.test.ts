// Metrics: the in-isolate registry (typed counters, deltas, at most one send per interval), the
// aggregating Durable Object (sums, latest breaker state wins), the Prometheus text format, and
// GET /admin/metrics end to end.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import {
  COUNTERS,
  MetricsRegistry,
  PROMETHEUS_CONTENT_TYPE,
  metrics,
  renderPrometheus,
  restCallObserver,
  type AggregatedMetrics,
  type MetricsBatch,
} from "../../src/observability/metrics.ts";
import { uniqueSid } from "../support/twilio.ts";
import { privateMinute } from "../support/admin.ts";

const ADMIN_TOKEN = "test-admin-token-for-metrics";

function total(batch: MetricsBatch | null, name: string, labels: Record<string, string> = {}): number {
  const key = JSON.stringify(labels);
  return (batch?.counters ?? []).filter((c) => c.name === name && c.labels === key).reduce((sum, c) => sum + c.n, 0);
}

/** Every sample line of the exposition format: name, optional {labels}, a number. */
const SAMPLE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? -?[0-9.e+-]+$/;

describe("MetricsRegistry", () => {
  it("accumulates deltas per counter and label set, and take() drains them", () => {
    const registry = new MetricsRegistry();
    registry.inc("guard_requests_verified_total", { via: "signature" });
    registry.inc("guard_requests_verified_total", { via: "signature" }, 2);
    registry.inc("guard_requests_verified_total", { via: "basic" });
    registry.inc("guard_duplicates_total");
    registry.inc("guard_duplicates_total", {}, 0);
    registry.inc("guard_duplicates_total", {}, -5);
    const batch = registry.take();
    expect(total(batch, "guard_requests_verified_total", { via: "signature" })).toBe(3);
    expect(total(batch, "guard_requests_verified_total", { via: "basic" })).toBe(1);
    expect(total(batch, "guard_duplicates_total")).toBe(1);
    expect(registry.take()).toBeNull();
  });

  it("folds label sets beyond its cap into `other`, and cuts long label values", () => {
    const registry = new MetricsRegistry();
    for (let i = 0; i < 250; i++) registry.inc("guard_requests_rejected_total", { reason: `reason-${i}` });
    registry.inc("guard_requests_rejected_total", { reason: "x".repeat(500) });
    const batch = registry.take()!;
    const series = batch.counters.filter((c) => c.name === "guard_requests_rejected_total");
    expect(series.length).toBe(201);
    expect(total(batch, "guard_requests_rejected_total", { reason: "other" })).toBe(51);
  });

  it("keeps label sets apart however their values could run together, and counts them the same before and after it forgets them", () => {
    const registry = new MetricsRegistry();
    registry.inc("guard_rest_failures_total", { purpose: "a:1", status: "b" });
    registry.inc("guard_rest_failures_total", { purpose: "a", status: ":1b" });
    registry.inc("guard_rest_failures_total", { purpose: "a\u0000b", status: "c" });
    registry.inc("guard_rest_failures_total", { purpose: "a", status: "b\u0000c" });
    // More label sets than a counter remembers, then the first ones again.
    for (let round = 0; round < 2; round++) for (let i = 0; i < 300; i++) registry.inc("guard_admin_mutations_total", { call: `c${i % 150}`, outcome: `o${i}` });
    const batch = registry.take()!;
    expect(batch.counters.filter((c) => c.name === "guard_rest_failures_total").map((c) => [JSON.parse(c.labels), c.n])).toEqual([
      [{ purpose: "a:1", status: "b" }, 1],
      [{ purpose: "a", status: ":1b" }, 1],
      [{ purpose: "a\u0000b", status: "c" }, 1],
      [{ purpose: "a", status: "b\u0000c" }, 1],
    ]);
    expect(total(batch, "guard_admin_mutations_total", { call: "c0", outcome: "o0" })).toBe(2);
    expect(total(batch, "guard_admin_mutations_total", { call: "c149", outcome: "o299" })).toBe(0);
    const admin = batch.counters.filter((c) => c.name === "guard_admin_mutations_total");
    expect(admin.reduce((n, c) => n + c.n, 0)).toBe(600);
    expect(admin.find((c) => c.labels === JSON.stringify({ call: "other", outcome: "other" }))?.n).toBe(600 - 2 * 200);
  });

  it("keys a label set by its canonical JSON, the same on every increment and past the cache of label sets", () => {
    const registry = new MetricsRegistry();
    // Two labels, one missing, one longer than a label value may be; then more distinct values than the
    // isolate keeps label-set keys for (4,096 nodes), built per increment from there on.
    for (let round = 0; round < 3; round++) registry.inc("guard_egress_reserve_calls_total", { sends: "2-4" });
    registry.inc("guard_egress_sends_total", { outcome: "allowed" } as never);
    registry.inc("guard_egress_sends_total", { outcome: "refused", reason: "y".repeat(100) });
    for (let i = 0; i < 5000; i++) registry.inc("guard_requests_rejected_total", { reason: `many-${i}` });
    registry.inc("guard_egress_reserve_calls_total", { sends: "2-4" });
    const batch = registry.take()!;
    expect(total(batch, "guard_egress_reserve_calls_total", { sends: "2-4" })).toBe(4);
    expect(total(batch, "guard_egress_sends_total", { outcome: "allowed", reason: "" })).toBe(1);
    expect(total(batch, "guard_egress_sends_total", { outcome: "refused", reason: "y".repeat(64) })).toBe(1);
    expect(total(batch, "guard_requests_rejected_total", { reason: "many-0" })).toBe(1);
    expect(total(batch, "guard_requests_rejected_total", { reason: "other" })).toBe(4800);
  });
  it("keeps the latest breaker report per account", () => {
    const registry = new MetricsRegistry();
    registry.breaker("AC1", "open", 2_000);
    registry.breaker("AC1", "closed", 1_000);
    registry.breaker("AC2", "open", 1_000);
    registry.breaker("AC2", "closed", 3_000);
    expect(registry.take()!.breakers).toEqual([
      { sid: "AC1", open: true, atMs: 2_000 },
      { sid: "AC2", open: false, atMs: 3_000 },
    ]);
  });

  it("sends at most once per interval: the first flush at once, the rest with the first flush after the interval", async () => {
    const INTERVAL_MS = 200;
    let nowMs = Date.now();
    const sent: MetricsBatch[] = [];
    const registry = new MetricsRegistry({ intervalMs: INTERVAL_MS, now: () => nowMs });
    const pending: Array<Promise<unknown>> = [];
    const waitUntil = (p: Promise<unknown>) => pending.push(p);
    const sink = async (batch: MetricsBatch) => {
      sent.push(batch);
    };
    registry.inc("guard_duplicates_total");
    registry.flushTo(sink, waitUntil);
    await Promise.all(pending);
    expect(sent).toHaveLength(1);
    for (let i = 0; i < 10; i++) {
      registry.inc("guard_duplicates_total");
      registry.flushTo(sink, waitUntil);
    }
    // The last instant of the interval: still nothing sent.
    nowMs += INTERVAL_MS - 1;
    registry.flushTo(sink, waitUntil);
    await Promise.all(pending);
    expect(sent).toHaveLength(1);
    // The interval is over: the next flush sends everything that waited.
    nowMs += 1;
    registry.flushTo(sink, waitUntil);
    await Promise.all(pending);
    expect(sent).toHaveLength(2);
    expect(total(sent[1]!, "guard_duplicates_total")).toBe(10);
  });

  it("merges a batch whose send failed back into the next one", async () => {
    const registry = new MetricsRegistry({ intervalMs: 0 });
    registry.inc("guard_warnings_total", {}, 3);
    await registry.sendNow(async () => {
      throw new Error("aggregator unavailable");
    });
    registry.inc("guard_warnings_total");
    const sent: MetricsBatch[] = [];
    await registry.sendNow(async (b) => {
      sent.push(b);
    });
    expect(total(sent[0]!, "guard_warnings_total")).toBe(4);
  });

  it("counts REST calls and failures by purpose through createTwilioClient's onCall", () => {
    const registry = new MetricsRegistry();
    const onCall = restCallObserver(registry);
    onCall("suspend", "ok", 200);
    onCall("suspend", "error", 503);
    onCall("fetch-account", "error", "timeout");
    const batch = registry.take();
    expect(total(batch, "guard_rest_calls_total", { purpose: "suspend" })).toBe(2);
    expect(total(batch, "guard_rest_failures_total", { purpose: "suspend", status: "503" })).toBe(1);
    expect(total(batch, "guard_rest_failures_total", { purpose: "fetch-account", status: "timeout" })).toBe(1);
  });
});

describe("renderPrometheus", () => {
  const aggregate: AggregatedMetrics = {
    counters: [
      { name: "guard_requests_rejected_total", labels: JSON.stringify({ reason: 'bad"sig\\nature\nx' }), value: 2 },
      { name: "guard_requests_rejected_total", labels: JSON.stringify({ reason: "body-too-large" }), value: 1 },
      { name: "guard_future_total", labels: JSON.stringify({}), value: 9 },
    ],
    openBreakers: 3,
    batches: 12,
    lastBatchAtMs: 1_700_000_000_500,
  };
  const text = renderPrometheus(aggregate, { accounts: 42 });
  const lines = text.split("\n");

  it("writes HELP and TYPE for every counter, zero for label-less ones, and the gauges", () => {
    expect(text.endsWith("\n")).toBe(true);
    for (const name of Object.keys(COUNTERS)) {
      expect(lines).toContain(`# TYPE ${name} counter`);
      expect(lines.some((l) => l.startsWith(`# HELP ${name} `))).toBe(true);
    }
    expect(lines).toContain("guard_duplicates_total 0");
    expect(lines).toContain("# TYPE guard_breakers_open gauge");
    expect(lines).toContain("guard_breakers_open 3");
    expect(lines).toContain("guard_accounts 42");
    expect(lines).toContain("guard_metrics_last_batch_timestamp_seconds 1700000000.5");
  });

  it("escapes label values and sorts samples", () => {
    const rejected = lines.filter((l) => l.startsWith("guard_requests_rejected_total{"));
    expect(rejected).toEqual(['guard_requests_rejected_total{reason="bad\\"sig\\\\nature\\nx"} 2', 'guard_requests_rejected_total{reason="body-too-large"} 1']);
  });

  it("keeps a counter this version does not know, without HELP", () => {
    expect(lines).toContain("# TYPE guard_future_total counter");
    expect(lines).toContain("guard_future_total 9");
    expect(lines.some((l) => l.startsWith("# HELP guard_future_total"))).toBe(false);
  });

  it("produces only comment lines and well-formed samples, one TYPE per metric", () => {
    for (const line of lines.filter((l) => l !== "")) {
      if (line.startsWith("#")) expect(line).toMatch(/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/);
      else expect(line).toMatch(SAMPLE);
    }
    const types = lines.filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]);
    expect(new Set(types).size).toBe(types.length);
  });
});

describe("GET /admin/metrics", () => {
  function scrape(token = ADMIN_TOKEN) {
    // A wrong token is a counted failure: on a clock of its own it cannot add to another test's lockout.
    const own = privateMinute();
    const app = createApp(token === ADMIN_TOKEN ? {} : { now: () => own });
    return app.fetch(
      new Request("https://guard.example.com/admin/metrics", { headers: { authorization: `Bearer ${token}` } }),
      { ...(env as GuardEnv), ADMIN_TOKEN },
      createExecutionContext(),
    );
  }

  it("answers the global figures in Prometheus text, including this isolate's pending counts", async () => {
    const before = await (await scrape()).text();
    const value = (text: string) => Number(/^guard_warnings_total (\d+)$/m.exec(text)?.[1] ?? "NaN");
    metrics.inc("guard_warnings_total", {}, 2);
    const response = await scrape();
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE);
    const text = await response.text();
    expect(value(text)).toBe(value(before) + 2);
    expect(text).toMatch(/^guard_breakers_open \d+$/m);
    expect(text).toMatch(/^guard_accounts \d+$/m);
  });

  it("counts open breakers from operators' trips and resets", async () => {
    const call = (method: string, path: string) =>
      createApp().fetch(
        new Request(`https://guard.example.com${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
        { ...(env as GuardEnv), ADMIN_TOKEN },
        createExecutionContext(),
      );
    const open = async () => Number(/^guard_breakers_open (\d+)$/m.exec(await (await scrape()).text())![1]);
    const sid = uniqueSid();
    await env.ACCOUNT_GUARD.getByName(sid).setPolicy(sid, { limits: [], action: "block" });
    const start = await open();
    await call("POST", `/admin/accounts/${sid}/trip`);
    expect(await open()).toBe(start + 1);
    await call("POST", `/admin/accounts/${sid}/reset`);
    expect(await open()).toBe(start);
    expect(await (await scrape()).text()).toMatch(/^guard_admin_mutations_total\{call="trip",outcome="ok"\} [1-9]\d*$/m);
  });

  it("needs the bearer token like every admin call", async () => {
    expect((await scrape("wrong")).status).toBe(401);
  });
});
