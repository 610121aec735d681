// What the gate (a Worker) and the account's Durable Object say to each other: one reservation call
// before a send is forwarded (carrying the settlements of earlier sends), one settlement call after
// Twilio answered when no reservation carried it. Plain data (RPC-serialisable).
import type { SendFacts } from "./send.ts";
import type { SettlementItem } from "./settlements.ts";

export type { EgressMode } from "../config/config.ts";
import type { EgressMode } from "../config/config.ts";

/** A reservation's id: crypto.randomUUID() in the AccountGuard (lower-case hex and dashes, 36 characters). */
export const RESERVATION_ID = /^[0-9a-f-]{36}$/;

export type GateRefusalReason = "credentials" | "country" | "per-prefix" | "per-destination" | "limit" | "breaker-open";

export interface GateRefusal {
  reason: GateRefusalReason;
  /** A sentence for the refusal's `message`: no secrets, no other account's data. */
  detail: string;
  retryAfterS?: number;
}

export interface ReserveRequest {
  accountSid: string;
  atMs: number;
  mode: Exclude<EgressMode, "off">;
  /** An egress key to check in the same call (its id and SHA-256), or null for a token or API key. */
  key: { id: string; hash: string } | null;
  send: SendFacts;
  /** Settlements of earlier sends of the account that this call carries (settlements.ts): applied first. */
  settle?: SettlementItem[];
}

export type ReserveAnswer =
  | {
      ok: true;
      reservationId: string;
      estimateUsd: number;
      /** The TimeLimit (seconds) to add to a call that has none. */
      setTimeLimitS: number | null;
      /** report-only: what enforce would have refused. */
      wouldRefuse: GateRefusal | null;
      /** The account's first send to this destination country. */
      newCountry: boolean;
    }
  | { ok: false; refusal: GateRefusal };

/** One send's outcome in a batch of reservations (AccountGuard.reserveSends): its answer, or `failed` (rolled back alone). */
export type ReserveOutcome = ReserveAnswer | { failed: true };
