/**
 * The far end of a call's transport on a test clock (a test double of `AudioOutput`, no wire
 * format involved), shared by the playback and voice agent tests.
 *
 * @module
 */
import {
  type AudioFormat,
  type AudioOutput,
  bytesPerMs,
  type CallTransport,
  MULAW_8K,
} from "../../src/transport/call_transport.ts";
import { PlayoutQueue } from "../fakes/playout_queue.ts";

/** What the playback sent, in order, audio as 20 ms frames. */
export type SentFrame =
  | { event: "media"; audio: Uint8Array }
  | { event: "mark"; name: string }
  | { event: "clear" };

/**
 * A player like Telnyx's RTP playback on the test clock: audio plays in real time as soon as it
 * arrives, marks echo once the audio before them has played, `clear` drops audio and echoes
 * queued marks. Echoes are collected and delivered by {@link deliverEchoes}, as they arrive
 * asynchronously.
 */
export class PlayoutModel implements AudioOutput {
  readonly frames: SentFrame[] = [];
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

  readonly outputFormat: AudioFormat;
  readonly #bytesPerMs: number;

  constructor(format: AudioFormat = MULAW_8K) {
    this.outputFormat = format;
    this.#bytesPerMs = bytesPerMs(format);
  }

  /** Audio messages received; each holds one or more of the frames in {@link frames}. */
  audioMessages = 0;

  readonly sendAudio = (audio: Uint8Array): void => {
    // Played as 20 ms frames, as RTP packetises it. The sender reuses its buffer: keep copies,
    // as a socket send would.
    this.audioMessages++;
    const frameBytes = this.#bytesPerMs * 20;
    for (let at = 0; at < audio.length; at += frameBytes) {
      this.frames.push({ event: "media", audio: audio.slice(at, at + frameBytes) });
    }
    this.#playout.audio(audio.length);
    this.maxQueuedMs = Math.max(this.maxQueuedMs, this.queuedMs);
  };

  readonly sendMark = (name: string): void => {
    this.frames.push({ event: "mark", name });
    this.#playout.mark(name);
  };

  readonly clear = (): void => {
    this.frames.push({ event: "clear" });
    this.#playout.clear();
  };

  /** Bytes of bot audio that have played. */
  get playedBytes(): number {
    return this.#playout.playedBytes;
  }

  get queuedMs(): number {
    return this.#playout.queuedBytes / this.#bytesPerMs;
  }

  /** Advances the clock 1 ms at a time, playing audio; runs `tick` whenever `every` ms passed. */
  advance(ms: number, tick?: () => void, every = 20): void {
    for (let i = 0; i < ms; i++) {
      this.now += 1;
      if (this.inUtterance && this.#playout.empty) this.dryMs += 1;
      this.#playout.play(this.#bytesPerMs);
      if (tick && this.now % every === 0) tick();
    }
  }

  /** Hands collected echoes to {@link onEcho}, as the media socket would. */
  deliverEchoes(): void {
    for (const name of this.echoes.splice(0)) this.onEcho(name);
  }

  media(): Uint8Array[] {
    return this.frames.flatMap((f) => f.event === "media" ? [f.audio] : []);
  }

  /** Events in order with media collapsed to "m", e.g. ["m", "m", "mark:a", "clear"]. */
  sequence(): string[] {
    return this.frames.map((f) =>
      f.event === "media" ? "m" : f.event === "mark" ? `mark:${f.name}` : f.event
    );
  }
}

/**
 * A {@link CallTransport} double with no wire format: what the agent sends lands in the
 * {@link PlayoutModel}; the test delivers callee events to the session itself.
 */
export class FakeTransport extends PlayoutModel implements CallTransport {
  readonly kind = "test";
  readonly inputFormat: AudioFormat;
  /** Every `close` the session asked for. */
  readonly closes: { code: number; reason: string }[] = [];

  constructor(format: AudioFormat = MULAW_8K) {
    super(format);
    this.inputFormat = format;
  }

  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
  }
}
