/**
 * Cartesia streaming text-to-speech over its WebSocket: one socket per call, reused across turns,
 * one Cartesia context per bot response. Output is raw audio in the call's output format (mu-law
 * or A-law 8 kHz for a phone call), exactly what the transport plays, so no transcoding happens
 * anywhere.
 *
 * Phrase boundaries: after each phrase the context is flushed; Cartesia answers each flush with a
 * `flush_done` (numbered from 1, per context) once that phrase's audio has been sent, so the
 * speaker can say exactly where each phrase's audio ends. Barge-in needs this to keep only what
 * the callee actually heard. The start of a phrase (`PhraseStart`) is sent at once with
 * `continue: true` and no flush, and the rest of the phrase continues it in the same context:
 * Cartesia starts speaking on the first clause and reads the sentence with one prosody.
 *
 * The SDK's `TTSWS` is used for the wire format, but connection lifecycle is ours because the
 * SDK's own is unsafe for a long-running server:
 * - an error with no `on("error")` listener becomes an unhandled rejection that kills the
 *   process, so each `TTSWS` is constructed directly and gets its listener before `connect()`;
 * - a socket that drops mid-response never ends `receive()`, and the next send silently
 *   reconnects and discards every context, so we route events ourselves, fail in-flight responses
 *   on `close`, never send on a socket that is not open, and open a fresh `TTSWS` for the next
 *   response instead.
 *
 * @module
 */
import Cartesia from "@cartesia/cartesia-js";
import { type ContextOptions, TTSWS, TTSWSContext } from "@cartesia/cartesia-js/resources/tts/ws";
import type { RawOutputFormat, WebsocketResponse } from "@cartesia/cartesia-js/resources/tts";
import { z } from "zod";
import { AsyncQueue } from "../async/async_queue.ts";
import { abortable, deadline, delay, IdleTimeout, settledWithin } from "../async/deadline.ts";
import { type AudioEncoding, type AudioFormat, MULAW_8K } from "../transport/call_transport.ts";
import type { PhrasePiece } from "./phrases.ts";

/** The original bot's model. */
const DEFAULT_TTS_MODEL = "sonic-3";
/** The original bot's voice. */
const DEFAULT_TTS_VOICE_ID = "71a7ad14-091c-4e8e-a314-022ece01c121";

/** What {@link CartesiaSpeaker.speak} yields, in playback order. */
export type SpeechEvent =
  /** Raw audio in the speaker's `audioFormat`, ready for the call's transport. */
  | { type: "audio"; audio: Uint8Array }
  /**
   * All audio of phrase `index` (0-based, in the order `text` yielded it) has been yielded;
   * the playback layer puts a Telnyx `mark` here to learn what the callee heard.
   */
  | { type: "phrase_end"; index: number; text: string };

/** Validated configuration of a {@link CartesiaSpeaker}. */
const TtsConfigSchema = z.object({
  apiKey: z.string().min(1),
  /**
   * e.g. `https://api.cartesia.ai`; the SDK forces `wss:` for the socket. Unset: the SDK reads
   * `CARTESIA_BASE_URL`, then falls back to the public API.
   */
  baseURL: z.url().optional(),
  model: z.string().min(1).default(DEFAULT_TTS_MODEL),
  voiceId: z.string().min(1).default(DEFAULT_TTS_VOICE_ID),
  language: z.string().min(2).default("en"),
  /**
   * Cartesia's own text buffering before it starts generating. We already send whole phrases,
   * so waiting (the server default is 3000 ms) would only add latency to the first word.
   */
  maxBufferDelayMs: z.number().int().min(0).max(5000).default(0),
  /** Per attempt: TLS + WebSocket handshake. */
  connectTimeoutMs: z.number().int().positive().default(5000),
  /** Attempts per (re)connection before the speaker reports {@link TtsUnavailableError}. */
  connectAttempts: z.number().int().positive().default(2),
  /** Pause before a further attempt (multiplied by the attempt number). */
  reconnectDelayMs: z.number().int().min(0).default(200),
  /**
   * Longest silence from Cartesia while it owes this response audio (a phrase sent and not yet
   * flushed, or the end of input sent and not yet `done`): it bounds the first audio of a
   * response as well as every gap after it. Longer fails the response with `timeout`.
   */
  stallTimeoutMs: z.number().int().positive().default(5000),
  /** Longest wait for Cartesia to answer our close frame. */
  closeTimeoutMs: z.number().int().positive().default(2000),
});

