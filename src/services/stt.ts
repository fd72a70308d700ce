/**
 * Deepgram live speech-to-text for one call: forwards the caller's audio untouched, labelled with
 * the call's format (mu-law, A-law or linear PCM at its sample rate), and yields typed
 * transcript events, for Nova (`/v1/listen`) or Flux (`/v2/listen`).
 *
 * Reconnection is ours, not the SDK's: the SDK's own reconnect is silent (new stream, new
 * timestamps, audio sent meanwhile lost), so it is disabled with `reconnectAttempts: 0`. Instead
 * every byte not yet covered by a final transcript is kept (bounded) and replayed on the next
 * connection, so an utterance cut by a drop is transcribed whole and audio in flight at the
 * moment of the drop is not lost. The STT feed may let go of the callee's silence sooner
 * ({@link LiveTranscriber.forgetSilence}); audio never sent is always kept.
 *
 * @module
 */

import { DeepgramClient } from "@deepgram/sdk";
import { z } from "zod";
import { AsyncQueue } from "../async/async_queue.ts";
import { deadline, DeadlineError, delay, settledWithin } from "../async/deadline.ts";
import { type AudioFormat, bytesPerMs, MULAW_8K } from "../transport/call_transport.ts";
import { NativeDeepgramSocket } from "./deepgram_native_socket.ts";

/** Which Deepgram live model family transcribes the call. */
export type SttEngine = "nova" | "flux";

/** Severity of an adapter log line. */
export type SttLogLevel = "debug" | "info" | "warn" | "error";

/** Structured logger the adapter reports to (reconnects, overflows, server errors). */
export type SttLog = (level: SttLogLevel, msg: string, fields?: Record<string, unknown>) => void;

/** Options of {@link openLiveTranscriber}. */
export interface SttOptions {
  apiKey: string;
  /** e.g. `DEEPGRAM_BASE_URL`; the SDK reads no env var for it. Default: Deepgram production. */
  baseUrl?: string;
  engine: SttEngine;
  /** Format of the audio given to `sendAudio`; default mu-law 8 kHz. */
  audioFormat?: AudioFormat;
  /** Default `nova-3` (Nova) or `flux-general-en` (Flux). */
  model?: string;
  /** Nova: silence that ends an utterance (`speech_final`); default 300 ms. */
  endpointingMs?: number;
  /** Nova: gap after the last word before `UtteranceEnd`; default 1000 ms (Deepgram's minimum). */
  utteranceEndMs?: number;
  /** Flux: enables `EagerEndOfTurn`/`TurnResumed` (0.3–0.9); unset disables them. */
  eagerEotThreshold?: number;
  /** Flux: end-of-turn confidence (0.5–1.0); Deepgram's default 0.7 when unset. */
  eotThreshold?: number;
  /** Flux: longest silence before a forced end of turn (500–60000 ms). */
  eotTimeoutMs?: number;
  /** Aborting closes the socket, ends the event iterator and clears every timer. */
  signal: AbortSignal;
  log?: SttLog;
  /**
   * Connection attempts, initially and after each drop: the first at once, then with a doubling
   * delay from `backoffMs` (at most 4 s). Default 5 attempts from 250 ms (~4 s in all).
   */
  reconnect?: { attempts: number; backoffMs: number };
  /** Nova: send `KeepAlive` when no audio went out for this long; default 3000 ms. */
  keepAliveMs?: number;
  /**
   * Audio kept for replay (not yet finalised, or sent during a gap); default
   * {@link DEFAULT_MAX_BUFFER_SECONDS} of audio.
   */
  maxBufferBytes?: number;
  /** How long `close()` waits for the server to flush and close; default 2000 ms. */
  closeTimeoutMs?: number;
  /**
   * Per connection attempt (TCP, TLS and the WebSocket upgrade); default
   * {@link DEFAULT_CONNECT_TIMEOUT_MS}.
   */
  connectTimeoutMs?: number;
}

