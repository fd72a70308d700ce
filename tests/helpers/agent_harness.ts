/**
 * One call's VoiceAgent on in-memory fakes of its vendors (LLM, TTS, STT, VAD), a real
 * CallSession on a transport double (no Telnyx, no wire format) and a virtual clock: whole conversations run in
 * milliseconds and deterministically, with no socket and no sleep.
 *
 * @module
 */
import assert from "node:assert/strict";
import { abortable } from "../../src/async/deadline.ts";
import { AsyncQueue } from "../../src/async/async_queue.ts";
import type { VadEvent, VoiceActivityDetector } from "../../src/audio/vad.ts";
import { Logger } from "../../src/log.ts";
import type { ChatRequest, ChatStreamer, LlmEvent } from "../../src/services/llm.ts";
import type { LiveTranscriber, SttEngine, TranscriptEvent } from "../../src/services/stt.ts";
import type { PhrasePiece } from "../../src/services/phrases.ts";
import type { SpeechEvent } from "../../src/services/tts.ts";
import { CallSession, type HangupCall } from "../../src/session/call_session.ts";
import { DEFAULT_GREETING } from "../../src/session/conversation.ts";
import { PlaybackTicker, TICK_MS } from "../../src/session/playback.ts";
import { type Speaker, VoiceAgent } from "../../src/session/voice_agent.ts";
import { ManualClock, settle } from "./manual_clock.ts";
import { FakeTransport } from "./playout_model.ts";
import type { AudioFormat } from "../../src/transport/call_transport.ts";

/** Cartesia stand-in: each phrase becomes `bytesPerChar` bytes of audio per character. */
export class FakeSpeaker implements Speaker {
  charactersSent = 0;
  /** What each `speak()` call was asked to say, in order. */
  readonly spoken: string[] = [];
  /** `speak()` streams that have not finished (their consumer has not let go of them). */
  open = 0;
  /** 40 bytes = 5 ms of audio per character. */
  bytesPerChar = 40;
  /** A TTS that never answers: `speak()` yields nothing until aborted. */
  silent = false;
  closed = false;

  connect(): Promise<void> {
    return Promise.resolve();
  }

  async *speak(
    text: AsyncIterable<PhrasePiece>,
    signal: AbortSignal,
  ): AsyncGenerator<SpeechEvent> {
    const index = this.spoken.push("") - 1;
    this.open++;
    try {
      if (this.silent) await abortable(new Promise<never>(() => {}), signal);
      const pieces = text[Symbol.asyncIterator]();
      // A phrase's start is spoken at once; its mark comes with the string that completes it.
      let started = "";
      for (let phrase = 0;;) {
        const next = await abortable(pieces.next(), signal);
        if (next.done) {
          if (started) yield { type: "phrase_end", index: phrase, text: started };
          return;
        }
        const piece = typeof next.value === "string" ? next.value : next.value.start;
        this.spoken[index] += piece;
        this.charactersSent += piece.length;
        const audio = new Uint8Array(piece.length * this.bytesPerChar).fill(0x55);
        if (audio.length > 0) yield { type: "audio", audio };
        if (typeof next.value !== "string") {
          started += piece;
          continue;
        }
        yield { type: "phrase_end", index: phrase++, text: started + piece };
        started = "";
      }
    } finally {
      this.open--;
    }
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** OpenAI stand-in: answers with the queued replies (then `fallback`), a word per delta. */
export class FakeLlm {
  readonly requests: ChatRequest[] = [];
  readonly replies: string[] = [];
  fallback = "Sure.";
  readonly stream: ChatStreamer = (request, signal) => this.#stream(request, signal);

  async *#stream(request: ChatRequest, signal: AbortSignal): AsyncGenerator<LlmEvent> {
    this.requests.push(structuredClone(request));
    const text = this.replies.shift() ?? this.fallback;
    yield { type: "first_token", ms: 1 };
    for (const word of text.split(/(?<= )/)) {
      signal.throwIfAborted();
      yield { type: "text", text: word };
    }
  }

  /** Contents of the messages of request `index`, as `role: content` lines. */
  outline(index: number): string[] {
    return this.requests[index].messages.slice(1).map((m) => `${m.role}: ${m.content}`);
  }
}

/** Deepgram stand-in: the test emits transcript events. */
export class FakeTranscriber implements LiveTranscriber {
  readonly #events = new AsyncQueue<TranscriptEvent>();
  audioBytes = 0;
  /** Size of the last `sendAudio` write. */
  lastChunkBytes = 0;
  /** Every chunk written, as the transcriber keeps it (by reference). */
  readonly chunks: Uint8Array[] = [];
  /** `keepMs` of every `forgetSilence` call. */
  silenceForgotten: number[] = [];
  closed = false;

