// The Worker's app in workerd tests, called directly (not through exports.default): the settings can be
// overridden per call and the dependencies injected (clock, token cache), and the after-the-answer work
// (waitUntil) is waited for before the answer is returned.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { createApp } from "../../src/app.ts";
import type { GuardEnv } from "../../src/config/env.ts";

export async function viaApp(request: Request, overrides: Partial<GuardEnv> = {}, deps: Parameters<typeof createApp>[0] = {}): Promise<Response> {
  const app = createApp(deps);
  const ctx = createExecutionContext();
  const response = await app.fetch(request, { ...(env as GuardEnv), ...overrides }, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}
