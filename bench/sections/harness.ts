// 0. The harness: why the benchmarks talk to the Worker on a direct socket. The same Worker, started
// by the shared test harness (dev/worker.ts: wrangler's unstable_startWorker, i.e. `wrangler
// dev`'s reload proxy plus Miniflare's entry worker in front) and by bench/lib/guard.ts (a direct
// socket to the Worker), answers the same signed inbound SMS one at a time; the difference is the
// local-development plumbing, which does not exist in production.
import { startGuard as startHarnessGuard } from "../../dev/worker.ts";
import { inboundSms, signedFormRequest } from "../lib/events.ts";
import { runLoad, summary } from "../lib/load.ts";
import type { World } from "../lib/world.ts";

export interface HarnessResult {
  harnessP50: number;
  directP50: number;
  n: number;
}

/** Sequential requests per side (after 50 of warm-up). */
const REQUESTS = 300;

async function sequentialP50(world: World, url: string, requests: number): Promise<number> {
  const parent = world.parent;
  const pool = Array.from({ length: requests + 50 }, () => signedFormRequest(parent.token, url, "/webhooks/sms", inboundSms(parent.sid)));
  await runLoad({ url, pool: pool.slice(0, 50), connections: 1, amount: 50 });
  const result = await runLoad({ url, pool: pool.slice(50), connections: 1, amount: requests });
  if ((result.status["200"] ?? 0) !== requests) throw new Error(`harness check: ${JSON.stringify(result.status)}`);
  return summary(result.latenciesMs).p50;
}

export async function benchHarness(world: World, noTripPolicy: string, requests = REQUESTS): Promise<HarnessResult> {
  const vars = { TWILIO_ACCOUNT_SID: world.parent.sid, ORIGIN_URL: world.origin.url, TWILIO_API_BASE: world.standin.url, GUARD_POLICY: noTripPolicy };
  const harness = await startHarnessGuard({ vars, secrets: { TWILIO_AUTH_TOKEN: world.parent.token } });
  let harnessP50: number;
  try {
    harnessP50 = await sequentialP50(world, harness.url, requests);
  } finally {
    await harness.stop();
  }
  const direct = await world.startGuard({ GUARD_POLICY: noTripPolicy });
  try {
    return { harnessP50, directP50: await sequentialP50(world, direct.url, requests), n: requests };
  } finally {
    await direct.stop();
  }
}
