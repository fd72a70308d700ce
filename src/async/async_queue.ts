/**
 * The one single-consumer async channel of this service: producers `push` without waiting, one
 * consumer iterates. It carries LLM phrases to TTS, Cartesia's audio of one reply to playback,
 * and Deepgram's transcript events to the agent.
 *
 * @module
 */

/** Options of {@link AsyncQueue}; all optional. */
export interface AsyncQueueOptions<T> {
  /**
   * Queue length at which items that {@link droppable} accepts are refused (the consumer lags).
   * Other items are always kept, so the bound only holds for droppable ones. Default: none.
   */
  limit?: number;
  /** Which items may be refused at the {@link limit}; default: every item. */
  droppable?: (item: T) => boolean;
  /** Called once when the consumer leaves before the end (`break`, `return()`). */
  onReturn?: () => void;
}

/**
 * Unbounded unless {@link AsyncQueueOptions.limit} is set. Iterate it once: it is its own
 * iterator, and leaving the loop early discards what is queued and closes it.
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  readonly #items: T[] = [];
  readonly #limit: number;
  readonly #droppable: (item: T) => boolean;
  #onReturn: (() => void) | undefined;
  #waiter: PromiseWithResolvers<IteratorResult<T>> | undefined;
  #closed = false;
  #failed = false;
  #error: unknown;

  constructor(options: AsyncQueueOptions<T> = {}) {
    this.#limit = options.limit ?? Infinity;
    this.#droppable = options.droppable ?? (() => true);
    this.#onReturn = options.onReturn;
  }

  /**
   * Adds an item. Returns false when it was not queued: the queue is closed, or it is full and
   * the item is droppable.
   */
  push(item: T): boolean {
    if (this.#closed) return false;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter.resolve({ value: item, done: false });
      return true;
    }
    if (this.#items.length >= this.#limit && this.#droppable(item)) return false;
    this.#items.push(item);
    return true;
  }

  /** No more items: the consumer finishes after draining what is queued. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve({ value: undefined, done: true });
  }

  /** Ends the consumer's iteration with `error` once the queued items are consumed. */
  fail(error: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter.reject(error);
    else {
      this.#failed = true;
      this.#error = error;
    }
  }

  /** True once closed, failed or left by the consumer: further pushes are ignored. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Items waiting for the consumer. */
  get size(): number {
    return this.#items.length;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#items.length > 0) {
      return Promise.resolve({ value: this.#items.shift()!, done: false });
    }
    if (this.#failed) {
      // Thrown once, like a generator: afterwards the iteration is simply over.
      this.#failed = false;
      const error = this.#error;
      this.#error = undefined;
      return Promise.reject(error);
    }
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    if (this.#waiter) return Promise.reject(new Error("AsyncQueue has a single consumer"));
    this.#waiter = Promise.withResolvers();
    return this.#waiter.promise;
  }

  /** The consumer leaves: queued items are discarded, then `onReturn` runs (once). */
  return(): Promise<IteratorResult<T>> {
    this.#items.length = 0;
    this.#failed = false;
    this.#error = undefined;
    this.close();
    const onReturn = this.#onReturn;
    this.#onReturn = undefined;
    onReturn?.();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
