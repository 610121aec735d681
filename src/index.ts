// Worker entry point: the HTTP app and the Durable Object classes wrangler binds (wrangler.toml).
import { createApp } from "./app.ts";

export { AccountGuard } from "./breaker/account-guard.ts";
export { GuardDirectory } from "./accounts/directory.ts";
export { AdminGate } from "./admin/gate.ts";

export default createApp() satisfies ExportedHandler<Env>;
