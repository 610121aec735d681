// Small statistics shared by the benchmark scripts.

/** The middle value (the upper middle for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Measures `a` and `b` back to back, `a` first in even rounds and `b` first in odd ones, so neither side
 * always runs right after the other (and after its garbage).
 */
export async function inTurn(round: number, a: () => number | Promise<number>, b: () => number | Promise<number>): Promise<[number, number]> {
  if (round % 2 === 0) {
    const x = await a();
    return [x, await b()];
  }
  const y = await b();
  return [await a(), y];
}
