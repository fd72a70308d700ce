/**
 * Key presses as callee input: presses are collected into one input that ends with `#` or a
 * short pause, as a caller types a PIN or an account number, so a burst of presses costs one LLM
 * request rather than one per key.
 *
 * What a call keeps is bounded whatever the peer sends: an input holds at most `maxDigits` keys
 * (later ones are counted and dropped), and `#` ends an input at once only if the previous input
 * ended at least a pause ago, so even a flood of `1#1#1#…` yields at most one input per pause.
 *
 * @module
 */
import { DTMF_DIGITS } from "../telnyx/media_stream.ts";
import type { CallClock } from "./clock.ts";

/** Keys a phone keypad sends. */
const KEYPAD: ReadonlySet<string> = new Set(DTMF_DIGITS);

/** Default quiet time that ends an input. */
export const DTMF_PAUSE_MS = 2000;
/** Default most keys kept per input: longer than card numbers (19) and phone numbers (15). */
export const DTMF_MAX_DIGITS = 24;
/** The key that ends an input without waiting for the pause. */
const DTMF_TERMINATOR = "#";

/** One aggregated input. */
export interface DtmfInput {
  /** The keys in order, at most `maxDigits`, the terminator included when it ended the input. */
  digits: string;
  /** Presses beyond `maxDigits` that were dropped. */
  dropped: number;
}

/** Options for {@link DtmfAggregator}. */
export interface DtmfAggregatorOptions {
  clock: CallClock;
  /** Called once per finished input. */
  onInput: (input: DtmfInput) => void;
  /** Called if `onInput` throws when a pause ends an input (nobody else could catch it). */
  onError: (error: unknown) => void;
  /** Quiet time that ends an input; default {@link DTMF_PAUSE_MS}. */
  pauseMs?: number;
  /** Most keys kept per input; default {@link DTMF_MAX_DIGITS}. */
  maxDigits?: number;
}

/** Collects one call's key presses into inputs. Call {@link close} when the call ends. */
export class DtmfAggregator {
  readonly #clock: CallClock;
  readonly #onInput: (input: DtmfInput) => void;
  readonly #onError: (error: unknown) => void;
  readonly #pauseMs: number;
  readonly #maxDigits: number;
  #digits = "";
  #dropped = 0;
  #lastInputAt: number | undefined;
  #pause: AbortController | undefined;
  #closed = false;

  constructor(options: DtmfAggregatorOptions) {
    this.#clock = options.clock;
    this.#onInput = options.onInput;
    this.#onError = options.onError;
    this.#pauseMs = options.pauseMs ?? DTMF_PAUSE_MS;
    this.#maxDigits = options.maxDigits ?? DTMF_MAX_DIGITS;
  }

  /** Keys of the input in progress. */
  get pending(): string {
    return this.#digits;
  }

  /** Adds one press; returns false (and keeps nothing) for anything that is not a keypad key. */
  push(digit: string): boolean {
    if (this.#closed || !KEYPAD.has(digit)) return false;
    if (this.#digits.length < this.#maxDigits) this.#digits += digit;
    else this.#dropped++;
    const now = this.#clock.now();
    const paused = this.#lastInputAt === undefined || now - this.#lastInputAt >= this.#pauseMs;
    if (digit === DTMF_TERMINATOR && paused) this.#flush();
    else this.#restartPause();
    return true;
  }

  /** Drops the input in progress and its timer. */
  close(): void {
    this.#closed = true;
    this.#pause?.abort();
    this.#pause = undefined;
    this.#digits = "";
  }

  #restartPause(): void {
    this.#pause?.abort();
    const pause = new AbortController();
    this.#pause = pause;
    this.#clock.delay(this.#pauseMs, pause.signal).then(
      () => {
        if (this.#pause === pause) this.#flush();
      },
      () => {}, // restarted by a newer press, or closed
    ).catch(this.#onError);
  }

  #flush(): void {
    this.#pause?.abort();
    this.#pause = undefined;
    if (this.#digits === "") return;
    const input: DtmfInput = { digits: this.#digits, dropped: this.#dropped };
    this.#digits = "";
    this.#dropped = 0;
    this.#lastInputAt = this.#clock.now();
    this.#onInput(input);
  }
}
