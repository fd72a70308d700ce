/**
 * Scripted callee audio for whole simulated calls: clips and pauses laid end to end, plus the
 * matching Deepgram fake script (speech segments at the same byte offsets), so the local VAD and
 * the fake STT hear the same callee at the same moments.
 *
 * @module
 */
import type { SpeechSegment } from "../fakes/deepgram.ts";
import { clipInfo, loadClip } from "../fixtures/clips.ts";
import { encodeMuLaw } from "../../src/audio/g711.ts";

const BYTES_PER_MS = 8;

/** Builds a callee's audio timeline. */
export class CallerTimeline {
  readonly #parts: Uint8Array[] = [];
  readonly segments: SpeechSegment[] = [];
  /** Speech regions in ms from the start of the call audio. */
  readonly speech: { text: string; startMs: number; endMs: number }[] = [];
  #bytes = 0;

  /** The usual start of an outbound call: the callee picks up and says "Hello?", then waits. */
  static answeredWithHello(pauseMs: number): CallerTimeline {
    return new CallerTimeline().pause(300).say("hello", "Hello?").pause(pauseMs);
  }

  /** mu-law silence. */
  pause(ms: number): this {
    this.#push(new Uint8Array(Math.round(ms * BYTES_PER_MS)).fill(0xff));
    return this;
  }

  /** A pure tone, like an answering machine's beep (not speech: the fake STT hears nothing). */
  tone(ms: number, hz = 1000): this {
    const samples = Math.round(ms * BYTES_PER_MS);
    const pcm = Int16Array.from(
      { length: samples },
      (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * hz * i) / 8000)),
    );
    this.#push(encodeMuLaw(pcm));
    return this;
  }

  /**
   * A clip from `tests/fixtures`, recognised by the fake STT as `text`. With `continuesTurn`
   * (Flux) it carries on the previous segment's turn after a pause.
   */
  say(clip: string, text: string, options: { continuesTurn?: boolean } = {}): this {
    const info = clipInfo(clip);
    const region = info.speech[0];
    const start = this.#bytes;
    this.#push(loadClip(clip));
    this.segments.push({
      text,
      startByte: start + region.startMs * BYTES_PER_MS,
      endByte: start + region.endMs * BYTES_PER_MS,
      ...(options.continuesTurn ? { continuesTurn: true } : {}),
    });
    this.speech.push({
      text,
      startMs: start / BYTES_PER_MS + region.startMs,
      endMs: start / BYTES_PER_MS + region.endMs,
    });
    return this;
  }

  /** Total length in ms. */
  get durationMs(): number {
    return this.#bytes / BYTES_PER_MS;
  }

  /** The whole timeline as one mu-law buffer. */
  audio(): Uint8Array {
    const out = new Uint8Array(this.#bytes);
    let offset = 0;
    for (const part of this.#parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  #push(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    this.#bytes += bytes.length;
  }
}
