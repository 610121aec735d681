// Injected faults against the real Worker over HTTP (CONTRACT.md): the origin down, silent past 10 s
// or failing; Twilio's REST API failing, throttling or hanging while a trip suspends a subaccount;
// hundreds of concurrent requests racing across one limit; Twilio's retries. Each test uses its own
// subaccount (the policy is 10 events a day per account) and its own origin path, so tests can run
// concurrently; the ledger is checked through the front door (the breaker trips exactly at the limit).
//
//   E2E_HEAVY=1   2 000 concurrent requests instead of 500, and more retry rounds
import { afterAll, describe, expect, it } from "vitest";
import {
  TRIP_EFFECTS,
  dayEventsReach,
  e2eForFile,
  effectsSettled,
  eventually,
  expectLedgerAt,
  inboundCall,
  inboundSms,
  messageStatus,
  notBillable,
  signForm,
  formBody,
  startE2E,
  uniqueSid,
  type Account,
  type Answer,
  type E2E,
  type Pairs,
} from "./harness.ts";

const HEAVY = process.env.E2E_HEAVY === "1";
/** Events per day per account: small, so a test reaches its limit in a few requests. */
const LIMIT = 10;
const POLICY = JSON.stringify({ limits: [{ window: "day", events: LIMIT }], warnAt: 0.8, action: "suspend" });
/** CONTRACT: the origin gets 10 s; the guard's 502 must come at about that time, not much later. */
const ORIGIN_DEADLINE_MS = 10_000;
/** How long a suspension retried after ≤ 3 failures may take: backoff ≤ 1 + 2 + 4 s, plus a hung call's 10 s. */
const SUSPENSION_WAIT_MS = 25_000;
const CONCURRENT = HEAVY ? 2_000 : 500;
const RETRY_ROUNDS = HEAVY ? 6 : 3;

let e2e: E2E;
e2eForFile({ vars: { GUARD_POLICY: POLICY } }, (started) => (e2e = started));

let pathCounter = 0;
/** A path of its own per test, so origin behaviours and hits never mix between concurrent tests. */
function ownPath(label: string): string {
  pathCounter += 1;
  return `/webhooks/${label}-${pathCounter}/sms`;
}

function send(account: Account, pairs: Pairs, path: string, headers: Array<[string, string]> = []): Promise<Answer> {
  return e2e.send(e2e.signedForm(account, pairs, { path, headers }));
}

function originHits(path: string) {
  const originPath = path.replace(/^\/webhooks/, "");
  return e2e.origin.hits.filter((h) => h.path === originPath);
}

/** The ledger holds exactly `counted` events for the account: the next LIMIT - counted pass, one more trips. */
async function expectCounted(account: Account, counted: number): Promise<void> {
  const { problems } = await expectLedgerAt(e2e, account, LIMIT, counted);
  expect(problems).toEqual([]);
}

/** Crosses the account's limit: LIMIT events pass, the next is blocked. Returns the blocked answer. */
async function trip(account: Account, path: string): Promise<Answer> {
  for (let i = 0; i < LIMIT; i++) {
    const answer = await send(account, inboundSms(account.sid), path);
    expect(answer.headers["x-guard-breaker"], `event ${i + 1}`).toBeUndefined();
  }
  const blocked = await send(account, inboundSms(account.sid), path);
  expect(blocked.status).toBe(200);
  expect(blocked.headers["x-guard-breaker"]).toBe("open");
  expect(blocked.body).toBe("<Response/>");
  return blocked;
}

function failedAttemptLogs(sid: string): string[] {
  return e2e
    .logs()
    .map((l) => l.message)
    .filter((m) => m.includes("outbox-attempt-failed") && m.includes(sid) && m.includes('"kind":"suspend"'));
}

describe("the origin", () => {
  // Not concurrent: it takes the origin down for everyone.
  it("down (connection refused): 502, and Twilio's retry once it is back is forwarded as a duplicate, counted once", async () => {
    const sub = e2e.subaccount();
    const path = ownPath("down");
    const pairs = inboundSms(sub.sid);
    await e2e.origin.down();
    let first: Answer;
    try {
      first = await send(sub, pairs, path);
    } finally {
      await e2e.origin.up();
    }
    expect(first.status).toBe(502);
    expect(first.headers["x-guard-breaker"]).toBeUndefined();
    const retry = await send(sub, pairs, path);
    expect(retry.status).toBe(200);
    expect(retry.body).toBe("<Response><Message>ok</Message></Response>");
    const hits = originHits(path);
    expect(hits).toHaveLength(1);
    expect(hits[0]!.headers["x-guard-duplicate"]).toBe("1");
    await expectCounted(sub, 1);
  });
});

