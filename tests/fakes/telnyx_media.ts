/**
 * A fake of Telnyx's side of the bidirectional media WebSocket: it connects to the Stream URL
 * from our TeXML as Telnyx does, sends `connected`/`start`/`media`/`dtmf`/`stop` frames, and
 * models playback of what the app sends: audio plays at 8000 bytes/s, `mark`s are echoed when
 * the audio before them has played, `clear` drops queued audio and echoes the queued marks.
 *
 * @module
 */
import { type OutboundFrame, parseOutboundFrame } from "../../src/telnyx/media_stream.ts";
import { PlaybackTicker } from "../../src/session/playback.ts";
import { PlayoutQueue } from "./playout_queue.ts";

/** Options for {@link TelnyxMediaClient.connect}. */
export interface MediaClientOptions {
  streamId?: string;
  callControlId?: string;
  encoding?: string;
  /** Extra headers on the upgrade request. */
  headers?: Record<string, string>;
  /** False: marks are never echoed, like a peer that plays audio but withholds the echoes. */
  echoMarks?: boolean;
}

/** G.711 bytes per 20 ms frame at 8 kHz. */
export const FRAME_BYTES = 160;
/** Audio per frame, at 8 kHz. */
const FRAME_MS = 20;

/**
 * Paces every fake stream of the process with one shared interval, the server's own ticker: each
 * member sends (or plays) what the wall clock says is due, so a late tick is caught up and never
 * drifts. A 20 ms interval per stream drifts by its own lateness every period (the frames went
 * out up to a frame late), and a timeout re-armed per frame costs the load generator several
 * times the CPU of one shared timer.
 */
const frameClock = new PlaybackTicker({ intervalMs: 1 });

/**
 * An inbound `media` frame as Telnyx sends it, keys in the order of its documented frames:
 * `chunk` counts the stream's media frames, `sequence` all of its frames. `extra` keys go last.
 */
export function inboundMediaFrame(
  frame: { sequence: number; chunk: number; payload: string; streamId: string },
  extra: Record<string, unknown> = {},
): string {
  return JSON.stringify({
    event: "media",
    sequence_number: String(frame.sequence),
    media: {
      track: "inbound",
      chunk: String(frame.chunk),
      timestamp: String(frame.chunk * FRAME_MS),
      payload: frame.payload,
    },
    stream_id: frame.streamId,
    ...extra,
  });
}

/** One connected fake Telnyx media stream. */
export class TelnyxMediaClient {
  /** Every frame the app sent, parsed (unparseable ones are kept in `invalidFrames`). */
  readonly received: OutboundFrame[] = [];
  /** `performance.now()` when each frame in {@link received} arrived. */
  readonly receivedAt: number[] = [];
  readonly invalidFrames: string[] = [];
  readonly #playout = new PlayoutQueue((name) => this.#echoMark(name));
  /** The playout's member of {@link frameClock}, while it plays. */
  #playing: (() => boolean) | undefined;
  #sequence = 0;
  #chunk = 0;
  /** The running {@link streamAudio}'s member of {@link frameClock}. */
  #streaming: (() => boolean) | undefined;
  /** Bytes of callee audio sent with {@link streamAudio}. */
  inboundBytes = 0;
  /** `performance.now()` when {@link streamAudio} started: audio time 0 on the wall clock. */
  audioStartedAt = 0;

  /**
   * The byte of silence in the stream's codec, set by {@link start}: the padding of callee audio
   * after it ends (0xFF for PCMU, 0xD5 for PCMA).
   */
  silenceByte = 0xff;
  readonly closed: Promise<CloseEvent>;

  /** Bytes of bot audio that have "played" on the callee's phone. */
  get playedBytes(): number {
    return this.#playout.playedBytes;
  }

