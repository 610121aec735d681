// The load generator: autocannon, fed from a pool of pre-signed requests (each request a distinct,
// validly signed Twilio event: autocannon's setupRequest takes the next one from the pool).
//
// Latency is taken per response from autocannon's own "response" event (process.hrtime from writing
// the request to the end of the response, in fractional milliseconds) and percentiles are computed
// exactly over all samples. autocannon's summary histogram is not used: it has 1 ms resolution (too
// coarse for loopback) and, with a rate set, back-fills "coordinated omission" samples at a 1 ms
// expected interval.
//
// How autocannon's overallRate paces: each connection gets rate/connections requests per second and
// sends them back to back (a new request as soon as the previous answer arrives) at the start of each
// second, then idles until the next second. So latencies are those of `connections` concurrent
// closed-loop clients, in bursts; both sides of every comparison get exactly the same treatment.
import autocannon from "autocannon";
import type { SignedRequest } from "./events.ts";

export interface LoadOptions {
  url: string;
  pool: readonly SignedRequest[];
  connections: number;
  /** Requests per second over all connections; none: as fast as the server answers. */
  overallRate?: number;
  /** Number of requests to send (≤ pool length). */
  amount: number;
  /** Called with every answer's status and headers (e.g. to count breaker headers). */
  onResponse?: (status: number, headers: Record<string, string | string[]>) => void;
}

export interface LoadResult {
  sent: number;
  latenciesMs: number[];
  status: Record<string, number>;
  errors: number;
  timeouts: number;
  /** From starting the load to the last answer. */
  elapsedMs: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (options.amount > options.pool.length) throw new Error(`pool of ${options.pool.length} < amount ${options.amount}`);
  let next = 0;
  const latenciesMs: number[] = [];
  const status: Record<string, number> = {};
  const target = new URL(options.url);
  const started = performance.now();
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    amount: options.amount,
    ...(options.overallRate !== undefined ? { overallRate: options.overallRate, ignoreCoordinatedOmission: true } : {}),
    timeout: 20,
    // autocannon notices that `amount` is reached only at its next sampling tick (default every 1 s):
    // sample every 50 ms so a run ends promptly. Only autocannon's own histograms, unused here, change.
    sampleInt: 50,
    method: "POST",
    requests: [
      {
        setupRequest(request: Record<string, unknown>) {
          const signed = options.pool[next++];
          if (signed === undefined) throw new Error("request pool exhausted");
          request.path = target.pathname.replace(/\/$/, "") + signed.path;
          request.headers = { ...signed.headers };
          request.body = signed.body;
          return request;
        },
        ...(options.onResponse
          ? {
              onResponse(code: number, _body: string, _context: unknown, headers: Record<string, string | string[]>) {
                options.onResponse!(code, headers);
              },
            }
          : {}),
      },
    ],
  });
  let lastAnswerAt = started;
  instance.on("response", (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    lastAnswerAt = performance.now();
    latenciesMs.push(responseTime);
    status[statusCode] = (status[statusCode] ?? 0) + 1;
  });
  const result = await instance;
  return {
    sent: latenciesMs.length,
    latenciesMs,
    status,
    errors: result.errors,
    timeouts: result.timeouts,
    // Up to the last answer, not to autocannon's end (its next sampling tick).
    elapsedMs: lastAnswerAt - started,
  };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

export function summary(latencies: readonly number[]): { p50: number; p99: number; n: number } {
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length };
}
