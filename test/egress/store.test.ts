// Schema 5's code runs on an account without the egress gate's tables, as a later schema that creates
// them on the account's first gate write (and not with every account: each table is parsed each time an
// evicted object's database is opened, docs/benchmarks.md section 5) will leave most accounts. Such an
// account reads as having no reservations, keys, counters or countries, and only a send or an issued
// key creates them.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { classifyWebhook, type BillableEvent } from "../../src/ledger/classify.ts";
import { issueEgressKey } from "../../src/egress/keys.ts";
import { sendFacts } from "../../src/egress/send.ts";
import type { ReserveRequest } from "../../src/egress/protocol.ts";
import { dropEgressTables, EGRESS_TABLE_NAMES, guard, quiesce } from "../support/guard.ts";
import { ALERTS, TWILIO_API, mockOutbound } from "../support/origin.ts";
import { callStatus, inboundSms, messageStatus, uniqueSid, type Params } from "../support/twilio.ts";

const EGRESS = [...EGRESS_TABLE_NAMES];
const POLICY = { limits: [{ window: "day", usd: 50 }] };

let outbound: ReturnType<typeof mockOutbound>;
beforeEach(() => {
  outbound = mockOutbound([[TWILIO_API, () => new Response("{}", { status: 404 })], [ALERTS, () => new Response("ok")]]);
});
/** Accounts this file's tests made: quiesced after each test (support/guard.ts quiesce), so no retry logs after the file. */
const made: string[] = [];
afterEach(async () => {
  for (const sid of made.splice(0)) await quiesce(sid);
  outbound.restore();
});

function event(params: Params): BillableEvent {
  const e = classifyWebhook(Object.fromEntries(params));
  if (e.kind === "not-billable") throw new Error(e.reason);
  return e;
}

/** The egress tables the account's database holds. */
async function egressTables(sid: string): Promise<string[]> {
  return runInDurableObject(guard(sid), (_i, state) =>
    state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'egress\\_%' ESCAPE '\\' ORDER BY name").toArray().map((r) => r.name),
  );
}

/** An account written (a policy, one inbound SMS) whose database holds no egress table, seen by a new instance. */
async function accountWithoutTables(): Promise<string> {
  const sid = uniqueSid();
  made.push(sid);
  await guard(sid).setPolicy(sid, POLICY);
  await guard(sid).record(event(inboundSms(sid)), null);
  await dropEgressTables(sid);
  return sid;
}

function reservation(sid: string, to = "+14155552671"): ReserveRequest {
  return { accountSid: sid, atMs: Date.now(), mode: "enforce", key: null, send: sendFacts("message", new URLSearchParams({ To: to, Body: "hi" })) };
}

describe("an account without the egress gate's tables", () => {
  it("records inbound events and status callbacks (a call's rate, a message's reservation: none) and creates no table", async () => {
    const sid = await accountWithoutTables();
    await guard(sid).record(event(inboundSms(sid)), null);
    await guard(sid).record(event(messageStatus(sid, uniqueSid("SM"), "delivered")), null);
    await guard(sid).record(event(callStatus(sid, uniqueSid("CA"), "completed", { CallDuration: "61" })), null);
    const day = (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
    expect(day.events).toBe(4);
    expect(await egressTables(sid)).toEqual([]);
  });

  it("answers the admin views empty (keys, usage by country) and creates no table", async () => {
    const sid = await accountWithoutTables();
    expect(await guard(sid).listEgressKeys()).toEqual([]);
    const usage = await guard(sid).usage("hour");
    expect(usage.totals.events).toBe(1);
    expect(usage.countries).toEqual([]);
    expect(await guard(sid).revokeEgressKey(sid, "0123456789abcdef")).toBe(false);
    expect(await guard(sid).checkEgressKey(sid, "0123456789abcdef", "f".repeat(64))).toBe(false);
    expect(await egressTables(sid)).toEqual([]);
  });

  it("prunes from its alarm without them", async () => {
    const sid = await accountWithoutTables();
    await runInDurableObject(guard(sid), (_i, state) => {
      state.storage.sql.exec("INSERT INTO seen (key, at_ms) VALUES ('SMold:received', 0)");
      state.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('prune_at', '0')");
    });
    await runDurableObjectAlarm(guard(sid));
    const after = await runInDurableObject(guard(sid), (_i, state) => ({
      old: state.storage.sql.exec("SELECT key FROM seen WHERE key = 'SMold:received'").toArray(),
      due: Number(state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'prune_at'").one().value),
    }));
    expect(after.old).toEqual([]);
    expect(after.due).toBeGreaterThan(0);
  });

  it("creates them on its first gate send, which is reserved, settled and counted once", async () => {
    const sid = await accountWithoutTables();
    const answer = await guard(sid).reserveSend(reservation(sid));
    expect(answer).toMatchObject({ ok: true, newCountry: true });
    expect(await egressTables(sid)).toEqual(EGRESS);
    if (!answer.ok) throw new Error(answer.refusal.reason);
    const messageSid = uniqueSid("SM");
    await guard(sid).settleSend(sid, answer.reservationId, { type: "accepted", sid: messageSid, priceUsd: 0.0079 });
    // Its status callback finds the send counted by its reservation.
    await guard(sid).record(event(messageStatus(sid, messageSid, "delivered", { Price: "-0.0079" })), null);
    const day = (await guard(sid).snapshot()).windows.find((w) => w.window === "day")!;
    expect(day.events).toBe(2);
    expect((await guard(sid).usage("hour")).countries).toEqual([expect.objectContaining({ country: "US", sends: 1 })]);
  });

  it("creates them when a key is issued, and the key then passes", async () => {
    const sid = await accountWithoutTables();
    const key = await issueEgressKey();
    expect(await guard(sid).issueEgressKey(sid, key.id, key.hash)).toEqual({ ok: true });
    expect(await egressTables(sid)).toEqual(EGRESS);
    await evictDurableObject(guard(sid));
    expect(await guard(sid).checkEgressKey(sid, key.id, key.hash)).toBe(true);
    expect((await guard(sid).listEgressKeys()).map((k) => k.id)).toEqual([key.id]);
    const answer = await guard(sid).reserveSend({ ...reservation(sid), key: { id: key.id, hash: key.hash } });
    expect(answer.ok).toBe(true);
  });

  it("creates nothing for a send refused with an unknown key", async () => {
    const sid = await accountWithoutTables();
    const answer = await guard(sid).reserveSend({ ...reservation(sid), key: { id: "0123456789abcdef", hash: "f".repeat(64) } });
    expect(answer).toEqual({ ok: false, refusal: expect.objectContaining({ reason: "credentials" }) });
    expect(await egressTables(sid)).toEqual([]);
  });

  it("answers each send of a batch on a new instance as one by one (the tables created by the first)", async () => {
    const sid = await accountWithoutTables();
    const outcomes = await guard(sid).reserveSends(sid, [reservation(sid), reservation(sid, "+447700900123")]);
    expect(outcomes).toEqual([expect.objectContaining({ ok: true, newCountry: true }), expect.objectContaining({ ok: true, newCountry: true })]);
    expect(await egressTables(sid)).toEqual(EGRESS);
  });
});
