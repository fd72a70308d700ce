/**
 * The one way this service bounds a wait on a peer (a mark echo, a socket close, a vendor's first
 * byte, a hang-up): every wait either settles, times out, or is aborted by its call's signal, and
 * its timer is always cleared so nothing outlives the wait.
 *
 * @module
 */

/** A wait that ran out of time. */
export class DeadlineError extends Error {
  constructor(readonly what: string, readonly ms: number) {
    super(`${what} did not happen within ${ms} ms`);
    this.name = "DeadlineError";
  }
}

/** Options for {@link deadline}. */
export interface DeadlineOptions {
  /** Rejects with the signal's reason as soon as it aborts. */
  signal?: AbortSignal;
  /** Names the wait in the {@link DeadlineError} message, e.g. "mark echo". */
  what?: string;
}

/**
 * Settles like `promise`, or rejects with a {@link DeadlineError} after `ms`, or with
 * `signal.reason` when the signal aborts first. A late rejection of `promise` is swallowed.
 */
export function deadline<T>(
  promise: PromiseLike<T>,
  ms: number,
  options: DeadlineOptions = {},
): Promise<T> {
  const { signal, what = "the operation" } = options;
  if (signal?.aborted) {
    Promise.resolve(promise).catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => finish(() => reject(signal!.reason));
    const timer = setTimeout(() => finish(() => reject(new DeadlineError(what, ms))), ms);
    let done = false;
    const finish = (settle: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    Promise.resolve(promise).then(
      (value) => finish(() => resolve(value)),
      (error) => finish(() => reject(error)),
    );
  });
}

/**
 * Waits for `promise` for at most `ms` (or until `signal` aborts) and never rejects: resolves
 * true when it settled in time, false otherwise. For waits whose outcome does not matter, only
 * that they end (a close handshake, a drain).
 */
export async function settledWithin(
  promise: PromiseLike<unknown>,
  ms: number,
  signal?: AbortSignal,
): Promise<boolean> {
  try {
    await deadline(promise, ms, { signal });
    return true;
  } catch (error) {
    return !(error instanceof DeadlineError) && !signal?.aborted;
  }
}

/** Settles like `promise`, or rejects with `signal.reason` as soon as `signal` aborts. */
export function abortable<T>(promise: PromiseLike<T>, signal: AbortSignal): Promise<T> {
  return deadline(promise, 2 ** 31 - 1, { signal });
}

/** Resolves after `ms`, or rejects with `signal.reason` when it aborts first. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  // Not a `deadline` on a promise that never settles: that would build (and throw away) a
  // DeadlineError, stack trace and all, every time a pause simply ends.
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Fires `onTimeout` once nothing has restarted it for `ms`: the bound on a peer's silence (no
 * audio from TTS for so long). Restarted far more often than it fires, once per chunk, so a
 * restart only notes the time; the one timer, when it comes due early, waits out the rest.
 */
export class IdleTimeout {
  readonly #ms: number;
  readonly #onTimeout: () => void;
  readonly #now: () => number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dueAt = 0;

  constructor(ms: number, onTimeout: () => void, now: () => number = () => performance.now()) {
    this.#ms = ms;
    this.#onTimeout = onTimeout;
    this.#now = now;
  }

  /** Whether it is counting. */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Starts counting `ms` afresh from `now` (the clock's time, if the caller has read it). */
  restart(now: number = this.#now()): void {
    this.#dueAt = now + this.#ms;
    this.#timer ??= setTimeout(() => this.#check(), this.#ms);
  }

  /** Stops counting; a later {@link restart} starts again. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    const left = this.#dueAt - this.#now();
    if (left > 0) {
      this.#timer = setTimeout(() => this.#check(), left);
      return;
    }
    this.#timer = undefined;
    this.#onTimeout();
  }
}
