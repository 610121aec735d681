// MetricsAggregator: the Durable Object that sums the guard's metrics (src/observability/metrics.ts), one
// job in one class. One instance (METRICS_AGGREGATOR_NAME) receives every isolate's counter deltas and
// breaker reports (`addMetrics`, each a transaction) and answers GET /admin/metrics (`readMetrics`).
// Its own class, not an instance of AdminGate: metric traffic never queues behind an operator's sign-in,
// and the admin console's state (lockout, TOTP, audit) never shares storage or a schema with it.
// A thin shell: the registry, the batch format and the Prometheus text are in metrics.ts.
import type { GuardEnv } from "../config/env.ts";
import { GuardObject, versionedSchema } from "../durable/base.ts";
import type { AggregatedMetrics, MetricsBatch } from "./metrics.ts";

/** The aggregator refuses new series beyond this many (existing ones keep counting): bounded storage. */
export const MAX_SERIES = 5_000;

/**
 * 1: one row per counter series (name + canonical labels JSON) with its running sum, and the latest
 * reported breaker state per account (the gauge of open breakers). The `meta` table keeps the batch count
 * and the time of the last batch.
 */
export const METRICS_SCHEMA = versionedSchema([
  {
    version: 1,
    up: (sql) =>
      sql.exec(`
        CREATE TABLE IF NOT EXISTS counters (name TEXT NOT NULL, labels TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (name, labels));
        CREATE TABLE IF NOT EXISTS breakers (sid TEXT PRIMARY KEY, open INTEGER NOT NULL, at_ms INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS breakers_open ON breakers (open);
      `),
  },
]);

export class MetricsAggregator extends GuardObject {
  constructor(ctx: DurableObjectState, env: GuardEnv) {
    super(ctx, env, METRICS_SCHEMA);
  }

  /** Adds one isolate's deltas and breaker reports, in one transaction. Malformed entries are skipped. */
  addMetrics(batch: MetricsBatch): void {
    this.transaction(() => {
      let series = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM counters").one().n;
      for (const c of batch.counters ?? []) {
        if (typeof c.name !== "string" || typeof c.labels !== "string" || !Number.isFinite(c.n) || c.n <= 0) continue;
        const updated = this.sql.exec("UPDATE counters SET value = value + ? WHERE name = ? AND labels = ?", Math.round(c.n), c.name, c.labels).rowsWritten;
        if (updated === 0 && series < MAX_SERIES) {
          this.sql.exec("INSERT INTO counters (name, labels, value) VALUES (?, ?, ?)", c.name, c.labels, Math.round(c.n));
          series += 1;
        }
      }
      for (const b of batch.breakers ?? []) {
        if (typeof b.sid !== "string" || !Number.isFinite(b.atMs)) continue;
        // The latest report wins: a late batch from another isolate cannot reopen a breaker closed since.
        this.sql.exec(
          `INSERT INTO breakers (sid, open, at_ms) VALUES (?, ?, ?)
           ON CONFLICT (sid) DO UPDATE SET open = excluded.open, at_ms = excluded.at_ms WHERE excluded.at_ms >= breakers.at_ms`,
          b.sid, b.open ? 1 : 0, b.atMs,
        );
      }
      const batches = Number(this.meta("batches") ?? "0") + 1;
      this.setMeta("batches", String(batches));
      this.setMeta("last_batch_at", String(Date.now()));
    });
  }

  /** The sums, the open-breaker gauge and the batch bookkeeping: what GET /admin/metrics renders. */
  readMetrics(): AggregatedMetrics {
    const lastBatch = this.meta("last_batch_at");
    return {
      counters: this.sql.exec<{ name: string; labels: string; value: number }>("SELECT name, labels, value FROM counters ORDER BY name, labels").toArray(),
      openBreakers: this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM breakers WHERE open = 1").one().n,
      batches: Number(this.meta("batches") ?? "0"),
      lastBatchAtMs: lastBatch === null ? null : Number(lastBatch),
    };
  }
}
