// The REST egress gate driven by the official `twilio` package's own client, through this repo's adapter
// (`twilio-edge-guard/client`), against the Worker in workerd and the loopback Twilio stand-in. Every
// request that reaches the stand-in is checked against Twilio's documented shapes (its `violations`).
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import twilio from "twilio";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { GuardRequestClient, guardedTwilio } from "twilio-edge-guard/client";
import type { StartedGuard } from "../../dev/worker.ts";
import type { TwilioStandin } from "../../dev/twilio-standin.ts";
import { startEgressStand, type EgressStand } from "../support/egress-stand.ts";

const PARENT_SID = `AC${"e9e55a7e".repeat(4)}`;
const FROM = "+15005550006";
const TO = "+14155552671";
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

let stand: EgressStand;
let standin: TwilioStandin;
let guard: StartedGuard;
let PARENT_TOKEN: string;
let ADMIN_TOKEN: string;

beforeAll(async () => {
  stand = await startEgressStand(PARENT_SID);
  ({ standin, guard, parentToken: PARENT_TOKEN, adminToken: ADMIN_TOKEN } = stand);
});

afterAll(async () => {
  await stand?.stop();
});

const admin = (method: string, path: string, body?: unknown) => stand.admin(method, path, body);

/** A subaccount Twilio knows, with a policy and an egress key, and a twilio client that sends through the gate. */
async function subaccount(policy: Record<string, unknown>) {
  const { sid, authToken, key } = await stand.account(policy);
  const client = twilio(sid, key, { httpClient: new GuardRequestClient(guard.url) });
  return { sid, authToken, key, client };
}

async function rejection(promise: Promise<unknown>): Promise<InstanceType<typeof twilio.RestException>> {
  const error = await promise.then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(twilio.RestException);
  return error as InstanceType<typeof twilio.RestException>;
}

async function dayEvents(sid: string): Promise<number> {
  const detail = (await (await admin("GET", `/admin/accounts/${sid}`)).json()) as { account: { windows: Array<{ window: string; events: number }> } };
  return detail.account.windows.find((w) => w.window === "day")!.events;
}

