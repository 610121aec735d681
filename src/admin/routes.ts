// /admin and /admin/*: the operator API (CONTRACT.md, "Admin API"). Off (404) until built out.
import type { GuardEnv } from "../config/env.ts";
import { GuardError } from "../http/errors.ts";
import type { Logger } from "../http/log.ts";
import type { WebhookTrace } from "../webhooks/handler.ts";

export interface AdminContext {
  env: GuardEnv;
  logger: Logger;
  now: () => number;
  waitUntil: (promise: Promise<unknown>) => void;
  trace: WebhookTrace;
}

export async function handleAdmin(_request: Request, _ctx: AdminContext): Promise<Response> {
  throw new GuardError(404, "not found", { reason: "admin-off" });
}
