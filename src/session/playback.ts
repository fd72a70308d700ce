/**
 * Outbound bot audio to the call's transport: re-chunks it into 20 ms frames of the transport's
 * output format and paces them a small lead ahead of real time, with marks at phrase boundaries
 * and `clear` on barge-in. Telnyx is the far end this was built for; a browser player is another.
 *
 * Why pace at all: Telnyx queues whatever it receives and plays it in real time. Dumping a
 * whole answer would make `clear` the only way to stop it and make mark echoes meaningless as a
 * playback position; keeping only ~120 ms queued there means a barge-in drops little and the
 * echoes track what the callee really heard.
 *
 * Pacing is computed from a clock, never from counted ticks: timers are late under load, so each
 * pump asks "how much audio is queued at Telnyx right now?" (`lead = audio sent − time elapsed`)
 * and tops it up to `leadMs`. One module-level {@link PlaybackTicker} drives every call's pump,
 * because 300 calls with a 20 ms timer each would be 15 000 timer callbacks per second.
 *
 * @module
 */

import {
  type AudioOutput,
  bytesFor,
  bytesPerMs,
  silenceByte,
} from "../transport/call_transport.ts";

/**
 * Duration of one frame: the unit Telnyx's RTP mode plays, and the unit of padding, marks and
 * pacing here. Frames sent in one pump go out as one message (RTP mode takes 20 ms to 30 s per
 * message): a message costs both ends far more than its bytes do.
 */
export const FRAME_MS = 20;
/**
 * How often the shared ticker pumps: two frames per call per tick in steady state, one message.
 * With the default lead a tick can come 80 ms late before Telnyx runs dry.
 */
export const TICK_MS = 2 * FRAME_MS;
/** Default audio kept queued at Telnyx ahead of real time. */
export const DEFAULT_LEAD_MS = 120;
/** Below this the lead no longer covers one late tick plus the frame being sent. */
export const MIN_LEAD_MS = TICK_MS + FRAME_MS;
/**
 * When only a partial frame is waiting and less than this is queued at Telnyx, the partial is
 * padded with silence and sent. For a phrase's tail, nothing more is coming soon: it goes at the
 * last tick before Telnyx would run dry, so the tail (and its mark) is heard during a slow
 * TTS/LLM pause. Inside a phrase more audio is usually on its way and padding would put silence
 * inside a word, so it waits until less than a frame is left.
 */
const URGENT_LEAD_MS = { phraseTail: TICK_MS, insidePhrase: FRAME_MS } as const;
/**
 * Most names kept of marks cleared by a barge-in and still to be echoed. Telnyx echoes them at
 * once, so a handful is normal; a peer that never echoes must not make the list grow per barge-in.
 */
const MAX_STALE_ECHOES = 64;

/** How {@link Playback.finish} ended. */
export type PlaybackOutcome = "played" | "interrupted" | "closed";

/** Options for {@link Playback}. */
export interface PlaybackOptions {
  /** Where frames, marks and clear go; its `outputFormat` sets frame size and padding. */
  output: AudioOutput;
  /** Audio kept queued at Telnyx ahead of real time; default 120 ms, never less than 60. */
  leadMs?: number;
  /** Monotonic clock in ms, default `performance.now` (tests inject one). */
  now?: () => number;
  /** Ticker that pumps this instance; default the shared {@link sharedPlaybackTicker}. */
  ticker?: PlaybackTicker;
  /** Closes the playback when aborted (the call's signal). */
  signal?: AbortSignal;
  /**
   * Called if the output or `onFirstFrame` throws; the playback is closed first. Pass the call's
   * logger here (the default writes to stderr without the call id). Errors never escape into the
   * shared ticker, so one broken call cannot stall others.
   */
  onError?: (error: unknown) => void;
}

