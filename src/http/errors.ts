// The one error funnel. Code anywhere may throw a GuardError: it carries the status and the public
// message the client may see. Anything else is a bug or an outage: it is logged and answered with a
// generic 500, so internal messages (and anything they might contain) never reach a client.

/** text: short plain text; json: `{error, message, …details}`; twilio: Twilio's REST error shape (the egress gate). */
export type ErrorFormat = "text" | "json" | "twilio";

export interface GuardErrorOptions {
  headers?: Record<string, string>;
  /** A stable machine-readable reason, used in logs, metrics and `X-Guard-Verdict`. */
  reason?: string;
  /** Extra public JSON fields (e.g. the name of a bad setting). Never secrets. */
  details?: Record<string, unknown>;
  format?: ErrorFormat;
  /** Twilio's error code, for the `twilio` format. */
  code?: number;
}

export class GuardError extends Error {
  readonly status: number;
  readonly publicMessage: string;
  readonly reason: string;
  readonly headers: Record<string, string>;
  readonly details: Record<string, unknown>;
  readonly format: ErrorFormat;
  readonly code: number | undefined;

  constructor(status: number, publicMessage: string, options: GuardErrorOptions = {}) {
    super(publicMessage);
    this.name = "GuardError";
    this.status = status;
    this.publicMessage = publicMessage;
    this.reason = options.reason ?? `http-${status}`;
    this.headers = options.headers ?? {};
    this.details = options.details ?? {};
    this.format = options.format ?? "text";
    this.code = options.code;
  }
}

/** A missing or malformed setting: 500 with a JSON body naming it; nothing is forwarded. */
export class ConfigError extends GuardError {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super(500, `${setting}: ${problem}`, {
      reason: "config",
      details: { setting },
      format: "json",
    });
    this.name = "ConfigError";
    this.setting = setting;
  }
}

const GENERIC_500 = "internal error";

export function toErrorResponse(error: unknown): Response {
  if (!(error instanceof GuardError)) {
    return new Response(JSON.stringify({ error: GENERIC_500 }), {
      status: 500,
      headers: { "content-type": "application/json; charset=utf-8" },
    });
  }
  const headers = new Headers(error.headers);
  if (error.format === "twilio") {
    // https://www.twilio.com/docs/usage/twilios-response: what every Twilio SDK parses into its exception.
    headers.set("content-type", "application/json; charset=utf-8");
    const code = error.code ?? error.status;
    const body = { code, message: error.publicMessage, more_info: `https://www.twilio.com/docs/errors/${code}`, status: error.status, details: error.details };
    return new Response(JSON.stringify(body), { status: error.status, headers });
  }
  if (error.format === "json") {
    headers.set("content-type", "application/json; charset=utf-8");
    const body = { error: error.reason, message: error.publicMessage, ...error.details };
    return new Response(JSON.stringify(body), { status: error.status, headers });
  }
  headers.set("content-type", "text/plain; charset=utf-8");
  return new Response(`${error.publicMessage}\n`, { status: error.status, headers });
}
