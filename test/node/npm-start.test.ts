// `npm start` as the README runs it, with nothing injected by the test: the harness in
// dev/worker.ts hands its settings straight to workerd, which is how the optional secrets once
// went missing under `npm start` (wrangler dropped them) without any test noticing. Each case runs
// `npm start` in a temporary copy of the repo (its node_modules linked): a fresh .wrangler/state, no
// developer's .dev.vars, PORT set to a free port. Then the server is stopped, leaving no process behind.
//   - a fresh clone: the demo settings of .dev.vars.example; the operator signs in to /admin with the
//     README's demo token;
//   - a .dev.vars with every optional secret: each one is in force in the Worker.
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import twilio from "twilio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** What `npm start` needs of the repo: the Worker's source and config, the script, the demo settings. */
const COPIED = ["package.json", "wrangler.toml", "tsconfig.json", ".dev.vars.example", "scripts", "src"];
/** The README's demo token (.dev.vars.example). */
const DEMO_ADMIN_TOKEN = "demo-admin-token-for-local-use-only";
const DEMO_AUTH_TOKEN = "demo-auth-token-for-local-use-only";
const START_TIMEOUT_MS = 45_000;
const STOP_TIMEOUT_MS = 10_000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Processes whose working directory is inside the copy: the npm, node and workerd that npm start ran. */
function processesIn(folder: string): number[] {
  if (!existsSync("/proc")) return [];
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`).startsWith(folder)) found.push(Number(entry));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

interface NpmStart {
  dir: string;
  base: string;
  /** stdout and stderr so far. */
  output(): string;
  /** SIGTERM to the whole process group; resolves when every process has closed its output. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Whatever is still running is killed, and the copy removed. */
  cleanup(): Promise<void>;
}

/** `npm start` in a fresh copy of the repo holding `files` (say, a .dev.vars), ready to serve. */
async function npmStart(files: Record<string, string> = {}): Promise<NpmStart> {
  const dir = mkdtempSync(join(tmpdir(), "guard-npm-start-"));
  for (const entry of COPIED) cpSync(join(ROOT, entry), join(dir, entry), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // Its own process group, so that stopping it reaches npm, node and workerd alike.
  const child: ChildProcess = spawn("npm", ["start"], { cwd: dir, env: { ...process.env, PORT: String(port) }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  // "close": npm has exited and every process that held its output (node, workerd) has closed it.
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  let running = true;
  void closed.then(() => (running = false));
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // The group is gone already.
    }
  };
  const started: NpmStart = {
    dir,
    base,
    output: () => output,
    async stop() {
      signalGroup("SIGTERM");
      const timer = setTimeout(() => signalGroup("SIGKILL"), STOP_TIMEOUT_MS);
      const result = await closed;
      clearTimeout(timer);
      return result;
    },
    async cleanup() {
      if (running) {
        signalGroup("SIGKILL");
        await closed;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!output.includes(`Ready on ${base}`)) {
    if (!running || Date.now() > deadline) {
      await started.cleanup();
      throw new Error(`npm start was not ready on ${base} within ${START_TIMEOUT_MS} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return started;
}

/** Names in a dotenv file, in order. */
function settingNames(text: string): string[] {
  return text.split("\n").flatMap((line) => /^([A-Z][A-Z0-9_]*)=/.exec(line)?.[1] ?? []);
}

/** A webhook of an inbound SMS to the parent account, signed as Twilio signs it. */
function inboundSms(url: string, token: string, headers: Record<string, string> = {}): Promise<Response> {
  const params = {
    AccountSid: "AC00000000000000000000000000000d30",
    MessageSid: `SM${Date.now().toString(16).padStart(32, "0")}`,
    SmsStatus: "received",
    From: "+14155550100",
    To: "+15005550006",
    Body: "hi",
    NumSegments: "1",
  };
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": twilio.getExpectedTwilioSignature(token, url, params), ...headers },
    body: new URLSearchParams(params).toString(),
  });
}

