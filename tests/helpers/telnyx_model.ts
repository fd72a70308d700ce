/**
 * Telnyx's side of bot playback on a test clock, shared by the playback and voice agent tests.
 *
 * @module
 */
import { type OutboundFrame, parseOutboundFrame } from "../../src/telnyx/media_stream.ts";
import { PlayoutQueue } from "../fakes/playout_queue.ts";

/**
 * Telnyx's RTP playback on the test clock: audio plays at 8 bytes/ms as soon as it arrives,
 * marks echo once the audio before them has played, `clear` drops audio and echoes queued marks.
 * Echoes are collected and delivered by {@link deliverEchoes}, as they arrive asynchronously.
 */
export class TelnyxModel {
  readonly frames: OutboundFrame[] = [];
  readonly echoes: string[] = [];
  readonly #playout = new PlayoutQueue((name) => this.echoes.push(name));
  /** Where echoes go when {@link deliverEchoes} hands them over (the playback, or the session). */
  onEcho: (name: string) => void = () => {};
  now = 0;
  /** Largest amount of audio ever queued here right after a frame arrived (ms). */
  maxQueuedMs = 0;
  /** Ms during which nothing was queued while `inUtterance` was true. */
  dryMs = 0;
  inUtterance = false;

  readonly send = (text: string): void => {
    const parsed = parseOutboundFrame(text);
    if (!parsed.ok) throw new Error(parsed.reason);
    const frame = parsed.frame;
    this.frames.push(frame);
    if (frame.event === "media") {
      this.#playout.audio(Uint8Array.fromBase64(frame.media.payload).length);
      this.maxQueuedMs = Math.max(this.maxQueuedMs, this.queuedMs);
    } else if (frame.event === "mark") {
      this.#playout.mark(frame.mark.name);
    } else {
      this.#playout.clear();
    }
  };

  /** Bytes of bot audio that have played. */
  get playedBytes(): number {
    return this.#playout.playedBytes;
  }

  get queuedMs(): number {
    return this.#playout.queuedBytes / 8;
  }

  /** Advances the clock 1 ms at a time, playing audio; runs `tick` whenever `every` ms passed. */
  advance(ms: number, tick?: () => void, every = 20): void {
    for (let i = 0; i < ms; i++) {
      this.now += 1;
      if (this.inUtterance && this.#playout.empty) this.dryMs += 1;
      this.#playout.play(8);
      if (tick && this.now % every === 0) tick();
    }
  }

  /** Hands collected echoes to {@link onEcho}, as the media socket would. */
  deliverEchoes(): void {
    for (const name of this.echoes.splice(0)) this.onEcho(name);
  }

  media(): Uint8Array[] {
    return this.frames.flatMap((f) =>
      f.event === "media" ? [Uint8Array.fromBase64(f.media.payload)] : []
    );
  }

  /** Events in order with media collapsed to "m", e.g. ["m", "m", "mark:a", "clear"]. */
  sequence(): string[] {
    return this.frames.map((f) =>
      f.event === "media" ? "m" : f.event === "mark" ? `mark:${f.mark.name}` : f.event
    );
  }
}