/** Configuration after defaults are applied. */
type TtsConfig = z.infer<typeof TtsConfigSchema>;

/** Structured log sink; the speaker never logs text content, only ids and reasons. */
export type TtsLog = (
  level: "debug" | "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void;

/** Constructor options: {@link TtsConfigSchema} input plus an optional log sink. */
export type TtsOptions = z.input<typeof TtsConfigSchema> & {
  log?: TtsLog;
  /** Format of the audio to produce (the call's output format); default mu-law 8 kHz. */
  audioFormat?: AudioFormat;
};

/** Why a response (or the speaker) failed. */
export type TtsFailureReason =
  /** Cartesia sent an error frame for this context; the socket stays usable. */
  | "server"
  /** The socket closed while the response was in flight; the next response reconnects. */
  | "dropped"
  /** Cartesia went silent before finishing the response. */
  | "timeout"
  /** No socket could be (re)established: see {@link TtsUnavailableError}. */
  | "unavailable"
  /** The speaker was closed. */
  | "closed";

/** A response could not be synthesised; only that response is affected unless `unavailable`. */
export class TtsError extends Error {
  override name = "TtsError";
  /** What went wrong, for metrics and the caller's recovery choice. */
  readonly reason: TtsFailureReason;
  /** Cartesia's `error_code`, for `server` failures. */
  readonly errorCode?: string;
  /** Cartesia's `status_code`, for `server` failures. */
  readonly statusCode?: number;
  /** The Cartesia context of the failed response, when there was one. */
  readonly contextId?: string;

  /** Creates an error; `details.cause` keeps the underlying error. */
  constructor(
    message: string,
    reason: TtsFailureReason,
    details: { errorCode?: string; statusCode?: number; contextId?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: details.cause });
    this.reason = reason;
    this.errorCode = details.errorCode;
    this.statusCode = details.statusCode;
    this.contextId = details.contextId;
  }
}

/** Cartesia cannot be reached at all: the call cannot talk and should end politely. */
export class TtsUnavailableError extends TtsError {
  override name = "TtsUnavailableError";

  /** Creates the error with the last connection failure as `cause`. */
  constructor(message: string, cause?: unknown) {
    super(message, "unavailable", { cause });
  }
}

/** Cartesia's name of each encoding of raw output. */
const CARTESIA_ENCODING = {
  mulaw: "pcm_mulaw",
  alaw: "pcm_alaw",
  linear16: "pcm_s16le",
} as const satisfies Record<AudioEncoding, string>;

/** The sample rates Cartesia produces. */
const CARTESIA_SAMPLE_RATES: readonly RawOutputFormat["sample_rate"][] = [
  8000,
  16000,
  22050,
  24000,
  44100,
  48000,
];

/**
 * Cartesia's `output_format` for raw audio in `format`.
 *
 * @throws {RangeError} for a sample rate Cartesia does not produce.
 */
function cartesiaOutputFormat(format: AudioFormat): RawOutputFormat {
  const rate = CARTESIA_SAMPLE_RATES.find((rate) => rate === format.sampleRate);
  if (rate === undefined) {
    throw new RangeError(
      `Cartesia cannot produce ${format.sampleRate} Hz audio; use one of ` +
        CARTESIA_SAMPLE_RATES.join(", "),
    );
  }
  return { container: "raw", encoding: CARTESIA_ENCODING[format.encoding], sample_rate: rate };
}

/**
 * Speaks bot responses for one call. Create one per call, `connect()` when the call starts so
 * the greeting does not pay the TLS handshake, `speak()` once per response, `close()` at hang-up.
 */
