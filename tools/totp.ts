// Operator CLI for the admin second factor (RFC 6238 TOTP), run straight from source by Node 22:
//   npm run totp -- <base32 secret>   print the current code (or set ADMIN_TOTP_SECRET instead)
//   npm run totp -- --new             make a secret + otpauth:// URI to enrol an authenticator app
// Exit codes: 0 ok, 2 usage error or bad secret. The secret is never echoed in an error.
import { parseArgs } from "node:util";
import { base32Decode } from "../src/admin/base32.ts";
import {
  generateSecretBase32,
  importTotpKey,
  otpauthUri,
  totpAt,
  TOTP_DIGITS,
  TOTP_MIN_SECRET_BYTES,
  TOTP_STEP_S,
} from "../src/admin/totp.ts";

const DEFAULT_ISSUER = "twilio-edge-guard";
const DEFAULT_ACCOUNT = "operator";
const SECRET_ENV = "ADMIN_TOTP_SECRET";

const USAGE = `Usage:
  npm run totp [-- <base32 secret>]
      Print the current ${TOTP_DIGITS}-digit code and how many seconds it stays valid. Without an
      argument the secret is read from $${SECRET_ENV} (preferred: arguments end up in shell history
      and process lists). Spaces, lower case and '=' padding in the secret are fine.
  npm run totp -- --new [--issuer ${DEFAULT_ISSUER}] [--account ${DEFAULT_ACCOUNT}]
      Generate a fresh 160-bit secret and its otpauth:// URI for enrolling an authenticator app,
      then store the secret in the Worker with: wrangler secret put ${SECRET_ENV}
  npm run totp -- --help

Codes are RFC 6238 TOTP: HMAC-SHA1, ${TOTP_DIGITS} digits, ${TOTP_STEP_S} s period.
Exit status: 0 ok, 2 usage error or invalid secret.`;

function fail(message: string): void {
  console.error(`totp: ${message}`);
  console.error("Run `npm run totp -- --help` for usage.");
  process.exitCode = 2;
}

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: "boolean", short: "h" },
        new: { type: "boolean" },
        issuer: { type: "string" },
        account: { type: "string" },
      },
    });
  } catch (error) {
    // An unknown option's message quotes it, and "--<secret>" would be quoted whole: say it generically.
    // The other parseArgs errors quote only our own option names.
    const code = (error as { code?: unknown }).code;
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" || !(error instanceof Error)) {
      return fail("unknown option (the options are --new, --issuer, --account and --help)");
    }
    return fail(error.message);
  }
  const { values, positionals } = parsed;

  if (values.help) {
    console.log(USAGE);
    return;
  }

  if (values.new) {
    if (positionals.length > 0) return fail("--new takes no secret argument");
    const secret = generateSecretBase32();
    let uri: string;
    try {
      uri = otpauthUri({
        secretBase32: secret,
        issuer: values.issuer ?? DEFAULT_ISSUER,
        account: values.account ?? DEFAULT_ACCOUNT,
      });
    } catch (error) {
      return fail(error instanceof Error ? error.message : "invalid --issuer or --account");
    }
    console.log(`secret:  ${secret}`);
    console.log(`uri:     ${uri}`);
    console.log("");
    console.log("1. Enrol an authenticator app: open or QR-encode the URI, or type the secret in by hand");
    console.log(`   (time-based, SHA1, ${TOTP_DIGITS} digits, ${TOTP_STEP_S} s).`);
    console.log(`2. Store the secret in the Worker: wrangler secret put ${SECRET_ENV}   (paste it when prompted)`);
    console.log(`3. Check the app against: ${SECRET_ENV}=<secret> npm run totp`);
    return;
  }

  if (values.issuer !== undefined || values.account !== undefined) {
    return fail("--issuer and --account only apply with --new");
  }

  // Authenticator apps show secrets in groups ("abcd efgh ..."), so unquoted groups are joined.
  const text = positionals.length > 0 ? positionals.join("") : (process.env[SECRET_ENV] ?? "");
  if (text.trim() === "") {
    return fail(`no secret: pass it as an argument or set ${SECRET_ENV}`);
  }
  let secret: Uint8Array;
  try {
    secret = base32Decode(text);
  } catch (error) {
    return fail(`invalid secret: ${error instanceof Error ? error.message : "not base32"}`);
  }
  if (secret.length === 0) return fail("invalid secret: it decodes to no bytes");
  if (secret.length < TOTP_MIN_SECRET_BYTES) {
    console.error(
      `totp: warning: the secret is ${secret.length * 8} bits; RFC 4226 requires at least ${TOTP_MIN_SECRET_BYTES * 8} (use --new)`,
    );
  }

  const key = await importTotpKey(secret);
  const now = Math.floor(Date.now() / 1000);
  const code = await totpAt(key, now);
  const remaining = TOTP_STEP_S - (now % TOTP_STEP_S);
  console.log(`${code}  (valid ${remaining} s more)`);
}

await main(process.argv.slice(2));