  get audioSeconds(): number {
    return this.audioBytes / 8000;
  }

  emit(event: TranscriptEvent): void {
    this.#events.push(event);
  }

  sendAudio(audio: Uint8Array): void {
    this.audioBytes += audio.length;
    this.lastChunkBytes = audio.length;
    this.chunks.push(audio);
  }

  finalize(): void {}

  forgetSilence(keepMs: number): void {
    this.silenceForgotten.push(keepMs);
  }

  close(): Promise<void> {
    this.closed = true;
    this.#events.close();
    return Promise.resolve();
  }

  [Symbol.asyncIterator](): AsyncIterator<TranscriptEvent> {
    return this.#events[Symbol.asyncIterator]();
  }
}

/** VAD stand-in: reports the queued events on the next audio frame. */
export class FakeVad implements VoiceActivityDetector {
  #next: VadEvent[] = [];
  speaking = false;
  #pausing = false;
  audioMs = 0;
  /** A copy of the samples of the last frame pushed. */
  lastFrame: Int16Array | undefined;
  closed = false;

  /** Pausing is part of speaking, as in the real VAD. */
  get pausing(): boolean {
    return this.speaking && this.#pausing;
  }

  set pausing(pausing: boolean) {
    this.#pausing = pausing;
  }

  queue(...events: VadEvent[]): void {
    this.#next.push(...events);
  }

  push(pcm: Int16Array): readonly VadEvent[] {
    this.audioMs += pcm.length / 8;
    this.lastFrame = pcm.slice();
    const events = this.#next;
    this.#next = [];
    for (const event of events) this.speaking = event.type === "speech_start";
    return events;
  }

  reset(): void {}