export class CartesiaSpeaker {
  readonly #config: TtsConfig;
  readonly #outputFormat: RawOutputFormat;
  readonly #log: TtsLog;
  readonly #client: Cartesia;
  readonly #lifetime = new AbortController();
  #connection: Connection | undefined;
  #connecting: Promise<Connection> | undefined;
  #charactersSent = 0;

  /** Validates options; opens nothing yet. */
  constructor(options: TtsOptions) {
    const { log, audioFormat, ...config } = options;
    this.#config = TtsConfigSchema.parse(config);
    this.#outputFormat = cartesiaOutputFormat(audioFormat ?? MULAW_8K);
    this.#log = log ?? (() => {});
    // apiKey must be explicit: the SDK ignores CARTESIA_API_KEY.
    this.#client = new Cartesia({ apiKey: this.#config.apiKey, baseURL: this.#config.baseURL });
  }

  /** Transcript characters sent to Cartesia so far (what Cartesia bills). */
  get charactersSent(): number {
    return this.#charactersSent;
  }

  /**
   * Opens the socket ahead of the first response.
   * @throws {TtsUnavailableError} when no connection can be established.
   * @throws the signal's reason when it aborts first.
   */
  async connect(signal: AbortSignal): Promise<void> {
    await abortable(this.#openConnection(), signal);
  }

  /**
   * Synthesises one bot response in one Cartesia context. Each string `text` yields is one phrase
   * (the orchestration chunks LLM deltas with `PhraseChunker` first; a string that is not a whole
   * phrase is still spoken, it only gets its own boundary); a `PhraseStart` is the start of the
   * phrase the next string completes, sent at once without a boundary. Phrases are forwarded as
   * they arrive, each followed by a flush, so the events mark where each phrase's audio ends: every
   * `phrase_end` comes right after the last audio of that phrase, and the last one comes before
   * the generator returns. Whitespace-only strings are skipped.
   *
   * Work starts at the call, not at the first `next()`: a caller may run this early (e.g. for the
   * greeting) and read later; events wait in the response's queue meanwhile. A response that is
   * never read must be abandoned by aborting its signal.
   *
   * Aborting the signal (or leaving the loop early) cancels the Cartesia context, discards queued
   * events and ends the generator without error.
   *
   * @throws {TtsError} for a failure of this response (the next one may still work), after the
   *   events queued before the failure; `timeout` when Cartesia stays silent for
   *   `stallTimeoutMs` while it owes audio (its first audio included).
   * @throws {TtsUnavailableError} when no socket can be (re)established.
   * @throws whatever `text` throws, after cancelling the context.
   *
   * When the response ends early (abort, failure, consumer leaving) `text` is closed with
   * `return()` at its next phrase, so an LLM stream feeding it stops too.
   */
  speak(text: AsyncIterable<PhrasePiece>, signal: AbortSignal): AsyncGenerator<SpeechEvent> {
    const response = new SpeechResponse(this.#config.stallTimeoutMs);
    if (signal.aborted) response.stop();
    else void this.#respond(text, signal, response);
    return readEvents(response);
  }

  /** {@link speak} for a text known in full (the greeting, a canned reply): one phrase. */
  speakText(text: string, signal: AbortSignal): AsyncGenerator<SpeechEvent> {
    return this.speak(onePhrase(text), signal);
  }

  /** Closes the socket and ends in-flight responses with a `closed` {@link TtsError}. */
  async close(): Promise<void> {
    if (this.#lifetime.signal.aborted) return;
    this.#lifetime.abort();
    await this.#connecting?.catch(() => {});
    const connection = this.#connection;
    this.#connection = undefined;
    await connection?.close();
  }

  /** Connects, opens the context and streams the text; every outcome ends up in `response`. */
  async #respond(
    text: AsyncIterable<PhrasePiece>,
    signal: AbortSignal,
    response: SpeechResponse,
  ) {
    let connection: Connection;
    try {
      connection = await abortable(this.#openConnection(), signal);
    } catch (error) {
      if (signal.aborted) response.stop();
      else response.fail(error);
      return;
    }
    if (response.settled) return; // the consumer left while we were connecting

    const contextId = response.contextId;
    const onAbort = () => response.stop();
    response.onSettled = () => {
      signal.removeEventListener("abort", onAbort);
      connection.responses.delete(contextId);
      // The SDK's ctx.cancel() would silently reconnect on a closed socket; send only if open.
      if (!response.finishedByServer && connection.isOpen()) {
        void connection.ws.cancelContext(contextId);
        this.#log("debug", "tts context cancelled", { contextId });
      }
    };
    connection.responses.set(contextId, response);
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) {
      response.stop();
      return;
    }
    const context = new TTSWSContext(connection.ws, {
      contextId,
      model_id: this.#config.model,
      voice: { mode: "id", id: this.#config.voiceId },
      output_format: this.#outputFormat,
      language: this.#config.language as ContextOptions["language"],
      max_buffer_delay_ms: this.#config.maxBufferDelayMs,
    });
    await this.#streamText(text, connection, context, response);
  }

  async #streamText(
    text: AsyncIterable<PhrasePiece>,
    connection: Connection,
    context: TTSWSContext,
    response: SpeechResponse,
  ): Promise<void> {
    const push = async (transcript: string) => {
      await connection.send(() => context.push({ transcript }));
      this.#charactersSent += transcript.length;
    };
    // One flush per phrase, in order: Cartesia numbers flushes from 1, so flush_id k ends
    // phrase k - 1. Each flush is its own send (not push({flush})) so that the open-socket
    // check runs right before it.
    const flush = () => connection.send(() => context.flush());
    /** The start of the current phrase, already sent; its end and flush are still to come. */
    let started = "";
    try {
      for await (const piece of text) {
        if (response.settled) return;
        if (typeof piece !== "string") {
          if (piece.start.trim() === "") continue;
          // No flush: a flush makes Cartesia finish what it has as if the sentence ended there.
          started += piece.start;
          response.startPhrase();
          await push(piece.start);
          continue;
        }
        if (piece.trim() === "" && started === "") continue;
        // Registered before it is sent, so its flush_done can never arrive first.
        response.addPhrase(started + piece);
        started = "";
        if (piece.trim() !== "") await push(piece);
        if (response.settled) return;
        await flush();
      }
      if (response.settled) return;
      if (started !== "") {
        response.addPhrase(started);
        await flush();
      }
      response.endInput(); // before sending, so a prompt `done` always finds it
      await connection.send(() => context.no_more_inputs());
    } catch (error) {
      response.fail(error);
    }
  }

  /** The open connection, or a fresh one; concurrent callers share one attempt. */
  #openConnection(): Promise<Connection> {
    if (this.#lifetime.signal.aborted) {
      return Promise.reject(new TtsError("speaker is closed", "closed"));
    }
    if (this.#connection?.isOpen()) return Promise.resolve(this.#connection);
    this.#connecting ??= this.#establish().finally(() => this.#connecting = undefined);
    return this.#connecting;
  }

  async #establish(): Promise<Connection> {
    const lifetime = this.#lifetime.signal;
    for (let attempt = 1;; attempt++) {
      try {
        const connection = await Connection.open(this.#client, this.#config, this.#log, lifetime);
        connection.onClose = () => {
          if (this.#connection === connection) this.#connection = undefined;
        };
        this.#connection = connection;
        this.#log("info", "tts connected", { attempt });
        return connection;
      } catch (error) {
        if (lifetime.aborted) throw new TtsError("speaker is closed", "closed", { cause: error });
        this.#log("warn", "tts connect failed", { attempt, error: describe(error) });
        if (attempt >= this.#config.connectAttempts) {
          throw new TtsUnavailableError(
            `cannot connect to Cartesia after ${attempt} attempt(s): ${describe(error)}`,
            error,
          );
        }
        await delay(this.#config.reconnectDelayMs * attempt, lifetime).catch(() => {});
      }
    }
  }
}

/** One `TTSWS` and its one socket; never reused after that socket closes. */
class Connection {
  readonly ws: TTSWS;
  /** In-flight responses by context id. */
  readonly responses = new Map<string, SpeechResponse>();
  /** Called once when the socket has closed. */
  onClose: () => void = () => {};
  readonly #socket: TTSWS["socket"];
  readonly #log: TtsLog;
  readonly #closeTimeoutMs: number;
  readonly #closed: Promise<void>;
  #isClosed = false;
  #closing = false;

  private constructor(ws: TTSWS, log: TtsLog, closeTimeoutMs: number) {
    this.ws = ws;
    this.#socket = ws.socket;
    this.#log = log;
    this.#closeTimeoutMs = closeTimeoutMs;
    this.#closed = new Promise((resolve) => {
      this.#socket.addEventListener("close", (event: CloseEvent) => {
        this.#isClosed = true;
        const reason = this.#closing ? "closed" : "dropped";
        if (!this.#closing) {
          this.#log("warn", "tts socket closed", { code: event.code, reason: event.reason });
        }
        for (const response of this.responses.values()) {
          response.fail(
            new TtsError(`Cartesia socket closed (code ${event.code})`, reason, {
              contextId: response.contextId,
            }),
          );
        }
        this.responses.clear();
        this.onClose();
        resolve();
      });
    });
  }

