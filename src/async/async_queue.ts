/**
 * A single-consumer async channel: producers `push` without waiting, one consumer iterates.
 * Used to hand LLM phrases to TTS while both are streaming.
 *
 * @module
 */

/** Unbounded in principle; in practice it holds the phrases of one answer. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiter: PromiseWithResolvers<void> | undefined;
  #closed = false;
  #error: unknown;
  #failed = false;

  /** Adds an item; ignored after {@link close}. */
  push(item: T): void {
    if (this.#closed) return;
    this.#items.push(item);
    this.#wake();
  }

  /** No more items: the consumer finishes after draining what is queued. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  /** Ends the consumer's iteration with `error` once the queued items are consumed. */
  fail(error: unknown): void {
    if (this.#closed) return;
    this.#error = error;
    this.#failed = true;
    this.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    while (true) {
      if (this.#items.length > 0) {
        yield this.#items.shift()!;
        continue;
      }
      if (this.#closed) {
        if (this.#failed) throw this.#error;
        return;
      }
      this.#waiter = Promise.withResolvers();
      await this.#waiter.promise;
    }
  }
}
