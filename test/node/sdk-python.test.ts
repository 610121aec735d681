// The README's Python snippet (the block after `<!-- sdk-snippet: python`), exactly as the README has it
// with only "https://<worker>" replaced, run by Debian's /usr/bin/python3 and its `twilio` package
// (python3-twilio) against the real Worker and the loopback Twilio stand-in: `client.messages.create`
// goes through the gate, and a refusal raises the SDK's TwilioRestException with the contract's status
// and code. Where that Python or its `twilio` is missing (CI has no apt) the suite is skipped, and says why.
import { execFile, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEgressStand, type EgressStand } from "../support/egress-stand.ts";

const PYTHON = "/usr/bin/python3";
const MARKER = "<!-- sdk-snippet: python";
const PLACEHOLDER = "https://<worker>";
const README = fileURLToPath(new URL("../../README.md", import.meta.url));

const PARENT_SID = `AC${"5e7a1b0c".repeat(4)}`;
const FROM = "+15005550006";
const TO = "+14155552671";

/** Why the suite cannot run here, or null. */
function missingPython(): string | null {
  try {
    execFileSync(PYTHON, ["-c", "import twilio"], { stdio: "pipe" });
    return null;
  } catch {
    return `${PYTHON} -c 'import twilio' failed (install Debian's python3-twilio to run it)`;
  }
}

/** The fenced block after the marker: the README's own text, checked to still be a python block. */
function readmeSnippet(readme: string): string {
  const at = readme.indexOf(MARKER);
  if (at < 0) throw new Error(`README.md has no ${MARKER} marker`);
  const fence = /```python\n([\s\S]*?)\n```/.exec(readme.slice(at));
  if (fence === null) throw new Error("no ```python block after the marker");
  if (!fence[1]!.includes(`"${PLACEHOLDER}"`)) throw new Error(`the snippet no longer has the "${PLACEHOLDER}" placeholder`);
  return fence[1]!;
}

/** The snippet, with account_sid and egress_key from the environment, then what the test does with `client`. */
function program(guardUrl: string, driver: string): string {
  return ["import os", 'account_sid = os.environ["ACCOUNT_SID"]', 'egress_key = os.environ["EGRESS_KEY"]', readmeSnippet(readFileSync(README, "utf8")).replaceAll(PLACEHOLDER, guardUrl), driver].join("\n");
}

function python(source: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ["-c", source], { env: { PATH: process.env.PATH ?? "/usr/bin", ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const missing = missingPython();
if (missing !== null) console.warn(`sdk-python.test.ts skipped: ${missing}`);

describe("the README snippet's marker", () => {
  it("finds the README's python block, with its placeholder", () => {
    expect(readmeSnippet(readFileSync(README, "utf8"))).toMatch(/^from urllib\.parse import urlsplit\n[\s\S]*http_client=GuardHttpClient\("https:\/\/<worker>"\)\)$/);
  });
});

describe.skipIf(missing !== null)(`the README's Python snippet with Debian's twilio${missing === null ? "" : ` (skipped: ${missing})`}`, () => {
  let stand: EgressStand;

  beforeAll(async () => {
    stand = await startEgressStand(PARENT_SID);
  });

  afterAll(async () => {
    await stand?.stop();
  });

  /** A subaccount with the policy and an egress key: the environment the snippet reads. */
  async function subaccount(policy: Record<string, unknown>): Promise<Record<string, string>> {
    const { sid, key } = await stand.account(policy);
    return { ACCOUNT_SID: sid, EGRESS_KEY: key };
  }

  const SEND = `m = client.messages.create(to="${TO}", from_="${FROM}", body="hello from python")`;

  it("sends a message through the gate with client.messages.create", async () => {
    const env = await subaccount({ limits: [{ window: "day", usd: 5 }] });
    const out = await python(program(stand.guard.url, `${SEND}\nimport json\nprint(json.dumps({"sid": m.sid, "status": m.status}))`), env);
    const message = JSON.parse(out) as { sid: string; status: string };
    expect(message).toEqual({ sid: expect.stringMatching(/^SM[0-9a-f]{32}$/), status: "queued" });
    const sent = stand.standin.requests.filter((r) => r.path === `/2010-04-01/Accounts/${env.ACCOUNT_SID}/Messages.json`);
    expect(sent).toHaveLength(1);
    // The egress key was swapped for the parent's credentials; the request is Twilio's documented shape.
    expect(sent[0]!.basicUser).toBe(PARENT_SID);
    expect(sent[0]!.form).toMatchObject({ To: TO, From: FROM, Body: "hello from python" });
    expect(stand.standin.messages.at(-1)!.sid).toBe(message.sid);
    expect(stand.standin.violations).toEqual([]);
  });

  it("raises TwilioRestException with the contract's status and code when the gate refuses", async () => {
    const env = await subaccount({ limits: [{ window: "day", events: 1 }], action: "block", egress: { countries: ["US"] } });
    const driver = [
      "import json",
      "from twilio.base.exceptions import TwilioRestException",
      "def refusal(**kwargs):",
      "    try:",
      "        client.messages.create(**kwargs)",
      "    except TwilioRestException as e:",
      "        return {'status': e.status, 'code': e.code}",
      "    return None",
      SEND,
      `country = refusal(to="+37360123456", from_="${FROM}", body="x")`,
      `limit = refusal(to="${TO}", from_="${FROM}", body="two")`,
      "print(json.dumps({'sent': m.sid, 'country': country, 'limit': limit}))",
    ].join("\n");
    const out = JSON.parse(await python(program(stand.guard.url, driver), env)) as Record<string, unknown>;
    expect(out).toEqual({ sent: expect.stringMatching(/^SM/), country: { status: 400, code: 21408 }, limit: { status: 403, code: 20403 } });
    expect(stand.standin.messages.filter((m) => m.accountSid === env.ACCOUNT_SID)).toHaveLength(1);
  });
});
