/**
 * Paces a call's inbound audio to real time, so a peer sending faster than a phone line cannot
 * make us transcribe (and pay for) more audio than the call lasts.
 *
 * A token bucket over bytes: it fills at the call's byte rate and holds at most `burstMs` of
 * audio, which absorbs network jitter, our own lag and frames bunched at the start of a stream.
 * A frame that does not fit is dropped whole.
 *
 * @module
 */

/**
 * Bytes per second of a call's audio: 8 kHz G.711 mono, one byte per sample. Fixed rather than
 * taken from the `start` frame: the whole pipeline runs at this rate, and a peer must not raise
 * its own allowance by announcing a higher one.
 */
const CALL_AUDIO_BYTES_PER_SECOND = 8_000;

/**
 * Default for {@link InboundAudioPacerOptions.burstMs}. Frames are paced when we read them, so
 * our own event loop's lag counts as jitter: the allowance must cover a stream falling behind
 * near a full core and catching up, or real speech is dropped (README, `GET /ws`).
 */
export const DEFAULT_INBOUND_BURST_MS = 5_000;

/** Settings for {@link InboundAudioPacer}. */
export interface InboundAudioPacerOptions {
  /** Defaults to {@link CALL_AUDIO_BYTES_PER_SECOND}. */
  bytesPerSecond?: number;
  /**
   * How much audio may arrive ahead of real time; also the largest frame that can ever pass.
   * Defaults to {@link DEFAULT_INBOUND_BURST_MS}.
   */
  burstMs?: number;
  /** Milliseconds on a monotonic clock; defaults to `performance.now`. Tests inject their own. */
  now?: () => number;
}

/** Decides, frame by frame, whether inbound audio is within real time. O(1), no allocation. */
export class InboundAudioPacer {
  readonly #bytesPerMs: number;
  readonly #capacity: number;
  readonly #now: () => number;
  /** Bytes that may pass right now. */
  #tokens: number;
  #refilledAt: number;

  constructor(options: InboundAudioPacerOptions = {}) {
    const { bytesPerSecond = CALL_AUDIO_BYTES_PER_SECOND, burstMs = DEFAULT_INBOUND_BURST_MS } =
      options;
    if (!(bytesPerSecond > 0) || !(burstMs > 0)) {
      throw new RangeError(
        `bytesPerSecond (${bytesPerSecond}) and burstMs (${burstMs}) must be positive`,
      );
    }
    this.#bytesPerMs = bytesPerSecond / 1000;
    this.#capacity = this.#bytesPerMs * burstMs;
    this.#now = options.now ?? (() => performance.now());
    // Full at first: a stream may open with a few frames bunched together.
    this.#tokens = this.#capacity;
    this.#refilledAt = this.#now();
  }

  /**
   * True when `bytes` more audio is within real time (and counts it); false to drop the frame.
   * `now` may be given by a caller that already read the pacer's clock for this frame.
   */
  admit(bytes: number, now: number = this.#now()): boolean {
    const elapsed = now - this.#refilledAt;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#capacity, this.#tokens + elapsed * this.#bytesPerMs);
      this.#refilledAt = now;
    }
    if (bytes > this.#tokens) return false;
    this.#tokens -= bytes;
    return true;
  }

  /** Gives back what {@link admit} counted for a frame that turned out not to be audio. */
  refund(bytes: number): void {
    this.#tokens = Math.min(this.#capacity, this.#tokens + bytes);
  }
}