  private constructor(
    readonly socket: WebSocket,
    readonly streamId: string,
    readonly callControlId: string,
    readonly echoMarks: boolean,
  ) {
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (event) => {
        this.#stopClock();
        this.stopAudio();
        resolve(event);
      });
    });
    socket.addEventListener("message", (event) => this.#onMessage(event.data));
  }

  /** Opens the socket; resolves once it is open (or rejects if the upgrade fails). */
  static async connect(url: string, options: MediaClientOptions = {}): Promise<TelnyxMediaClient> {
    // Deno's WebSocket takes a non-standard options bag that really sends headers.
    const socket = new (WebSocket as unknown as new (
      url: string,
      options: { headers?: Record<string, string> },
    ) => WebSocket)(url, { headers: options.headers });
    const client = new TelnyxMediaClient(
      socket,
      options.streamId ?? crypto.randomUUID(),
      options.callControlId ?? `v3:${crypto.randomUUID()}`,
      options.echoMarks ?? true,
    );
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("error", () => reject(new Error("upgrade failed")), { once: true });
    });
    return client;
  }

  /** Sends a raw text or binary frame (for garbage tests). */
  sendRaw(data: string | Uint8Array<ArrayBuffer>): void {
    this.socket.send(data);
  }

  #send(frame: Record<string, unknown>): void {
    // Keys in the order Telnyx's documented frames have them.
    const sequence = String(++this.#sequence);
    this.socket.send(JSON.stringify({ event: frame.event, sequence_number: sequence, ...frame }));
  }

  /** The `connected` then `start` frames Telnyx opens every stream with. */
  start(encoding = "PCMU"): void {
    this.silenceByte = encoding === "PCMA" ? 0xd5 : 0xff;
    this.socket.send(JSON.stringify({ event: "connected", version: "1.0.0" }));
    this.#send({
      event: "start",
      stream_id: this.streamId,
      start: {
        user_id: crypto.randomUUID(),
        call_control_id: this.callControlId,
        call_session_id: crypto.randomUUID(),
        from: "+15550000000",
        to: "+15551234567",
        tags: [],
        client_state: null,
        custom_parameters: {},
        media_format: { encoding, sample_rate: 8000, channels: 1 },
      },
    });
    this.#startClock();
  }

  /** One inbound `media` frame of callee audio. */
  media(payload: Uint8Array): void {
    this.socket.send(inboundMediaFrame({
      sequence: ++this.#sequence,
      chunk: ++this.#chunk,
      payload: payload.toBase64(),
      streamId: this.streamId,
    }));
  }

  /**
   * Streams callee audio in real time as Telnyx does: frame k (160 bytes) at start + 20k ms,
   * starting now, catching up when timers run late; after `audio` ends it goes on with silence in
   * the stream's codec (a phone line is never quiet on the wire) until {@link stopAudio} or close.
   * Paced by the shared frame clock: a frame goes out within a tick of its time (a drifting
   * interval sent them up to 20 ms late, which the latency bench counted as the server's).
   */
  streamAudio(audio: Uint8Array): void {
    this.stopAudio();
    const startedAt = performance.now();
    this.audioStartedAt = startedAt;
    let framesSent = 0;
    const silence = new Uint8Array(FRAME_BYTES).fill(this.silenceByte);
    const step = (): boolean => {
      if (this.socket.readyState !== WebSocket.OPEN) {
        this.stopAudio();
        return false;
      }
      const due = Math.floor((performance.now() - startedAt) / FRAME_MS) + 1;
      while (framesSent < due) {
        const offset = framesSent * FRAME_BYTES;
        const frame = offset < audio.length
          ? audio.subarray(offset, offset + FRAME_BYTES)
          : silence;
        const padded = frame.length === FRAME_BYTES
          ? frame
          : Uint8Array.from({ length: FRAME_BYTES }, (_, i) => frame[i] ?? this.silenceByte);
        this.media(padded);
        this.inboundBytes += FRAME_BYTES;
        framesSent++;
      }
      return true;
    };
    if (!step()) return;
    this.#streaming = step;
    frameClock.add(step);
  }

  /** Stops {@link streamAudio}. */
  stopAudio(): void {
    if (this.#streaming) frameClock.remove(this.#streaming);
    this.#streaming = undefined;
  }

  /**
   * When the frame carrying the sample at `audioMs` of {@link streamAudio}'s audio was due on the
   * wire. Audio reaches the server a frame at a time, so a latency measured from a voice's end or
   * onset counts from the frame that carries it (a vendor's "300 ms after the voice" is then
   * 300 ms after that frame, whatever the sample's place inside it).
   */
  frameDueAt(audioMs: number): number {
    return this.audioStartedAt + Math.floor(audioMs / FRAME_MS) * FRAME_MS;
  }

  dtmf(digit: string): void {
    this.#send({ event: "dtmf", stream_id: this.streamId, dtmf: { digit } });
  }

  /** The callee hung up: `stop`, then Telnyx closes the socket. */
  stop(): void {
    this.#send({
      event: "stop",
      stream_id: this.streamId,
      stop: { user_id: crypto.randomUUID(), call_control_id: this.callControlId },
    });
  }

  /** Closes the socket from Telnyx's side. */
  close(code = 1000, reason = ""): Promise<CloseEvent> {
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close(code, reason);
    return this.closed;
  }

  /** Frames of one kind the app sent. */
  framesOf<E extends OutboundFrame["event"]>(event: E): Extract<OutboundFrame, { event: E }>[] {
    return this.received.filter((f): f is Extract<OutboundFrame, { event: E }> =>
      f.event === event
    );
  }

  #onMessage(data: unknown): void {
    if (typeof data !== "string") {
      this.invalidFrames.push("(binary)");
      return;
    }
    const parsed = parseOutboundFrame(data);
    if (!parsed.ok) {
      this.invalidFrames.push(data);
      return;
    }
    const frame = parsed.frame;
    this.received.push(frame);
    this.receivedAt.push(performance.now());
    if (frame.event === "media") {
      this.#playout.audio(Uint8Array.fromBase64(frame.media.payload).length);
    } else if (frame.event === "mark") {
      this.#playout.mark(frame.mark.name);
    } else {
      this.#playout.clear();
    }
  }

  /**
   * Plays queued audio in real time on the shared frame clock, echoing marks as they are
   * reached: frame k's worth once start + 20(k + 1) ms has passed.
   */
  #startClock(): void {
    this.#stopClock();
    const startedAt = performance.now();
    let framesPlayed = 0;
    const play = (): boolean => {
      const due = Math.floor((performance.now() - startedAt) / FRAME_MS);
      if (due > framesPlayed) {
        this.#playout.play((due - framesPlayed) * FRAME_BYTES);
        framesPlayed = due;
      }
      return true;
    };
    this.#playing = play;
    frameClock.add(play);
  }

  #echoMark(name: string): void {
    if (!this.echoMarks || this.socket.readyState !== WebSocket.OPEN) return;
    this.#send({ event: "mark", stream_id: this.streamId, mark: { name } });
  }

  #stopClock(): void {
    if (this.#playing) frameClock.remove(this.#playing);
    this.#playing = undefined;
  }
}
