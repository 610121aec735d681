import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Two projects: `workers` runs inside workerd (the Worker, its Durable Objects, the pure modules as the
// Worker runs them); `node` runs what must run in Node: differential tests against the official
// `twilio` package, the CLI tools and the end-to-end harness that drives a real workerd over HTTP.
export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              // Tests never reach the network: an outbound fetch no test mocks (say, an alarm firing
              // after its test restored the fetch spy) gets this answer instead of a DNS lookup.
              outboundService: () => new Response("outbound network is disabled in tests", { status: 503 }),
              // Obviously fake test settings; tests that need others pass their own env to the app.
              bindings: {
                TWILIO_ACCOUNT_SID: "AC00000000000000000000000000000001",
                TWILIO_AUTH_TOKEN: "test-primary-token-not-a-secret",
                TWILIO_API_BASE: "https://twilio.test",
                ORIGIN_URL: "https://origin.test",
                ALERT_WEBHOOK_URL: "https://alerts.test/hook",
                ALERT_SMS_TO: "+15005550001",
                ALERT_SMS_FROM: "+15005550006",
                // test/breaker/storage.test.ts: how many events it writes (npm run storage: 100 000).
                STORAGE_EVENTS: process.env.STORAGE_EVENTS ?? "2000",
                // The pool's runner sets no_handle_cross_request_promise_resolution, so one request
                // cannot wait for a ledger call another request makes: through exports.default each
                // event, and each egress send's reservation, gets its own call (src/config/env.ts).
                // Batching is tested through createApp in one request context
                // (test/breaker/record-batches*.test.ts, test/egress/reservation-batches.test.ts) and in test/node.
                LEDGER_BATCHING: "off",
              },
            },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/**/*.test.ts"],
          exclude: ["test/node/**"],
          // npm test runs this project beside the node project on CI's two cores: a heavy test (a flood of
          // requests, a seeded script) may take several times its time alone, which is no failure.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "node",
          environment: "node",
          include: ["test/node/**/*.test.ts"],
          testTimeout: 60_000,
        },
      },
    ],
  },
});
