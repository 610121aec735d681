// A Worker that drives one account's AccountGuard Durable Object directly (bench/sections/breaker.ts):
// the same RPC the webhook path makes for a lone event, `env.ACCOUNT_GUARD.getByName(sid).recordEvent(event, token, now)`
// (record() on a tree whose AccountGuard has no recordEvent: the A/B's base),
// with events built by the guard's own classifier, `concurrency` calls in flight. No HTTP parsing, no
// signature check, no origin: what is left is the Durable Object's own work and its RPC.
//   POST /drive {sid, n, concurrency, prefix}  →  {n, blocked, duplicates}
import { classifyWebhook } from "../src/ledger/classify.ts";

/** The slice of the AccountGuard namespace binding this driver uses (types/worker types stay out of Node's tsconfig). */
interface Env {
  ACCOUNT_GUARD: {
    getByName(name: string): {
      record(event: unknown, idempotencyToken: string | null, atMs?: number): Promise<{ duplicate: boolean; blocked: boolean }>;
      recordEvent(event: unknown, idempotencyToken: string | null, atMs?: number): Promise<number>;
    };
  };
}

/** Whether the tree's AccountGuard has recordEvent (the verdict as a number: bit 1 duplicate, bit 2 blocked), once known. */
let hasRecordEvent: boolean | undefined;

async function recordOne(g: ReturnType<Env["ACCOUNT_GUARD"]["getByName"]>, event: unknown, token: string): Promise<{ duplicate: boolean; blocked: boolean }> {
  if (hasRecordEvent !== false) {
    try {
      const bits = await g.recordEvent(event, token, Date.now());
      hasRecordEvent = true;
      return { duplicate: (bits & 1) !== 0, blocked: (bits & 2) !== 0 };
    } catch (error) {
      if (hasRecordEvent === true || !(error instanceof Error) || !error.message.includes("does not implement")) throw error;
      hasRecordEvent = false;
    }
  }
  return g.record(event, token, Date.now());
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { sid, n, concurrency, prefix } = (await request.json()) as { sid: string; n: number; concurrency: number; prefix: string };
    let next = 0;
    let blocked = 0;
    let duplicates = 0;
    const lane = async () => {
      while (next < n) {
        const i = next++;
        const messageSid = `SM${prefix}${i.toString(16).padStart(32 - prefix.length, "0")}`;
        const event = classifyWebhook(
          new Map([
            ["AccountSid", sid],
            ["MessageSid", messageSid],
            ["SmsSid", messageSid],
            ["SmsStatus", "received"],
            ["NumSegments", "3"],
            ["NumMedia", "0"],
            ["Body", "hello"],
          ]),
        );
        if (event.kind === "not-billable") throw new Error(event.reason);
        const verdict = await recordOne(env.ACCOUNT_GUARD.getByName(sid), event, `${prefix}-${i}`);
        if (verdict.blocked) blocked++;
        if (verdict.duplicate) duplicates++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    return Response.json({ n, blocked, duplicates });
  },
};
