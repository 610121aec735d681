// Runs tools/totp.ts as operators do (Node 22 type stripping, straight from source) and checks its
// codes against an independent RFC 6238 computation with node:crypto.
import { execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SECRET_ENV = "ADMIN_TOTP_SECRET";

// RFC 6238 Appendix B's SHA-1 secret, ASCII "12345678901234567890", and its base32 form.
const RFC_SECRET = Buffer.from("12345678901234567890", "ascii");
const RFC_SECRET_BASE32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  if (!(SECRET_ENV in env)) delete childEnv[SECRET_ENV]; // a developer's own secret must not leak in
  return new Promise((resolve) => {
    execFile(process.execPath, ["tools/totp.ts", ...args], { cwd: ROOT, env: childEnv }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// Independent RFC 4226/6238 reference: node:crypto HMAC-SHA1, 8-byte big-endian counter, truncation.
function referenceTotp(secret: Buffer, step: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", secret).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

// Independent base32 (RFC 4648) decode, so the CLI's decoder is not checked against itself.
function referenceBase32Decode(text: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const bits = text
    .toUpperCase()
    .replace(/[\s=]/g, "")
    .split("")
    .map((c) => alphabet.indexOf(c).toString(2).padStart(5, "0"))
    .join("");
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function referenceBase32Encode(bytes: Buffer): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, "0")).join("");
  let out = "";
  for (let i = 0; i < bits.length; i += 5) out += alphabet[parseInt(bits.slice(i, i + 5).padEnd(5, "0"), 2)];
  return out;
}

const CODE_LINE = /^(\d{6}) {2}\(valid (\d+) s more\)\n$/;

/** Runs the CLI for a code and checks it against the reference at the step it ran in (or the next one). */
async function expectCurrentCode(secret: Buffer, args: string[], env: Record<string, string> = {}): Promise<void> {
  const before = Math.floor(Date.now() / 1000);
  const result = await run(args, env);
  const after = Math.floor(Date.now() / 1000);
  expect(result.stderr).not.toMatch(/totp:/); // no error or warning from the tool
  expect(result.code).toBe(0);
  const match = CODE_LINE.exec(result.stdout);
  expect(match, result.stdout).not.toBeNull();
  const [, code, remaining] = match!;
  // The run may straddle a 30 s boundary: accept the code of any step it was in.
  const steps = new Set([Math.floor(before / 30), Math.floor(after / 30)]);
  expect([...steps].map((step) => referenceTotp(secret, step))).toContain(code);
  expect(Number(remaining)).toBeGreaterThanOrEqual(1);
  expect(Number(remaining)).toBeLessThanOrEqual(30);
}

describe("tools/totp.ts current code", () => {
  it("matches node:crypto for the RFC 6238 secret given as an argument", async () => {
    await expectCurrentCode(RFC_SECRET, [RFC_SECRET_BASE32]);
  });

  it("matches node:crypto for a random 20-byte secret", async () => {
    const secret = randomBytes(20);
    await expectCurrentCode(secret, [referenceBase32Encode(secret)]);
  });

  it("reads the secret from ADMIN_TOTP_SECRET when no argument is given", async () => {
    await expectCurrentCode(RFC_SECRET, [], { [SECRET_ENV]: RFC_SECRET_BASE32 });
  });

  it("prefers the argument over ADMIN_TOTP_SECRET", async () => {
    const other = randomBytes(20);
    await expectCurrentCode(other, [referenceBase32Encode(other)], { [SECRET_ENV]: RFC_SECRET_BASE32 });
  });

  it("accepts lower case, grouped (several arguments) and padded secrets", async () => {
    await expectCurrentCode(RFC_SECRET, ["gezd gnbv gy3t qojq gezd gnbv gy3t qojq"]);
    await expectCurrentCode(RFC_SECRET, ["gezd", "gnbv", "gy3t", "qojq", "gezd", "gnbv", "gy3t", "qojq"]);
    const secret = randomBytes(16); // 26 characters + 6 '='
    await expectCurrentCode(secret, [`${referenceBase32Encode(secret)}======`]);
  });
});

describe("tools/totp.ts --new", () => {
  it("prints a fresh 160-bit secret, its otpauth URI and the wrangler command", async () => {
    const result = await run(["--new"]);
    expect(result.code).toBe(0);
    const secret = /^secret: +([A-Z2-7]+)$/m.exec(result.stdout)?.[1];
    const uri = /^uri: +(\S+)$/m.exec(result.stdout)?.[1];
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(referenceBase32Decode(secret!)).toHaveLength(20);
    expect(uri).toBe(
      `otpauth://totp/twilio-edge-guard:operator?secret=${secret}` +
        "&issuer=twilio-edge-guard&algorithm=SHA1&digits=6&period=30",
    );
    expect(result.stdout).toContain("wrangler secret put ADMIN_TOTP_SECRET");
  });

  it("gives a different secret on each run", async () => {
    const [a, b] = await Promise.all([run(["--new"]), run(["--new"])]);
    expect(a.stdout.split("\n")[0]).not.toBe(b.stdout.split("\n")[0]);
  });

  it("uses --issuer and --account in the URI, percent-encoded", async () => {
    const result = await run(["--new", "--issuer", "Acme Co", "--account", "ops@example.com"]);
    expect(result.code).toBe(0);
    const uri = new URL(/^uri: +(\S+)$/m.exec(result.stdout)![1]!);
    expect(uri.href).toMatch(/^otpauth:\/\/totp\/Acme%20Co:ops%40example\.com\?/);
    expect(uri.searchParams.get("issuer")).toBe("Acme Co");
  });

  it("makes a secret the CLI itself then reads back to the reference code", async () => {
    const created = await run(["--new"]);
    const secret = /^secret: +([A-Z2-7]+)$/m.exec(created.stdout)![1]!;
    await expectCurrentCode(referenceBase32Decode(secret), [], { [SECRET_ENV]: secret });
  });

  it("exits 2 on an account containing ':'", async () => {
    const result = await run(["--new", "--account", "a:b"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/':'/);
  });

  it("exits 2 when given a secret too", async () => {
    expect((await run(["--new", RFC_SECRET_BASE32])).code).toBe(2);
  });
});

describe("tools/totp.ts usage and errors", () => {
  it("prints usage with --help and exits 0", async () => {
    const result = await run(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Usage:/);
    // What works on Node 20 too: npm runs the tools under the project's Node 22.
    expect(result.stdout).toContain("npm run totp -- --new");
    expect(result.stdout).not.toContain("node tools/");
    expect(result.stdout).toContain("--new");
    expect(result.stdout).toContain("ADMIN_TOTP_SECRET");
  });

  it.each([
    ["a character outside the alphabet", "GEZDGNBVGY3TQOJQ!EZDGNBVGY3TQOJQ"],
    ["a digit 1", "GEZDGNBVGY3TQOJQ1EZDGNBVGY3TQOJQ"],
    ["a truncated secret", "GEZDGNBVGY3TQOJQG"],
  ])("exits 2 on %s without echoing the secret", async (_label, secret) => {
    for (const result of [await run([secret]), await run([], { [SECRET_ENV]: secret })]) {
      expect(result.code).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/invalid secret/);
      expect(result.stderr).not.toContain(secret);
      expect(result.stderr).not.toContain(secret.slice(0, 8));
    }
  });

  it("exits 2 on an unknown option without echoing it (it may be a mistyped secret)", async () => {
    const result = await run([`--${RFC_SECRET_BASE32}`]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown option/);
    expect(result.stderr).not.toContain(RFC_SECRET_BASE32.slice(0, 8));
  });

  it("exits 2 when there is no secret at all", async () => {
    for (const env of [{}, { [SECRET_ENV]: "" }, { [SECRET_ENV]: "  " }]) {
      const result = await run([], env);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/no secret/);
    }
  });

  it("exits 2 on a secret of only padding", async () => {
    const result = await run(["===="]);
    expect(result.code).toBe(2);
  });

  it("exits 2 when --issuer is given without --new", async () => {
    expect((await run(["--issuer", "x", RFC_SECRET_BASE32])).code).toBe(2);
  });

  it("warns on stderr, but still prints the code, for a secret under 128 bits", async () => {
    const secret = randomBytes(10);
    const before = Math.floor(Date.now() / 1000);
    const result = await run([referenceBase32Encode(secret)]);
    const after = Math.floor(Date.now() / 1000);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/warning: the secret is 80 bits/);
    const code = CODE_LINE.exec(result.stdout)![1];
    expect([before, after].map((t) => referenceTotp(secret, Math.floor(t / 30)))).toContain(code);
  });
});
