/**
 * Loopback fake of Cartesia's streaming TTS WebSocket (`wss://…/tts/websocket`), speaking its wire
 * protocol (JSON generation frames with `context_id`, `continue` and `flush`; `cancel` frames;
 * `chunk`, `flush_done`, `done` and `error` replies) so the real `@cartesia/cartesia-js` SDK can
 * be tested against it. TLS is mandatory because the SDK forces `wss://`; the test process must
 * trust `tests/fakes/tls/ca.pem` (`deno test --cert tests/fakes/tls/ca.pem`).
 *
 * Audio is deterministic: every transcript character becomes `bytesPerChar` bytes of a mu-law
 * tone whose pitch identifies the context, so tests can compare bytes end to end.
 *
 * Flushes are numbered as Cartesia numbers them: per context, audio of the transcripts sent
 * before the first flush carries `flush_id: 1`, the k-th flush increments the id, and its
 * `flush_done` (with `flush_id: k`) is sent after all audio of the transcripts before it.
 *
 * @module
 */
import { z } from "zod";
import { delay, settledWithin } from "../../src/async/deadline.ts";
import { loopbackTls } from "./loopback_tls.ts";

/** How long closing the fake waits for its sockets' close events, and then for its server. */
const SOCKET_CLOSE_WAIT_MS = 2_000;

/** API key the fake accepts unless another one is configured. */
export const FAKE_CARTESIA_API_KEY = "test-cartesia-key";

const MULAW_SAMPLE_RATE = 8000;
const RAW_ENCODINGS = ["pcm_f32le", "pcm_s16le", "pcm_mulaw", "pcm_alaw"];
const SAMPLE_RATES = [8000, 16000, 22050, 24000, 44100, 48000];

const VoiceSchema = z.union([z.string().min(1), z.looseObject({ id: z.string().min(1) })]);

const OutputFormatSchema = z.looseObject({
  container: z.string(),
  encoding: z.string().optional(),
  sample_rate: z.number(),
});

/** A generation request frame as the SDK sends it (`push`, `no_more_inputs`, `flush`). */
const GenerationFrameSchema = z.looseObject({
  model_id: z.string(),
  voice: VoiceSchema,
  output_format: OutputFormatSchema,
  transcript: z.string(),
  context_id: z.string().optional(),
  continue: z.boolean().optional(),
  flush: z.boolean().optional(),
  language: z.string().optional(),
  max_buffer_delay_ms: z.number().optional(),
  add_timestamps: z.boolean().optional(),
});

/** A generation request frame. */
export type GenerationFrame = z.infer<typeof GenerationFrameSchema>;

const CancelFrameSchema = z.object({ cancel: z.literal(true), context_id: z.string() });

/** A connection as the fake saw its upgrade request. */
export interface FakeCartesiaConnection {
  /** 1-based, in order of arrival. */
  readonly id: number;
  /** `api_key` query parameter, else `X-API-Key` header, else `Authorization: Bearer`. */
  readonly apiKey: string | null;
  /** `cartesia_version` query parameter, else `Cartesia-Version` header. */
  readonly cartesiaVersion: string | null;
  /** `cartesia_client` query parameter (the SDK's self-identification). */
  readonly client: string | null;
}

/** One text frame the fake received, parsed. */
export interface FakeCartesiaMessage {
  /** Id of the connection it came on. */
  readonly connection: number;
  /** The parsed JSON. */
  readonly json: Record<string, unknown>;
}

/** One transcript piece of a context. */
export interface FakeTranscriptPiece {
  readonly transcript: string;
  /** `continue` as sent; `undefined` when the frame omitted it (one-shot request). */
  readonly continue: boolean | undefined;
}