describe.concurrent("faults, concurrently", () => {
  it("origin silent past 10 s: 502 at about 10 s; the retry is forwarded as a duplicate, counted once", async () => {
    const sub = e2e.subaccount();
    const path = ownPath("slow");
    const pairs = inboundSms(sub.sid);
    e2e.origin.when(path.replace(/^\/webhooks/, ""), { kind: "slow", delayMs: ORIGIN_DEADLINE_MS + 3_000 });
    const first = await send(sub, pairs, path);
    expect(first.status).toBe(502);
    expect(first.ms).toBeGreaterThanOrEqual(ORIGIN_DEADLINE_MS - 500);
    expect(first.ms).toBeLessThan(ORIGIN_DEADLINE_MS + 2_500);
    e2e.origin.when(path.replace(/^\/webhooks/, ""), { kind: "answer", status: 200, body: "<Response/>", contentType: "text/xml" });
    const retry = await send(sub, pairs, path);
    expect(retry.status).toBe(200);
    expect(originHits(path).at(-1)!.headers["x-guard-duplicate"]).toBe("1");
    await expectCounted(sub, 1);
  });

  it("origin answering 500: relayed as it is; the retry is a duplicate, counted once", async () => {
    const sub = e2e.subaccount();
    const path = ownPath("fails");
    const pairs = inboundSms(sub.sid);
    e2e.origin.when(path.replace(/^\/webhooks/, ""), { kind: "answer", status: 500, body: "origin broke", contentType: "text/plain" });
    const first = await send(sub, pairs, path);
    expect(first.status).toBe(500);
    expect(first.body).toBe("origin broke");
    expect(first.headers["content-type"]).toBe("text/plain");
    const retry = await send(sub, pairs, path);
    expect(retry.status).toBe(500);
    expect(originHits(path).map((h) => h.headers["x-guard-duplicate"] ?? "-")).toEqual(["-", "1"]);
    await expectCounted(sub, 1);
  });

  it("origin resetting the connection: 502, counted once across retries", async () => {
    const sub = e2e.subaccount();
    const path = ownPath("reset");
    const pairs = inboundSms(sub.sid);
    e2e.origin.when(path.replace(/^\/webhooks/, ""), { kind: "reset" });
    for (let i = 0; i < 3; i++) expect((await send(sub, pairs, path)).status).toBe(502);
    await expectCounted(sub, 1);
  });

  const restFaults: Array<[string, Array<Parameters<E2E["standin"]["failNext"]>[1]>]> = [
    ["answering 500 twice", [{ status: 500 }, { status: 500 }]],
    ["answering 429 (20429) twice", [{ status: 429, code: 20429, message: "Too Many Requests" }, { status: 429, code: 20429, message: "Too Many Requests" }]],
    ["dropping the connection, then answering 503", ["drop", { status: 503 }]],
    ["hanging (no answer until the client gives up)", ["hang"]],
  ];
  for (const [label, failures] of restFaults) {
    it(`Twilio REST ${label} during a trip: suspended once, attempts recorded, live calls ended, one alert`, async () => {
      const sub = e2e.subaccount();
      const call = e2e.standin.addCall(sub.sid);
      for (const failure of failures) {
        e2e.standin.failNext((r) => r.purpose === "suspend" && r.path.endsWith(`/Accounts/${sub.sid}.json`), failure, 1);
      }
      await trip(sub, ownPath("rest"));
      await eventually(() => expect(e2e.standin.accounts.get(sub.sid)!.status).toBe("suspended"), SUSPENSION_WAIT_MS, 100);
      await eventually(() => expect(e2e.standin.calls.get(call)!.status).toBe("completed"), 5_000);
      // The guard owes nothing more (each effect's last outcome is final): what reached Twilio is all there is.
      const { history } = await effectsSettled(e2e, sub.sid);
      expect(history.filter((h) => h.kind === "suspend" && h.outcome === "done")).toHaveLength(1);
      expect(e2e.suspensions(sub.sid)).toBe(1);
      expect(e2e.suspendAttempts(sub.sid)).toBe(failures.length + 1);
      expect(failedAttemptLogs(sub.sid)).toHaveLength(failures.length);
      expect(e2e.alertsFor(sub.sid, "trip")).toHaveLength(1);
      // Still blocked at the edge.
      expect((await send(sub, inboundSms(sub.sid), ownPath("rest"))).headers["x-guard-breaker"]).toBe("open");
    });
  }

  it("the alert receiver failing twice: the trip alert is retried and delivered once", async () => {
    const sub = e2e.subaccount();
    e2e.alerts.failNext(2, 500, (json) => json?.account === sub.sid && json?.level === "trip");
    await trip(sub, ownPath("alert"));
    await eventually(() => expect(e2e.alertsFor(sub.sid, "trip")).toHaveLength(1), SUSPENSION_WAIT_MS, 100);
    await effectsSettled(e2e, sub.sid, TRIP_EFFECTS, SUSPENSION_WAIT_MS);
    expect(e2e.alertsFor(sub.sid, "trip")).toHaveLength(1);
    expect(e2e.alerts.posts.filter((p) => p.json?.account === sub.sid && p.json?.level === "trip" && p.status === 500)).toHaveLength(2);
    expect(e2e.suspensions(sub.sid)).toBe(1);
  });

  it(`Twilio retries: ${LIMIT} events resent ${RETRY_ROUNDS}× (concurrently, with and without idempotency tokens) count ${LIMIT}; the next trips`, async () => {
    const sub = e2e.subaccount();
    const path = ownPath("retries");
    const events = Array.from({ length: LIMIT - 1 }, () => ({ pairs: inboundSms(sub.sid), token: `idem-${uniqueSid("SM")}` }));
    // One outbound message's status callbacks (billable from "sent"): one more event, priced once.
    const outbound = uniqueSid("SM");
    const statuses = ["queued", "sent", "delivered"].map((s) => messageStatus(sub.sid, outbound, s));
    for (const e of events) expect((await send(sub, e.pairs, path, [["I-Twilio-Idempotency-Token", e.token]])).headers["x-guard-breaker"]).toBeUndefined();
    for (const s of statuses) expect((await send(sub, s, ownPath("status"))).status).toBe(200);
    const retries: Array<Promise<Answer>> = [];
    for (let round = 0; round < RETRY_ROUNDS; round++) {
      for (const e of events) retries.push(send(sub, e.pairs, path, round % 2 === 0 ? [["I-Twilio-Idempotency-Token", e.token]] : []));
      for (const s of statuses) retries.push(send(sub, s, ownPath("status")));
    }
    const answers = await Promise.all(retries);
    expect(answers.filter((a) => a.status !== 200 || a.headers["x-guard-breaker"] !== undefined)).toEqual([]);
    expect(originHits(path).filter((h) => h.headers["x-guard-duplicate"] === "1")).toHaveLength(events.length * RETRY_ROUNDS);
    // Status callbacks are recorded after the answer (waitUntil): wait until the ledger holds all of them.
    await dayEventsReach(e2e, sub.sid, LIMIT);
    const next = await send(sub, inboundSms(sub.sid), path);
    expect(next.headers["x-guard-breaker"]).toBe("open");
    await eventually(() => expect(e2e.suspensions(sub.sid)).toBe(1), SUSPENSION_WAIT_MS);
  });

  it("Twilio retrying a usage-trigger callback three times: one trip, one suspension, one alert", async () => {
    const sub = e2e.subaccount();
    const url = `${e2e.base}/usage-trigger`;
    const pairs: Pairs = [
      ["AccountSid", sub.sid],
      ["UsageTriggerSid", uniqueSid("UT")],
      ["UsageCategory", "totalprice"],
      ["CurrentValue", "51.20"],
      ["TriggerValue", "50.00"],
      ["IdempotencyToken", `trigger-${uniqueSid("SM")}`],
      ["DateFired", new Date().toUTCString()],
    ];
    const request = {
      method: "POST",
      path: "/usage-trigger",
      headers: [
        ["Content-Type", "application/x-www-form-urlencoded"],
        ["X-Twilio-Signature", signForm(sub.token, url, pairs)],
      ] as Array<[string, string]>,
      body: formBody(pairs),
    };
    const answers = [await e2e.send(request), ...(await Promise.all([e2e.send(request), e2e.send(request)]))];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(answers.map((a) => (JSON.parse(a.body) as { tripped: boolean }).tripped)).toEqual([true, false, false]);
    await eventually(() => expect(e2e.standin.accounts.get(sub.sid)!.status).toBe("suspended"), SUSPENSION_WAIT_MS);
    await effectsSettled(e2e, sub.sid, TRIP_EFFECTS, SUSPENSION_WAIT_MS);
    expect(e2e.suspensions(sub.sid)).toBe(1);
    expect(e2e.alertsFor(sub.sid, "trip")).toHaveLength(1);
    // While open: an inbound call is rejected at the edge, a status callback still reaches the origin.
    const voicePath = ownPath("trigger-voice");
    const call = await send(sub, inboundCall(sub.sid), voicePath);
    expect([call.status, call.headers["content-type"], call.headers["x-guard-breaker"], call.body]).toEqual([
      200,
      "text/xml",
      "open",
      '<Response><Reject reason="busy"/></Response>',
    ]);
    expect(originHits(voicePath)).toHaveLength(0);
    const statusPath = ownPath("trigger-status");
    const callback = await send(sub, messageStatus(sub.sid, uniqueSid("SM"), "delivered"), statusPath);
    expect(callback.status).toBe(200);
    expect(callback.headers["x-guard-breaker"]).toBeUndefined();
    expect(originHits(statusPath)).toHaveLength(1);
  });
});

