// One structured JSON line per request (route, account, verdict, status, duration), plus error lines.
// Defence in depth: every line passes through a redactor that knows the configured secret values, so a
// secret that slipped into a field (an echoed header, an upstream error text) is masked, never printed.

import { redactionOrder, redactOrdered } from "../util/redact.ts";

export interface RequestLogLine {
  route: string;
  method: string;
  status: number;
  durationMs: number;
  account?: string | null;
  verdict?: string;
  breaker?: string;
  duplicate?: boolean;
  [extra: string]: unknown;
}

// Short values would mask innocent text ("1", "a"); a real secret is never this short.
const MIN_REDACTABLE_LENGTH = 6;

export class Logger {
  readonly #secrets: string[];
  constructor(secrets: ReadonlyArray<string | null | undefined> = []) {
    this.#secrets = redactionOrder(secrets.filter((s): s is string => !!s && s.length >= MIN_REDACTABLE_LENGTH));
  }

  redact(text: string): string {
    return redactOrdered(text, this.#secrets);
  }

  request(line: RequestLogLine): void {
    console.log(this.redact(JSON.stringify({ level: "info", ...line, event: "request" })));
  }

  warn(event: string, fields: Record<string, unknown> = {}): void {
    console.warn(this.redact(JSON.stringify({ level: "warn", ...fields, event })));
  }

  error(event: string, error: unknown, fields: Record<string, unknown> = {}): void {
    const detail =
      error instanceof Error ? { errorName: error.name, errorMessage: error.message } : { errorMessage: String(error) };
    console.error(this.redact(JSON.stringify({ level: "error", ...fields, ...detail, event })));
  }
}