/** Everything the fake knows about one context. */
export interface FakeCartesiaContext {
  readonly id: string;
  readonly connection: number;
  /** 0-based order of first appearance across all connections; picks the tone. */
  readonly ordinal: number;
  /** The first generation frame, i.e. the context's model/voice/format. */
  readonly request: GenerationFrame;
  /** Every non-flush generation frame's transcript, in order (includes the final `""`). */
  readonly pieces: FakeTranscriptPiece[];
  /** Each audio chunk as sent, in order. */
  readonly audioChunks: Uint8Array[];
  /** The `flush_id` each audio chunk carried, parallel to `audioChunks`. */
  readonly chunkFlushIds: number[];
  /** Flush frames received. */
  flushes: number;
  /** `flush_id`s of the `flush_done` frames sent, in order. */
  readonly flushesDone: number[];
  /** A `continue:false` (or one-shot) frame arrived. */
  inputFinished: boolean;
  /** The client cancelled the context. */
  cancelled: boolean;
  /** `done` was sent. */
  done: boolean;
  /** The error frame sent for this context, if any. */
  error: ErrorFrame | undefined;
}

/** Server error frame, API-version 2026 shape. */
export interface ErrorFrame {
  type: "error";
  context_id?: string;
  status_code: number;
  done: true;
  title: string;
  message: string;
  error_code: string;
  request_id: string;
}

/** Fault: the next new context fails with an error frame after `afterChunks` audio chunks. */
export interface ContextErrorFault {
  afterChunks?: number;
  statusCode?: number;
  title?: string;
  message?: string;
  errorCode?: string;
}

/** Options of {@link CartesiaFake.start}. */
export interface CartesiaFakeOptions {
  /** Key to accept; anything else gets HTTP 401 at the upgrade. */
  apiKey?: string;
  /** Audio bytes generated per transcript character (80 = 10 ms of mu-law 8 kHz). */
  bytesPerChar?: number;
  /** Maximum bytes per `chunk` frame. */
  chunkBytes?: number;
  /** Delay before each chunk; 0 streams instantly. Mutable later via `chunkDelayMs`. */
  chunkDelayMs?: number;
  /** Never answer flushes with `flush_done` (a client must not depend on them alone). */
  omitFlushDone?: boolean;
  /**
   * A real synthesiser's pace: a context's first audio this long after its first transcript
   * (Cartesia: about 120 ms), then each chunk its play time divided by `realTimeFactor` after
   * the one before (about 5). Added to `chunkDelayMs`.
   */
  pace?: { firstAudioMs: number; realTimeFactor: number };
}

type OutboundItem =
  | { kind: "audio"; bytes: Uint8Array; flushId: number }
  | { kind: "flush_done"; flushId: number }
  | { kind: "done" };

interface ContextRuntime {
  record: FakeCartesiaContext;
  socket: WebSocket;
  outbox: OutboundItem[];
  running: boolean;
  samplesGenerated: number;
  /** `performance.now()` when the context's first frame arrived. */
  openedAt: number;
  errorFault: ContextErrorFault | undefined;
  dropAfterChunks: number | undefined;
}

/**
 * The fake server. Start with {@link CartesiaFake.start}; always `await fake.close()`.
 */
export class CartesiaFake {
  /** `https://127.0.0.1:<port>` — pass as the SDK's `baseURL`. */
  readonly baseURL: string;
  /** Upgrade requests accepted, in order. */
  readonly connections: FakeCartesiaConnection[] = [];
  /** Every text frame received, in order. */
  readonly messages: FakeCartesiaMessage[] = [];
  /** Contexts by id, in order of first appearance. */
  readonly contexts = new Map<string, FakeCartesiaContext>();
  /** When true, upgrades are answered with HTTP 503 so the handshake fails. */
  refuseConnections = false;
  /** Delay before each chunk in ms; 0 streams instantly. */
  chunkDelayMs: number;

  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #apiKey: string;
  readonly #bytesPerChar: number;
  readonly #chunkBytes: number;
  readonly #omitFlushDone: boolean;
  readonly #pace: CartesiaFakeOptions["pace"];
  readonly #sockets = new Map<WebSocket, Promise<void>>();
  readonly #runtimes = new Map<string, ContextRuntime>();
  /** Aborted by close(): ends every chunk delay at once. */
  readonly #closing = new AbortController();
  readonly #errorFaults: ContextErrorFault[] = [];
  readonly #dropFaults: number[] = [];
  #closed = false;