describe("a race across one limit", () => {
  it(`${CONCURRENT} concurrent messages: exactly ${LIMIT} reach the origin, the rest are blocked, one suspension, one alert`, async () => {
    const sub = e2e.subaccount();
    const path = ownPath("race");
    // Warm the isolate's token cache with a request that counts nothing, as a live account would be.
    expect((await send(sub, notBillable(sub.sid), ownPath("warm"))).status).toBe(200);
    const requests = Array.from({ length: CONCURRENT }, () => e2e.signedForm(sub, inboundSms(sub.sid), { path }));
    const answers = await Promise.all(requests.map((r) => e2e.send(r, 60_000)));
    const tally: Record<string, number> = {};
    for (const a of answers) {
      const key = `${a.status} ${a.headers["x-guard-breaker"] ?? "closed"}`;
      tally[key] = (tally[key] ?? 0) + 1;
    }
    expect(tally).toEqual({ "200 closed": LIMIT, "200 open": CONCURRENT - LIMIT });
    expect(originHits(path)).toHaveLength(LIMIT);
    await eventually(() => expect(e2e.suspensions(sub.sid)).toBe(1), SUSPENSION_WAIT_MS);
    await effectsSettled(e2e, sub.sid, TRIP_EFFECTS, SUSPENSION_WAIT_MS);
    expect(e2e.suspendAttempts(sub.sid)).toBe(1);
    expect(e2e.alertsFor(sub.sid, "trip")).toHaveLength(1);
  }, 120_000);
});

