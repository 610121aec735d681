// The refused-requests log behind GET /admin/rejections: like ngrok's inspector, the latest requests the
// guard refused, with what an operator needs to tell a misconfigured webhook URL from an attack: when,
// which route, why, from which client address, and which account the request claimed to be for. Never a
// body, a query string, a header value or a credential.
//
// Storage is bounded twice: each isolate keeps at most BUFFER_MAX entries until it hands them to the
// "rejections" AdminGate instance (one RPC in flight per isolate at a time, after the answer was sent),
// and the gate keeps a ring of REJECTIONS_KEPT. A flood of junk therefore costs a bounded number of
// Durable Object writes, whatever its rate, and what is dropped is counted.
import type { GuardEnv } from "../config/env.ts";
import { ACCOUNT_SID } from "../twilio/sids.ts";

export const REJECTIONS_NAME = "rejections";
/** The ring's size: enough for the last few minutes of a noisy incident, small enough to scan. */
export const REJECTIONS_KEPT = 1_000;
/** Per isolate, entries waiting for the next flush; older ones are dropped (and counted) past this. */
export const BUFFER_MAX = 200;
/** Paths are cut here: a route is identified by its start, and no path should be stored without a bound. */
export const MAX_PATH_CHARS = 160;
/** Reasons are our own short machine names; anything longer is cut. */
const MAX_REASON_CHARS = 60;
const MAX_CLIENT_CHARS = 48;

export interface Rejection {
  atMs: number;
  /** webhooks, usage-trigger, admin, twilio (the egress gate), other. */
  route: string;
  method: string;
  /** The path only (no query: a GET webhook's parameters, a token pasted in a URL, stay out). */
  path: string;
  status: number;
  reason: string;
  client: string;
  /** The AccountSid the request claimed (from the payload or path), when it had a well-formed one. */
  account: string | null;
}

export interface RejectionBatch {
  entries: Rejection[];
  dropped: number;
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** The entry as stored: every field bounded and of the expected shape, or null when it is not an entry. */
export function sanitizeRejection(raw: Rejection): Rejection | null {
  if (typeof raw !== "object" || raw === null || !Number.isFinite(raw.atMs) || !Number.isInteger(raw.status)) return null;
  const path = String(raw.path ?? "").split("?")[0]!;
  return {
    atMs: Math.round(raw.atMs),
    route: /^[a-z-]{1,20}$/.test(String(raw.route)) ? String(raw.route) : "other",
    method: METHODS.has(String(raw.method)) ? String(raw.method) : "OTHER",
    path: path.length > MAX_PATH_CHARS ? `${path.slice(0, MAX_PATH_CHARS)}…` : path,
    status: raw.status,
    reason: String(raw.reason ?? "").slice(0, MAX_REASON_CHARS) || `http-${raw.status}`,
    client: String(raw.client ?? "").slice(0, MAX_CLIENT_CHARS),
    account: typeof raw.account === "string" && ACCOUNT_SID.test(raw.account) ? raw.account : null,
  };
}

/**
 * Which answers are refusals worth listing: the client was told no (4xx). A 404 is not (an unknown
 * route, or an operator looking up an account the guard has not seen): it says nothing of an attack.
 */
export function isRefusal(status: number): boolean {
  return status >= 400 && status < 500 && status !== 404;
}

/** This isolate's entries not yet handed to the gate. */
class RejectionBuffer {
  #entries: Rejection[] = [];
  #dropped = 0;
  #inFlight: Promise<void> | null = null;

  note(entry: Rejection): void {
    this.#entries.push(entry);
    if (this.#entries.length > BUFFER_MAX) {
      this.#entries.shift();
      this.#dropped += 1;
    }
  }

  /** Hands the buffer to the gate after the answer (waitUntil); one flush in flight per isolate. */
  flush(env: GuardEnv, waitUntil: (promise: Promise<unknown>) => void): void {
    if (this.#inFlight !== null || (this.#entries.length === 0 && this.#dropped === 0)) return;
    const batch: RejectionBatch = { entries: this.#entries, dropped: this.#dropped };
    this.#entries = [];
    this.#dropped = 0;
    this.#inFlight = env.ADMIN_GATE.getByName(REJECTIONS_NAME)
      .addRejections(batch)
      .catch(() => {
        // Lost with the gate unreachable: counted as dropped, never retried without a bound.
        this.#dropped += batch.entries.length + batch.dropped;
      })
      .finally(() => {
        this.#inFlight = null;
      });
    waitUntil(this.#inFlight);
  }

  /** Tests: wait for the flush in flight, if any. */
  async settled(): Promise<void> {
    await this.#inFlight;
  }
}

export const rejections = new RejectionBuffer();
