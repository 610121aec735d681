#!/usr/bin/env node
// `npm run send`: the egress half of the local demo (README, "Local demo"). Issues an egress key for an
// account through the admin API, then sends messages with the official twilio client through the guard's
// REST egress gate (twilio-edge-guard/client), printing what Twilio accepted and what the gate refused.
//
//   npm run send -- --count 25        # the demo budget allows 20 events a UTC day: the 21st of the day is refused
//
// Never prints the egress key or any token.
import { parseArgs } from "node:util";
import twilio from "twilio";
import { GuardRequestClient } from "twilio-edge-guard/client";

const USAGE = `Usage: node tools/send.ts [options]

Options:
  --guard URL        the guard (default http://127.0.0.1:8787)
  --account SID      the account to send for (default: the demo subaccount AC…d31)
  --admin-token T    admin bearer token, to issue the egress key (default: $ADMIN_TOKEN or the demo token)
  --count N          messages to send (default 25)
  --to +E164         destination (default +14155552671)
  --from +E164       sender (default +15005550006)
  -h, --help         show this help

Exit status: 0 when every send was accepted or refused by the gate, 1 on any other failure, 2 on a usage error.`;

const DEMO_SUBACCOUNT = "AC00000000000000000000000000000d31";
const DEMO_ADMIN_TOKEN = "demo-admin-token-for-local-use-only";

let args;
try {
  args = parseArgs({
    options: {
      guard: { type: "string", default: "http://127.0.0.1:8787" },
      account: { type: "string", default: DEMO_SUBACCOUNT },
      "admin-token": { type: "string" },
      count: { type: "string", default: "25" },
      to: { type: "string", default: "+14155552671" },
      from: { type: "string", default: "+15005550006" },
      help: { type: "boolean", short: "h" },
    },
  }).values;
} catch (error) {
  console.error(`${(error as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const count = Number(args.count);
if (!Number.isInteger(count) || count < 1 || count > 1000) {
  console.error("--count must be a whole number from 1 to 1000");
  process.exit(2);
}
const guard = args.guard.replace(/\/+$/, "");
const adminToken = args["admin-token"] ?? process.env.ADMIN_TOKEN ?? DEMO_ADMIN_TOKEN;

const issued = await fetch(`${guard}/admin/accounts/${args.account}/egress-keys`, { method: "POST", headers: { authorization: `Bearer ${adminToken}` } });
if (issued.status !== 201) {
  console.error(`could not issue an egress key: ${issued.status} ${await issued.text()}`);
  process.exit(1);
}
const { id, key } = (await issued.json()) as { id: string; key: string };
console.log(`egress key ${id} issued for ${args.account} (the key itself is not printed)`);

// The three lines of README, "Sending through the guard":
const client = twilio(args.account, key, { httpClient: new GuardRequestClient(guard) });
let failed = false;
for (let i = 1; i <= count; i++) {
  try {
    const message = await client.messages.create({ to: args.to, from: args.from, body: `demo send ${i}` });
    console.log(`${String(i).padStart(3)} sent     ${message.sid} ${message.status}`);
  } catch (error) {
    if (error instanceof twilio.RestException) {
      console.log(`${String(i).padStart(3)} refused  ${error.status} ${error.code} ${error.message}`);
    } else {
      console.log(`${String(i).padStart(3)} failed   ${(error as Error).message}`);
      failed = true;
    }
  }
}
process.exit(failed ? 1 : 0);
