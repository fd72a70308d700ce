/**
 * A {@link CallClock} on virtual time: timers fire only when a test calls
 * {@link ManualClock.advance}, so idle prompts, call limits and playback bounds are tested
 * without sleeping. `deadline` keeps the contract of `src/async/deadline.ts`.
 *
 * @module
 */
import { DeadlineError, type DeadlineOptions } from "../../src/async/deadline.ts";
import type { CallClock } from "../../src/session/clock.ts";

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
}

/** Lets promise callbacks (and what they schedule) run: one macrotask turn. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Virtual time that moves only when told to. */
export class ManualClock implements CallClock {
  #now = 0;
  #seq = 0;
  readonly #timers = new Set<Timer>();

  now(): number {
    return this.#now;
  }

  /** Timers armed and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  delay(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#timers.delete(timer);
        reject(signal!.reason);
      };
      const timer = this.#schedule(ms, () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  deadline<T>(promise: PromiseLike<T>, ms: number, options: DeadlineOptions = {}): Promise<T> {
    const { signal, what = "the operation" } = options;
    if (signal?.aborted) {
      Promise.resolve(promise).catch(() => {});
      return Promise.reject(signal.reason);
    }
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (settleIt: () => void) => {
        if (done) return;
        done = true;
        this.#timers.delete(timer);
        signal?.removeEventListener("abort", onAbort);
        settleIt();
      };
      const onAbort = () => finish(() => reject(signal!.reason));
      const timer = this.#schedule(ms, () => finish(() => reject(new DeadlineError(what, ms))));
      signal?.addEventListener("abort", onAbort, { once: true });
      Promise.resolve(promise).then(
        (value) => finish(() => resolve(value)),
        (error) => finish(() => reject(error)),
      );
    });
  }

  /**
   * Moves time forward by `ms`, firing due timers in time order; after each, lets the promise
   * callbacks it set off run, so timers they arm within the span fire too.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const timer of this.#timers) {
        if (timer.at > target) continue;
        if (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq)) {
          next = timer;
        }
      }
      if (!next) break;
      this.#timers.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.fire();
      await settle();
    }
    this.#now = target;
  }

  #schedule(ms: number, fire: () => void): Timer {
    const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fire };
    this.#timers.add(timer);
    return timer;
  }
}
