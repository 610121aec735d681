// The group commit's lanes (src/breaker/group-commit.ts) under test: calls that stay in flight until the
// test answers them, a watchdog fired by hand, and a way to let promise continuations run without timers.

/** Calls that stay in flight until the test answers them, recording every batch. */
export function scriptedBatchCalls<I, O>(ok: (item: I) => O) {
  const batches: I[][] = [];
  const answers: Array<(outcomes: O[] | Error) => void> = [];
  const call = (items: I[]): Promise<O[]> => {
    batches.push(items);
    return new Promise((resolve, reject) => answers.push((a) => (a instanceof Error ? reject(a) : resolve(a))));
  };
  /** Answers call `i`: every item `ok` unless given. */
  const answer = (i: number, outcomes?: O[] | Error) => answers[i]!(outcomes ?? batches[i]!.map(ok));
  return { batches, call, answer };
}

/** A watchdog the test fires by hand. */
export function manualWatch() {
  const watches: Array<{ fire: () => void; cancelled: boolean }> = [];
  const watch = (_ms: number, fire: () => void) => {
    const w = { fire, cancelled: false };
    watches.push(w);
    return () => void (w.cancelled = true);
  };
  return { watch, watches };
}

/** Lets every pending promise continuation run (no timers involved). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}
