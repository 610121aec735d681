// The webhook path feeds the global metrics: verified, rejected by reason, forwarded, duplicates.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";
import { ORIGIN, mockOutbound, twiml } from "../support/origin.ts";
import { PARENT_SID, inboundSms, signedForm } from "../support/twilio.ts";

let outbound: ReturnType<typeof mockOutbound>;
afterEach(() => outbound?.restore());

async function scrape(app: ReturnType<typeof createApp>): Promise<string> {
  const ctx = createExecutionContext();
  const response = await app.fetch(
    new Request("https://guard.example.com/admin/metrics", { headers: { authorization: "Bearer metrics-wiring-admin-token" } }),
    { ...(env as GuardEnv), ADMIN_TOKEN: "metrics-wiring-admin-token" },
    ctx,
  );
  return response.text();
}

function value(text: string, sample: string): number {
  const line = text.split("\n").find((l) => l.startsWith(sample + " "));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe("metrics from the webhook path", () => {
  it("counts verified, forwarded, duplicate and rejected requests", async () => {
    outbound = mockOutbound([[ORIGIN, () => twiml()]]);
    const app = createApp();
    const before = await scrape(app);
    const params = inboundSms(PARENT_SID);
    for (const token of [env.TWILIO_AUTH_TOKEN, env.TWILIO_AUTH_TOKEN, "wrong-token"]) {
      const ctx = createExecutionContext();
      // Not waiting on ctx: the metrics' delayed send sleeps there; the scrape includes this isolate's pending counts.
      await app.fetch(await signedForm("https://guard.example.com/webhooks/sms", params, { token }), env as GuardEnv, ctx);
    }
    const after = await scrape(app);
    const delta = (sample: string) => value(after, sample) - value(before, sample);
    expect(delta('guard_requests_verified_total{via="signature"}')).toBe(2);
    expect(delta('guard_requests_forwarded_total{status="2xx"}')).toBe(2);
    expect(delta("guard_duplicates_total")).toBe(1);
    expect(delta('guard_requests_rejected_total{reason="bad-signature"}')).toBe(1);
  }, 20_000);
});
