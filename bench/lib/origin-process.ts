// Child process: the minimal origin behind the guard (node:http answering `<Response/>`), counting what
// reaches it. Runs in its own process so it never shares an event loop with the load generator.
// Messages from the parent: {type: "stats"} → {type: "stats", requests, duplicates, byAccount?}; {type: "reset"}.
import http from "node:http";
import type { AddressInfo } from "node:net";

let requests = 0;
let duplicates = 0;
let unverified = 0;

const server = http.createServer((req, res) => {
  // Drain the body (the guard forwards it byte for byte), then answer like a TwiML app would.
  req.on("data", () => {});
  req.on("end", () => {
    requests++;
    if (req.headers["x-guard-duplicate"] === "1") duplicates++;
    if (req.headers["x-guard-verified"] === undefined) unverified++;
    res.writeHead(200, { "content-type": "text/xml" }).end("<Response/>");
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  process.send!({ type: "listening", port: (server.address() as AddressInfo).port });
});
process.on("message", (message: { type: string }) => {
  if (message.type === "stats") process.send!({ type: "stats", requests, duplicates, unverified });
  else if (message.type === "reset") {
    requests = duplicates = unverified = 0;
    process.send!({ type: "reset" });
  }
});
process.on("disconnect", () => process.exit(0));
