// The MetricsAggregator Durable Object (src/observability/aggregator.ts): it sums what every isolate's
// registry flushes, keeps each account's latest breaker state, and is the only place metrics are kept
// (AdminGate, which once aggregated them, holds none).
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_SERIES, METRICS_SCHEMA } from "../../src/observability/aggregator.ts";
import { METRICS_AGGREGATOR_NAME, MetricsRegistry, metricsAggregator, type MetricsBatch } from "../../src/observability/metrics.ts";
import { uniqueSid } from "../support/twilio.ts";

/** A label value no other test uses, so sums on the shared "metrics" instance are this test's own. */
const ownReason = () => `aggregator-test-${crypto.randomUUID()}`;

describe("MetricsAggregator", () => {
  it("sums deltas from many isolates and keeps each account's latest breaker state", async () => {
    const aggregator = env.METRICS.getByName(`metrics-test-${uniqueSid()}`);
    const labels = JSON.stringify({ via: "signature" });
    await aggregator.addMetrics({ counters: [{ name: "guard_requests_verified_total", labels, n: 3 }], breakers: [{ sid: "ACa", open: true, atMs: 10 }] });
    await aggregator.addMetrics({ counters: [{ name: "guard_requests_verified_total", labels, n: 4 }], breakers: [{ sid: "ACb", open: true, atMs: 10 }] });
    await aggregator.addMetrics({ counters: [], breakers: [{ sid: "ACa", open: false, atMs: 20 }, { sid: "ACb", open: false, atMs: 5 }] });
    const read = await aggregator.readMetrics();
    expect(read.counters).toEqual([{ name: "guard_requests_verified_total", labels, value: 7 }]);
    expect(read.openBreakers).toBe(1);
    expect(read.batches).toBe(3);
    expect(read.lastBatchAtMs).toBeGreaterThan(0);
  });

  it("aggregates the flushes of two isolates' registries into the one instance", async () => {
    const reason = ownReason();
    const sid = uniqueSid();
    const first = new MetricsRegistry({ intervalMs: 0 });
    const second = new MetricsRegistry({ intervalMs: 0 });
    const batchesBefore = (await metricsAggregator(env).readMetrics()).batches;
    first.inc("guard_requests_rejected_total", { reason }, 2);
    first.breaker(sid, "open", 10);
    await first.flushNow(env);
    second.inc("guard_requests_rejected_total", { reason }, 3);
    second.breaker(sid, "closed", 20);
    await second.flushNow(env);
    first.inc("guard_requests_rejected_total", { reason });
    await first.flushNow(env);

    const read = await metricsAggregator(env).readMetrics();
    expect(read.counters.filter((c) => c.labels === JSON.stringify({ reason }))).toEqual([
      { name: "guard_requests_rejected_total", labels: JSON.stringify({ reason }), value: 6 },
    ]);
    expect(read.batches).toBeGreaterThanOrEqual(batchesBefore + 3);
    const open = await runInDurableObject(metricsAggregator(env), (_instance, state) =>
      state.storage.sql.exec<{ open: number }>("SELECT open FROM breakers WHERE sid = ?", sid).one().open,
    );
    expect(open).toBe(0);
  });

  it("stops adding series at its bound, while existing series keep counting", async () => {
    const aggregator = env.METRICS.getByName(`metrics-test-${uniqueSid()}`);
    const series = (i: number) => ({ name: "guard_requests_rejected_total", labels: JSON.stringify({ reason: `r${i}` }), n: 1 });
    await aggregator.addMetrics({ counters: Array.from({ length: MAX_SERIES }, (_, i) => series(i)), breakers: [] });
    await aggregator.addMetrics({ counters: [series(MAX_SERIES), series(0)], breakers: [] });
    const read = await aggregator.readMetrics();
    expect(read.counters).toHaveLength(MAX_SERIES);
    expect(read.counters.find((c) => c.labels === JSON.stringify({ reason: "r0" }))!.value).toBe(2);
  });

  it("keeps its schema version in meta, like every GuardObject", async () => {
    const version = await runInDurableObject(env.METRICS.getByName(`metrics-test-${uniqueSid()}`), (_instance, state) =>
      state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").one().value,
    );
    expect(Number(version)).toBe(METRICS_SCHEMA.version);
  });
});

describe("AdminGate after the split", () => {
  it("has no metrics methods and receives nothing when isolates flush", async () => {
    const reason = ownReason();
    const registry = new MetricsRegistry({ intervalMs: 0 });
    registry.inc("guard_requests_rejected_total", { reason }, 5);
    await registry.flushNow(env);
    const formerAggregator = env.ADMIN_GATE.getByName(METRICS_AGGREGATOR_NAME) as unknown as { addMetrics(batch: MetricsBatch): Promise<void> };
    // Settled with then(): `expect(...).rejects` on the RPC promise left a second rejection unhandled.
    const refused = await formerAggregator.addMetrics({ counters: [], breakers: [] }).then(() => null, (error: unknown) => String(error));
    expect(refused).toMatch(/does not implement "addMetrics"/);
    // Its schema-1 `counters` table may still exist (deployed instances keep theirs); nothing writes to it.
    const rows = await runInDurableObject(env.ADMIN_GATE.getByName(METRICS_AGGREGATOR_NAME), (_instance, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM counters").one().n,
    );
    expect(rows).toBe(0);
    const read = await metricsAggregator(env).readMetrics();
    expect(read.counters.find((c) => c.labels === JSON.stringify({ reason }))?.value).toBe(5);
  });
});
