/**
 * Loopback fake of Deepgram's live transcription WebSocket API (`/v1/listen` Nova, `/v2/listen`
 * Flux), speaking the real wire protocol so the official SDK can be pointed at it via `baseUrl`.
 *
 * Transcripts are scripted per speech segment in *audio bytes received on a connection*
 * (mu-law 8 kHz: 8000 bytes = 1 s), because that is the only clock a real Deepgram server has:
 * it answers in audio time, not wall time. That keeps tests deterministic on a noisy machine.
 *
 * @module
 */

import { deadline } from "../../src/async/deadline.ts";
import { loopbackTls } from "./loopback_tls.ts";

/** mu-law 8 kHz mono: one byte per sample. */
export const BYTES_PER_SECOND = 8000;

/** A stretch of caller speech the fake "hears", positioned in audio bytes on one connection. */
export interface SpeechSegment {
  /** What Deepgram recognises; words are spread evenly over the segment. */
  text: string;
  /** Byte offset on the connection where speech starts. */
  startByte: number;
  /** Byte offset where speech stops (exclusive). */
  endByte: number;
  /**
   * Flux only: this segment continues the previous segment's turn (the caller paused and went
   * on), so an `EagerEndOfTurn` for the pause is followed by `TurnResumed`.
   */
  continuesTurn?: boolean;
}

/** How the fake drops a connection mid-stream. */
export type DropMode =
  /** Close 1011, as Deepgram does on internal errors and NET-0001 timeouts. */
  | "error_1011"
  /** Close frame without a status code (client sees 1005). */
  | "no_status"
  /** Unexpected normal close (1000) although the client never sent `CloseStream`. */
  | "normal_1000"
  /** TCP connection cut without any close frame (client sees 1006), like a network failure. */
  | "abrupt";

/** A scheduled fault: drop connection number `connection` once it has received `afterBytes`. */
export interface DropFault {
  /** Zero-based index of the accepted connection (in upgrade order). */
  connection: number;
  afterBytes: number;
  mode?: DropMode;
}

/** Options of {@link startFakeDeepgram}. */
export interface FakeDeepgramOptions {
  /** The only key accepted in `Authorization: Token <key>`; default `"test-key"`. */
  apiKey?: string;
  /** Speech heard by each connection; a function gets the connection index. */
  script?: SpeechSegment[] | ((connection: number) => SpeechSegment[]);
  /** Connections to drop after some audio, to exercise client reconnection. */
  drops?: DropFault[];
  /**
   * When the final transcript of a segment comes, in ms of audio after the speech stopped: Nova's
   * final `Results` (instead of the client's `endpointing`) and Flux's `EndOfTurn` (instead of
   * 500 ms). A real Deepgram answers about 300 ms after the callee stops.
   */
  finalDelayMs?: number;
  /**
   * Clients connect through a TCP relay in this process, so that a connection can be cut without
   * a close frame (`abrupt` drops). Default true; a bench that measures latency turns it off, as
   * the relay's extra hop is no part of the path to the real Deepgram.
   */
  relay?: boolean;
  /**
   * Serve `wss:` (default) as Deepgram does, or plain `ws:` when false, where Deno's WebSocket
   * reports a refused handshake's status itself.
   */
  tls?: boolean;
  /**
   * Leave every request without upgrade unanswered until the fake closes: the transcriber's
   * status question after a refused `wss:` handshake then hangs.
   */
  holdPlainRequests?: boolean;
}

/** What the fake saw and said on one accepted WebSocket connection. */
export interface FakeConnection {
  readonly index: number;
  readonly engine: "nova" | "flux";
  readonly path: string;
  /** Query parameters of the upgrade request, as sent. */
  readonly params: Readonly<Record<string, string>>;
  readonly headers: Headers;
  /** Audio bytes received (binary frames), before any drop. */
  readonly bytesReceived: number;
  /** Audio bytes that arrived after the fake started closing (a real server loses these). */
  readonly bytesAfterClose: number;
  /** Every received binary frame concatenated. */
  readonly audio: Uint8Array;
  /** `type` of every received text message, in order (`KeepAlive`, `Finalize`, …). */
  readonly controlMessages: readonly string[];
  /** Every JSON message the fake sent, in order. */
  readonly sentMessages: readonly Record<string, unknown>[];
  /** Close code/reason once the socket is closed. */
  readonly closed?: { code: number; reason: string };
}