describe("the twilio client through the gate", () => {
  it("sends a message with an egress key: Twilio sees the parent's credentials and a documented request", async () => {
    const { sid, key, client } = await subaccount({ limits: [{ window: "day", usd: 5 }] });
    const message = await client.messages.create({ to: TO, from: FROM, body: "hello through the gate" });
    expect(message.sid).toMatch(/^SM[0-9a-f]{32}$/);
    expect(message.status).toBe("queued");
    const sent = standin.requests.filter((r) => r.path === `/2010-04-01/Accounts/${sid}/Messages.json`);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.basicUser).toBe(PARENT_SID);
    expect(sent[0]!.form).toMatchObject({ To: TO, From: FROM, Body: "hello through the gate" });
    expect(sent[0]!.form.StatusCallback).toMatch(new RegExp(`^${guard.url}/webhooks/_guard/status/`));
    expect(standin.violations).toEqual([]);
    // Neither the egress key nor the parent's token appears in a log line.
    const logs = guard.logs.map((l) => l.message).join("\n");
    expect(logs).not.toContain(key);
    expect(logs).not.toContain(PARENT_TOKEN);
  });

  it("the message's status callback to the guard binds it: counted once", async () => {
    const { sid, authToken, client } = await subaccount({ limits: [{ window: "day", usd: 5 }] });
    await client.messages.create({ to: TO, from: FROM, body: "counted once" });
    const callbackUrl = standin.requests.filter((r) => r.path.endsWith(`${sid}/Messages.json`)).at(-1)!.form.StatusCallback!;
    const messageSid = standin.messages.at(-1)!.sid;
    expect(await dayEvents(sid)).toBe(1);
    for (const status of ["sent", "delivered"]) {
      const params = { AccountSid: sid, MessageSid: messageSid, SmsSid: messageSid, MessageStatus: status, SmsStatus: status, To: TO, From: FROM, ApiVersion: "2010-04-01" };
      const response = await fetch(callbackUrl, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": twilio.getExpectedTwilioSignature(authToken, callbackUrl, params) },
        body: new URLSearchParams(params).toString(),
      });
      expect(response.status).toBe(204);
    }
    // Status callbacks are recorded after the answer: wait until the ledger has seen the last one.
    let recent: Array<{ sid: string; status: string; counted: boolean }> = [];
    for (let i = 0; i < 100 && !recent.some((e) => e.sid === messageSid && e.status === "delivered"); i++) {
      const detail = (await (await admin("GET", `/admin/accounts/${sid}`)).json()) as { account: { recentEvents: typeof recent } };
      recent = detail.account.recentEvents;
    }
    expect(recent.filter((e) => e.sid === messageSid).map((e) => [e.status, e.counted])).toEqual([["delivered", false], ["sent", false]]);
    expect(await dayEvents(sid)).toBe(1);
  });

  it("makes a call with TimeLimit set to maxCallMinutes", async () => {
    const { sid, client } = await subaccount({ limits: [{ window: "day", usd: 5 }], egress: { maxCallMinutes: 15 } });
    const callResource = await client.calls.create({ to: TO, from: FROM, url: "https://app.example/twiml" });
    expect(callResource.sid).toMatch(/^CA[0-9a-f]{32}$/);
    const sent = standin.requests.filter((r) => r.path === `/2010-04-01/Accounts/${sid}/Calls.json` && r.method === "POST");
    expect(sent[0]!.form).toMatchObject({ To: TO, From: FROM, Url: "https://app.example/twiml", TimeLimit: "900" });
    expect(standin.violations).toEqual([]);
  });

  it("refuses the send past the budget as RestException 403 / 20403", async () => {
    const { client } = await subaccount({ limits: [{ window: "day", events: 1 }], action: "block" });
    await client.messages.create({ to: TO, from: FROM, body: "one" });
    const error = await rejection(client.messages.create({ to: TO, from: FROM, body: "two" }));
    expect({ status: error.status, code: error.code, moreInfo: error.moreInfo }).toEqual({ status: 403, code: 20403, moreInfo: "https://www.twilio.com/docs/errors/20403" });
  });

  it("refuses a country outside the policy as 400 / 21408 and a burst to one number as 429 / 20429", async () => {
    const { client } = await subaccount({ limits: [], egress: { countries: ["US"], perDestination: { window: "hour", max: 1 } } });
    const country = await rejection(client.messages.create({ to: "+37360123456", from: FROM, body: "x" }));
    expect([country.status, country.code]).toEqual([400, 21408]);
    await client.messages.create({ to: TO, from: FROM, body: "x" });
    const burst = await rejection(client.messages.create({ to: TO, from: FROM, body: "x" }));
    expect([burst.status, burst.code]).toEqual([429, 20429]);
  });

  it("refuses wrong credentials as 401 / 20003 and forwards nothing", async () => {
    const { sid } = standin.addSubaccount();
    const before = standin.requests.length;
    const client = guardedTwilio(guard.url, sid, `egk${"0".repeat(56)}`);
    const error = await rejection(client.messages.create({ to: TO, from: FROM, body: "x" }));
    expect([error.status, error.code]).toEqual([401, 20003]);
    expect(standin.requests.length).toBe(before);
  });

  it("takes the parent's own token as a drop-in: forwarded unchanged, gated the same", async () => {
    const client = guardedTwilio(guard.url, PARENT_SID, PARENT_TOKEN);
    const message = await client.messages.create({ to: TO, from: FROM, body: "from the parent" });
    expect(message.sid).toMatch(/^SM/);
    expect(standin.violations).toEqual([]);
  });

  it("races 50 concurrent sends against a budget of 10: exactly 10 reach Twilio", async () => {
    const { sid, client } = await subaccount({ limits: [{ window: "day", events: 10 }], action: "block" });
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => client.messages.create({ to: `+1415555${String(2000 + i)}`, from: FROM, body: `race ${i}` })));
    const ok = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(ok).toHaveLength(10);
    expect(refused).toHaveLength(40);
    for (const r of refused) expect([(r.reason as { status: number }).status, (r.reason as { code: number }).code]).toEqual([403, 20403]);
    expect(standin.messages.filter((m) => m.accountSid === sid)).toHaveLength(10);
    expect(standin.violations).toEqual([]);
    // In workerd the racing sends share reservation calls (src/egress/reservation-batches.ts). The isolate
    // flushes its counters at most every 5 s, at the end of a request: poll with requests.
    await vi.waitFor(async () => {
      await fetch(`${guard.url}/healthz`);
      const text = await (await admin("GET", "/admin/metrics")).text();
      const sum = (name: string) => [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "gm"))].reduce((n, m) => n + Number(m[1]), 0);
      expect(sum("guard_egress_reserve_call_sends_total")).toBeGreaterThanOrEqual(50);
      expect(sum("guard_egress_reserve_calls_total")).toBeLessThan(sum("guard_egress_reserve_call_sends_total"));
    }, { timeout: 20_000, interval: 500 });
  });

  it("the demo's `npm run send` sends through the gate and is refused past the budget", async () => {
    const { sid } = standin.addSubaccount();
    expect((await admin("PUT", `/admin/accounts/${sid}/policy`, { limits: [{ window: "minute", events: 3 }] })).status).toBe(200);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ["tools/send.ts", "--guard", guard.url, "--account", sid, "--admin-token", ADMIN_TOKEN, "--count", "4"], { cwd: ROOT }, (error, out, err) => {
        if (error) reject(new Error(`${error.message}\n${err}`));
        else resolve(out);
      });
    });
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^egress key [0-9a-f]{16} issued/);
    expect(lines.slice(1).map((l) => l.trim().split(/\s+/).slice(1, 2)[0])).toEqual(["sent", "sent", "sent", "refused"]);
    expect(lines[4]).toContain("403 20403");
    expect(stdout).not.toMatch(/egk[0-9a-f]{56}/);
  });

  it("counts sends allowed and refused by reason in /admin/metrics", async () => {
    const text = await (await admin("GET", "/admin/metrics")).text();
    expect(text).toMatch(/guard_egress_sends_total\{outcome="allowed",reason="none"\} \d+/);
    expect(text).toMatch(/guard_egress_sends_total\{outcome="refused",reason="limit"\} \d+/);
    expect(text).toMatch(/guard_egress_sends_total\{outcome="refused",reason="country"\} 1/);
    expect(text).toMatch(/guard_egress_refused_total\{reason="credentials"\} \d+/);
  });
});
