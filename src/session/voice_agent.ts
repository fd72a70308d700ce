/**
 * The voice agent of one call: listens (local VAD + Deepgram), thinks (OpenAI), speaks
 * (Cartesia → paced mu-law frames to Telnyx), lets itself be interrupted, and hangs up.
 *
 * Every bot response owns one `AbortController` linked to the call's signal: barge-in, hang-up
 * and shutdown all stop the LLM stream, the TTS context and playback the same way, by aborting.
 *
 * @module
 */
import type { VoiceActivityDetector } from "../audio/vad.ts";
import type { Logger } from "../log.ts";
import { type ChatStreamer, LlmError } from "../services/llm.ts";
import { PhraseChunker } from "../services/phrases.ts";
import type { LiveTranscriber, SttEngine, TranscriptEvent } from "../services/stt.ts";
import { SttUnavailableError } from "../services/stt.ts";
import type { SpeechEvent } from "../services/tts.ts";
import { TtsUnavailableError } from "../services/tts.ts";
import { CallMetrics, type TurnMetrics } from "./call_metrics.ts";
import type { CallSession } from "./call_session.ts";
import { Conversation, END_CALL_TOOL } from "./conversation.ts";
import { Playback } from "./playback.ts";
import { AsyncQueue } from "../async/async_queue.ts";
import { type TurnDecision, TurnDetector } from "./turn_detector.ts";

/** Text-to-speech as the agent uses it (implemented by `CartesiaSpeaker`). */
export interface Speaker {
  connect(signal: AbortSignal): Promise<void>;
  speak(text: AsyncIterable<string>, signal: AbortSignal): AsyncGenerator<SpeechEvent>;
  close(): Promise<void>;
  readonly charactersSent: number;
}

/** Everything a voice agent needs; built once per call by the server. */
export interface VoiceAgentDeps {
  llm: ChatStreamer;
  speaker: Speaker;
  openTranscriber: (signal: AbortSignal) => LiveTranscriber;
  vad: VoiceActivityDetector;
  sttEngine: SttEngine;
  systemPrompt?: string;
  greeting?: string;
  firstSpeaker: "callee" | "bot";
  maxCallSeconds: number;
  idleTimeoutSeconds: number;
  now?: () => number;
}

/** 40 ms of 8 kHz G.711 audio per STT write. */
const STT_CHUNK_BYTES = 320;

/** Lines the bot says without asking the LLM. */
export const CANNED = {
  stillThere: "Are you still there?",
  idleGoodbye: "It seems now is not a good time. Thank you, and goodbye!",
  timeLimit: "I'm sorry, we have reached the time limit for this call. Thank you, and goodbye!",
  apology: "I'm sorry, I'm having technical difficulties right now. Please try again later. " +
    "Goodbye!",
} as const;

/** One bot utterance in flight. */
interface Utterance {
  id: number;
  controller: AbortController;
  /** Phrase texts by the playback mark id. */
  phrases: Map<string, string>;
  /** Text produced so far (whether heard or not). */
  text: string;
  interrupted: boolean;
  /** Resolved by the Flux end-of-turn that confirms a speculative answer. */
  gate?: PromiseWithResolvers<void>;
  speculativeText?: string;
}

/** Runs the conversation of one call. Create, then {@link VoiceAgent.start}. */
export class VoiceAgent {
  readonly conversation: Conversation;
  readonly metrics = new CallMetrics();
  readonly #session: CallSession;
  readonly #deps: VoiceAgentDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #turns: TurnDetector;
  readonly #playback: Playback;
  #stt: LiveTranscriber | undefined;
  #pcm = new Int16Array(160);
  readonly #sttChunk = new Uint8Array(STT_CHUNK_BYTES);
  #sttFill = 0;
  #utterance: Utterance | undefined;
  #utteranceCount = 0;
  #greetingPlayed = false;
  #greeting: BufferedSpeech | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #idlePrompted = false;
  #maxTimer: ReturnType<typeof setTimeout> | undefined;
  #ending = false;
  #turnNumber = 0;