describe("npm start on a fresh clone (README, 'Two commands')", () => {
  let guard: NpmStart;

  beforeAll(async () => {
    guard = await npmStart();
  }, START_TIMEOUT_MS + 5_000);

  afterAll(async () => {
    await guard?.cleanup();
  });

  it("says which settings file it uses, naming the settings and never their values", () => {
    expect(guard.output()).toContain("No .dev.vars: starting with the demo settings of .dev.vars.example");
    const names = settingNames(readFileSync(join(ROOT, ".dev.vars.example"), "utf8")).sort();
    expect(guard.output()).toContain(`Settings from .dev.vars.example: ${names.join(", ")}`);
    expect(guard.output()).not.toContain(DEMO_ADMIN_TOKEN);
    expect(guard.output()).not.toContain(DEMO_AUTH_TOKEN);
  });

  it("is healthy with the demo settings", async () => {
    const response = await fetch(`${guard.base}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });

  it("serves the admin API to the README's demo token (ADMIN_TOKEN reached the Worker)", async () => {
    const response = await fetch(`${guard.base}/admin/accounts`, { headers: { authorization: `Bearer ${DEMO_ADMIN_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ accounts: [], totpRequired: false });
    const wrong = await fetch(`${guard.base}/admin/accounts`, { headers: { authorization: "Bearer not-the-demo-token" } });
    expect(wrong.status).toBe(401);
  });

  it("serves the operator dashboard", async () => {
    const response = await fetch(`${guard.base}/admin`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await response.text()).toContain("operator console");
  });

  it("stops on SIGTERM and leaves no process behind", async () => {
    const { code, signal } = await guard.stop();
    // Stopped by the signal (node exits 128 + 15 once miniflare's exit hook stopped workerd), not a crash.
    expect(code === 143 || signal === "SIGTERM", `exit ${code} ${signal}\n${guard.output()}`).toBe(true);
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (processesIn(guard.dir).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(processesIn(guard.dir)).toEqual([]);
    await expect(fetch(`${guard.base}/healthz`)).rejects.toThrow();
  });
});

describe("npm start with a .dev.vars holding every optional secret", () => {
  const ADMIN_TOKEN = "dev-vars-admin-token-0123456789";
  const SECONDARY = "dev-vars-secondary-auth-token";
  const BASIC = { user: "twilio", password: "dev-vars-basic-password" };
  const DEV_VARS = [
    "TWILIO_ACCOUNT_SID=AC00000000000000000000000000000d30",
    `TWILIO_AUTH_TOKEN=${DEMO_AUTH_TOKEN}`,
    `TWILIO_AUTH_TOKEN_SECONDARY=${SECONDARY}`,
    // Nothing listens there: a verified webhook is forwarded and answered 502.
    "ORIGIN_URL=http://127.0.0.1:9",
    "TWILIO_API_BASE=http://127.0.0.1:9",
    "WEBHOOK_AUTH=both",
    `BASIC_AUTH_USER=${BASIC.user}`,
    `BASIC_AUTH_PASSWORD=${BASIC.password}`,
    `ADMIN_TOKEN=${ADMIN_TOKEN}`,
    "ADMIN_TOTP_SECRET=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    // No code reads it yet (the SharedKey verifier is a later issue); it is delivered like the rest.
    'TWILIO_WEBHOOK_SHARED_KEYS={"k1":"dev-vars-shared-key-secret"}',
    "RECONCILE_INTERVAL_S=0",
    "",
  ].join("\n");
  const basic = { authorization: `Basic ${Buffer.from(`${BASIC.user}:${BASIC.password}`).toString("base64")}` };
  let guard: NpmStart;

  beforeAll(async () => {
    guard = await npmStart({ ".dev.vars": DEV_VARS });
  }, START_TIMEOUT_MS + 5_000);

  afterAll(async () => {
    await guard?.cleanup();
  });

  it("uses .dev.vars and delivers every name in it", async () => {
    expect(guard.output()).not.toContain("No .dev.vars");
    expect(guard.output()).toContain(`Settings from .dev.vars: ${settingNames(DEV_VARS).sort().join(", ")}`);
    const health = await fetch(`${guard.base}/healthz`);
    expect(await health.json()).toEqual({ ok: true });
  });

  it("ADMIN_TOKEN and ADMIN_TOTP_SECRET: the admin API takes that token and asks for TOTP codes", async () => {
    const response = await fetch(`${guard.base}/admin/accounts`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ totpRequired: true });
    const demo = await fetch(`${guard.base}/admin/accounts`, { headers: { authorization: `Bearer ${DEMO_ADMIN_TOKEN}` } });
    expect(demo.status).toBe(401);
  });

  it("WEBHOOK_AUTH and BASIC_AUTH_*: a webhook without the credentials is challenged", async () => {
    const response = await inboundSms(`${guard.base}/webhooks/sms`, DEMO_AUTH_TOKEN);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Basic realm=/);
  });

  it("TWILIO_AUTH_TOKEN_SECONDARY: a webhook signed with it is verified (and forwarded: 502, no origin)", async () => {
    const url = `${guard.base}/webhooks/sms`;
    expect((await inboundSms(url, SECONDARY, basic)).status).toBe(502);
    expect((await inboundSms(url, "some-other-token", basic)).status).toBe(403);
  });

  it("stops and leaves no process behind", async () => {
    await guard.stop();
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (processesIn(guard.dir).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(processesIn(guard.dir)).toEqual([]);
  });
});