/** A running fake; see {@link startFakeDeepgram}. */
export interface FakeDeepgram extends AsyncDisposable {
  /** `https://127.0.0.1:<port>` (`http:` without TLS): pass as the SDK's `baseUrl`. */
  readonly url: string;
  readonly apiKey: string;
  /** Accepted connections in upgrade order. */
  readonly connections: readonly FakeConnection[];
  /** Upgrade requests answered with an HTTP error (bad auth, refused, bad path). */
  readonly rejectedUpgrades: number;
  /** Requests without upgrade held by {@link FakeDeepgramOptions.holdPlainRequests}. */
  readonly heldRequests: number;
  /** Those of {@link heldRequests} the client gave up on (aborted) while held. */
  readonly abandonedRequests: number;
  /** Audio bytes received over all connections. */
  readonly totalAudioBytes: number;
  /** Answer the next `count` upgrade requests with HTTP `status` (`Infinity`: until reset). */
  refuseConnections(count: number, status?: number): void;
  /** Drop every open connection now. */
  dropAll(mode?: DropMode): void;
  /** Resolves once `predicate` holds; re-checked on every fake state change. */
  waitFor(predicate: () => boolean, guardMs?: number): Promise<void>;
  /** Closes all sockets and the HTTP server; resolves when everything is released. */
  close(): Promise<void>;
}

const MODEL_UUID = "1dbdfb4d-85b2-4659-9831-16b3c76229aa";
/** Flux fires EagerEndOfTurn this long into a pause and EndOfTurn a little later. */
const FLUX_EAGER_DELAY_BYTES = 0.2 * BYTES_PER_SECOND;
const FLUX_EOT_DELAY_BYTES = 0.5 * BYTES_PER_SECOND;
/** Flux sends an Update about every 0.25 s of audio during a turn. */
const FLUX_UPDATE_BYTES = 0.25 * BYTES_PER_SECOND;

interface ScriptWord {
  word: string;
  punctuated: string;
  startByte: number;
  endByte: number;
}

