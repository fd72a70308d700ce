/**
 * Bounded retries of a Deno KV operation. Two processes writing one local KV file get
 * `TypeError: database is locked` when their writes collide; a remote store can fail for a
 * moment. Either clears up within milliseconds to seconds, so a few backed-off retries turn
 * most of them into successes; the last error is rethrown.
 *
 * @module
 */
import { delay } from "../async/deadline.ts";

/** Options for {@link withKvRetry}. */
export interface KvRetryOptions {
  /** Attempts in all, including the first (default 6). */
  attempts?: number;
  /** First back-off; doubles per retry, with jitter (default 20 ms). */
  baseDelayMs?: number;
  /** Stops the retries (the operation in flight still completes). */
  signal?: AbortSignal;
  /** Whether `error` may clear up on its own (default: every error is retried). */
  retryIf?: (error: unknown) => boolean;
}

/** Runs `operation`, retrying a failure with exponential back-off up to `attempts` times. */
export async function withKvRetry<T>(
  operation: () => Promise<T>,
  options: KvRetryOptions = {},
): Promise<T> {
  const { attempts = 6, baseDelayMs = 20, signal, retryIf } = options;
  for (let attempt = 1;; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= attempts || signal?.aborted || (retryIf && !retryIf(error))) throw error;
      await delay(baseDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random()), signal);
    }
  }
}