  constructor(session: CallSession, deps: VoiceAgentDeps) {
    this.#session = session;
    this.#deps = deps;
    this.#log = session.log;
    this.#now = deps.now ?? (() => performance.now());
    this.#turns = new TurnDetector(deps.sttEngine, this.#now);
    this.conversation = new Conversation({
      systemPrompt: deps.systemPrompt,
      greeting: deps.greeting,
      body: session.info.body,
    });
    if (this.conversation.missingPlaceholders.length > 0) {
      this.#log.warn("placeholders missing from the custom data", {
        missing: this.conversation.missingPlaceholders,
      });
    }
    this.#playback = new Playback({ send: (frame) => session.send(frame) });
  }

  /** Connects STT and TTS, pre-synthesises the greeting and starts listening. */
  start(): void {
    const signal = this.#session.signal;
    this.#session.attach({
      onAudio: (payload) => this.#onAudio(payload),
      onDtmf: (digit) => this.#onDtmf(digit),
      onMark: (name) => this.#playback.onMarkEcho(name),
      close: () => this.#teardown(),
    });
    this.#maxTimer = setTimeout(() => {
      this.#log.info("call time limit reached", { max_call_seconds: this.#deps.maxCallSeconds });
      void this.#sayAndHangUp(CANNED.timeLimit, "system");
    }, this.#deps.maxCallSeconds * 1000);

    // The greeting is synthesised now, before anyone speaks, so playing it costs no round-trip.
    const greetingController = linkedController(signal);
    this.#greeting = new BufferedSpeech(
      this.#deps.speaker.speak(once(this.conversation.greeting), greetingController.signal),
      greetingController,
    );
    this.#stt = this.#deps.openTranscriber(signal);
    this.#armIdle();
    void this.#listen(this.#stt);
    if (this.#deps.firstSpeaker === "bot") void this.#playGreeting(undefined);
  }

  // ---------------------------------------------------------------------------------------
  // Listening

  #onAudio(payload: Uint8Array): void {
    this.#sendToStt(payload);
    if (this.#pcm.length < payload.length) this.#pcm = new Int16Array(payload.length);
    const pcm = this.#session.codec.decode(payload, this.#pcm);
    for (const event of this.#deps.vad.push(pcm)) {
      this.#decide(this.#turns.onVad(event));
      // A cough that stopped the bot but produced no words must not leave the call silent.
      if (event.type === "speech_end" && !this.#isBotActive()) this.#armIdle();
    }
  }

  /**
   * Forwards callee audio to STT in 40 ms chunks: every chunk is a socket write, the largest
   * single cost per call in profiles, and Deepgram recommends 20–100 ms chunks. The local VAD,
   * which drives barge-in and turn ends, still sees every 20 ms frame at once.
   */
  #sendToStt(payload: Uint8Array): void {
    const stt = this.#stt;
    if (!stt) return;
    if (this.#sttFill + payload.length > this.#sttChunk.length) this.#flushStt();
    if (payload.length >= this.#sttChunk.length) {
      stt.sendAudio(payload);
      return;
    }
    this.#sttChunk.set(payload, this.#sttFill);
    this.#sttFill += payload.length;
    if (this.#sttFill === this.#sttChunk.length) this.#flushStt();
  }

  #flushStt(): void {
    if (this.#sttFill === 0) return;
    // The transcriber keeps sent chunks for replay after a reconnect, so each gets its own copy.
    this.#stt?.sendAudio(this.#sttChunk.slice(0, this.#sttFill));
    this.#sttFill = 0;
  }

  #onDtmf(digit: string): void {
    this.#clearIdle();
    if (this.#isBotActive()) this.#bargeIn("dtmf");
    this.conversation.addDtmf(digit);
    // A key press before the greeting is an answer to a question nobody asked yet.
    if (!this.#greetingPlayed) void this.#playGreeting(undefined);
    else void this.#respond({ trigger: "dtmf" });
  }

  async #listen(stt: LiveTranscriber): Promise<void> {
    try {
      for await (const event of stt) this.#onTranscript(event);
    } catch (error) {
      if (this.#session.signal.aborted) return;
      if (error instanceof SttUnavailableError) {
        this.#log.error("speech-to-text unavailable; ending the call", { reason: error.reason });
      } else {
        this.#log.error("speech-to-text failed; ending the call", { error });
      }
      await this.#sayAndHangUp(CANNED.apology, "system");
    }
  }

  #onTranscript(event: TranscriptEvent): void {
    if (event.type === "interim" && event.text.trim()) this.#clearIdle();
    if (event.type === "reconnected") {
      this.#log.warn("speech-to-text reconnected", {
        attempt: event.attempt,
        buffered_bytes: event.bufferedBytes,
      });
    }
    this.#decide(this.#turns.onTranscript(event));
  }

  #decide(decisions: TurnDecision[]): void {
    for (const decision of decisions) {
      switch (decision.type) {
        case "callee_started":
          this.#clearIdle();
          // A speculative answer that has not played yet is simply dropped: nothing to clear.
          if (this.#utterance?.gate) this.#cancel(this.#utterance, "callee still talking");
          else if (this.#isBotActive()) this.#bargeIn("speech");
          break;
        case "eager_turn":
          if (this.#greetingPlayed) {
            void this.#respond({ trigger: "callee", speculative: decision });
          }
          break;
        case "turn_resumed":
          if (this.#utterance?.gate) this.#cancel(this.#utterance, "turn resumed");
          break;
        case "turn_ended":
          this.#onTurnEnded(decision);
          break;
      }
    }
  }

  #onTurnEnded(turn: Extract<TurnDecision, { type: "turn_ended" }>): void {
    this.#clearIdle();
    this.#idlePrompted = false;
    const speculative = this.#utterance?.gate ? this.#utterance : undefined;
    if (speculative) {
      if (speculative.speculativeText === turn.text) {
        this.conversation.addUser(turn.text);
        speculative.gate!.resolve();
        return;
      }
      this.#cancel(speculative, "eager transcript changed");
    }
    this.#log.info("callee said", { chars: turn.text.length });
    if (this.#log.enabled("debug")) this.#log.debug("callee text", { text: turn.text });
    this.conversation.addUser(turn.text);
    if (!this.#greetingPlayed) {
      void this.#playGreeting(turn);
      return;
    }
    void this.#respond({ trigger: "callee", turn });
  }

  // ---------------------------------------------------------------------------------------
  // Speaking

  #isBotActive(): boolean {
    return this.#utterance !== undefined || this.#playback.speaking;
  }

  async #playGreeting(turn: Extract<TurnDecision, { type: "turn_ended" }> | undefined) {
    if (this.#greetingPlayed) return;
    this.#greetingPlayed = true;
    const outcome = await this.#speak(this.#greeting!.replay(), {
      trigger: "greeting",
      turn,
      controller: this.#greeting!.controller,
      fixedText: this.conversation.greeting,
    });
    if (outcome === "failed") await this.#sayAndHangUp(CANNED.apology, "system");
  }

  async #respond(options: {
    trigger: TurnMetrics["trigger"];
    turn?: Extract<TurnDecision, { type: "turn_ended" }>;
    speculative?: Extract<TurnDecision, { type: "eager_turn" }>;
  }): Promise<void> {
    if (this.#ending) return;
    if (this.#utterance) this.#cancel(this.#utterance, "superseded");
    const controller = linkedController(this.#session.signal);
    const phrases = new AsyncQueue<string>();
    const messages = this.conversation.messages();
    if (options.speculative) messages.push({ role: "user", content: options.speculative.text });
    const timing: { ttft?: number } = {};
    let endCall: { id: string; name: string; arguments: string } | undefined;

    const think = async () => {
      const chunker = new PhraseChunker();
      for (let attempt = 1;; attempt++) {
        let produced = false;
        try {
          for await (
            const event of this.#deps.llm({ messages, tools: [END_CALL_TOOL] }, controller.signal)
          ) {
            if (event.type === "first_token") timing.ttft = event.ms;
            else if (event.type === "text") {
              produced = true;
              for (const phrase of chunker.push(event.text)) phrases.push(phrase);
            } else if (event.type === "tool_call") {
              if (event.name === "end_call") endCall = event;
            } else if (event.type === "usage") {
              this.metrics.usage.llmPromptTokens += event.promptTokens;
              this.metrics.usage.llmCompletionTokens += event.completionTokens;
            }
          }
          break;
        } catch (error) {
          if (controller.signal.aborted) throw error;
          // Retrying after words were spoken would repeat them; only a clean failure retries.
          const hopeless = error instanceof LlmError && !error.retryable;
          if (attempt < 2 && !produced && !hopeless) {
            this.#log.warn("LLM request failed; retrying once", {
              error,
              retryable: error instanceof LlmError ? error.retryable : undefined,
            });
            continue;
          }
          throw error;
        }
      }
      const rest = chunker.flush();
      if (rest) phrases.push(rest);
      phrases.close();
    };
    const thinking = think().catch((error) => {
      phrases.fail(error);
    });

    const speech = this.#deps.speaker.speak(phrases, controller.signal);
    const outcome = await this.#speak(speech, {
      trigger: options.trigger,
      turn: options.turn,
      controller,
      llmTiming: timing,
      speculative: options.speculative?.text,
    });
    // A reply that did not play to the end needs no more tokens.
    if (outcome !== "played") controller.abort(new DOMException(outcome, "AbortError"));
    await thinking;
    if (outcome === "failed" && !this.#session.signal.aborted) {
      await this.#sayAndHangUp(CANNED.apology, "system");
      return;
    }
    if (outcome === "played" && endCall) {
      this.conversation.addToolCall(endCall, "The call was ended.");
      this.#log.info("bot ended the call");
      if (this.#log.enabled("debug")) {
        this.#log.debug("end_call arguments", { arguments: endCall.arguments });
      }
      await this.#session.hangUp("bot_hung_up");
    }
  }

  /**
   * Plays one utterance: forwards audio to playback, marks phrase ends, records what was heard
   * and the turn's timings. Resolves how it ended.
   */
  async #speak(
    speech: AsyncIterable<SpeechEvent>,
    options: {
      trigger: TurnMetrics["trigger"];
      turn?: Extract<TurnDecision, { type: "turn_ended" }>;
      controller: AbortController;
      fixedText?: string;
      llmTiming?: { ttft?: number };
      speculative?: string;
    },
  ): Promise<"played" | "interrupted" | "failed" | "closed"> {
    const utterance: Utterance = {
      id: ++this.#utteranceCount,
      controller: options.controller,
      phrases: new Map(),
      text: "",
      interrupted: false,
    };
    if (options.speculative !== undefined) {
      utterance.gate = Promise.withResolvers();
      utterance.speculativeText = options.speculative;
    }
    this.#utterance = utterance;
    const startedAt = this.#now();
    const turnEndAt = options.turn?.finalAt ?? startedAt;
    let firstAudioAt: number | undefined;
    let firstFrameAt: number | undefined;
    let phraseIndex = 0;
    let result: "played" | "interrupted" | "failed" | "closed" = "played";
    this.#playback.onFirstFrame = (at) => {
      firstFrameAt ??= at;
    };
    try {
      for await (const event of speech) {
        if (utterance.gate) {
          await utterance.gate.promise;
          utterance.gate = undefined;
        }
        if (options.controller.signal.aborted) break;
        if (event.type === "audio") {
          firstAudioAt ??= this.#now();
          this.#playback.enqueue(event.audio);
        } else {
          const id = `u${utterance.id}p${phraseIndex++}`;
          utterance.phrases.set(id, event.text);
          utterance.text += event.text;
          this.#playback.endPhrase(id);
        }
      }
      if (options.controller.signal.aborted) {
        result = utterance.interrupted ? "interrupted" : "closed";
      } else {
        result = await this.#playback.finish();
      }
    } catch (error) {
      if (options.controller.signal.aborted) {
        result = utterance.interrupted ? "interrupted" : "closed";
      } else {
        result = "failed";
        if (error instanceof TtsUnavailableError) {
          this.#log.error("text-to-speech unavailable", { error });
        } else this.#log.error("bot response failed", { error });
        this.#playback.interrupt();
      }
    } finally {
      if (this.#utterance === utterance) this.#utterance = undefined;
    }

    if (result === "played") {
      const text = normaliseSpaces(options.fixedText ?? utterance.text);
      if (text) this.conversation.addAssistant(text);
      this.#armIdle();
    }
    if (firstFrameAt !== undefined) {
      const llm = options.llmTiming?.ttft;
      const tts = firstAudioAt! - startedAt - (llm ?? 0);
      const speechEnded = options.turn?.speechEndedAt;
      const turn = this.metrics.record({
        turn: ++this.#turnNumber,
        trigger: options.trigger,
        sttFinalizationMs: speechEnded !== undefined && options.turn
          ? Math.max(0, options.turn.finalAt - speechEnded)
          : undefined,
        llmTtftMs: llm,
        ttsTtfbMs: options.fixedText ? undefined : Math.max(0, tts),
        replyMs: firstFrameAt - turnEndAt,
        overheadMs: Math.max(0, firstFrameAt - turnEndAt - (llm ?? 0) - Math.max(0, tts)),
        voiceToVoiceMs: speechEnded !== undefined ? firstFrameAt - speechEnded : undefined,
        interrupted: result === "interrupted" ? true : undefined,
      });
      this.#log.info("turn", { ...turn, outcome: result });
    }
    return result;
  }

  /** The callee spoke (or pressed a key) over the bot: stop at once, keep what was heard. */
  #bargeIn(cause: "speech" | "dtmf"): void {
    const utterance = this.#utterance;
    const heard = this.#playback.interrupt();
    this.metrics.bargeIns++;
    if (!utterance) return;
    utterance.interrupted = true;
    utterance.controller.abort(new DOMException("barge-in", "AbortError"));
    this.#utterance = undefined;
    const parts = heard.heard.map((id) => utterance.phrases.get(id) ?? "");
    if (heard.partial) {
      const text = utterance.phrases.get(heard.partial.id) ?? "";
      parts.push(truncateToPlayed(text, heard.partial.playedMs / heard.partial.totalMs));
    }
    const heardText = normaliseSpaces(parts.join(""));
    this.conversation.addAssistant(heardText, { interrupted: true });
    this.#log.info("barge-in", { cause, heard_chars: heardText.length });
  }

  #cancel(utterance: Utterance, reason: string): void {
    utterance.controller.abort(new DOMException(reason, "AbortError"));
    if (this.#utterance === utterance) this.#utterance = undefined;
    if (this.#playback.speaking) this.#playback.interrupt();
  }

  /** Says a fixed line (not from the LLM) and hangs up once it has been heard. */
  async #sayAndHangUp(text: string, trigger: TurnMetrics["trigger"]): Promise<void> {
    if (this.#ending || this.#session.signal.aborted) return;
    this.#ending = true;
    this.#clearIdle();
    if (this.#utterance) this.#cancel(this.#utterance, "ending");
    const controller = linkedController(this.#session.signal);
    try {
      await this.#speak(this.#deps.speaker.speak(once(text), controller.signal), {
        trigger,
        controller,
        fixedText: text,
      });
    } finally {
      await this.#session.hangUp("bot_hung_up");
    }
  }

  // ---------------------------------------------------------------------------------------
  // Timers and teardown

  #armIdle(): void {
    this.#clearIdle();
    if (this.#ending) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      // Someone is talking: look again later rather than never.
      if (this.#isBotActive() || this.#turns.calleeSpeaking) return this.#armIdle();
      // Nobody said hello: greet anyway before asking whether anyone is there.
      if (!this.#greetingPlayed) return void this.#playGreeting(undefined);
      if (!this.#idlePrompted) {
        this.#idlePrompted = true;
        this.#log.info("callee idle; prompting");
        const controller = linkedController(this.#session.signal);
        void this.#speak(this.#deps.speaker.speak(once(CANNED.stillThere), controller.signal), {
          trigger: "idle",
          controller,
          fixedText: CANNED.stillThere,
        });
      } else {
        this.#log.info("callee still idle; ending the call");
        void this.#sayAndHangUp(CANNED.idleGoodbye, "idle");
      }
    }, this.#deps.idleTimeoutSeconds * 1000);
  }

  #clearIdle(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  async #teardown(): Promise<void> {
    this.#clearIdle();
    clearTimeout(this.#maxTimer);
    this.metrics.underruns = this.#playback.stats.underruns;
    this.#playback.close();
    this.#deps.vad.close();
    this.metrics.usage.ttsCharacters = this.#deps.speaker.charactersSent;
    this.metrics.usage.sttAudioSeconds = this.#stt?.audioSeconds ?? 0;
    await Promise.allSettled([this.#stt?.close(), this.#deps.speaker.close()]);
    this.#log.info("call summary", {
      ...this.metrics.summary(),
      transcript_turns: this.conversation.transcript().length,
    });
  }
}