  private constructor(tls: { cert: string; key: string }, options: CartesiaFakeOptions) {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, ...tls, onListen: () => {} },
      (request) => this.#handle(request),
    );
    this.baseURL = `https://127.0.0.1:${this.#server.addr.port}`;
    this.#apiKey = options.apiKey ?? FAKE_CARTESIA_API_KEY;
    this.#bytesPerChar = options.bytesPerChar ?? 80;
    this.#chunkBytes = options.chunkBytes ?? 800;
    this.chunkDelayMs = options.chunkDelayMs ?? 0;
    this.#omitFlushDone = options.omitFlushDone ?? false;
    this.#pace = options.pace;
  }

  /** Listens with TLS on an ephemeral loopback port. */
  static start(options: CartesiaFakeOptions = {}): Promise<CartesiaFake> {
    return Promise.resolve(new CartesiaFake(loopbackTls(), options));
  }

  /** The next new context gets an error frame instead of (the rest of) its audio. */
  failNextContext(fault: ContextErrorFault = {}): void {
    this.#errorFaults.push(fault);
  }

  /** The next new context's socket is closed by the server after `afterChunks` audio chunks. */
  dropNextContext(afterChunks = 1): void {
    this.#dropFaults.push(afterChunks);
  }

  /** Closes every open socket, as a network drop between responses would; resolves once closed. */
  async dropAllConnections(): Promise<void> {
    for (const socket of this.#sockets.keys()) closeQuietly(socket, 1011, "fake drop");
    await settledWithin(Promise.all(this.#sockets.values()), SOCKET_CLOSE_WAIT_MS);
  }

  /** Contexts in order of first appearance. */
  contextList(): FakeCartesiaContext[] {
    return [...this.contexts.values()];
  }

  /** A context's transcript as received (pieces joined). */
  transcriptOf(contextId: string): string {
    return (this.contexts.get(contextId)?.pieces ?? []).map((p) => p.transcript).join("");
  }

  /** All audio bytes sent for a context, concatenated. */
  audioOf(contextId: string): Uint8Array {
    return concatBytes(this.contexts.get(contextId)?.audioChunks ?? []);
  }

  /** Stops the server and closes every socket, timer and pending send. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    for (const socket of this.#sockets.keys()) closeQuietly(socket, 1001, "fake closing");
    // Bounded: when a client gives up while its upgrade is being answered, Deno leaves that
    // socket CONNECTING for good: it never reports a close and the server never finishes
    // shutting down.
    await settledWithin(Promise.all(this.#sockets.values()), SOCKET_CLOSE_WAIT_MS);
    await settledWithin(this.#server.shutdown(), SOCKET_CLOSE_WAIT_MS);
  }

  #handle(request: Request): Response {
    const url = new URL(request.url);
    if (url.pathname !== "/tts/websocket") return new Response("not found", { status: 404 });
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a WebSocket upgrade", { status: 426 });
    }
    if (this.refuseConnections || this.#closed) {
      return new Response("service unavailable", { status: 503 });
    }
    const bearer = request.headers.get("authorization")?.match(/^Bearer (.+)$/)?.[1];
    const apiKey = url.searchParams.get("api_key") ?? request.headers.get("x-api-key") ??
      bearer ?? null;
    if (apiKey !== this.#apiKey) {
      return Response.json({ error: "Invalid API key" }, { status: 401 });
    }
    const connection: FakeCartesiaConnection = {
      id: this.connections.length + 1,
      apiKey,
      cartesiaVersion: url.searchParams.get("cartesia_version") ??
        request.headers.get("cartesia-version"),
      client: url.searchParams.get("cartesia_client"),
    };
    this.connections.push(connection);
    const { socket, response } = Deno.upgradeWebSocket(request);
    this.#sockets.set(
      socket,
      new Promise((resolve) => socket.addEventListener("close", () => resolve())),
    );
    socket.addEventListener("close", () => {
      this.#sockets.delete(socket);
      for (const [id, runtime] of this.#runtimes) {
        if (runtime.socket === socket) this.#runtimes.delete(id);
      }
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") this.#onFrame(socket, connection.id, event.data);
    });
    return response;
  }

  #onFrame(socket: WebSocket, connection: number, raw: string): void {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(raw);
    } catch {
      this.#send(socket, errorFrame(undefined, 400, "Invalid JSON", raw, "invalid_json"));
      return;
    }
    this.messages.push({ connection, json });

    const cancel = CancelFrameSchema.safeParse(json);
    if (cancel.success) {
      const runtime = this.#runtimes.get(cancel.data.context_id);
      if (runtime) {
        runtime.record.cancelled = true;
        runtime.outbox.length = 0;
        this.#runtimes.delete(cancel.data.context_id);
      }
      return;
    }

    const parsed = GenerationFrameSchema.safeParse(json);
    const contextId = typeof json.context_id === "string" ? json.context_id : crypto.randomUUID();
    if (!parsed.success) {
      this.#send(
        socket,
        errorFrame(contextId, 400, "Invalid request", parsed.error.message, "invalid_request"),
      );
      return;
    }
    const frame = parsed.data;
    const formatProblem = describeFormatProblem(frame);
    if (formatProblem) {
      this.#send(
        socket,
        errorFrame(contextId, 400, "Invalid output format", formatProblem, "invalid_output_format"),
      );
      return;
    }

    let runtime = this.#runtimes.get(contextId);
    if (!runtime) {
      if (this.contexts.has(contextId)) return; // finished, cancelled or failed: ignore late input
      runtime = this.#openContext(socket, connection, contextId, frame);
    }
    const record = runtime.record;
    if (record.inputFinished) return;

    if (frame.flush) {
      // Queued behind the audio of everything sent before it, so it is answered after that audio.
      record.flushes += 1;
      if (!this.#omitFlushDone) {
        runtime.outbox.push({ kind: "flush_done", flushId: record.flushes });
      }
    } else {
      record.pieces.push({ transcript: frame.transcript, continue: frame.continue });
      const bytes = this.#synthesize(runtime, frame.transcript.length * this.#bytesPerChar);
      const flushId = record.flushes + 1;
      for (let at = 0; at < bytes.length; at += this.#chunkBytes) {
        runtime.outbox.push({
          kind: "audio",
          bytes: bytes.subarray(at, at + this.#chunkBytes),
          flushId,
        });
      }
      if (frame.continue !== true) {
        record.inputFinished = true;
        runtime.outbox.push({ kind: "done" });
      }
    }
    void this.#run(runtime);
  }

  #openContext(
    socket: WebSocket,
    connection: number,
    contextId: string,
    frame: GenerationFrame,
  ): ContextRuntime {
    const record: FakeCartesiaContext = {
      id: contextId,
      connection,
      ordinal: this.contexts.size,
      request: frame,
      pieces: [],
      audioChunks: [],
      chunkFlushIds: [],
      flushes: 0,
      flushesDone: [],
      inputFinished: false,
      cancelled: false,
      done: false,
      error: undefined,
    };
    this.contexts.set(contextId, record);
    const runtime: ContextRuntime = {
      record,
      socket,
      outbox: [],
      running: false,
      samplesGenerated: 0,
      openedAt: performance.now(),
      errorFault: this.#errorFaults.shift(),
      dropAfterChunks: this.#dropFaults.shift(),
    };
    this.#runtimes.set(contextId, runtime);
    return runtime;
  }

  /** Sends a context's queued items in order; one runner per context so contexts interleave. */
  async #run(runtime: ContextRuntime): Promise<void> {
    if (runtime.running) return;
    runtime.running = true;
    try {
      while (this.#isLive(runtime)) {
        const record = runtime.record;
        const fault = runtime.errorFault;
        if (fault && record.audioChunks.length >= (fault.afterChunks ?? 0)) {
          record.error = errorFrame(
            record.id,
            fault.statusCode ?? 500,
            fault.title ?? "Internal error",
            fault.message ?? "The fake was told to fail this context",
            fault.errorCode ?? "internal_error",
          );
          this.#send(runtime.socket, record.error);
          this.#runtimes.delete(record.id);
          return;
        }
        if (
          runtime.dropAfterChunks !== undefined &&
          record.audioChunks.length >= runtime.dropAfterChunks
        ) {
          this.#runtimes.delete(record.id);
          closeQuietly(runtime.socket, 1011, "fake drop");
          return;
        }
        const item = runtime.outbox.shift();
        if (!item) return;
        if (item.kind === "audio") {
          const waitMs = this.chunkDelayMs + this.#synthesisMs(runtime, item.bytes.length);
          if (waitMs > 0) await delay(waitMs, this.#closing.signal).catch(() => {});
          if (!this.#isLive(runtime)) return;
          record.audioChunks.push(item.bytes);
          record.chunkFlushIds.push(item.flushId);
          this.#send(runtime.socket, {
            type: "chunk",
            context_id: record.id,
            status_code: 206,
            done: false,
            data: item.bytes.toBase64(),
            step_time: 1,
            flush_id: item.flushId,
          });
        } else if (item.kind === "flush_done") {
          record.flushesDone.push(item.flushId);
          this.#send(runtime.socket, {
            type: "flush_done",
            context_id: record.id,
            status_code: 206,
            done: false,
            flush_done: true,
            flush_id: item.flushId,
          });
        } else {
          record.done = true;
          this.#send(runtime.socket, {
            type: "done",
            context_id: record.id,
            status_code: 206,
            done: true,
          });
          this.#runtimes.delete(record.id);
          return;
        }
      }
    } finally {
      runtime.running = false;
    }
  }

  /** How long the next chunk of `bytes` takes to synthesise at the configured pace. */
  #synthesisMs(runtime: ContextRuntime, bytes: number): number {
    if (!this.#pace) return 0;
    if (runtime.record.audioChunks.length === 0) {
      return runtime.openedAt + this.#pace.firstAudioMs - performance.now();
    }
    return (bytes / MULAW_SAMPLE_RATE) * 1000 / this.#pace.realTimeFactor;
  }

  #isLive(runtime: ContextRuntime): boolean {
    return !this.#closed && this.#runtimes.get(runtime.record.id) === runtime &&
      runtime.socket.readyState === WebSocket.OPEN;
  }

  /**
   * A continuous tone in the requested G.711 law; pitch 300–1000 Hz chosen by the context's
   * ordinal.
   */
  #synthesize(runtime: ContextRuntime, length: number): Uint8Array {
    const hz = 300 + 100 * (runtime.record.ordinal % 8);
    const format = runtime.record.request.output_format;
    if (format.encoding === "pcm_s16le") {
      // Linear PCM (the browser playground): as long in time as the G.711 tone would be.
      const samples = Math.round(length * format.sample_rate / MULAW_SAMPLE_RATE);
      const pcm = new Int16Array(samples);
      for (let i = 0; i < samples; i++) {
        const t = (runtime.samplesGenerated + i) / format.sample_rate;
        pcm[i] = Math.round(8000 * Math.sin(2 * Math.PI * hz * t));
      }
      runtime.samplesGenerated += samples;
      return new Uint8Array(pcm.buffer);
    }
    const tone = g711Tone(hz, format.encoding === "pcm_alaw" ? "alaw" : "mulaw");
    const bytes = new Uint8Array(length);
    for (let filled = 0; filled < length;) {
      const from = (runtime.samplesGenerated + filled) % tone.length;
      const piece = tone.subarray(from, from + length - filled);
      bytes.set(piece, filled);
      filled += piece.length;
    }
    runtime.samplesGenerated += length;
    return bytes;
  }

  #send(socket: WebSocket, message: unknown): void {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }
}

