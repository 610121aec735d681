// A seeded random number generator for tests that spread inputs (differential and mutation runs): the
// same seed gives the same sequence, so a run that prints its seed can be replayed.

/** mulberry32: small, fast, good enough to spread test inputs (not for anything secret). Values in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Seeded {
  readonly seed: number;
  readonly next: () => number;
  constructor(seed: number) {
    this.seed = seed;
    this.next = mulberry32(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}