/** What the transcriber reports; Nova and Flux each use their own subset. */
export type TranscriptEvent =
  /** Nova VAD: speech began, in seconds of call audio. */
  | { type: "speech_started"; atSeconds: number }
  /** Nova interim result or Flux `Update`: a guess that later events supersede. */
  | { type: "interim"; text: string }
  /** Nova `is_final` result; `speechFinal` marks an endpoint (pause) after it. */
  | { type: "final"; text: string; speechFinal: boolean; fromFinalize: boolean }
  /** Nova: no word for `utteranceEndMs` after the last final. */
  | { type: "utterance_end" }
  /** Flux turn events: its end-of-turn model replaces endpointing. */
  | { type: "start_of_turn" }
  | { type: "eager_end_of_turn"; text: string }
  | { type: "turn_resumed" }
  | { type: "end_of_turn"; text: string }
  /** A dropped socket was replaced; `bufferedBytes` of audio were (re)sent on the new one. */
  | { type: "reconnected"; attempt: number; bufferedBytes: number };

/** A live transcription stream for one call. Iterate it once for its events. */
export interface LiveTranscriber extends AsyncIterable<TranscriptEvent> {
  /**
   * Queues raw audio bytes in the transcriber's `audioFormat`. Never throws; buffers while
   * (re)connecting. The bytes are kept by reference until finalised, so the caller must not
   * reuse the array.
   */
  sendAudio(audio: Uint8Array): void;
  /**
   * Nova: flush the audio heard so far into a final result (`fromFinalize`). Flux: no-op, its
   * `ForceEndTurn` needs server-side enablement and otherwise closes the connection.
   */
  finalize(): void;
  /**
   * The callee has been silent and nothing of theirs awaits a transcript: audio sent more than
   * `keepMs` ago holds no words, so a reconnect need not replay it. Ignored while disconnected:
   * audio not yet sent is kept whatever the caller thinks it holds.
   */
  forgetSilence(keepMs: number): void;
  /** `CloseStream`, wait for the server's flush and close, release everything. Idempotent. */
  close(): Promise<void>;
  /** Usage: seconds of audio sent to Deepgram (what it bills), including replays. */
  readonly audioSeconds: number;
}

/** Deepgram cannot be used for this call; the session should end the call politely. */
export class SttUnavailableError extends Error {
  override readonly name = "SttUnavailableError";

