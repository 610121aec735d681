// Reconciling the guard's count with Twilio's Usage Records. Pure.
//
// Twilio's "Today" record (https://www.twilio.com/docs/usage/api/usage-record) is the day's spend as
// Twilio billed it, including spend whose status callbacks have not reached the guard yet (or never
// will: a send the app made around the gate). Adding the difference to the day and then counting the
// late callbacks too would count those dollars twice. So the day keeps both figures, and its spend is
// the larger of the two:
//   day spend = max(counted by the guard, Twilio's latest figure)
// An event adds to the day (and month) only what it raises that maximum by; a reconciliation raises it
// to Twilio's figure. No dollar is counted twice, and the day is never below either source.
import type { Addition } from "./limits.ts";
import type { WindowKind } from "./policy.ts";

export interface DayFigures {
  /** The sum of the events the guard counted for the day (micro-USD). */
  countedMicros: number;
  /** Twilio's latest figure for the day (micro-USD); null before the first reconciliation. */
  twilioMicros: number | null;
}

/** The day's spend as the limits see it. */
export function daySpend(day: DayFigures): number {
  return Math.max(day.countedMicros, day.twilioMicros ?? 0);
}

export interface DayChange {
  day: DayFigures;
  /** What to add per window: minute and hour get the event as counted, day and month the change of daySpend. */
  perWindow: Record<WindowKind, Addition>;
}

/** An event counted by the guard (add: its micro-USD, possibly negative for a refund, and its events). */
export function countEvent(day: DayFigures, add: Addition): DayChange {
  const next: DayFigures = { countedMicros: Math.max(0, day.countedMicros + add.usdMicros), twilioMicros: day.twilioMicros };
  const reconciled: Addition = { usdMicros: daySpend(next) - daySpend(day), events: add.events };
  return { day: next, perWindow: { minute: add, hour: add, day: reconciled, month: reconciled } };
}

/**
 * Twilio reports `twilioMicros` for the day. A figure lower than one seen before is ignored (usage
 * records only grow within a day; a lower answer is a stale read). Adds to the day and month only.
 */
export function reconcileDay(day: DayFigures, twilioMicros: number): DayChange {
  if (!Number.isSafeInteger(twilioMicros) || twilioMicros < 0) throw new RangeError("Twilio's figure is non-negative integer micro-USD");
  const next: DayFigures = { countedMicros: day.countedMicros, twilioMicros: Math.max(twilioMicros, day.twilioMicros ?? 0) };
  const zero: Addition = { usdMicros: 0, events: 0 };
  const raised: Addition = { usdMicros: daySpend(next) - daySpend(day), events: 0 };
  return { day: next, perWindow: { minute: zero, hour: zero, day: raised, month: raised } };
}