function describeFormatProblem(frame: GenerationFrame): string | undefined {
  const format = frame.output_format;
  if (format.container !== "raw") return `container ${format.container} is not streamable`;
  if (!RAW_ENCODINGS.includes(format.encoding ?? "")) return `unknown encoding ${format.encoding}`;
  if (!SAMPLE_RATES.includes(format.sample_rate)) return `bad sample_rate ${format.sample_rate}`;
  const g711 = format.encoding === "pcm_mulaw" || format.encoding === "pcm_alaw";
  const linear = format.encoding === "pcm_s16le" &&
    (format.sample_rate === 16000 || format.sample_rate === 24000);
  if (!linear && (!g711 || format.sample_rate !== MULAW_SAMPLE_RATE)) {
    // The fake only synthesises what this service asks for; anything else is a test bug.
    return `the fake only produces pcm_mulaw or pcm_alaw at 8000 Hz, or pcm_s16le at 16000 ` +
      "or 24000 Hz";
  }
  return undefined;
}

function errorFrame(
  contextId: string | undefined,
  statusCode: number,
  title: string,
  message: string,
  errorCode: string,
): ErrorFrame {
  return {
    type: "error",
    ...(contextId === undefined ? {} : { context_id: contextId }),
    status_code: statusCode,
    done: true,
    title,
    message,
    error_code: errorCode,
    request_id: crypto.randomUUID(),
  };
}

