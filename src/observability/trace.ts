// The request trace: each route handler fills it in as it decides; src/app.ts turns it into the request's
// log line (log.ts) and counters (metrics.ts) once the answer is sent.

/** What a route handler learned about its request, for the request's one log line and its metrics. */
export interface RequestTrace {
  account?: string | null;
  verdict?: string;
  breaker?: "open";
  duplicate?: boolean;
  eventKind?: string;
  /** The request was sent on to the origin (whatever the origin then answered). */
  forwarded?: boolean;
}
