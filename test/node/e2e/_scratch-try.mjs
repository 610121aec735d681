import { unstable_startWorker } from "wrangler";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const logs = [];
const t0 = Date.now();
const worker = await unstable_startWorker({
  config: "/work/main/wrangler.toml",
  bindings: {
    TWILIO_ACCOUNT_SID: { type: "plain_text", value: "AC00000000000000000000000000000001" },
    TWILIO_AUTH_TOKEN: { type: "secret_text", value: "SECRET-abc-123456" },
    ORIGIN_URL: { type: "plain_text", value: "http://127.0.0.1:9" },
  },
  dev: {
    server: { hostname: "127.0.0.1", port: 0 },
    inspector: false,
    watch: false,
    persist: mkdtempSync(join(tmpdir(), "guard-")),
    structuredLogsHandler: (l) => logs.push(l),
  },
});
await worker.ready;
const url = await worker.url;
console.log("ready", url.href, Date.now() - t0);
const r = await fetch(new URL("/healthz", url));
console.log(r.status, await r.text());
const r2 = await fetch(new URL("/webhooks/sms", url), { method: "POST", body: "a=b", headers: {"content-type":"application/x-www-form-urlencoded"} });
console.log(r2.status, await r2.text(), [...r2.headers]);
await new Promise(r => setTimeout(r, 300));
console.log(JSON.stringify(logs));
await worker.dispose();
console.log("disposed", Date.now() - t0);