describe("this file's Worker", () => {
  it("made only well-formed REST calls, never touched the parent, and leaked no secret", () => {
    expect(e2e.standin.violations).toEqual([]);
    expect(e2e.suspendAttempts(e2e.parent.sid)).toBe(0);
    expect(e2e.leaks()).toEqual([]);
  });
});

// ---- Account lookups under load: Worker bugs, written as the contract expects -------------------------------------

describe.concurrent("account lookups under load (each on a Worker of its own)", () => {
  const extra: E2E[] = [];
  afterAll(async () => {
    await Promise.all(extra.map((x) => x.stop()));
  });
  const listings = (env: E2E) => env.standin.requests.filter((r) => r.purpose === "list-accounts").length;

  it("a new subaccount's first 500 concurrent messages are all verified, with one account listing", async () => {
    const env = await startE2E({ vars: { GUARD_POLICY: POLICY } });
    extra.push(env);
    const sub = env.subaccount();
    const answers = await Promise.all(Array.from({ length: 500 }, () => env.send(env.signedForm(sub, inboundSms(sub.sid)), 60_000)));
    const refused = answers.filter((a) => a.status === 403).length;
    const perSid = env.standin.requests.filter((r) => r.purpose === "fetch-account").length;
    expect(env.standin.violations).toEqual([]);
    expect(env.leaks()).toEqual([]);
    expect({ refused, listings: listings(env), perSid }).toEqual({ refused: 0, listings: 1, perSid: 0 });
  }, 60_000);

  it("200 forged AccountSids cost no per-SID lookup and at most one listing: known and new subaccounts keep working", async () => {
    const env = await startE2E({ vars: { GUARD_POLICY: POLICY } });
    extra.push(env);
    const known = env.subaccount();
    const fresh = env.subaccount();
    expect((await env.send(env.signedForm(known, inboundSms(known.sid)))).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) {
      const forged = { sid: uniqueSid("AC"), token: "forged-token-0123456789" };
      statuses.push((await env.send(env.signedForm(forged, inboundSms(forged.sid)))).status);
    }
    expect(statuses.every((s) => s === 403)).toBe(true);
    expect(env.standin.requests.filter((r) => r.purpose === "fetch-account")).toEqual([]);
    // (A run that straddles the minute may list once more.)
    expect(listings(env)).toBeLessThanOrEqual(2);
    const again = await env.send(env.signedForm(known, inboundSms(known.sid)));
    expect(`${again.status} ${again.body.trim()}`).toBe("200 <Response><Message>ok</Message></Response>");
    // A subaccount the listing already holds: its first webhook is verified, not 503.
    expect((await env.send(env.signedForm(fresh, inboundSms(fresh.sid)))).status).toBe(200);
    expect(env.standin.violations).toEqual([]);
    expect(env.leaks()).toEqual([]);
  }, 60_000);
});