function closeQuietly(socket: WebSocket, code: number, reason: string): void {
  if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
    socket.close(code, reason);
  }
}

const g711Tones = new Map<string, Uint8Array>();

/**
 * One second of a whole-hertz tone in G.711, which repeats exactly every second: computed once,
 * so a load of many calls does not spend the fake's time on sines.
 */
function g711Tone(hz: number, law: "mulaw" | "alaw"): Uint8Array {
  const key = `${hz}/${law}`;
  let tone = g711Tones.get(key);
  if (!tone) {
    const encode = law === "alaw" ? encodeAlaw : encodeMulaw;
    tone = new Uint8Array(MULAW_SAMPLE_RATE);
    for (let i = 0; i < tone.length; i++) {
      tone[i] = encode(Math.round(8000 * Math.sin(2 * Math.PI * hz * i / MULAW_SAMPLE_RATE)));
    }
    g711Tones.set(key, tone);
  }
  return tone;
}

/** G.711 mu-law encoding of one 16-bit linear sample. */
function encodeMulaw(sample: number): number {
  const BIAS = 0x84;
  const CLIP = 32635;
  const sign = sample < 0 ? 0x80 : 0;
  let magnitude = Math.min(Math.abs(sample), CLIP) + BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (magnitude & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (magnitude >> (exponent + 3)) & 0x0f;
  magnitude = sign | (exponent << 4) | mantissa;
  return ~magnitude & 0xff;
}

/** G.711 A-law encoding of one 16-bit linear sample. */
function encodeAlaw(sample: number): number {
  const mask = sample >= 0 ? 0xd5 : 0x55;
  // 12-bit magnitude; negative samples use the one's complement, as G.711 does.
  const magnitude = sample >= 0 ? sample >> 3 : ~(sample >> 3);
  let segment = 0;
  while (segment < 7 && magnitude >= (0x20 << segment)) segment++;
  const mantissa = segment < 2 ? (magnitude >> 1) & 0x0f : (magnitude >> segment) & 0x0f;
  return ((segment << 4) | mantissa) ^ mask;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