/** Phrases keep the spacing of the LLM's text; joined, they need tidying once. */
function normaliseSpaces(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** A controller aborted when `parent` aborts. */
function linkedController(parent: AbortSignal): AbortController {
  const controller = new AbortController();
  if (parent.aborted) controller.abort(parent.reason);
  else {
    parent.addEventListener("abort", () => controller.abort(parent.reason), {
      once: true,
      signal: controller.signal,
    });
  }
  return controller;
}

async function* once(text: string): AsyncGenerator<string> {
  yield text;
}

/** The words of `text` that fit in `fraction` of it (at a word boundary). */
export function truncateToPlayed(text: string, fraction: number): string {
  if (!(fraction > 0)) return "";
  if (fraction >= 1) return text;
  const cut = Math.floor(text.length * fraction);
  const space = text.lastIndexOf(" ", cut);
  return space > 0 ? text.slice(0, space) : "";
}

/**
 * Speech synthesised ahead of time: events are collected as they arrive and replayed (once)
 * when the utterance is due, streaming the rest if synthesis is still going.
 */
class BufferedSpeech {
  readonly #events: SpeechEvent[] = [];
  #done = false;
  #error: unknown;
  #wake: (() => void) | undefined;

  constructor(source: AsyncGenerator<SpeechEvent>, readonly controller: AbortController) {
    (async () => {
      try {
        for await (const event of source) {
          this.#events.push(event);
          this.#wake?.();
        }
      } catch (error) {
        this.#error = error;
      } finally {
        this.#done = true;
        this.#wake?.();
      }
    })();
  }

  async *replay(): AsyncGenerator<SpeechEvent> {
    let index = 0;
    while (true) {
      if (index < this.#events.length) {
        yield this.#events[index++];
        continue;
      }
      if (this.#done) {
        if (this.#error) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}