  /**
   * Connects one `TTSWS`, with its error listener attached before the handshake can fail.
   * Rejects on handshake failure, timeout or `lifetime` abort, always after the socket closed.
   */
  static async open(
    client: Cartesia,
    config: TtsConfig,
    log: TtsLog,
    lifetime: AbortSignal,
  ): Promise<Connection> {
    const ws = new TTSWS(client);
    const connection = new Connection(ws, log, config.closeTimeoutMs);
    ws.on("error", (error) => log("debug", "tts socket error", { error: error.message }));
    ws.on("event", (event) => connection.#route(event));
    try {
      await deadline(ws.connect(), config.connectTimeoutMs, {
        signal: lifetime,
        what: "Cartesia handshake",
      });
      return connection;
    } catch (error) {
      await connection.close();
      throw error;
    }
  }

  /** True while sending on this socket cannot trigger the SDK's silent reconnect. */
  isOpen(): boolean {
    return !this.#isClosed && this.ws.socket === this.#socket &&
      this.#socket.readyState === WebSocket.OPEN;
  }

  /**
   * Runs an SDK send only if the socket is open. The SDK checks `readyState` synchronously at
   * the start of its send, in the same tick as our check, so it can never reconnect behind us.
   */
  send(sdkSend: () => Promise<void>): Promise<void> {
    if (!this.isOpen()) {
      return Promise.reject(new TtsError("Cartesia socket is not open", "dropped"));
    }
    return sdkSend();
  }

  /** Closes the socket (if needed) and waits until it is closed. */
  async close(): Promise<void> {
    this.#closing = true;
    if (!this.#isClosed) this.ws.close({ code: 1000, reason: "call ended" });
    // A peer that ignores our close frame would otherwise hold the call's teardown forever.
    await settledWithin(this.#closed, this.#closeTimeoutMs);
  }

  #route(event: WebsocketResponse): void {
    const contextId = "context_id" in event ? event.context_id : undefined;
    const response = contextId === undefined ? undefined : this.responses.get(contextId);
    if (!response) {
      if (event.type === "error") {
        this.#log("warn", "tts error outside any response", {
          contextId,
          title: event.title,
          message: event.message,
        });
      }
      return;
    }
    switch (event.type) {
      case "chunk":
        response.pushAudio(
          event.audio ?? Uint8Array.from(atob(event.data), (c) => c.charCodeAt(0)),
        );
        break;
      case "flush_done":
        response.endPhrases(event.flush_id);
        break;
      case "done":
        response.finish();
        break;
      case "error":
        response.fail(
          new TtsError(`Cartesia: ${event.title}: ${event.message}`, "server", {
            errorCode: event.error_code,
            statusCode: event.status_code,
            contextId,
          }),
        );
        break;
      default:
        break; // timestamps carry no audio
    }
  }
}

