/**
 * Promises that resolve once a growing count (requests or deliveries a fake has received)
 * reaches theirs.
 *
 * @module
 */

/** Waiters on a count read through `current`; the owner calls {@link notify} as it grows. */
export class CountWaiters {
  readonly #waiters: { count: number; resolve: () => void }[] = [];

  constructor(readonly current: () => number) {}

  /** Resolves once the count reaches `count` (unbounded: the caller bounds it). */
  waitFor(count: number): Promise<void> {
    if (count <= this.current()) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push({ count, resolve });
    return promise;
  }

  /** Resolves the waiters the count has reached. */
  notify(): void {
    const reached = this.current();
    for (const waiter of this.#waiters.filter((w) => w.count <= reached)) {
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }
}
