// Everything the scenario benchmarks share: the Twilio REST stand-in (dev/twilio-standin.ts)
// with the parent account and its subaccounts, the origin and Express child processes, and a prepared
// guard state in which the GuardDirectory already knows every subaccount's token.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startTwilioStandin, type RecordedRequest, type TwilioStandin } from "../../dev/twilio-standin.ts";
import { startChild, type Child } from "./child.ts";
import { inboundSms, sid, signedFormRequest } from "./events.ts";
import { clonePersist, seedDirectoryTokens, startGuard, STATE_DIR, type GuardSettings, type RunningGuard } from "./guard.ts";

export const PARENT_TOKEN = "bench-parent-token-not-a-secret";
export const ADMIN_TOKEN = "bench-admin-token-not-a-secret";

export interface Account {
  sid: string;
  token: string;
}

export interface World {
  parent: Account;
  standin: TwilioStandin;
  origin: Child;
  express: Child;
  /** Subaccounts for the many-accounts scenario; the first 10 are the "10 accounts" case. */
  many: Account[];
  /** Subaccounts tripped one by one in the trip-latency scenario. */
  trip: Account[];
  /** The subaccount under the hot-account burst through the Worker. */
  hot: Account;
  /** The subaccount whose Durable Object is driven directly (bench/do-driver.ts). */
  hotDirect: Account;
  /** Called with each request the stand-in records, and when (performance.now()) it was recorded. */
  onStandinRequest: ((request: RecordedRequest, at: number) => void) | null;
  /** Starts a guard from a copy of the prepared state, with these extra vars. */
  startGuard(vars?: Record<string, string>, options?: Pick<GuardSettings, "inspectorPort" | "driver" | "workerRoot"> & { stateDir?: string }): Promise<RunningGuard>;
  /** Adds subaccounts to the stand-in only (the prepared directory does not know them). */
  addUnknownSubaccounts(n: number): Account[];
  /** Milliseconds the preparation took, and what it did. */
  prepared: { ms: number; seededTokens: number };
  close(): Promise<void>;
}

export async function createWorld(options: { manyAccounts: number; tripAccounts: number }): Promise<World> {
  const started = performance.now();
  const parent = { sid: sid("AC"), token: PARENT_TOKEN };
  const standin = await startTwilioStandin({ parentSid: parent.sid, parentToken: parent.token });
  const add = (): Account => {
    const a = standin.addSubaccount();
    return { sid: a.sid, token: a.authToken };
  };
  const many = Array.from({ length: options.manyAccounts }, add);
  const trip = Array.from({ length: options.tripAccounts }, add);
  const hot = add();
  const hotDirect = add();
  const origin = await startChild("origin-process.ts");
  const express = await startChild("express-process.ts");
  await express.ask({ type: "tokens", entries: [[parent.sid, parent.token], ...many.map((a) => [a.sid, a.token])] });

  const world: World = {
    parent,
    standin,
    origin,
    express,
    many,
    trip,
    hot,
    hotDirect,
    onStandinRequest: null,
    startGuard: async () => {
      throw new Error("not prepared");
    },
    addUnknownSubaccounts: () => [],
    prepared: { ms: 0, seededTokens: 0 },
    async close() {
      await Promise.all([origin.stop(), express.stop(), standin.close()]);
      rmSync(preparedPersist, { recursive: true, force: true });
    },
  };

  // Timestamps for the trip-latency scenario, through the stand-in's public `requests` list.
  const push = standin.requests.push.bind(standin.requests);
  standin.requests.push = (...items: RecordedRequest[]) => {
    const at = performance.now();
    for (const item of items) world.onStandinRequest?.(item, at);
    return push(...items);
  };

  const baseVars = {
    TWILIO_ACCOUNT_SID: parent.sid,
    ORIGIN_URL: origin.url,
    TWILIO_API_BASE: standin.url,
  };
  const secrets = { TWILIO_AUTH_TOKEN: parent.token, ADMIN_TOKEN };

  // Prepare: one real lookup creates the GuardDirectory (the guard lists the stand-in's accounts for
  // the first subaccount's token), then the others are written into its table, as after a long uptime.
  const preparedPersist = mkdtempSync(join(STATE_DIR, "guard-bench-prepared-"));
  const first = await startGuard({ vars: baseVars, secrets, persist: preparedPersist, removePersistOnStop: false });
  try {
    const probe = signedFormRequest(many[0]!.token, first.url, "/webhooks/sms", inboundSms(many[0]!.sid));
    const answer = await fetch(first.url + probe.path, { method: "POST", headers: probe.headers, body: probe.body });
    if (answer.status !== 200) throw new Error(`preparing: first subaccount webhook answered ${answer.status}: ${await answer.text()}`);
    if (!standin.requests.some((r) => r.purpose === "list-accounts")) throw new Error("preparing: the guard never asked the stand-in for its accounts");
  } finally {
    await first.stop();
  }
  const tokens = new Map([...many, ...trip, hot, hotDirect].map((a) => [a.sid, a.token]));
  const seededTokens = await seedDirectoryTokens(preparedPersist, tokens);

  world.startGuard = (vars = {}, { stateDir, ...extra } = {}) =>
    startGuard({ vars: { ...baseVars, ...vars }, secrets, persist: clonePersist(preparedPersist, stateDir), removePersistOnStop: true, ...extra });
  world.addUnknownSubaccounts = (n) => Array.from({ length: n }, add);
  world.prepared = { ms: performance.now() - started, seededTokens };
  return world;
}

