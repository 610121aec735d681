// The policy's pumping rules for one send (CONTRACT.md, "egress"): `countries`, `perDestination`,
// `perPrefix`. Pure: the account's Durable Object supplies the counts of the current windows and keeps
// the returned keys.
import type { EgressRules, WindowKind } from "../ledger/policy.ts";
import { windowEnd, windowId } from "../ledger/windows.ts";
import { prefixOf, type Destination } from "./destination.ts";

export type PumpingVerdict =
  | { ok: true; counters: Array<{ key: string; window: WindowKind; windowId: string }> }
  | { ok: false; reason: "country"; country: string | null }
  | { ok: false; reason: "per-destination" | "per-prefix"; retryAfterS: number; key: string };

/** The counter key of one rule for one destination, in its current window. */
function counter(kind: "dest" | "prefix", value: string, window: WindowKind, nowMs: number) {
  const id = windowId(window, nowMs);
  return { key: `${kind}:${value}@${id}`, window, windowId: id };
}

/**
 * Checks a send against the rules. `count(key)` answers how many sends were already counted under a
 * key. A send that passes returns the counters to increment; a refused one changes nothing.
 */
export function checkPumping(rules: EgressRules | undefined, destination: Destination, nowMs: number, count: (key: string) => number): PumpingVerdict {
  if (rules === undefined) return { ok: true, counters: [] };
  if (rules.countries !== undefined && (destination.country === null || !rules.countries.includes(destination.country))) {
    return { ok: false, reason: "country", country: destination.country };
  }
  const counters: Array<{ key: string; window: WindowKind; windowId: string }> = [];
  const number = destination.e164 ?? destination.address;
  if (rules.perDestination !== undefined) {
    const c = counter("dest", number, rules.perDestination.window, nowMs);
    if (count(c.key) >= rules.perDestination.max) return { ok: false, reason: "per-destination", retryAfterS: retryAfter(c.window, nowMs), key: c.key };
    counters.push(c);
  }
  if (rules.perPrefix !== undefined && destination.e164 !== null) {
    const c = counter("prefix", prefixOf(destination.e164, rules.perPrefix.digits), rules.perPrefix.window, nowMs);
    if (count(c.key) >= rules.perPrefix.max) return { ok: false, reason: "per-prefix", retryAfterS: retryAfter(c.window, nowMs), key: c.key };
    counters.push(c);
  }
  return { ok: true, counters };
}

/** Seconds until the window ends (at least 1): when the send may be retried. */
export function retryAfter(window: WindowKind, nowMs: number): number {
  return Math.max(1, Math.ceil((windowEnd(window, nowMs) - nowMs) / 1000));
}