  close(): void {
    this.closed = true;
  }
}

/** Options for {@link startAgentCall}. */
export interface AgentCallOptions {
  firstSpeaker?: "bot" | "callee";
  sttEngine?: SttEngine;
  maxCallSeconds?: number;
  idleTimeoutSeconds?: number;
  /** LLM replies in order. */
  replies?: string[];
  /** The far end never echoes a mark. */
  withholdEchoes?: boolean;
  /** The call's audio format, both ways; default mu-law 8 kHz. */
  audioFormat?: AudioFormat;
  /** Defaults to an immediate "hung_up". */
  hangupCall?: HangupCall;
  voicemailMessage?: string;
  voicemailWaitSeconds?: number;
}

/** A call under test; see {@link startAgentCall}. */
export type AgentCall = ReturnType<typeof startAgentCall>;

const SILENT_FRAME = new Uint8Array(160).fill(0xff);

/**
 * A started session with its agent, created but not started (call `agent.start()`), so a test
 * can end the call first or count listeners from the very beginning.
 */
export function startAgentCall(options: AgentCallOptions = {}) {
  const clock = new ManualClock();
  const ticker = new PlaybackTicker({ manual: true });
  const wire = new FakeTransport(options.audioFormat);
  const logs: string[] = [];
  const hangups: string[] = [];
  const llm = new FakeLlm();
  llm.replies.push(...options.replies ?? []);
  const speaker = new FakeSpeaker();
  const stt = new FakeTranscriber();
  const vad = new FakeVad();
  let transcribersOpened = 0;

  const session = new CallSession({
    streamId: "stream-1",
    callControlId: "v3:call-1",
    body: { name: "Ada" },
  }, {
    transport: wire,
    hangupCall: options.hangupCall ?? ((id) => {
      hangups.push(id);
      return Promise.resolve("hung_up");
    }),
    logger: new Logger({ level: "debug", format: "json", sink: (line) => logs.push(line) }),
  });

  // Abort listeners on the call's signal, live ones only: what a finished reply must not leave.
  const listeners = new Set<unknown>();
  const signal = session.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (type: string, listener: unknown, ...rest: unknown[]) => {
    if (type === "abort") listeners.add(listener);
    (add as (...args: unknown[]) => void)(type, listener, ...rest);
  };
  signal.removeEventListener = (type: string, listener: unknown, ...rest: unknown[]) => {
    if (type === "abort") listeners.delete(listener);
    (remove as (...args: unknown[]) => void)(type, listener, ...rest);
  };

  session.start();
  wire.onEcho = (name) => session.deliver({ type: "mark", name });
  const engine = options.sttEngine ?? "nova";
  const agent = new VoiceAgent(session, {
    llm: llm.stream,
    speaker,
    openTranscriber: () => {
      transcribersOpened++;
      return stt;
    },
    vad,
    sttEngine: engine,
    firstSpeaker: options.firstSpeaker ?? "callee",
    maxCallSeconds: options.maxCallSeconds ?? 600,
    idleTimeoutSeconds: options.idleTimeoutSeconds ?? 60,
    clock,
    playbackTicker: ticker,
    voicemailMessage: options.voicemailMessage,
    voicemailWaitSeconds: options.voicemailWaitSeconds,
  });

  return {
    session,
    agent,
    clock,
    wire,
    llm,
    speaker,
    stt,
    vad,
    logs,
    hangups,
    get transcribersOpened() {
      return transcribersOpened;
    },
    /** Live abort listeners on the call's signal. */
    get signalListeners() {
      return listeners.size;
    },
    /** Bot turns and callee turns as the conversation recorded them. */
    transcript(): string[] {
      return agent.conversation.transcript().map((entry) =>
        `${entry.role}${entry.interrupted ? " (interrupted)" : ""}: ${entry.text}`
      );
    },
    /**
     * Runs the call for `ms` of virtual time in 20 ms steps: the far end plays what it received, the
     * agent's timers fire, mark echoes come back (unless withheld), and the playback ticker pumps
     * at its own period.
     */
    async run(ms: number): Promise<void> {
      for (let elapsed = 0; elapsed < ms; elapsed += 20) {
        wire.advance(20);
        await clock.advance(20);
        if (wire.now % TICK_MS === 0) ticker.tick();
        if (options.withholdEchoes) wire.echoes.length = 0;
        else wire.deliverEchoes();
        await settle();
      }
    },
    /** STT ends the callee's turn with `text` (Nova: a final, the VAD silent; Flux: end of turn). */
    async say(text: string): Promise<void> {
      stt.emit(
        engine === "flux"
          ? { type: "end_of_turn", text }
          : { type: "final", text, speechFinal: true, fromFinalize: false },
      );
      await settle();
    },
    /** Delivers `count` frames of callee audio (20 ms of silence each), with no VAD events. */
    frames(count: number): void {
      for (let i = 0; i < count; i++) session.deliver({ type: "media", payload: SILENT_FRAME });
    },
    /** Delivers VAD events with one frame of callee audio. */
    async hear(...events: VadEvent[]): Promise<void> {
      vad.queue(...events);
      session.deliver({ type: "media", payload: SILENT_FRAME });
      await settle();
    },
    /** Ends the call as a callee hang-up and waits until everything is released. */
    async hangUp(): Promise<void> {
      await session.hangUp("callee_hung_up");
      await session.ended;
      await settle();
    },
  };
}

/** ms a default {@link FakeSpeaker} needs to play `text` at 8 kHz (8 bytes per ms). */
export function playMs(text: string): number {
  return (text.length * 40) / 8;
}

/** The callee says hello and the default greeting plays to the end. */
export async function greeted(call: AgentCall): Promise<void> {
  call.agent.start();
  await call.say("Hello?");
  await call.run(playMs(DEFAULT_GREETING) + 200);
  assert.deepEqual(call.transcript(), ["callee: Hello?", `bot: ${DEFAULT_GREETING}`]);
}