/** What {@link Playback.interrupt} knows about what the callee heard. */
export interface InterruptResult {
  /** Phrase ids whose mark Telnyx echoed BEFORE the interruption (fully heard). */
  heard: string[];
  /**
   * The phrase that was playing when interrupted, with the estimated ms of it played. `id` is
   * `""` when that audio had not been closed by {@link Playback.endPhrase} yet.
   */
  partial?: { id: string; playedMs: number; totalMs: number };
}

/** Counters of one {@link Playback}. */
export interface PlaybackStats {
  /** 20 ms frames sent (those of one pump share a message). */
  framesSent: number;
  /** Bytes of audio sent, padding included. */
  bytesSent: number;
  /** Gaps inside an utterance: Telnyx ran out of our audio before the utterance's next frame. */
  underruns: number;
  /**
   * Those of {@link underruns} whose audio had not reached the playback when Telnyx ran dry:
   * TTS or the LLM slower than real time, or the audio waiting unread in the TTS socket while
   * the event loop was behind. The others had their audio here in time and went out late.
   */
  underrunsAwaitingAudio: number;
  /** Total length of those gaps. */
  underrunMs: number;
  /** Silence bytes sent to complete partial frames (utterance ends and urgent flushes). */
  paddingBytes: number;
  /** Clock time of the first frame of the current (or last) utterance. */
  firstFrameAtMs: number | undefined;
}

// ---------------------------------------------------------------------------------------------
// Shared ticker

/** Options for {@link PlaybackTicker}. */
export interface PlaybackTickerOptions {
  /** Timer period; default {@link TICK_MS}. */
  intervalMs?: number;
  /** No timer at all: the owner calls {@link PlaybackTicker.tick} (deterministic tests). */
  manual?: boolean;
  /** Monotonic clock in ms for {@link PlaybackTicker.poll}, default `performance.now`. */
  now?: () => number;
}

/**
 * One interval timer pumping every playback that has audio waiting. The timer exists only while
 * at least one member is registered, so an idle process (and Deno's test sanitizers) sees no
 * interval.
 */
export class PlaybackTicker {
  readonly #members = new Set<() => boolean>();
  readonly #intervalMs: number;
  readonly #manual: boolean;
  readonly #now: () => number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastTickAt = 0;
  #lastTimerAt = 0;
  /** Ticks run so far. */
  ticks = 0;
  /** Worst observed delay of a timer tick past its period (ms); shows how loaded the loop is. */
  maxLatenessMs = 0;

