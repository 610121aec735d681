// The adversarial corpus (corpus.ts) against the real Worker over HTTP: one Worker per WEBHOOK_AUTH
// mode (signature, basic, both) and one in GUARD_MODE=report-only (the signature rows again, with that
// mode's answers), each beside its own origin, alert receiver and Twilio stand-in. Every row is checked for its
// status, the headers it names, and whether the origin saw it; at the end, each account's ledger is
// checked through the front door (the breaker must trip exactly at its event limit, so nothing refused
// was counted), the stand-in must have seen no REST storm and no malformed call, and no secret may
// appear in any answer, alert or log line.
//
//   E2E_HEAVY=1        adds E2E_MUTATIONS (default 600) seeded random one-character mutations
//   E2E_SEED=<uint32>  replays a run's random mutations (the seed is printed)
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CORPUS, SHARED_KEY_ID, randomMutations, reportOnlyRows, type AccountRole, type CorpusContext, type CorpusExpectation, type CorpusRow, type WorkerKind } from "./corpus.ts";
import { BASIC_USER, SECRETS, awayFromUtcMidnight, eventually, expectLedgerAt, startE2E, uniqueSid, type Answer, type E2E } from "./harness.ts";

const HEAVY = process.env.E2E_HEAVY === "1";
const SEED = process.env.E2E_SEED ? Number(process.env.E2E_SEED) >>> 0 : randomBytes(4).readUInt32BE(0);
/** A few random mutations in every run keep the corpus from going stale; the heavy run adds many. */
const RANDOM_MUTATIONS = HEAVY ? Number(process.env.E2E_MUTATIONS ?? 600) : 12;
console.log(`adversarial corpus: E2E_SEED=${SEED}${HEAVY ? " (heavy)" : ""}`);

const BASE_ROWS: CorpusRow[] = [...CORPUS, ...randomMutations(SEED, RANDOM_MUTATIONS)];
const ROWS: CorpusRow[] = [...BASE_ROWS, ...reportOnlyRows(BASE_ROWS)];
const KINDS: WorkerKind[] = ["signature", "basic", "both", "report-only"];
const kindOf = (row: CorpusRow): WorkerKind => row.worker ?? "signature";
const roleOf = (e: CorpusExpectation): AccountRole => e.countedOn ?? "victim";

function expectedCounted(kind: WorkerKind, role: AccountRole): number {
  return ROWS.filter((r) => kindOf(r) === kind && r.expect.counted && roleOf(r.expect) === role).length;
}

/** Every account's event limit: above what the corpus may count, so only extra counting trips early. */
const LIMIT = Math.max(...KINDS.flatMap((k) => (["victim", "other", "parent"] as const).map((r) => expectedCounted(k, r)))) + 3;
const POLICY = JSON.stringify({ limits: [{ window: "day", events: LIMIT }], warnAt: 0.8, action: "suspend" });
const BASIC_SECRETS = { BASIC_AUTH_USER: BASIC_USER, BASIC_AUTH_PASSWORD: SECRETS.basicPassword };
const SHARED_KEYS = { TWILIO_WEBHOOK_SHARED_KEYS: JSON.stringify({ [SHARED_KEY_ID]: SECRETS.sharedKeySecret }) };
const GOOD_BASIC = `Basic ${Buffer.from(`${BASIC_USER}:${SECRETS.basicPassword}`).toString("base64")}`;

interface Env {
  e2e: E2E;
  ctx: CorpusContext;
}
const envs = new Map<WorkerKind, Env>();
const results: Array<{ row: CorpusRow; problems: string[] }> = [];

async function startEnv(kind: WorkerKind): Promise<Env> {
  const e2e = await startE2E({
    vars: kind === "report-only" ? { GUARD_POLICY: POLICY, GUARD_MODE: "report-only" } : { GUARD_POLICY: POLICY, WEBHOOK_AUTH: kind },
    secrets: { ...(kind === "basic" || kind === "both" ? BASIC_SECRETS : {}), ...SHARED_KEYS },
  });
  const foreign = e2e.subaccount();
  // The stand-in answers for it, but it belongs to another parent: not ours to verify or count.
  e2e.standin.accounts.get(foreign.sid)!.ownerAccountSid = uniqueSid("AC");
  const { sid: closedSid, authToken: closedToken } = e2e.standin.addSubaccount({ status: "closed" });
  return {
    e2e,
    ctx: {
      base: e2e.base,
      parent: e2e.parent,
      victim: e2e.subaccount(),
      other: e2e.subaccount(),
      foreign,
      unknown: { sid: uniqueSid("AC"), token: randomBytes(16).toString("hex") },
      closed: { sid: closedSid, token: closedToken },
    },
  };
}

let startedAt = Date.now();
beforeAll(async () => {
  await awayFromUtcMidnight(120_000);
  startedAt = Date.now();
  const started = await Promise.all(KINDS.map(startEnv));
  KINDS.forEach((kind, i) => envs.set(kind, started[i]!));
}, 120_000);

afterAll(async () => {
  const held = results.filter((r) => r.problems.length === 0).length;
  console.log(`adversarial corpus: ${results.length} cases, ${held} held`);
  for (const r of results.filter((x) => x.problems.length > 0)) console.log(`  did not hold: [${r.row.group}] ${r.row.name}: ${r.problems.join("; ")}`);
  await Promise.all([...envs.values()].map((env) => env.e2e.stop()));
});

function matches(value: string | undefined, want: string | RegExp | null): boolean {
  if (want === null) return value === undefined;
  if (value === undefined) return false;
  return typeof want === "string" ? value === want : want.test(value);
}

