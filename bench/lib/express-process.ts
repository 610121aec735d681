// Child process: what users would do instead of the guard. Express 5 with the official `twilio`
// package's `twilio.webhook()` middleware (validate: true), answering `<Response/>` like the origin.
// The URL it validates is the one it was called on (protocol + Host header + originalUrl, twilio's
// default), which is exactly the URL the benchmark signs, so no host/protocol/url options are needed.
//
// Several accounts: Twilio signs a subaccount's webhooks with that subaccount's token, so an app serving
// many accounts picks the token by AccountSid: one `twilio.webhook(token)` per account, created on its
// first request and reused (the same thing the guard's token cache does).
// Messages from the parent: {type: "tokens", entries: [[sid, token], ...]} → {type: "tokens"}; {type: "stats"}.
import type { AddressInfo } from "node:net";
import express from "express";
import twilio from "twilio";

type Middleware = ReturnType<typeof twilio.webhook>;
const tokens = new Map<string, string>();
const hooks = new Map<string, Middleware>();
let requests = 0;

function hookFor(accountSid: string | undefined): Middleware | null {
  if (accountSid === undefined) return null;
  let hook = hooks.get(accountSid);
  if (hook === undefined) {
    const token = tokens.get(accountSid);
    if (token === undefined) return null;
    hook = twilio.webhook(token, { validate: true });
    hooks.set(accountSid, hook);
  }
  return hook;
}

const app = express();
app.use(express.urlencoded({ extended: false }));
app.use((req, res, next) => {
  const hook = hookFor((req.body as Record<string, string> | undefined)?.AccountSid);
  if (hook === null) {
    res.status(403).type("text/plain").send("unknown account");
    return;
  }
  hook(req, res, next);
});
app.post(["/sms", "/status"], (_req, res) => {
  requests++;
  res.type("text/xml").send("<Response/>");
});

const server = app.listen(0, "127.0.0.1", () => {
  server.keepAliveTimeout = 60_000;
  process.send!({ type: "listening", port: (server.address() as AddressInfo).port });
});
process.on("message", (message: { type: string; entries?: Array<[string, string]> }) => {
  if (message.type === "tokens") {
    for (const [sid, token] of message.entries ?? []) tokens.set(sid, token);
    process.send!({ type: "tokens" });
  } else if (message.type === "stats") process.send!({ type: "stats", requests });
});
process.on("disconnect", () => process.exit(0));
