// Credential guessing at the gate is rate limited per client address (`CF-Connecting-IP`): failures are
// counted per UTC minute in an AdminGate instance of that address (the admin console's limiter:
// src/admin/gate.ts, ADMIN_FAILURES_PER_MINUTE), and an address found limited is remembered by this
// isolate until the minute ends, so its next requests are refused before any credential is checked,
// without a Durable Object call. Each isolate that has not yet seen the address allows it one more
// failed attempt before it learns: at most the limit plus one attempt per isolate a minute.
import type { RateLimit } from "../admin/auth.ts";

/** Addresses this isolate remembers as limited; beyond this the oldest is forgotten (bounded memory). */
const MAX_REMEMBERED = 10_000;

export interface FailureCounter {
  /** Counts a failure; answers the state before it (limited: this attempt is refused with 429). */
  fail(address: string, nowMs: number): Promise<RateLimit>;
}

export class AuthLimiter {
  readonly #limitedUntil = new Map<string, number>();

  /** Seconds to wait when the address is known to be limited, else null. */
  limited(address: string, nowMs: number): number | null {
    const until = this.#limitedUntil.get(address);
    if (until === undefined) return null;
    if (until <= nowMs) {
      this.#limitedUntil.delete(address);
      return null;
    }
    return Math.max(1, Math.ceil((until - nowMs) / 1000));
  }

  /** Counts a failed attempt; returns the seconds to wait when the address is now limited, else null. */
  async fail(counter: FailureCounter, address: string, nowMs: number): Promise<number | null> {
    const before = await counter.fail(address, nowMs);
    if (!before.limited) return null;
    if (this.#limitedUntil.size >= MAX_REMEMBERED) {
      const oldest = this.#limitedUntil.keys().next().value;
      if (oldest !== undefined) this.#limitedUntil.delete(oldest);
    }
    this.#limitedUntil.set(address, nowMs + before.retryAfterS * 1000);
    return before.retryAfterS;
  }
}