function splitWords(segment: SpeechSegment): ScriptWord[] {
  const tokens = segment.text.split(/\s+/).filter((t) => t.length > 0);
  const span = (segment.endByte - segment.startByte) / Math.max(tokens.length, 1);
  return tokens.map((punctuated, i) => ({
    punctuated,
    word: punctuated.toLowerCase().replace(/[^\p{L}\p{N}']/gu, ""),
    startByte: Math.round(segment.startByte + i * span),
    endByte: Math.round(segment.startByte + (i + 1) * span),
  }));
}

const seconds = (bytes: number) => bytes / BYTES_PER_SECOND;

/** State shared by both engine simulators: the socket and what went over it. */
class ConnectionState implements FakeConnection {
  bytesReceived = 0;
  bytesAfterClose = 0;
  readonly chunks: Uint8Array[] = [];
  readonly controlMessages: string[] = [];
  readonly sentMessages: Record<string, unknown>[] = [];
  closed?: { code: number; reason: string };
  closing = false;
  readonly requestId = crypto.randomUUID();
  readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    readonly index: number,
    readonly engine: "nova" | "flux",
    readonly path: string,
    readonly params: Record<string, string>,
    readonly headers: Headers,
    readonly socket: WebSocket,
    private readonly changed: () => void,
    /** Cuts the TCP connection under the socket. */
    readonly cut: () => void,
  ) {
    this.closedPromise = new Promise((resolve) => this.resolveClosed = resolve);
  }

  get audio(): Uint8Array {
    const out = new Uint8Array(this.chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }

  send(message: Record<string, unknown>): void {
    if (this.closing || this.socket.readyState !== WebSocket.OPEN) return;
    this.sentMessages.push(message);
    this.socket.send(JSON.stringify(message));
  }

  closeWith(code: number | undefined, reason = ""): void {
    if (this.closing) return;
    this.closing = true;
    try {
      if (code === undefined) this.socket.close();
      else this.socket.close(code, reason);
    } catch {
      // Already closing from the other side.
    }
    this.changed();
  }

  markClosed(code: number, reason: string): void {
    this.closing = true;
    this.closed = { code, reason };
    this.resolveClosed();
    this.changed();
  }
}

/** What each engine does with audio progress and control messages. */
interface EngineSimulator {
  onOpen(): void;
  onAudio(): void;
  onControl(type: string): void;
}

/** Nova (`/v1/listen`): SpeechStarted → interim Results → final Results → UtteranceEnd. */
class NovaSimulator implements EngineSimulator {
  private readonly segments: {
    segment: SpeechSegment;
    words: ScriptWord[];
    speechStartedSent: boolean;
    interimWords: number;
    finalized: boolean;
    utteranceEndDone: boolean;
  }[];
  /** End of the audio already covered by final Results; the next Results window starts here. */
  private finalizedUpTo = 0;
  private readonly endpointingBytes: number;
  private readonly utteranceEndBytes?: number;

  constructor(
    private readonly conn: ConnectionState,
    script: SpeechSegment[],
    finalDelayMs: number | undefined,
  ) {
    this.segments = [...script].sort((a, b) => a.startByte - b.startByte).map((segment) => ({
      segment,
      words: splitWords(segment),
      speechStartedSent: false,
      interimWords: 0,
      finalized: false,
      utteranceEndDone: false,
    }));
    const endpointing = finalDelayMs ?? Number(conn.params.endpointing);
    // Deepgram's default endpointing is 10 ms of silence.
    this.endpointingBytes = Number.isFinite(endpointing) ? endpointing * 8 : 80;
    const utteranceEnd = Number(conn.params.utterance_end_ms);
    if (Number.isFinite(utteranceEnd)) this.utteranceEndBytes = utteranceEnd * 8;
  }

  onOpen(): void {}

  onAudio(): void {
    const bytes = this.conn.bytesReceived;
    const params = this.conn.params;
    this.segments.forEach((s, i) => {
      const next = this.segments[i + 1]?.segment;
      if (!s.speechStartedSent && bytes >= s.segment.startByte) {
        s.speechStartedSent = true;
        if (params.vad_events === "true") {
          this.conn.send({
            type: "SpeechStarted",
            channel: [0],
            timestamp: seconds(s.segment.startByte),
          });
        }
      }
      if (!s.finalized) {
        const heard = s.words.filter((w) => w.endByte <= bytes);
        if (params.interim_results === "true" && heard.length > s.interimWords) {
          s.interimWords = heard.length;
          this.sendResults(heard, { isFinal: false, speechFinal: false, fromFinalize: false });
        }
        const endpointAt = s.segment.endByte + this.endpointingBytes;
        if (bytes >= endpointAt) {
          s.finalized = true;
          const speechFinal = next === undefined || next.startByte >= endpointAt;
          this.sendResults(s.words, { isFinal: true, speechFinal, fromFinalize: false });
        }
      }
      if (s.finalized && !s.utteranceEndDone && this.utteranceEndBytes !== undefined) {
        const utteranceEndAt = s.segment.endByte + this.utteranceEndBytes;
        if (next !== undefined && next.startByte < utteranceEndAt) {
          s.utteranceEndDone = true; // speech resumed before the gap: no UtteranceEnd
        } else if (bytes >= utteranceEndAt) {
          s.utteranceEndDone = true;
          this.conn.send({
            type: "UtteranceEnd",
            channel: [0, 1],
            last_word_end: seconds(s.segment.endByte),
          });
        }
      }
    });
  }

  onControl(type: string): void {
    if (type === "Finalize") this.flush(true);
    if (type === "CloseStream") {
      this.flush(false);
      this.conn.send({
        type: "Metadata",
        transaction_key: "deprecated",
        request_id: this.conn.requestId,
        sha256: "0".repeat(64),
        created: new Date().toISOString(),
        duration: seconds(this.conn.bytesReceived),
        channels: 1,
        models: [MODEL_UUID],
        model_info: {
          [MODEL_UUID]: { name: "general-nova-3", version: "2024-12-20.0", arch: "nova-3" },
        },
      });
      this.conn.closeWith(1000);
    }
  }

  /** Finalize/CloseStream: finalise whatever speech has been heard so far. */
  private flush(fromFinalize: boolean): void {
    const bytes = this.conn.bytesReceived;
    let flushed = false;
    for (const s of this.segments) {
      if (s.finalized || bytes < s.segment.startByte) continue;
      s.finalized = true;
      flushed = true;
      const heard = s.words.filter((w) => w.endByte <= bytes);
      this.sendResults(heard, { isFinal: true, speechFinal: false, fromFinalize });
    }
    if (!flushed && fromFinalize) {
      this.sendResults([], { isFinal: true, speechFinal: false, fromFinalize });
    }
  }

  private sendResults(
    words: ScriptWord[],
    flags: { isFinal: boolean; speechFinal: boolean; fromFinalize: boolean },
  ): void {
    const end = this.conn.bytesReceived;
    const start = this.finalizedUpTo;
    if (flags.isFinal) this.finalizedUpTo = end;
    this.conn.send({
      type: "Results",
      channel_index: [0, 1],
      duration: seconds(end - start),
      start: seconds(start),
      is_final: flags.isFinal,
      speech_final: flags.speechFinal,
      from_finalize: flags.fromFinalize,
      channel: {
        alternatives: [{
          transcript: words.map((w) => w.punctuated).join(" "),
          confidence: words.length > 0 ? 0.98 : 0,
          words: words.map((w) => ({
            word: w.word,
            start: seconds(w.startByte),
            end: seconds(w.endByte),
            confidence: 0.98,
            punctuated_word: w.punctuated,
          })),
        }],
      },
      metadata: {
        request_id: this.conn.requestId,
        model_info: { name: "general-nova-3", version: "2024-12-20.0", arch: "nova-3" },
        model_uuid: MODEL_UUID,
      },
    });
  }
}

type FluxEvent = "Update" | "StartOfTurn" | "EagerEndOfTurn" | "TurnResumed" | "EndOfTurn";

/** One caller turn as Flux sees it: segments joined by pauses too short to end the turn. */
interface FluxTurn {
  words: ScriptWord[];
  startByte: number;
}

/** Flux (`/v2/listen`): Connected, then per turn StartOfTurn → (Eager → Resumed)* → EndOfTurn. */
class FluxSimulator implements EngineSimulator {
  private sequenceId = 0;
  private turnIndex = 0;
  private readonly steps: { atByte: number; event: FluxEvent; turn: FluxTurn }[] = [];
  private nextStep = 0;
  private currentTurn?: FluxTurn;
  private lastUpdateByte = 0;

  constructor(
    private readonly conn: ConnectionState,
    script: SpeechSegment[],
    finalDelayMs: number | undefined,
  ) {
    const eager = conn.params.eager_eot_threshold !== undefined;
    const endOfTurnBytes = finalDelayMs === undefined
      ? FLUX_EOT_DELAY_BYTES
      : finalDelayMs * BYTES_PER_SECOND / 1000;
    // An eager end of turn comes before the end of turn it announces.
    const eagerBytes = Math.min(FLUX_EAGER_DELAY_BYTES, endOfTurnBytes / 2);
    const turns: SpeechSegment[][] = [];
    for (const segment of [...script].sort((a, b) => a.startByte - b.startByte)) {
      if (segment.continuesTurn && turns.length > 0) turns[turns.length - 1].push(segment);
      else turns.push([segment]);
    }
    for (const segments of turns) {
      const words = segments.map(splitWords);
      const turn: FluxTurn = { words: words.flat(), startByte: segments[0].startByte };
      const heardFirstWord = (i: number) => words[i][0]?.endByte ?? segments[i].startByte;
      this.steps.push({ atByte: heardFirstWord(0), event: "StartOfTurn", turn });
      segments.forEach((segment, i) => {
        const eagerAt = segment.endByte + eagerBytes;
        if (i + 1 < segments.length) {
          // A pause long enough for an eager end of turn, then the caller goes on.
          if (eager && eagerAt < heardFirstWord(i + 1)) {
            this.steps.push({ atByte: eagerAt, event: "EagerEndOfTurn", turn });
            this.steps.push({ atByte: heardFirstWord(i + 1), event: "TurnResumed", turn });
          }
          return;
        }
        if (eager) this.steps.push({ atByte: eagerAt, event: "EagerEndOfTurn", turn });
        this.steps.push({
          atByte: segment.endByte + endOfTurnBytes,
          event: "EndOfTurn",
          turn,
        });
      });
    }
    this.steps.sort((a, b) => a.atByte - b.atByte);
  }

  onOpen(): void {
    this.conn.send({ type: "Connected", request_id: this.conn.requestId, sequence_id: 0 });
  }

  onAudio(): void {
    const bytes = this.conn.bytesReceived;
    while (this.nextStep < this.steps.length && this.steps[this.nextStep].atByte <= bytes) {
      const step = this.steps[this.nextStep++];
      if (step.event === "StartOfTurn") {
        this.currentTurn = step.turn;
        this.lastUpdateByte = bytes;
      }
      if (this.currentTurn !== step.turn) continue; // the turn was force-ended
      this.sendTurnInfo(step.event);
      if (step.event === "EndOfTurn") this.endTurn();
    }
    if (this.currentTurn && bytes - this.lastUpdateByte >= FLUX_UPDATE_BYTES) {
      this.lastUpdateByte = bytes;
      this.sendTurnInfo("Update");
    }
  }

  onControl(type: string): void {
    if (type === "ForceEndTurn" && this.currentTurn) {
      this.sendTurnInfo("EndOfTurn", "manual");
      this.endTurn();
    }
    if (type === "CloseStream") {
      if (this.currentTurn) {
        this.sendTurnInfo("EndOfTurn", "model");
        this.endTurn();
      }
      this.conn.closeWith(1000);
    }
  }

  private endTurn(): void {
    this.currentTurn = undefined;
    this.turnIndex++;
  }

  private sendTurnInfo(event: FluxEvent, trigger?: "model" | "manual"): void {
    const turn = this.currentTurn;
    if (!turn) return;
    const bytes = this.conn.bytesReceived;
    // A scripted EndOfTurn repeats the whole turn; other events (and flushes forced by the
    // client) carry only the words heard so far.
    const words = event === "EndOfTurn" && trigger === undefined
      ? turn.words
      : turn.words.filter((w) => w.endByte <= bytes);
    const confidence: Record<FluxEvent, number> = {
      Update: 0.05,
      StartOfTurn: 0.01,
      EagerEndOfTurn: 0.6,
      TurnResumed: 0.2,
      EndOfTurn: 0.9,
    };
    this.conn.send({
      type: "TurnInfo",
      event,
      request_id: this.conn.requestId,
      sequence_id: ++this.sequenceId,
      turn_index: this.turnIndex,
      audio_window_start: seconds(turn.startByte),
      audio_window_end: seconds(bytes),
      transcript: words.map((w) => w.punctuated).join(" "),
      words: words.map((w) => ({ word: w.punctuated, confidence: 0.95 })),
      end_of_turn_confidence: confidence[event],
      ...(event === "EndOfTurn" ? { trigger: trigger ?? "model" } : {}),
    });
  }
}

/**
 * Starts the fake on 127.0.0.1 with an ephemeral port.
 *
 * @example
 * ```ts
 * await using dg = startFakeDeepgram({ script: [{ text: "Hello there.", startByte: 4000, endByte: 12000 }] });
 * const client = new DeepgramClient({ apiKey: dg.apiKey, baseUrl: dg.url });
 * ```
 */
export function startFakeDeepgram(options: FakeDeepgramOptions = {}): FakeDeepgram {
  const apiKey = options.apiKey ?? "test-key";
  const connections: ConnectionState[] = [];
  const waiters = new Set<() => void>();
  let rejectedUpgrades = 0;
  let refuse = { count: 0, status: 503 };

  const changed = () => {
    for (const check of [...waiters]) check();
  };

  const reject = (request: Request, status: number, body: Record<string, string>) => {
    if (isUpgrade(request)) rejectedUpgrades++;
    queueMicrotask(changed);
    return Response.json(body, { status, headers: { "dg-error": body.err_msg ?? "" } });
  };

  const isUpgrade = (request: Request) =>
    request.headers.get("upgrade")?.toLowerCase() === "websocket";

  const holding = new AbortController();
  let heldRequests = 0;
  let abandonedRequests = 0;

  const handler = (
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Response | Promise<Response> => {
    if (options.holdPlainRequests && !isUpgrade(request)) {
      heldRequests++;
      queueMicrotask(changed);
      return new Promise((resolve) => {
        const answer = () => resolve(new Response(null, { status: 503 }));
        holding.signal.addEventListener("abort", answer);
        request.signal.addEventListener("abort", () => {
          if (!holding.signal.aborted) abandonedRequests++;
          queueMicrotask(changed);
          answer();
        });
      });
    }
    const url = new URL(request.url);
    const engine = url.pathname === "/v1/listen"
      ? "nova"
      : url.pathname === "/v2/listen"
      ? "flux"
      : undefined;
    if (engine === undefined) {
      return reject(request, 404, { err_code: "NOT_FOUND", err_msg: "Not found" });
    }
    if (request.headers.get("authorization") !== `Token ${apiKey}`) {
      return reject(request, 401, {
        err_code: "INVALID_AUTH",
        err_msg: "Invalid credentials.",
        request_id: crypto.randomUUID(),
      });
    }
    // Checked after the key, as the transcriber's status question after a refused `wss:`
    // handshake assumes of Deepgram: a plain request with a valid key is never a 401 or 403.
    if (!isUpgrade(request)) {
      return reject(request, 400, {
        err_code: "BAD_REQUEST",
        err_msg: "Expected a WebSocket upgrade",
      });
    }
    if (refuse.count > 0) {
      refuse.count--;
      return reject(request, refuse.status, {
        err_code: "UNAVAILABLE",
        err_msg: "Service unavailable",
      });
    }
    // Both are unreadable once the request is upgraded.
    const headers = new Headers(request.headers);
    const relayPort = info.remoteAddr.port;
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    const index = connections.length;
    const conn = new ConnectionState(
      index,
      engine,
      url.pathname,
      Object.fromEntries(url.searchParams),
      headers,
      socket,
      changed,
      () => proxy?.cut(relayPort),
    );
    connections.push(conn);
    const script = typeof options.script === "function"
      ? options.script(index)
      : options.script ?? [];
    const simulator: EngineSimulator = engine === "nova"
      ? new NovaSimulator(conn, script, options.finalDelayMs)
      : new FluxSimulator(conn, script, options.finalDelayMs);
    const drop = options.drops?.find((d) => d.connection === index);

    socket.onopen = () => {
      simulator.onOpen();
      changed();
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        let type = "invalid";
        try {
          type = String(JSON.parse(event.data).type);
        } catch {
          // Recorded as "invalid"; a real server would close with an error.
        }
        conn.controlMessages.push(type);
        if (!conn.closing) simulator.onControl(type);
      } else {
        const bytes = new Uint8Array(event.data as ArrayBuffer);
        if (conn.closing) {
          conn.bytesAfterClose += bytes.length;
        } else {
          conn.chunks.push(bytes);
          conn.bytesReceived += bytes.length;
          simulator.onAudio();
          if (drop && conn.bytesReceived >= drop.afterBytes) dropConnection(conn, drop.mode);
        }
      }
      changed();
    };
    socket.onclose = (event) => conn.markClosed(event.code, event.reason);
    socket.onerror = () => {}; // the close event follows and records the outcome
    return response;
  };

  // TLS as Deepgram's `wss:` endpoint, so the server pays for encryption here as in production.
  const tls = options.tls ?? true;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {}, ...(tls ? loopbackTls() : {}) },
    handler,
  );
  // Clients connect through a TCP relay so that a connection can be cut abruptly: Deno's
  // server-side WebSocket can only close politely.
  const proxy = options.relay === false ? undefined : new TcpRelay(server.addr.port);

  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${proxy?.port ?? server.addr.port}`,
    apiKey,
    connections,
    get rejectedUpgrades() {
      return rejectedUpgrades;
    },
    get heldRequests() {
      return heldRequests;
    },
    get abandonedRequests() {
      return abandonedRequests;
    },
    get totalAudioBytes() {
      return connections.reduce((n, c) => n + c.bytesReceived, 0);
    },
    refuseConnections(count: number, status = 503) {
      refuse = { count, status };
    },
    dropAll(mode: DropMode = "error_1011") {
      for (const conn of connections) if (!conn.closing) dropConnection(conn, mode);
    },
    waitFor(predicate: () => boolean, guardMs = 10_000): Promise<void> {
      const reached = Promise.withResolvers<void>();
      const check = () => {
        if (predicate()) reached.resolve();
      };
      waiters.add(check);
      check();
      // The guard only turns a hung test into a failure; it asserts nothing about timing.
      return deadline(reached.promise, guardMs, { what: "fake Deepgram: the condition" })
        .finally(() => waiters.delete(check));
    },
    async close() {
      holding.abort();
      for (const conn of connections) conn.closeWith(1001, "fake shutting down");
      await Promise.all(connections.map((c) => c.closedPromise));
      await proxy?.close();
      await server.shutdown();
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
}

function dropConnection(conn: ConnectionState, mode: DropMode = "error_1011"): void {
  if (mode === "error_1011") {
    conn.closeWith(1011, "Deepgram encountered an internal error while processing audio.");
  } else if (mode === "no_status") conn.closeWith(undefined);
  else if (mode === "normal_1000") conn.closeWith(1000);
  else {
    conn.closing = true;
    conn.cut();
  }
}

/** Relays TCP connections from a public port to the fake's HTTP server; can cut one. */
class TcpRelay {
  private readonly listener: Deno.TcpListener;
  /** Keyed by the relay's local port towards the server, which the server sees as client port. */
  private readonly pairs = new Map<number, { client: Deno.TcpConn; upstream: Deno.TcpConn }>();
  private readonly pumps = new Set<Promise<void>>();
  private readonly accepting: Promise<void>;

  constructor(private readonly serverPort: number) {
    this.listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.accepting = this.accept();
  }

  get port(): number {
    return this.listener.addr.port;
  }

  /** Closes both sides of the relayed connection whose server-side client port is `port`. */
  cut(port: number): void {
    const pair = this.pairs.get(port);
    if (!pair) return;
    this.pairs.delete(port);
    for (const conn of [pair.client, pair.upstream]) {
      try {
        conn.close();
      } catch {
        // Already closed by its pump.
      }
    }
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.accepting;
    for (const port of [...this.pairs.keys()]) this.cut(port);
    await Promise.all(this.pumps);
  }

  private async accept(): Promise<void> {
    while (true) {
      let client: Deno.TcpConn;
      try {
        client = await this.listener.accept();
      } catch {
        return; // listener closed
      }
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.serverPort });
      // Small WebSocket frames must not wait for Nagle's algorithm on either hop.
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      const port = upstream.localAddr.port;
      this.pairs.set(port, { client, upstream });
      const pump = Promise.all([this.pump(client, upstream), this.pump(upstream, client)])
        .then(() => this.cut(port));
      this.pumps.add(pump);
      pump.finally(() => this.pumps.delete(pump));
    }
  }

  /** Copies until EOF or error, then half-closes the other side like a real socket would. */
  private async pump(from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
      await to.closeWrite();
    } catch {
      // Cut or reset: the pair is torn down by the caller.
    }
  }
}