  /**
   * @param reason `auth`: key refused; `rejected`: request refused (4xx, won't improve on retry);
   *   `unreachable`: no connection after every attempt.
   */
  constructor(
    message: string,
    readonly reason: "auth" | "rejected" | "unreachable",
    readonly attempts: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const MAX_QUEUED_EVENTS = 512;
/** A caller waits on the line during reconnection: never back off longer than this. */
const MAX_BACKOFF_MS = 4000;
/** Longest wait for the status of a refused `wss:` handshake, asked again over HTTPS. */
const REFUSAL_STATUS_WAIT_MS = 2_000;

/** Default {@link SttOptions.connectTimeoutMs}. */
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/**
 * Default bound of the replay log, in seconds of call audio. Finals trim the log as they come
 * (every Nova `is_final` result, speech or not; Flux at every end of turn), and so does the
 * callee's silence when the STT feed says so (`forgetSilence`), so it only fills
 * during a long unfinalised turn or a long outage, and then in every call at once. Interim
 * results never trim it: their audio is transcribed again by the final that follows. Beyond
 * this bound a replay would restore speech the caller has given up on: the agent has been
 * silent that long.
 */
export const DEFAULT_MAX_BUFFER_SECONDS = 15;

const MessageType = z.object({ type: z.string() });
const NovaResults = z.object({
  start: z.number().default(0),
  duration: z.number().default(0),
  is_final: z.boolean().default(false),
  speech_final: z.boolean().default(false),
  from_finalize: z.boolean().default(false),
  channel: z.object({
    alternatives: z.array(z.object({ transcript: z.string().default("") })).default([]),
  }),
});
const NovaSpeechStarted = z.object({ timestamp: z.number().default(0) });
const FluxTurnInfo = z.object({
  event: z.string(),
  transcript: z.string().default(""),
  audio_window_end: z.number().optional(),
});
const ServerError = z.object({
  code: z.string().optional(),
  description: z.string().optional(),
});

type NovaSocket = Awaited<ReturnType<DeepgramClient["listen"]["v1"]["connect"]>>;
type FluxSocket = Awaited<ReturnType<DeepgramClient["listen"]["v2"]["connect"]>>;

/** The part of both SDK sockets we use. */
interface WireSocket {
  on(event: "open", callback: () => void): void;
  on(event: "message", callback: (message: unknown) => void): void;
  on(event: "close", callback: (event: { code: number; reason?: string }) => void): void;
  on(event: "error", callback: (error: Error) => void): void;
  connect(): unknown;
  close(): void;
  sendMedia(bytes: Uint8Array): void;
  sendCloseStream(message: { type: "CloseStream" }): void;
  readonly socket: {
    addEventListener(type: "close", listener: () => void): void;
    readonly readyState: number;
  };
}

/** One WebSocket connection to Deepgram. */
interface Link {
  readonly wire: WireSocket;
  readonly nova?: NovaSocket;
  /** Call-audio byte at which this stream's time 0 lies (streams restart at 0 on reconnect). */
  readonly originByte: number;
  /** We asked for this connection to end; its close is not a drop. */
  closing: boolean;
  /** A send failed: audio in the log may not have reached Deepgram on this connection. */
  sendFailed?: boolean;
  /** Resolves when the SDK reported close or error. */
  readonly ended: Promise<void>;
  /** Resolves when the underlying socket is really closed (for clean shutdown). */
  readonly transportClosed: Promise<void>;
}

/** Why a connection attempt failed. */
class LinkFailure extends Error {
  constructor(
    message: string,
    readonly status?: number,
    /** The socket of a handshake refused without a status, to ask it why. */
    readonly refused?: NativeDeepgramSocket,
  ) {
    super(message);
  }
}

type State = "connecting" | "open" | "reconnecting" | "closing" | "closed" | "failed";

class DeepgramLiveTranscriber implements LiveTranscriber {
  private readonly client: DeepgramClient;
  private readonly log: SttLog;
  private readonly format: AudioFormat;
  /** Bytes of one second of the call's audio: converts Deepgram's seconds to log offsets. */
  private readonly bytesPerSecond: number;
  /** Interim results are dropped when the consumer lags this far behind; nothing else is. */
  private readonly events = new AsyncQueue<TranscriptEvent>({
    limit: MAX_QUEUED_EVENTS,
    droppable: (event) => event.type === "interim",
    onReturn: () => void this.close(),
  });
  /** Aborted when the transcriber stops: cancels a reconnection backoff. */
  private readonly lifetime = new AbortController();
  private state: State = "connecting";
  private link?: Link;
  /** The SDK socket of a connection attempt in progress, so abort can cancel it. */
  private dialing?: WireSocket;
  /** Receives the native socket the SDK's transport factory creates for the next attempt. */
  private nextNativeSocket?: PromiseWithResolvers<NativeDeepgramSocket>;
  /**
   * Audio not yet covered by a final transcript nor forgotten as silence (plus anything unsent),
   * oldest first.
   */
  private readonly audioLog: Uint8Array[] = [];
  private logBytes = 0;
  /** Call-audio byte offset of the first byte in `audioLog`. */
  private logStart = 0;
  private sentBytes = 0;
  private sentSinceKeepAliveTick = false;
  private keepAliveTimer?: ReturnType<typeof setInterval>;
  private closing?: Promise<void>;
  private iterated = false;
  private lastFluxUpdate = "";
  private overflowWarned = false;
  private eventsOverflowWarned = false;

  constructor(private readonly opts: SttOptions) {
    this.client = new DeepgramClient({
      apiKey: opts.apiKey,
      baseUrl: opts.baseUrl,
      transportFactory: (_url, _headers, request) => {
        const socket = new NativeDeepgramSocket(request);
        this.nextNativeSocket?.resolve(socket);
        return socket;
      },
    });
    this.log = opts.log ?? (() => {});
    this.format = opts.audioFormat ?? MULAW_8K;
    this.bytesPerSecond = bytesPerMs(this.format) * 1000;
    if (opts.signal.aborted) {
      this.state = "closed";
      this.events.close();
      return;
    }
    opts.signal.addEventListener("abort", this.onAbort, { once: true });
    void this.establish(false);
  }

  get audioSeconds(): number {
    return this.sentBytes / this.bytesPerSecond;
  }

  [Symbol.asyncIterator](): AsyncIterator<TranscriptEvent> {
    if (this.iterated) throw new Error("LiveTranscriber can be iterated only once");
    this.iterated = true;
    return this.events;
  }

  sendAudio(audio: Uint8Array): void {
    if (this.isOver() || this.state === "closing" || audio.length === 0) return;
    this.audioLog.push(audio);
    this.logBytes += audio.length;
    if (this.state === "open" && this.link) this.transmit(this.link, audio);
    this.enforceBufferBound();
  }

  forgetSilence(keepMs: number): void {
    // While disconnected, the log holds audio Deepgram never heard: words the VAD missed or
    // whose transcript the outage held back may be in it.
    if (this.state !== "open" || this.link?.sendFailed) return;
    const keep = Math.round((keepMs / 1000) * this.bytesPerSecond);
    this.trimLog(this.logStart + this.logBytes - keep);
  }

  finalize(): void {
    if (this.state !== "open" || !this.link?.nova) return;
    try {
      this.link.nova.sendFinalize({ type: "Finalize" });
    } catch {
      // The socket just dropped; reconnection replays the audio and finals follow from it.
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown(true);
    return this.closing;
  }

  private readonly onAbort = () => {
    this.closing ??= this.shutDown(false);
  };

  private isOver(): boolean {
    return this.state === "closed" || this.state === "failed";
  }

  /** Connects (initially or after a drop), retrying with backoff, then replays buffered audio. */
  private async establish(isReconnect: boolean): Promise<void> {
    const { attempts, backoffMs } = this.opts.reconnect ?? { attempts: 5, backoffMs: 250 };
    const tries = Math.max(1, attempts);
    let lastFailure: LinkFailure | undefined;
    for (let attempt = 1; attempt <= tries; attempt++) {
      if (attempt > 1) {
        const pause = Math.min(backoffMs * 2 ** (attempt - 2), MAX_BACKOFF_MS);
        await delay(pause, this.lifetime.signal).catch(() => {});
      }
      if (this.state !== "connecting" && this.state !== "reconnecting") return;
      try {
        const link = await this.openLinkWithin(
          this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        );
        if (this.state !== "connecting" && this.state !== "reconnecting") {
          link.closing = true;
          link.wire.close();
          return;
        }
        this.link = link;
        this.state = "open";
        const replayed = this.replay(link);
        this.startKeepAlive();
        if (isReconnect) {
          this.log("info", "stt reconnected", { attempt, replayedBytes: replayed });
          this.events.push({ type: "reconnected", attempt, bufferedBytes: replayed });
        }
        return;
      } catch (error) {
        lastFailure = error instanceof LinkFailure ? error : new LinkFailure(String(error));
        const status = lastFailure.status ?? await this.keyRefusal(lastFailure);
        if (this.state !== "connecting" && this.state !== "reconnecting") return;
        this.log("warn", "stt connection attempt failed", {
          attempt,
          status,
          error: lastFailure.message,
        });
        if (status === 401 || status === 403) {
          return this.fail(
            new SttUnavailableError("Deepgram refused the API key", "auth", attempt, {
              cause: lastFailure,
            }),
          );
        }
        // Other 4xx (bad parameters…) will not improve on retry; 408/429 may. (Known over `ws:`
        // only: over `wss:` only a key's refusal is learnt, see keyRefusal().)
        if (status !== undefined && status >= 400 && status < 500 && ![408, 429].includes(status)) {
          return this.fail(
            new SttUnavailableError(
              `Deepgram rejected the connection (${status})`,
              "rejected",
              attempt,
              {
                cause: lastFailure,
              },
            ),
          );
        }
      }
    }
    if (this.state !== "connecting" && this.state !== "reconnecting") return;
    this.fail(
      new SttUnavailableError(
        `Deepgram unreachable after ${tries} attempt(s): ${lastFailure?.message}`,
        "unreachable",
        tries,
        { cause: lastFailure },
      ),
    );
  }

  /**
   * 401 or 403 when Deepgram refuses the key of a handshake refused without a status, asked once
   * more over HTTPS (bounded, and given up when the transcriber stops). Deno's `wss:` client
   * loses the status; only the key's verdict is taken from the plain request, which Deepgram
   * refuses otherwise for want of an upgrade.
   */
  private async keyRefusal(failure: LinkFailure): Promise<number | undefined> {
    if (!failure.refused || this.isOver() || this.state === "closing") return undefined;
    const status = await failure.refused.refusalStatus(
      REFUSAL_STATUS_WAIT_MS,
      this.lifetime.signal,
    );
    return status === 401 || status === 403 ? status : undefined;
  }

  /** {@link openLink}, bounded: a slower handshake is abandoned and its socket closed. */
  private async openLinkWithin(ms: number): Promise<Link> {
    const attempt = { abandoned: false };
    try {
      return await deadline(this.openLink(attempt), ms, { what: "Deepgram handshake" });
    } catch (error) {
      if (!(error instanceof DeadlineError)) throw error;
      attempt.abandoned = true;
      this.dialing?.close();
      this.dialing = undefined;
      throw new LinkFailure(error.message);
    }
  }

  /** Opens one connection; resolves once it is open, rejects if it ends before. */
  private async openLink(attempt: { abandoned: boolean }): Promise<Link> {
    const socket = await this.dial();
    const wire = socket.wire;
    if (this.isOver() || this.state === "closing" || attempt.abandoned) {
      throw new LinkFailure("transcriber closed or attempt abandoned while connecting");
    }
    this.dialing = wire;
    return await new Promise<Link>((resolve, reject) => {
      let opened = false;
      let code: number | undefined;
      let reason = "";
      let errorMessage: string | undefined;
      let endReported = false;
      let markEnded!: () => void;
      let markTransportClosed!: () => void;
      const link: Link = {
        wire,
        nova: socket.nova,
        originByte: this.logStart,
        closing: false,
        ended: new Promise((r) => markEnded = r),
        transportClosed: new Promise((r) => markTransportClosed = r),
      };
      // The SDK stops relaying the socket's close once we close it; the native socket's own
      // close is what says the connection is gone.
      wire.socket.addEventListener("close", () => markTransportClosed());
      const native = Promise.withResolvers<NativeDeepgramSocket>();
      this.nextNativeSocket = native;
      let nativeSocket: NativeDeepgramSocket | undefined;
      void native.promise.then((socket) => {
        nativeSocket = socket;
        return socket.closed;
      }).then(() => markTransportClosed());
      // The SDK reports a failed handshake as close(1000) then error in the same tick: wait a
      // microtask so both are known before deciding what happened.
      const reportEnd = () => {
        if (endReported) return;
        endReported = true;
        queueMicrotask(() => {
          markEnded();
          if (this.dialing === wire) this.dialing = undefined;
          if (!opened) {
            const parsed = Number(
              errorMessage?.match(/(?:server response|status code): (\d{3})/)?.[1],
            );
            const status = Number.isFinite(parsed) ? parsed : undefined;
            // An error without a status may be a refusal over `wss:`: keyRefusal() asks why.
            const refused = status === undefined && errorMessage !== undefined
              ? nativeSocket
              : undefined;
            const message = errorMessage ?? `closed before open (${code ?? "no code"})`;
            reject(new LinkFailure(message, status, refused));
            return;
          }
          this.onLinkEnded(link, { code, reason, error: errorMessage });
        });
      };
      wire.on("open", () => {
        opened = true;
        if (this.dialing === wire) this.dialing = undefined;
        resolve(link);
      });
      wire.on("message", (message) => this.onMessage(link, message));
      wire.on("close", (event) => {
        code ??= event.code;
        reason ||= event.reason ?? "";
        reportEnd();
      });
      wire.on("error", (error) => {
        errorMessage ??= error.message;
        reportEnd();
      });
      wire.connect();
    });
  }

  private async dial(): Promise<{ wire: WireSocket; nova?: NovaSocket }> {
    const o = this.opts;
    const common = {
      // Deepgram's names match ours: `mulaw`, `alaw`, `linear16`.
      encoding: this.format.encoding,
      sample_rate: this.format.sampleRate,
      reconnectAttempts: 0,
      // The SDK's own bound, in whole seconds; openLinkWithin() enforces the exact one.
      connectionTimeoutInSeconds:
        Math.ceil((o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000) + 1,
    } as const;
    if (o.engine === "nova") {
      const nova = await this.client.listen.v1.connect({
        ...common,
        model: o.model ?? "nova-3",
        channels: 1,
        interim_results: "true",
        endpointing: o.endpointingMs ?? 300,
        utterance_end_ms: o.utteranceEndMs ?? 1000,
        vad_events: "true",
        smart_format: "true",
      });
      return { wire: nova, nova };
    }
    const flux: FluxSocket = await this.client.listen.v2.connect({
      ...common,
      model: o.model ?? "flux-general-en",
      eot_threshold: o.eotThreshold,
      eager_eot_threshold: o.eagerEotThreshold,
      eot_timeout_ms: o.eotTimeoutMs,
    });
    return { wire: flux };
  }

  /** Sends everything kept in the log on a fresh connection; returns the byte count. */
  private replay(link: Link): number {
    let bytes = 0;
    for (const chunk of this.audioLog) {
      if (!this.transmit(link, chunk)) break;
      bytes += chunk.length;
    }
    return bytes;
  }

  private transmit(link: Link, bytes: Uint8Array): boolean {
    try {
      link.wire.sendMedia(bytes);
    } catch {
      // Socket no longer open: its close event triggers reconnection; the bytes stay in the log.
      link.sendFailed = true;
      return false;
    }
    this.sentBytes += bytes.length;
    this.sentSinceKeepAliveTick = true;
    return true;
  }

  /** Drops the oldest audio beyond the bound; only audio never sent to Deepgram is a real loss. */
  private enforceBufferBound(): void {
    const max = this.opts.maxBufferBytes ?? DEFAULT_MAX_BUFFER_SECONDS * this.bytesPerSecond;
    while (this.logBytes > max && this.audioLog.length > 1) {
      const dropped = this.audioLog.shift()!;
      this.logBytes -= dropped.length;
      this.logStart += dropped.length;
      if (this.state !== "open" && !this.overflowWarned) {
        this.overflowWarned = true;
        this.log("warn", "stt audio buffer full while reconnecting; dropping oldest audio", {
          maxBufferBytes: max,
        });
      }
    }
  }

  /**
   * Forgets audio up to call byte `end`: no need to replay it (Deepgram finalised it, or it is
   * the callee's silence).
   */
  private trimLog(end: number): void {
    while (this.audioLog.length > 0 && this.logStart < end) {
      const first = this.audioLog[0];
      const cut = end - this.logStart;
      if (cut >= first.length) {
        this.audioLog.shift();
        this.logBytes -= first.length;
        this.logStart += first.length;
      } else {
        this.audioLog[0] = first.subarray(cut);
        this.logBytes -= cut;
        this.logStart += cut;
      }
    }
  }

  private onLinkEnded(link: Link, end: { code?: number; reason: string; error?: string }): void {
    if (link !== this.link || link.closing || this.state !== "open") return;
    this.link = undefined;
    this.state = "reconnecting";
    this.overflowWarned = false;
    this.log("warn", "stt socket dropped; reconnecting", { ...end, bufferedBytes: this.logBytes });
    void this.establish(true);
  }

  private onMessage(link: Link, raw: unknown): void {
    if (link !== this.link || this.isOver()) return;
    const type = MessageType.safeParse(raw);
    if (!type.success) return;
    switch (type.data.type) {
      case "Results": {
        const results = NovaResults.safeParse(raw);
        if (!results.success) return this.badMessage("Results", results.error);
        const r = results.data;
        const text = r.channel.alternatives[0]?.transcript ?? "";
        if (!r.is_final) {
          if (text) this.emit({ type: "interim", text });
          return;
        }
        this.trimLog(link.originByte + Math.round((r.start + r.duration) * this.bytesPerSecond));
        if (text || r.speech_final) {
          this.emit({
            type: "final",
            text,
            speechFinal: r.speech_final,
            fromFinalize: r.from_finalize,
          });
        }
        return;
      }
      case "SpeechStarted": {
        const started = NovaSpeechStarted.safeParse(raw);
        if (!started.success) return this.badMessage("SpeechStarted", started.error);
        const atSeconds = link.originByte / this.bytesPerSecond + started.data.timestamp;
        return this.emit({ type: "speech_started", atSeconds });
      }
      case "UtteranceEnd":
        return this.emit({ type: "utterance_end" });
      case "TurnInfo": {
        const info = FluxTurnInfo.safeParse(raw);
        if (!info.success) return this.badMessage("TurnInfo", info.error);
        return this.onTurnInfo(link, info.data);
      }
      case "Error": {
        const error = ServerError.safeParse(raw);
        this.log("warn", "stt server error", error.success ? error.data : {});
        return;
      }
      default:
        // Metadata, Connected, ConfigureSuccess and future message types carry nothing we use.
        return;
    }
  }

  private onTurnInfo(link: Link, info: z.infer<typeof FluxTurnInfo>): void {
    const text = info.transcript;
    switch (info.event) {
      case "Update":
        if (text && text !== this.lastFluxUpdate) {
          this.lastFluxUpdate = text;
          this.emit({ type: "interim", text });
        }
        return;
      case "StartOfTurn":
        this.lastFluxUpdate = "";
        return this.emit({ type: "start_of_turn" });
      case "EagerEndOfTurn":
        return this.emit({ type: "eager_end_of_turn", text });
      case "TurnResumed":
        return this.emit({ type: "turn_resumed" });
      case "EndOfTurn":
        this.lastFluxUpdate = "";
        if (info.audio_window_end !== undefined) {
          this.trimLog(
            link.originByte + Math.round(info.audio_window_end * this.bytesPerSecond),
          );
        }
        return this.emit({ type: "end_of_turn", text });
    }
  }

  private badMessage(type: string, error: z.ZodError): void {
    this.log("warn", "stt message not understood", { type, issues: error.issues.length });
  }

  private emit(event: TranscriptEvent): void {
    if (!this.events.push(event) && !this.events.closed && !this.eventsOverflowWarned) {
      this.eventsOverflowWarned = true;
      this.log("warn", "stt events not consumed; dropping interim results");
    }
  }

  private startKeepAlive(): void {
    if (this.opts.engine !== "nova" || this.keepAliveTimer !== undefined) return;
    // Ticking at a fixed period is cheaper than re-arming a timer on every 20 ms audio frame;
    // the worst-case silence is two periods, still under Deepgram's ~10 s idle timeout.
    this.keepAliveTimer = setInterval(() => {
      const nova = this.link?.nova;
      if (this.state === "open" && nova && !this.sentSinceKeepAliveTick) {
        try {
          nova.sendKeepAlive({ type: "KeepAlive" });
        } catch {
          // Dropping; reconnection handles it.
        }
      }
      this.sentSinceKeepAliveTick = false;
    }, this.opts.keepAliveMs ?? 3000);
  }

  private fail(error: SttUnavailableError): void {
    this.log("error", "stt unavailable", { reason: error.reason, attempts: error.attempts });
    this.state = "failed";
    this.releaseTimers();
    this.events.fail(error);
  }

  private releaseTimers(): void {
    clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
    this.lifetime.abort();
    this.opts.signal.removeEventListener("abort", this.onAbort);
  }

  /** `graceful`: CloseStream and wait for the server's flush; otherwise close at once (abort). */
  private async shutDown(graceful: boolean): Promise<void> {
    if (this.isOver()) {
      this.state = this.state === "failed" ? "failed" : "closed";
      return;
    }
    const link = this.link;
    const wasOpen = this.state === "open";
    this.state = "closing";
    this.releaseTimers();
    this.dialing?.close();
    this.dialing = undefined;
    if (link) {
      link.closing = true;
      if (graceful && wasOpen) {
        try {
          link.wire.sendCloseStream({ type: "CloseStream" });
          await settledWithin(link.ended, this.opts.closeTimeoutMs ?? 2000);
        } catch {
          // Already closed by the other side.
        }
      }
      this.state = "closed";
      link.wire.close();
      await settledWithin(link.transportClosed, this.opts.closeTimeoutMs ?? 2000);
    }
    this.state = "closed";
    this.link = undefined;
    this.audioLog.length = 0;
    this.events.close();
  }
}

/**
 * Opens a live transcription stream. It connects in the background: audio sent before the
 * socket is open is buffered, and a connection that cannot be made surfaces as an
 * {@link SttUnavailableError} thrown by the event iterator.
 */
export function openLiveTranscriber(opts: SttOptions): LiveTranscriber {
  return new DeepgramLiveTranscriber(opts);
}
