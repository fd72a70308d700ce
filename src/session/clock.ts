/**
 * Time as a call sees it: a monotonic clock plus the two timer shapes the voice agent uses (a
 * delay that its call's signal can cancel, and a bounded wait). Injected, so tests drive idle
 * prompts, the call-time limit and playback bounds on virtual time instead of sleeping.
 *
 * @module
 */
import { deadline, type DeadlineOptions, delay } from "../async/deadline.ts";

/** The timers and clock of one call. */
export interface CallClock {
  /** Monotonic time in ms. */
  now(): number;
  /** Resolves after `ms`, or rejects with `signal.reason` when it aborts first (timer cleared). */
  delay(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * Settles like `promise`, or rejects with a `DeadlineError` after `ms`, or with `signal.reason`
   * when it aborts first; same contract as {@link deadline}.
   */
  deadline<T>(promise: PromiseLike<T>, ms: number, options?: DeadlineOptions): Promise<T>;
}

/** Real time: `performance.now()` and the timers of `src/async/deadline.ts`. */
export const systemClock: CallClock = {
  now: () => performance.now(),
  delay,
  deadline,
};
