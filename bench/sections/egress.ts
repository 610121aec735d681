// 6. The REST egress gate: `client.messages.create()` of the official twilio client (through
// twilio-edge-guard/client) against the guard's /twilio/* gate, and against a bare Worker on the same
// runtime that only forwards /twilio/<host>/<path> to the same Twilio stand-in. Both measured in the
// same run, in alternating rounds, with the same client, concurrency and number of sends; latency is
// the client's, from the call to the resolved promise. CPU per send is each side's workerd process
// (user + system, /proc) over its measured rounds: the gate's includes its Durable Object's work.
import twilio from "twilio";
import { GuardRequestClient } from "twilio-edge-guard/client";
import { startBareForwarder, type RunningGuard } from "../lib/guard.ts";
import { summary } from "../lib/load.ts";
import { cpuMs } from "../lib/profile.ts";
import { ADMIN_TOKEN, PARENT_TOKEN, type World } from "../lib/world.ts";

export interface EgressShape {
  /** Clients sending at once, each one send after the other. */
  concurrency: number;
  /** Sends per target before measuring, excluded. */
  warm: number;
  /** Sends measured per target, split over ROUNDS alternating rounds. */
  measure: number;
}

/** Targets are measured in alternating rounds (A B A B …), so a noisy moment hits both sides alike. */
const ROUNDS = 4;

export interface EgressResult {
  gate: { p50: number; p99: number; n: number; cpuUs: number };
  bare: { p50: number; p99: number; n: number; cpuUs: number };
  /** Sends the stand-in received, against sends made (every one must arrive, once). */
  arrived: number;
  sent: number;
  /** What the account's ledger counted for the gate's sends (each must be counted once). */
  counted: number;
}

type Client = ReturnType<typeof twilio>;

async function sendMany(client: Client, accountSid: string, n: number, concurrency: number, latencies: number[] | null): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const started = performance.now();
        await client.messages.create({ to: `+1415555${String(1000 + (i % 9000)).padStart(4, "0")}`, from: "+15005550006", body: `bench ${i}` });
        latencies?.push(performance.now() - started);
      }
    }),
  );
  void accountSid;
}

export async function benchEgress(world: World, guard: RunningGuard, shape: EgressShape): Promise<EgressResult> {
  const account = world.many[0]!;
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
  const policy = await fetch(`${guard.url}/admin/accounts/${account.sid}/policy`, { method: "PUT", headers: admin, body: JSON.stringify({ limits: [{ window: "month", usd: 1_000_000_000 }] }) });
  if (policy.status !== 200) throw new Error(`egress bench: policy answered ${policy.status}`);
  const issued = await fetch(`${guard.url}/admin/accounts/${account.sid}/egress-keys`, { method: "POST", headers: admin });
  if (issued.status !== 201) throw new Error(`egress bench: egress key answered ${issued.status}`);
  const { key } = (await issued.json()) as { key: string };

  const monthEvents = async () => {
    const detail = (await (await fetch(`${guard.url}/admin/accounts/${account.sid}`, { headers: admin })).json()) as { account: { windows: Array<{ window: string; events: number }> } };
    return detail.account.windows.find((w) => w.window === "month")?.events ?? 0;
  };
  const countedBefore = await monthEvents();
  const bare = await startBareForwarder(world.standin.url, "^\\/twilio\\/[^\\/]+");
  try {
    // The gate swaps the egress key for the parent's credentials; the bare Worker forwards what it gets,
    // so its client holds the parent's token. Both reach the stand-in with the parent's credentials.
    const gateClient = twilio(account.sid, key, { httpClient: new GuardRequestClient(guard.url) });
    const bareClient = twilio(world.parent.sid, PARENT_TOKEN, { httpClient: new GuardRequestClient(bare.url) });
    const before = world.standin.messages.length;
    await sendMany(gateClient, account.sid, shape.warm, shape.concurrency, null);
    await sendMany(bareClient, world.parent.sid, shape.warm, shape.concurrency, null);
    const gateLatencies: number[] = [];
    const bareLatencies: number[] = [];
    const cpu = { gate: 0, bare: 0 };
    const timedCpu = async (side: keyof typeof cpu, pid: number, run: () => Promise<void>) => {
      const before = cpuMs(pid);
      await run();
      cpu[side] += cpuMs(pid) - before;
    };
    const perRound = Math.ceil(shape.measure / ROUNDS);
    for (let round = 0; round < ROUNDS; round++) {
      const gateFirst = round % 2 === 0;
      const runGate = () => timedCpu("gate", guard.pid, () => sendMany(gateClient, account.sid, perRound, shape.concurrency, gateLatencies));
      const runBare = () => timedCpu("bare", bare.pid, () => sendMany(bareClient, world.parent.sid, perRound, shape.concurrency, bareLatencies));
      if (gateFirst) {
        await runGate();
        await runBare();
      } else {
        await runBare();
        await runGate();
      }
    }
    const sent = 2 * (shape.warm + perRound * ROUNDS);
    const arrived = world.standin.messages.length - before;
    const counted = (await monthEvents()) - countedBefore;
    const perSendUs = (ms: number, n: number) => (ms / n) * 1000;
    return {
      gate: { ...summary(gateLatencies), cpuUs: perSendUs(cpu.gate, gateLatencies.length) },
      bare: { ...summary(bareLatencies), cpuUs: perSendUs(cpu.bare, bareLatencies.length) },
      arrived,
      sent,
      counted,
    };
  } finally {
    await bare.stop();
  }
}
