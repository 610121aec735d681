// `npm run origin`: the other half of the local demo (README, "Local demo"). Two loopback servers:
//   - a demo origin app on 127.0.0.1:8788 that prints every request the guard forwards and answers TwiML;
//   - a stand-in for Twilio's REST API on 127.0.0.1:8789 (the one the tests use), so that a trip's
//     suspension call, alerts and usage polls are printed instead of reaching Twilio.
// Ports and the demo account match .dev.vars.example.
import http from "node:http";
import { startTwilioStandin } from "../dev/twilio-standin.ts";

const ORIGIN_PORT = Number(process.env.ORIGIN_PORT ?? 8788);
const TWILIO_PORT = Number(process.env.TWILIO_PORT ?? 8789);
const DEMO_ACCOUNT = process.env.TWILIO_ACCOUNT_SID ?? "AC00000000000000000000000000000d30";
const DEMO_TOKEN = process.env.TWILIO_AUTH_TOKEN ?? "demo-auth-token-for-local-use-only";

const origin = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const guard = Object.entries(req.headers).filter(([name]) => name.startsWith("x-guard-"));
    console.log(`origin ← ${req.method} ${req.url}`);
    for (const [name, value] of guard) console.log(`         ${name}: ${String(value)}`);
    const body = Buffer.concat(chunks).toString("utf8");
    if (body) console.log(`         body: ${body}`);
    res.writeHead(200, { "content-type": "text/xml" });
    res.end("<Response><Message>Hello from the demo origin</Message></Response>");
  });
});
origin.listen(ORIGIN_PORT, "127.0.0.1", () => console.log(`demo origin on http://127.0.0.1:${ORIGIN_PORT}`));

/** A demo subaccount: the parent is never suspended, so the breaker's suspension shows on this one. */
const DEMO_SUBACCOUNT = "AC00000000000000000000000000000d31";
const DEMO_SUBACCOUNT_TOKEN = "demo-subaccount-token-for-local-use-only";

const twilio = await startTwilioStandin({ parentSid: DEMO_ACCOUNT, parentToken: DEMO_TOKEN, port: TWILIO_PORT });
twilio.addSubaccount({ sid: DEMO_SUBACCOUNT, authToken: DEMO_SUBACCOUNT_TOKEN, friendlyName: "demo subaccount" });
console.log(`Twilio REST stand-in on ${twilio.url} (parent ${DEMO_ACCOUNT}, subaccount ${DEMO_SUBACCOUNT} with token ${DEMO_SUBACCOUNT_TOKEN})`);
let printed = 0;
setInterval(() => {
  for (const request of twilio.requests.slice(printed)) {
    console.log(`twilio ← ${request.method} ${request.path} ${JSON.stringify(request.form ?? {})} → ${request.status}`);
  }
  printed = twilio.requests.length;
}, 250).unref();

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    origin.close();
    void twilio.close().finally(() => process.exit(0));
  });
}