/** One response's state: its events for the `speak()` generator, its phrases, its watchdog. */
class SpeechResponse {
  readonly contextId = crypto.randomUUID();
  /**
   * Unbounded on purpose: a consumer that reads late (pre-synthesised greeting) must lose
   * nothing, and one response's audio is at most a few hundred kilobytes.
   */
  readonly events = new AsyncQueue<SpeechEvent>();
  /** Called once, when the response has settled (done, failed or stopped). */
  onSettled: () => void = () => {};
  readonly #phrases: string[] = [];
  #phrasesEnded = 0;
  #phraseStarted = false;
  #inputEnded = false;
  #settled = false;
  #finishedByServer = false;
  /**
   * An idle timeout rather than `deadline()`: the silence it bounds restarts with every event
   * and pauses while Cartesia owes nothing, so there is no single promise to bound.
   */
  readonly #stall: IdleTimeout;

  constructor(stallMs: number) {
    this.#stall = new IdleTimeout(stallMs, () =>
      this.fail(
        new TtsError(`no audio from Cartesia for ${stallMs} ms`, "timeout", {
          contextId: this.contextId,
        }),
      ));
  }

  /** No more events will be queued (done, failed or stopped). */
  get settled(): boolean {
    return this.#settled;
  }

  /** Cartesia completed or rejected the context, so there is nothing to cancel. */
  get finishedByServer(): boolean {
    return this.#finishedByServer;
  }

  /** Records the text of the next phrase sent to Cartesia; its audio is now owed. */
  addPhrase(text: string): void {
    this.#phraseStarted = false;
    this.#phrases.push(text);
    this.#watchSilence();
  }

  /** The start of the next phrase was sent: its audio is owed before the phrase is complete. */
  startPhrase(): void {
    this.#phraseStarted = true;
    this.#watchSilence();
  }

  /** The end of input is being sent: `done` is now owed. */
  endInput(): void {
    this.#inputEnded = true;
    this.#watchSilence();
  }

  pushAudio(audio: Uint8Array): void {
    if (this.#settled) return;
    this.events.push({ type: "audio", audio });
    this.#watchSilence();
  }

  /** All audio of the first `count` phrases has been queued (Cartesia's `flush_done`). */
  endPhrases(count: number): void {
    if (this.#settled) return;
    const through = Math.min(count, this.#phrases.length);
    for (; this.#phrasesEnded < through; this.#phrasesEnded++) {
      const index = this.#phrasesEnded;
      this.events.push({ type: "phrase_end", index, text: this.#phrases[index] });
    }
    this.#watchSilence();
  }

  finish(): void {
    if (this.#settled) return;
    // `done` follows all audio, so every phrase has ended even if a flush_done went missing.
    this.endPhrases(this.#phrases.length);
    this.#finishedByServer = true;
    this.events.close();
    this.#settle();
  }

  /** Ends early by our choice (abort, consumer left): queued events are discarded. */
  stop(): void {
    if (this.#settled) return;
    void this.events.return();
    this.#settle();
  }

  fail(error: unknown): void {
    if (this.#settled) return;
    if (error instanceof TtsError && error.reason === "server") this.#finishedByServer = true;
    this.events.fail(error);
    this.#settle();
  }

  #settle(): void {
    this.#settled = true;
    this.#stall.stop();
    this.onSettled();
  }

  /** (Re)starts the silence bound while Cartesia owes audio or `done`; stops it otherwise. */
  #watchSilence(): void {
    const owed = this.#inputEnded || this.#phraseStarted ||
      this.#phrasesEnded < this.#phrases.length;
    if (this.#settled || !owed) this.#stall.stop();
    else this.#stall.restart();
  }
}

/** The consumer's side of a response; leaving early stops it (and so cancels the context). */
async function* readEvents(response: SpeechResponse): AsyncGenerator<SpeechEvent> {
  try {
    yield* response.events;
  } finally {
    response.stop();
  }
}

async function* onePhrase(text: string): AsyncGenerator<string> {
  yield text;
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (error instanceof Event) return (error as ErrorEvent).message ?? error.type;
  return String(error);
}
