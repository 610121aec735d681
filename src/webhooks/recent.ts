// A bounded set of recently seen keys (insertion-ordered Map as an LRU). Per isolate, best effort:
// used only for hints (X-Guard-Duplicate on status callbacks), never for money decisions.
export class RecentKeys {
  readonly #capacity: number;
  readonly #keys = new Map<string, true>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** True when the key was seen before; records it either way. */
  seen(key: string): boolean {
    const had = this.#keys.delete(key);
    this.#keys.set(key, true);
    if (this.#keys.size > this.#capacity) {
      const oldest = this.#keys.keys().next().value;
      if (oldest !== undefined) this.#keys.delete(oldest);
    }
    return had;
  }
}
