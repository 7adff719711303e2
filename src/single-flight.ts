/**
 * Identical concurrent work joins one pending promise; the entry is removed when it settles, so a
 * failure is not cached here (the caller decides what to remember). Used by the pipeline (master
 * and variant keys) and the source store (registrations and shared fetches).
 */
export class SingleFlight<T> {
  readonly #inflight = new Map<string, Promise<T>>();

  run(key: string, work: () => Promise<T>): { promise: Promise<T>; joined: boolean } {
    const pending = this.#inflight.get(key);
    if (pending) return { promise: pending, joined: true };
    const promise = (async () => {
      try {
        return await work();
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, promise);
    return { promise, joined: false };
  }

  /** Whether work for `key` is in flight. */
  has(key: string): boolean {
    return this.#inflight.has(key);
  }

  get size(): number {
    return this.#inflight.size;
  }
}