  constructor(options: PlaybackTickerOptions = {}) {
    this.#intervalMs = options.intervalMs ?? TICK_MS;
    this.#manual = options.manual ?? false;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Playbacks currently registered (those with audio waiting to be sent). */
  get size(): number {
    return this.#members.size;
  }

  /** Whether the interval timer is running. */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Registers a pump; it stays registered while it returns true. */
  add(pump: () => boolean): void {
    if (this.#members.size === 0) this.#lastTickAt = this.#now();
    this.#members.add(pump);
    if (this.#manual || this.#timer !== undefined) return;
    this.#lastTimerAt = this.#now();
    this.#timer = setInterval(() => this.#onTimer(), this.#intervalMs);
  }

  /** Unregisters a pump; stops the timer when none is left. */
  remove(pump: () => boolean): void {
    this.#members.delete(pump);
    if (this.#members.size === 0) this.#stop();
  }

  /** Pumps every member once, dropping those that have nothing left to send. */
  tick(): void {
    this.ticks++;
    this.#lastTickAt = this.#now();
    for (const pump of this.#members) {
      let keep = false;
      try {
        keep = pump();
      } catch {
        // Pumps handle their own errors; this only keeps a bug in one call from stopping the rest.
      }
      if (!keep) this.#members.delete(pump);
    }
    if (this.#members.size === 0) this.#stop();
  }

  /**
   * Ticks now if a period has passed since the last tick. Called for every inbound media frame:
   * while the event loop works through a backlog of socket messages (after a major GC, say) its
   * timers run late, by 100 ms and more, but messages are still being handled, and a tick from
   * one of them keeps every call's audio flowing.
   */
  poll(): void {
    if (this.#members.size === 0) return;
    const now = this.#now();
    if (now - this.#lastTickAt >= this.#intervalMs) this.tick();
  }

  #onTimer(): void {
    const now = this.#now();
    const lateness = now - this.#lastTimerAt - this.#intervalMs;
    if (lateness > this.maxLatenessMs) this.maxLatenessMs = lateness;
    this.#lastTimerAt = now;
    // A poll ticked moments ago: this tick would find nothing due.
    if (now - this.#lastTickAt >= this.#intervalMs / 2) this.tick();
  }

  #stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** The ticker every {@link Playback} uses unless given another. */
export const sharedPlaybackTicker: PlaybackTicker = new PlaybackTicker();

// ---------------------------------------------------------------------------------------------
// Playback

/** One bot utterance: from its first enqueue to its final mark echo (or interrupt). */
interface Utterance {
  /** Enqueued-byte index where its audio starts. */
  readonly startByte: number;
  firstFrameAt: number | undefined;
  /** Ids of its phrases whose marks were echoed, in order. */
  readonly heard: string[];
  sealed: boolean;
  /** Set by finish(); settled by the final mark echo, interrupt() or close(). */
  done: PromiseWithResolvers<PlaybackOutcome> | undefined;
  /** The mark whose echo means the utterance has been heard to the end. */
  finalMark: PhraseMark | undefined;
}

/** A mark we send after a phrase's audio (or after an utterance's unnamed tail). */
interface PhraseMark {
  readonly name: string;
  /** Phrase id, or undefined for the mark finish() adds after unnamed trailing audio. */
  readonly phraseId: string | undefined;
  /** Enqueued-byte index right after the phrase: the mark goes out once this byte is sent. */
  readonly endByte: number;
  /** Phrase length in bytes. */
  readonly bytes: number;
  readonly utterance: Utterance;
  echoed: boolean;
}

/**
 * Paced playback of a call's bot audio. Every call owns one; the shared ticker and the caller's
 * `enqueue`/`endPhrase`/`finish` calls pump it. Not re-entrant from the output.
 */
export class Playback {
  /** Called with the clock time of the first frame of each utterance (latency metrics). */
  onFirstFrame?: (atMs: number) => void;
  /** Counters; see {@link PlaybackStats}. */
  readonly stats: PlaybackStats = {
    framesSent: 0,
    bytesSent: 0,
    underruns: 0,
    underrunsAwaitingAudio: 0,
    underrunMs: 0,
    paddingBytes: 0,
    firstFrameAtMs: undefined,
  };

  readonly #output: AudioOutput;
  readonly #bytesPerMs: number;
  readonly #frameBytes: number;
  readonly #silence: number;
  readonly #now: () => number;
  readonly #leadMs: number;
  readonly #ticker: PlaybackTicker;
  readonly #onError: (error: unknown) => void;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.close();
  /** Bound once so registering with the ticker allocates nothing. */
  readonly #tickPump = () => this.#pumpSafely();
  #registered = false;
  #closed = false;

  /**
   * The frames of one pump, sent as one message when the pump ends or a mark must follow
   * them: audio copied in, partial frames padded with silence.
   */
  readonly #message: Uint8Array;
  #messageBytes = 0;
  /** Enqueued audio not yet sent; `#chunkOffset` is the read position in `#chunks[#chunkHead]`. */
  #chunks: Uint8Array[] = [];
  /** Clock time each chunk was enqueued, to tell a late source from a late send. */
  #chunkTimes: number[] = [];
  #chunkHead = 0;
  #chunkOffset = 0;
  /** Audio bytes ever enqueued / ever sent (padding excluded); marks are placed in this space. */
  #enqueuedBytes = 0;
  #consumedBytes = 0;
  /** Audio before this byte belongs to a finished utterance: its last frame is padded, not merged. */
  #flushThroughByte = 0;
  /** Where the phrase being enqueued started. */
  #phraseStartByte = 0;

  /** Marks waiting for their audio to go out, then marks sent and awaiting their echo. */
  #marksToSend: PhraseMark[] = [];
  #awaitingEcho: PhraseMark[] = [];
  /** Names of marks that were queued at Telnyx when we cleared; their echoes are not playback. */
  #staleEchoes: string[] = [];
  /** The most recent mark created by endPhrase()/finish(), whatever its state. */
  #lastMark: PhraseMark | undefined;
  #lastEchoAt: number | undefined;
  #underrunMsAtLastEcho = 0;
  #autoMarks = 0;

  /** The utterance being enqueued (or the last one), and those whose audio is still to be sent. */
  #current: Utterance | undefined;
  #sendingUtterances: Utterance[] = [];
  #lastFrameUtterance: Utterance | undefined;
  #speaking = false;
  /** Something was sent since the last moment we knew Telnyx's queue was empty. */
  #maybeQueuedAtTelnyx = false;
  /** Bumped by interrupt()/close() so a pump interrupted by a callback stops. */
  #generation = 0;

  /** Schedule: `#scheduleStartMs` is when the first byte of `#scheduleBytes` started playing. */
  #clockRunning = false;
  #scheduleStartMs = 0;
  #scheduleBytes = 0;

  constructor(options: PlaybackOptions) {
    this.#output = options.output;
    const format = options.output.outputFormat;
    this.#bytesPerMs = bytesPerMs(format);
    this.#frameBytes = bytesFor(format, FRAME_MS);
    this.#silence = silenceByte(format);
    this.#now = options.now ?? (() => performance.now());
    this.#leadMs = Math.max(MIN_LEAD_MS, options.leadMs ?? DEFAULT_LEAD_MS);
    // A pump sends at most the lead plus the frame that crosses it.
    const framesPerMessage = Math.ceil(this.#leadMs / FRAME_MS) + 1;
    this.#message = new Uint8Array(this.#frameBytes * framesPerMessage);
    this.#ticker = options.ticker ?? sharedPlaybackTicker;
    this.#onError = options.onError ??
      ((error) => console.error("playback: send failed, playback closed", error));
    this.#signal = options.signal;
    if (this.#signal?.aborted) this.#closed = true;
    else this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** True from the first enqueue of an utterance until its final mark echo or an interrupt. */
  get speaking(): boolean {
    return this.#speaking;
  }

  /** Audio kept queued at Telnyx, after clamping. */
  get leadMs(): number {
    return this.#leadMs;
  }

  /**
   * How long until Telnyx has played everything enqueued so far, playing in real time: the audio
   * not sent yet plus what is queued there now. With a margin, it bounds the wait for the final
   * mark echo of a finished utterance.
   */
  get playoutMs(): number {
    const unsentMs = (this.#enqueuedBytes - this.#consumedBytes) / this.#bytesPerMs;
    if (!this.#clockRunning) return unsentMs;
    const queuedMs = this.#scheduleStartMs + this.#scheduleBytes / this.#bytesPerMs - this.#now();
    return unsentMs + Math.max(0, queuedMs);
  }

  /**
   * Queues audio of the current utterance (any length; re-chunked into 20 ms frames). The
   * bytes are copied. The first call of an utterance starts the clock: its first full frame goes
   * out before this returns.
   */
  enqueue(audio: Uint8Array): void {
    if (this.#closed || audio.length === 0) return;
    const utterance = this.#openUtterance();
    if (this.#sendingUtterances.at(-1) !== utterance) this.#sendingUtterances.push(utterance);
    this.#chunks.push(audio.slice());
    this.#chunkTimes.push(this.#now());
    this.#enqueuedBytes += audio.length;
    this.#pumpSafely();
  }

  /** End of a phrase: a mark named `id` is sent right after the frame holding its last byte. */
  endPhrase(id: string): void {
    if (this.#closed) return;
    const utterance = this.#openUtterance();
    this.#lastMark = {
      name: id,
      phraseId: id,
      endByte: this.#enqueuedBytes,
      bytes: this.#enqueuedBytes - this.#phraseStartByte,
      utterance,
      echoed: false,
    };
    this.#marksToSend.push(this.#lastMark);
    this.#phraseStartByte = this.#enqueuedBytes;
    this.#pumpSafely();
  }

  /**
   * No more audio for this utterance: pads its last partial frame with silence, sends it
   * (paced like the rest), and resolves `"played"` once Telnyx echoes the final mark, i.e. the
   * audio has been heard to the end; `"interrupted"` or `"closed"` if that happens first.
   */
  finish(): Promise<PlaybackOutcome> {
    if (this.#closed) return Promise.resolve("closed");
    const utterance = this.#current;
    if (utterance === undefined) return Promise.resolve("played");
    if (utterance.sealed) {
      return utterance.done?.promise ?? Promise.resolve<PlaybackOutcome>("played");
    }
    utterance.sealed = true;
    this.#flushThroughByte = this.#enqueuedBytes;
    const lastMark = this.#lastMark;
    if (lastMark?.utterance === utterance && lastMark.endByte === this.#enqueuedBytes) {
      utterance.finalMark = lastMark;
    } else if (this.#enqueuedBytes > utterance.startByte) {
      // Audio after the last phrase mark (or no phrases at all): a mark of our own ends it.
      const mark: PhraseMark = {
        name: `playback-end-${++this.#autoMarks}`,
        phraseId: undefined,
        endByte: this.#enqueuedBytes,
        bytes: this.#enqueuedBytes - this.#phraseStartByte,
        utterance,
        echoed: false,
      };
      this.#marksToSend.push(mark);
      this.#lastMark = mark;
      this.#phraseStartByte = this.#enqueuedBytes;
      utterance.finalMark = mark;
    }
    if (utterance.finalMark === undefined || utterance.finalMark.echoed) {
      this.#completeUtterance(utterance);
      return Promise.resolve("played");
    }
    utterance.done = Promise.withResolvers();
    const promise = utterance.done.promise;
    this.#pumpSafely();
    return promise;
  }

  /** Feed every inbound `mark` echo here (names that are not ours are ignored). */
  onMarkEcho(name: string): void {
    if (this.#closed) return;
    // Echoes of cleared marks come first and in order; one that went missing is skipped over.
    const stale = this.#staleEchoes.indexOf(name);
    if (stale >= 0) {
      this.#staleEchoes.splice(0, stale + 1);
      return;
    }
    // Telnyx echoes in order; if an earlier echo went missing, the later one implies it played.
    const index = this.#awaitingEcho.findIndex((mark) => mark.name === name);
    if (index < 0) return;
    const now = this.#now();
    for (const mark of this.#awaitingEcho.splice(0, index + 1)) {
      mark.echoed = true;
      if (mark.phraseId !== undefined) mark.utterance.heard.push(mark.phraseId);
      if (mark.utterance.finalMark === mark) this.#completeUtterance(mark.utterance);
    }
    this.#lastEchoAt = now;
    this.#underrunMsAtLastEcho = this.stats.underrunMs;
  }

  /**
   * The final mark echo of the finished utterance never came although its audio must have played
   * out (Telnyx lost or withheld it): counts the utterance as heard to the end, as that echo
   * would have, and settles its {@link finish} with `"played"`. Its marks are forgotten, so a
   * late echo changes nothing. Returns false, changing nothing, when its audio has not even all
   * been sent: then it did not play out, and the caller decides (typically {@link interrupt}).
   */
  assumePlayed(): boolean {
    const utterance = this.#current;
    if (this.#closed) return false;
    if (utterance === undefined || !utterance.sealed) return true;
    const finalMark = utterance.finalMark;
    if (finalMark === undefined || finalMark.echoed) return true;
    if (!this.#awaitingEcho.includes(finalMark)) return false;
    this.onMarkEcho(finalMark.name);
    return true;
  }

  /**
   * Barge-in: stops sending, sends `clear` if anything may still be queued at Telnyx, and
   * reports what was heard of the current utterance. Marks echoed after this (Telnyx echoes the
   * cleared ones) are ignored. The next `enqueue` starts a fresh utterance.
   */
  interrupt(): InterruptResult {
    if (this.#closed) return { heard: [] };
    const now = this.#now();
    const utterance = this.#current;
    const result: InterruptResult = { heard: utterance ? [...utterance.heard] : [] };
    const partial = utterance && this.#estimatePartial(utterance, now);
    if (partial) result.partial = partial;

    if (this.#maybeQueuedAtTelnyx || this.#awaitingEcho.length > 0) {
      this.#clearGuarded();
      for (const mark of this.#awaitingEcho) this.#staleEchoes.push(mark.name);
      const excess = this.#staleEchoes.length - MAX_STALE_ECHOES;
      if (excess > 0) this.#staleEchoes.splice(0, excess);
    }
    this.#settlePending("interrupted");
    this.#reset();
    return result;
  }

  /** Stops for good: drops queued audio, leaves the ticker; pending `finish()` resolve "closed". */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#settlePending("closed");
    this.#reset();
    this.#staleEchoes = [];
  }

  // -------------------------------------------------------------------------------------------

  #openUtterance(): Utterance {
    if (this.#current === undefined || this.#current.sealed) {
      this.#current = {
        startByte: this.#enqueuedBytes,
        firstFrameAt: undefined,
        heard: [],
        sealed: false,
        done: undefined,
        finalMark: undefined,
      };
      this.#phraseStartByte = this.#enqueuedBytes;
    }
    this.#speaking = true;
    return this.#current;
  }

  #completeUtterance(utterance: Utterance): void {
    utterance.done?.resolve("played");
    utterance.done = undefined;
    if (utterance !== this.#current) return;
    this.#speaking = false;
    // Everything sent has been heard, so Telnyx's queue is empty (unless a later utterance began).
    if (this.#enqueuedBytes === this.#consumedBytes) this.#maybeQueuedAtTelnyx = false;
  }

  /** The first phrase of `utterance` not yet echoed, and how much of it has played. */
  #estimatePartial(utterance: Utterance, now: number): InterruptResult["partial"] {
    if (utterance.firstFrameAt === undefined) return undefined;
    let playing: { id: string; startByte: number; endByte: number } | undefined;
    const pending = this.#awaitingEcho.find((mark) => mark.utterance === utterance) ??
      this.#marksToSend.find((mark) => mark.utterance === utterance);
    if (pending !== undefined) {
      playing = {
        id: pending.phraseId ?? "",
        startByte: pending.endByte - pending.bytes,
        endByte: pending.endByte,
      };
    } else if (this.#enqueuedBytes > this.#phraseStartByte && !utterance.sealed) {
      playing = { id: "", startByte: this.#phraseStartByte, endByte: this.#enqueuedBytes };
    }
    if (playing === undefined) return undefined;
    const totalMs = (playing.endByte - playing.startByte) / this.#bytesPerMs;
    // Telnyx cannot have played more of the phrase than we sent of it.
    const sentMs = Math.max(
      0,
      (Math.min(this.#consumedBytes, playing.endByte) - playing.startByte) / this.#bytesPerMs,
    );
    // The phrase started playing when the previous mark echoed (or at the utterance's first
    // frame); gaps from underruns since then did not play anything.
    const echoAnchored = this.#lastEchoAt !== undefined &&
      this.#lastEchoAt >= utterance.firstFrameAt;
    const anchor = echoAnchored ? this.#lastEchoAt! : utterance.firstFrameAt;
    const gapsMs = this.stats.underrunMs - (echoAnchored ? this.#underrunMsAtLastEcho : 0);
    const playedMs = Math.max(0, Math.min(now - anchor - gapsMs, totalMs, sentMs));
    return { id: playing.id, playedMs, totalMs };
  }

  #settlePending(outcome: PlaybackOutcome): void {
    for (const utterance of this.#sendingUtterances) utterance.done?.resolve(outcome);
    for (const mark of [...this.#marksToSend, ...this.#awaitingEcho]) {
      mark.utterance.done?.resolve(outcome);
    }
    this.#current?.done?.resolve(outcome);
  }

  /** Drops everything queued locally; the next audio starts a new schedule and utterance. */
  #reset(): void {
    this.#generation++;
    this.#messageBytes = 0;
    this.#chunks = [];
    this.#chunkTimes = [];
    this.#chunkHead = 0;
    this.#chunkOffset = 0;
    this.#consumedBytes = this.#enqueuedBytes;
    this.#flushThroughByte = this.#enqueuedBytes;
    this.#phraseStartByte = this.#enqueuedBytes;
    this.#marksToSend = [];
    this.#awaitingEcho = [];
    this.#lastMark = undefined;
    this.#sendingUtterances = [];
    this.#current = undefined;
    this.#lastFrameUtterance = undefined;
    this.#speaking = false;
    this.#maybeQueuedAtTelnyx = false;
    this.#clockRunning = false;
    this.#scheduleBytes = 0;
    this.#lastEchoAt = undefined;
    this.#underrunMsAtLastEcho = this.stats.underrunMs;
    if (this.#registered) {
      this.#registered = false;
      this.#ticker.remove(this.#tickPump);
    }
  }

  /** Pump with errors contained: a throwing output closes this playback only. */
  #pumpSafely(): boolean {
    try {
      const needsTicks = this.#pump();
      if (needsTicks && !this.#registered) {
        this.#registered = true;
        this.#ticker.add(this.#tickPump);
      } else if (!needsTicks && this.#registered) {
        this.#registered = false;
        this.#ticker.remove(this.#tickPump);
      }
      return needsTicks;
    } catch (error) {
      this.close();
      this.#onError(error);
      return false;
    }
  }

  #clearGuarded(): void {
    try {
      this.#output.clear();
    } catch (error) {
      this.close();
      this.#onError(error);
    }
  }

  /** Sends what the schedule allows, as one message; returns whether audio is still waiting. */
  #pump(): boolean {
    if (this.#closed) return false;
    try {
      return this.#pumpFrames();
    } finally {
      this.#sendMessage();
    }
  }

  #pumpFrames(): boolean {
    const generation = this.#generation;
    const now = this.#now();
    for (;;) {
      while (
        this.#marksToSend.length > 0 && this.#marksToSend[0].endByte <= this.#consumedBytes
      ) {
        const mark = this.#marksToSend.shift()!;
        this.#awaitingEcho.push(mark);
        this.#maybeQueuedAtTelnyx = true;
        this.#sendMessage();
        this.#output.sendMark(mark.name);
      }
      const available = this.#enqueuedBytes - this.#consumedBytes;
      if (available === 0) return false;
      const lead = this.#clockRunning
        ? this.#scheduleStartMs + this.#scheduleBytes / this.#bytesPerMs - now
        : 0;
      if (lead >= this.#leadMs) return true;

      this.#advanceSendingUtterance();
      const toBoundary = this.#flushThroughByte - this.#consumedBytes;
      let take: number;
      if (toBoundary > 0 && toBoundary <= this.#frameBytes) {
        take = toBoundary; // the finished utterance's tail, never merged with the next one
      } else if (available >= this.#frameBytes) {
        take = this.#frameBytes;
      } else if (
        this.#clockRunning && lead < this.#urgentLeadMs() &&
        this.#lastFrameUtterance === this.#sendingUtterances[0]
      ) {
        take = available;
      } else {
        return true;
      }
      this.#sendFrame(take, now, lead);
      if (this.#generation !== generation || this.#closed) return false;
    }
  }

  /** See {@link URGENT_LEAD_MS}: whether what is waiting ends a phrase. */
  #urgentLeadMs(): number {
    return this.#lastMark?.endByte === this.#enqueuedBytes
      ? URGENT_LEAD_MS.phraseTail
      : URGENT_LEAD_MS.insidePhrase;
  }

  /** Drops utterances whose audio has all been sent, so `[0]` owns the next byte. */
  #advanceSendingUtterance(): void {
    while (
      this.#sendingUtterances.length > 1 &&
      this.#consumedBytes >= this.#sendingUtterances[1].startByte
    ) {
      this.#sendingUtterances.shift();
    }
  }

  #sendFrame(take: number, now: number, lead: number): void {
    const utterance = this.#sendingUtterances[0];
    if (!this.#clockRunning || lead < 0) {
      // Telnyx's queue ran dry: it plays this frame as soon as it arrives, so the schedule
      // restarts now. Inside an utterance that dry spell was an audible gap.
      if (this.#clockRunning && utterance === this.#lastFrameUtterance) {
        this.stats.underruns++;
        this.stats.underrunMs += -lead;
        // The queue ran dry at `now + lead`: had this frame's audio arrived by then?
        if (this.#enqueueTimeOfByte(take - 1) > now + lead) this.stats.underrunsAwaitingAudio++;
      }
      this.#clockRunning = true;
      this.#scheduleStartMs = now;
      this.#scheduleBytes = 0;
    }

    const frameBytes = this.#frameBytes;
    if (this.#messageBytes + frameBytes > this.#message.length) this.#sendMessage();
    const at = this.#messageBytes;
    this.#copyAudio(take, at);
    if (take < frameBytes) {
      this.#message.fill(this.#silence, at + take, at + frameBytes);
      this.stats.paddingBytes += frameBytes - take;
    }
    this.#messageBytes += frameBytes;
    this.#consumedBytes += take;
    this.#scheduleBytes += frameBytes;
    this.stats.framesSent++;
    this.stats.bytesSent += frameBytes;
    this.#lastFrameUtterance = utterance;
    this.#maybeQueuedAtTelnyx = true;

    if (utterance !== undefined && utterance.firstFrameAt === undefined) {
      utterance.firstFrameAt = now;
      this.stats.firstFrameAtMs = now;
      this.onFirstFrame?.(now);
    }
  }

  /** When the `offset`-th unsent byte was enqueued. */
  #enqueueTimeOfByte(offset: number): number {
    let index = this.#chunkHead;
    let remaining = offset + this.#chunkOffset;
    while (remaining >= this.#chunks[index].length) {
      remaining -= this.#chunks[index].length;
      index++;
    }
    return this.#chunkTimes[index];
  }

  /** Sends the frames gathered so far, if any. */
  #sendMessage(): void {
    if (this.#messageBytes === 0) return;
    const bytes = this.#messageBytes;
    this.#messageBytes = 0;
    this.#output.sendAudio(this.#message.subarray(0, bytes));
  }

  /** Moves `count` bytes from the chunk queue into the message at `at`, freeing spent chunks. */
  #copyAudio(count: number, at: number): void {
    let written = 0;
    while (written < count) {
      const chunk = this.#chunks[this.#chunkHead];
      const n = Math.min(count - written, chunk.length - this.#chunkOffset);
      this.#message.set(chunk.subarray(this.#chunkOffset, this.#chunkOffset + n), at + written);
      written += n;
      this.#chunkOffset += n;
      if (this.#chunkOffset === chunk.length) {
        this.#chunkHead++;
        this.#chunkOffset = 0;
      }
    }
    if (this.#chunkHead === this.#chunks.length) {
      this.#chunks.length = 0;
      this.#chunkTimes.length = 0;
      this.#chunkHead = 0;
    } else if (this.#chunkHead >= 64) {
      this.#chunks = this.#chunks.slice(this.#chunkHead);
      this.#chunkTimes = this.#chunkTimes.slice(this.#chunkHead);
      this.#chunkHead = 0;
    }
  }
}