async function runRow(row: CorpusRow, env: Env, caseId: string): Promise<string[]> {
  const request = row.build(env.ctx);
  // The guard forwards an allowlist of headers (docs/webhook-trust.md): the case id rides in User-Agent.
  const headers = request.headers ?? [];
  const agent = headers.find(([name]) => name.toLowerCase() === "user-agent");
  request.headers = [...headers.filter((h) => h !== agent), ["User-Agent", `${agent?.[1] ?? "TwilioProxy/1.1"} e2e-case/${caseId}`]];
  let answer: Answer | undefined;
  const before = env.e2e.originHitsFor(caseId).length;
  let hitsBeforeLast = before;
  for (let i = 0; i <= (row.repeat ?? 0); i++) {
    hitsBeforeLast = env.e2e.originHitsFor(caseId).length;
    answer = await env.e2e.send(request);
  }
  const problems: string[] = [];
  const want = row.expect;
  if (answer!.status !== want.status) problems.push(`status ${answer!.status} (${answer!.body.trim().slice(0, 80)}), expected ${want.status}`);
  for (const [name, value] of Object.entries(want.header ?? {})) {
    if (!matches(answer!.headers[name.toLowerCase()], value)) problems.push(`answer header ${name}: ${answer!.headers[name.toLowerCase()] ?? "absent"}, expected ${value ?? "absent"}`);
  }
  const hits = env.e2e.originHitsFor(caseId);
  const lastCalled = hits.length > hitsBeforeLast;
  if (lastCalled !== want.originCalled) problems.push(want.originCalled ? "the origin was not called" : `the origin was called (${hits.length - before}×)`);
  if (want.originCalled && lastCalled) {
    const hit = hits.at(-1)!;
    for (const [name, value] of Object.entries(want.originHeader ?? {})) {
      const got = hit.headers[name.toLowerCase()];
      const text = Array.isArray(got) ? got.join(", ") : got;
      if (!matches(text, value)) problems.push(`origin header ${name}: ${text ?? "absent"}, expected ${value ?? "absent"}`);
    }
  }
  if (answer!.status === 200 && !lastCalled && answer!.headers["x-guard-breaker"] === undefined) problems.push("200 without reaching the origin");
  return problems;
}

for (const kind of KINDS) {
  const rows = ROWS.filter((r) => kindOf(r) === kind);
  describe(`WEBHOOK_AUTH=${kind}: ${rows.length} cases`, () => {
    rows.forEach((row, index) => {
      it(`[${row.group}] ${row.name}`, async () => {
        const problems = await runRow(row, envs.get(kind)!, `${kind}-${index}`);
        results.push({ row, problems });
        expect(problems).toEqual([]);
      });
    });

    it("counted nothing it refused: each account's breaker trips exactly at its limit", async () => {
      const { e2e, ctx } = envs.get(kind)!;
      const headers: Array<[string, string]> = kind === "basic" || kind === "both" ? [["Authorization", GOOD_BASIC]] : [];
      // A forged usage trigger or a refused webhook must not have tripped or suspended anyone.
      expect(e2e.standin.requests.filter((r) => r.purpose === "suspend").map((r) => r.path)).toEqual([]);
      const report: Record<string, string[]> = {};
      for (const role of ["victim", "other"] as const) {
        const counted = expectedCounted(kind, role);
        const { problems } = await expectLedgerAt(e2e, ctx[role], LIMIT, counted, { headers });
        report[role] = problems;
        // The trip suspends the subaccount, once.
        await eventually(() => expect(e2e.suspensions(ctx[role].sid)).toBe(1));
      }
      // The parent is checked last: its breaker blocks everything of the parent's from now on.
      const parentSigned = kind === "signature" || kind === "report-only";
      if (parentSigned) report.parent = (await expectLedgerAt(e2e, ctx.parent, LIMIT, expectedCounted(kind, "parent"))).problems;
      expect(report).toEqual(parentSigned ? { victim: [], other: [], parent: [] } : { victim: [], other: [] });
      // Never the parent (Twilio refuses, 21477), never an account the parent does not own.
      for (const sid of [ctx.parent.sid, ctx.foreign.sid, ctx.unknown.sid, ctx.closed.sid]) expect(e2e.suspendAttempts(sid), sid).toBe(0);
    });

    it("caused no REST storm: no per-SID account lookup, and subaccounts learnt from a listing at most once a minute", () => {
      const { e2e } = envs.get(kind)!;
      expect(e2e.standin.requests.filter((r) => r.purpose === "fetch-account")).toEqual([]);
      const listings = e2e.standin.requests.filter((r) => r.purpose === "list-accounts");
      // Forged and unknown SIDs (dozens of rows) may cause one listing a minute of the run, no more.
      expect(listings.length).toBeGreaterThan(0);
      expect(listings.length).toBeLessThanOrEqual(Math.floor((Date.now() - startedAt) / 60_000) + 1);
      expect(e2e.standin.requests.filter((r) => r.purpose === "unknown")).toEqual([]);
    });

    it("made only well-formed REST calls, and leaked no secret", () => {
      const { e2e } = envs.get(kind)!;
      expect(e2e.standin.violations).toEqual([]);
      expect(e2e.leaks()).toEqual([]);
      expect(e2e.logs().length).toBeGreaterThan(0);
    });
  });
}

describe("the corpus itself", () => {
  it(`has at least 100 cases (${ROWS.length})`, () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(100);
    expect(new Set(ROWS.map((r) => `${kindOf(r)}:${r.name}`)).size).toBe(ROWS.length);
  });
});
