/**
 * The voice agent of one call: listens (local VAD + Deepgram), thinks (OpenAI), speaks
 * (Cartesia → paced frames to the call's transport), lets itself be interrupted, and hangs up.
 *
 * Every bot utterance owns one `AbortController` linked to the call's signal: barge-in, a newer
 * turn, hang-up and shutdown all stop the LLM stream, the TTS context and playback the same way,
 * by aborting. Whatever ended an utterance, what the callee heard of it is committed to the
 * conversation in one place ({@link VoiceAgent}'s `#conclude`). Every wait on a peer is bounded:
 * a missing mark echo, a Flux end of turn that never confirms a speculative answer, a goodbye
 * that never plays out, a vendor socket that does not close.
 *
 * @module
 */
import type { VoiceActivityDetector } from "../audio/vad.ts";
import type { Logger } from "../log.ts";
import { type ChatStreamer, LlmError } from "../services/llm.ts";
import { PhraseChunker, type PhrasePiece } from "../services/phrases.ts";
import type { LiveTranscriber, SttEngine, TranscriptEvent } from "../services/stt.ts";
import { SttUnavailableError } from "../services/stt.ts";
import type { SpeechEvent } from "../services/tts.ts";
import { TtsUnavailableError } from "../services/tts.ts";
import { CallMetrics, type TurnMetrics } from "./call_metrics.ts";
import type { CallSession } from "./call_session.ts";
import { type CallClock, systemClock } from "./clock.ts";
import { Conversation, END_CALL_TOOL, renderTemplate } from "./conversation.ts";
import { DtmfAggregator, type DtmfInput } from "./dtmf_aggregator.ts";
import { type InterruptResult, Playback, type PlaybackTicker } from "./playback.ts";
import { AsyncQueue } from "../async/async_queue.ts";
import { DeadlineError } from "../async/deadline.ts";
import { type TurnDecision, TurnDetector } from "./turn_detector.ts";
import { type PcmDecoder, pcmDecoderFor } from "../transport/call_transport.ts";
import { type CalleeState, SttFeed } from "./stt_feed.ts";
import type { AnsweredBy, CallEvent, EndReason } from "../records/call_events.ts";

/** Text-to-speech as the agent uses it (implemented by `CartesiaSpeaker`). */
export interface Speaker {
  connect(signal: AbortSignal): Promise<void>;
  speak(text: AsyncIterable<PhrasePiece>, signal: AbortSignal): AsyncGenerator<SpeechEvent>;
  close(): Promise<void>;
  readonly charactersSent: number;
}

/** Everything a voice agent needs; built once per call by the server. */
export interface VoiceAgentDeps {
  llm: ChatStreamer;
  /**
   * Opens the connection to the LLM ahead of the first answer (see `createLlmWarmer`); started
   * with the call, ended with it. Never rejects.
   */
  warmLlm?: (signal: AbortSignal) => Promise<void>;
  speaker: Speaker;
  openTranscriber: (signal: AbortSignal) => LiveTranscriber;
  vad: VoiceActivityDetector;
  sttEngine: SttEngine;
  systemPrompt?: string;
  greeting?: string;
  firstSpeaker: "callee" | "bot";
  maxCallSeconds: number;
  idleTimeoutSeconds: number;
  /** Clock and timers of the call; default real time. */
  clock?: CallClock;
  /** Ticker pumping this call's playback; default the process-wide one. */
  playbackTicker?: PlaybackTicker;
  /**
   * Left on an answering machine once its greeting is over (`VOICEMAIL_MESSAGE`, `{{path}}`
   * placeholders from the custom data); unset, the bot hangs up on a machine at once.
   */
  voicemailMessage?: string;
  /** Longest wait for a machine's greeting to end before the message is left anyway; default 30. */
  voicemailWaitSeconds?: number;
}

/**
 * Added to the play time of what was sent when waiting for the final mark echo: covers the
 * network both ways and a late ticker. Past it the audio has played, echo or not.
 */
export const PLAYOUT_MARGIN_MS = 1500;
/**
 * Longest a goodbye (time limit, idle, apology) may take, synthesis included; then the call is
 * hung up regardless. Well above the play time of any canned line.
 */
export const GOODBYE_LIMIT_MS = 15_000;
/**
 * Longest a speculative answer waits for the end of turn that confirms it. Flux follows an eager
 * end of turn with either the end of turn or a resumption; on Nova the VAD's silence or the
 * callee's voice follows within its hang-over. So this only ends lost events.
 */
export const SPECULATIVE_CONFIRM_MS = 5000;
/**
 * Longest leaving a voicemail message may take, synthesis included; then the call is hung up
 * regardless. A message is longer than a goodbye, but a machine records a minute or two at most.
 */
const VOICEMAIL_LIMIT_MS = 60_000;
/** Default for {@link VoiceAgentDeps.voicemailWaitSeconds}. */
const DEFAULT_VOICEMAIL_WAIT_SECONDS = 30;
/** Longest the agent waits for its STT and TTS sockets to close at the end of a call. */
const VENDOR_CLOSE_MS = 3000;
/** Longest a finished reply waits for its LLM stream to wind down. */
const LLM_SETTLE_MS = 2000;

/** Lines the bot says without asking the LLM. */
export const CANNED = {
  stillThere: "Are you still there?",
  idleGoodbye: "It seems now is not a good time. Thank you, and goodbye!",
  timeLimit: "I'm sorry, we have reached the time limit for this call. Thank you, and goodbye!",
  apology: "I'm sorry, I'm having technical difficulties right now. Please try again later. " +
    "Goodbye!",
} as const;

type TurnEnded = Extract<TurnDecision, { type: "turn_ended" }>;
/** When a reply's LLM stream got going, for its turn's metrics. */
interface LlmTiming {
  /** Request → first token, as the LLM adapter measured it. */
  ttft?: number;
  /** Call clock: the first text token arrived. */
  firstTextAt?: number;
  /** Call clock: the first phrase was handed to TTS. */
  firstPhraseAt?: number;
}
type SpeakOutcome = "played" | "interrupted" | "failed" | "closed";

/** One bot utterance in flight. */
interface Utterance {
  id: number;
  controller: LinkedAbortController;
  /** Phrase texts by the playback mark id. */
  phrases: Map<string, string>;
  /** Text produced so far (whether heard or not). */
  text: string;
  /** Text of a canned line or the greeting: what "played to the end" means for it. */
  fixedText?: string;
  /** The callee turn it answers; set when a speculative answer is confirmed. */
  turn?: TurnEnded;
  /** Why it was stopped before playing out; unset while it plays or once it played. */
  stopReason?: string;
  /** Set by {@link VoiceAgent}'s `#conclude`, which runs once per utterance. */
  concluded: boolean;
  /** What the callee heard of it, set by `#conclude`. */
  heard?: string;
  /**
   * Set while the utterance is a speculative answer: started on an eager end of turn, its audio
   * held until the end of turn that confirms it resolves this.
   */
  gate?: PromiseWithResolvers<void>;
  /** The callee's words a speculative answer answers; reused only if they are the whole turn. */
  speculativeText?: string;
}

/** An answering machine is on the line: the bot is silent until it leaves its message. */
interface VoicemailState {
  /** The message, synthesised as soon as the machine was detected; unset when none is set. */
  message?: { text: string; speech: AsyncQueue<SpeechEvent>; controller: LinkedAbortController };
  /** Leaves the message if the machine's greeting has not ended by then. */
  waitTimer?: AbortController;
}

/** Runs the conversation of one call. Create, then {@link VoiceAgent.start}. */
export class VoiceAgent {
  readonly conversation: Conversation;
  readonly metrics = new CallMetrics();
  readonly #session: CallSession;
  readonly #deps: VoiceAgentDeps;
  readonly #log: Logger;
  readonly #clock: CallClock;
  readonly #turns: TurnDetector;
  readonly #playback: Playback;
  readonly #dtmf: DtmfAggregator;
  #stt: LiveTranscriber | undefined;
  #warmingLlm: Promise<void> | undefined;
  #pcm = new Int16Array(160);
  /** Callee audio (the transport's input format) to linear samples for the VAD. */
  readonly #decodePcm: PcmDecoder;
  #sttFeed: SttFeed | undefined;
  #utterance: Utterance | undefined;
  #utteranceCount = 0;
  #greetingPlayed = false;
  /** The greeting, synthesised at start and played once. */
  #greeting: { speech: AsyncQueue<SpeechEvent>; controller: LinkedAbortController } | undefined;
  #idleTimer: AbortController | undefined;
  #idlePrompted = false;
  #maxTimer: AbortController | undefined;
  #ending = false;
  #released: Promise<void> | undefined;
  #turnNumber = 0;
  /** The call clock's time when the agent was created: transcript offsets count from it. */
  readonly #createdAt: number;
  /** Set once answering-machine detection reported a machine. */
  #voicemail: VoicemailState | undefined;

  constructor(session: CallSession, deps: VoiceAgentDeps) {
    this.#session = session;
    this.#deps = deps;
    this.#log = session.log;
    this.#clock = deps.clock ?? systemClock;
    this.#createdAt = this.#clock.now();
    this.#turns = new TurnDetector(deps.sttEngine, () => this.#clock.now());
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
    this.#decodePcm = pcmDecoderFor(session.inputFormat);
    this.#playback = new Playback({
      output: session.output,
      now: () => this.#clock.now(),
      ticker: deps.playbackTicker,
      onError: (error) => this.#log.error("playback failed; bot audio stopped", { error }),
    });
    this.#dtmf = new DtmfAggregator({
      clock: this.#clock,
      onInput: (input) => this.#onDtmfInput(input),
      onError: (error) => this.#failed(error, "dtmf input"),
    });
  }

  /**
   * Connects STT and TTS, pre-synthesises the greeting and starts listening. On a call that has
   * already ended (the callee hung up while the agent was starting) it arms nothing, opens
   * nothing and releases what it was given at once.
   */
  start(): void {
    const signal = this.#session.signal;
    if (signal.aborted) {
      this.#log.info("call ended before the voice agent started; releasing it");
      this.#background(this.#release(), "release");
      return;
    }
    this.#session.attach({
      onAudio: (payload) => this.#onAudio(payload),
      onDtmf: (digit) => this.#onDtmf(digit),
      onMark: (name) => this.#playback.onMarkEcho(name),
      onAnsweredBy: (answeredBy) => this.onAnsweredBy(answeredBy),
      close: () => this.#release(),
    });
    this.#maxTimer = this.#after(this.#deps.maxCallSeconds * 1000, "call time limit", () => {
      this.#log.info("call time limit reached", { max_call_seconds: this.#deps.maxCallSeconds });
      this.#background(
        this.#sayAndHangUp(CANNED.timeLimit, "system", "max_duration"),
        "time-limit goodbye",
      );
    });

    // The greeting is synthesised now, before anyone speaks, so playing it costs no round-trip.
    const greetingController = new LinkedAbortController(signal);
    this.#greeting = {
      speech: this.#synthesiseAhead(
        this.#deps.speaker.speak(once(this.conversation.greeting), greetingController.signal),
      ),
      controller: greetingController,
    };
    this.#warmingLlm = this.#deps.warmLlm?.(signal).catch((error) => {
      this.#log.debug("LLM warm-up failed", { error });
    });
    this.#stt = this.#deps.openTranscriber(signal);
    this.#sttFeed = new SttFeed(this.#stt, this.#session.inputFormat);
    // What the callee said while this agent was starting is heard now, before the bot speaks:
    // played later, it would sound like the callee talking over the greeting.
    for (const payload of this.#session.takeAudioBeforeAgent()) this.#onAudio(payload);
    this.#armIdle();
    this.#background(this.#listen(this.#stt), "listening");
    if (this.#deps.firstSpeaker === "bot") {
      this.#background(this.#playGreeting(undefined), "greeting");
    }
  }

  // ---------------------------------------------------------------------------------------
  // Listening

  #onAudio(payload: Uint8Array): void {
    if (this.#pcm.length < payload.length) this.#pcm = new Int16Array(payload.length);
    const pcm = this.#decodePcm(payload, this.#pcm);
    const events = this.#deps.vad.push(pcm);
    // After the VAD, so that whether the callee is pausing includes this frame.
    this.#sttFeed?.push(payload, this.#calleeState());
    for (const event of events) {
      this.#decide(this.#turns.onVad(event));
      // A cough that stopped the bot but produced no words must not leave the call silent.
      if (event.type === "speech_end" && !this.#isBotActive()) this.#armIdle();
    }
  }

  /**
   * What the callee is doing, for the STT feed: a turn still awaiting its transcript counts as
   * talking, so its audio keeps going out in short chunks. `vad` already includes this frame; the
   * turn detector hears of an onset after.
   */
  #calleeState(): CalleeState {
    const vad = this.#deps.vad;
    if (vad.pausing) return "pausing";
    return vad.speaking || this.#turns.turnUnderway ? "talking" : "silent";
  }

  /** A key press stops the bot at once; the keys become input when the callee is done typing. */
  #onDtmf(digit: string): void {
    // Tones on a machine's line are not a callee's answer.
    if (this.#voicemail) return;
    this.#clearIdle();
    if (this.#isBotActive()) this.#bargeIn("dtmf");
    this.#dtmf.push(digit);
  }

  #onDtmfInput(input: DtmfInput): void {
    this.#log.info("dtmf input", { keys: input.digits.length, dropped: input.dropped });
    if (this.#ending || !this.#live || this.#voicemail) return;
    this.#idlePrompted = false;
    // A reply that started while the callee was typing answers an older question.
    if (this.#utterance) this.#stop(this.#utterance, "superseded");
    this.conversation.addDtmf(input.digits);
    this.#report({ type: "dtmf", at: Date.now(), digits: input.digits });
    // Keys before the greeting are an answer to a question nobody asked yet.
    if (!this.#greetingPlayed) this.#background(this.#playGreeting(undefined), "greeting");
    else this.#background(this.#respond({ trigger: "dtmf" }), "reply");
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
      this.#reportError("stt", error);
      await this.#sayAndHangUp(CANNED.apology, "system", "vendor_error");
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
    if (this.#voicemail) return this.#heardMachine(decisions);
    for (const decision of decisions) {
      switch (decision.type) {
        case "callee_started":
          this.#clearIdle();
          // A speculative answer is held until the turn is confirmed, so none of it has played:
          // stopping it (its LLM and TTS aborted) is the whole barge-in, nothing to clear.
          if (this.#utterance?.gate) this.#stop(this.#utterance, "callee still talking");
          else if (this.#isBotActive()) this.#bargeIn("speech");
          break;
        case "eager_turn":
          if (this.#greetingPlayed) {
            this.#background(
              this.#respond({ trigger: "callee", speculative: decision }),
              "speculative reply",
            );
          }
          break;
        case "turn_resumed":
          if (this.#utterance?.gate) this.#stop(this.#utterance, "turn resumed");
          break;
        case "turn_ended":
          this.#onTurnEnded(decision);
          break;
      }
    }
  }

  #onTurnEnded(turn: TurnEnded): void {
    this.#clearIdle();
    this.#idlePrompted = false;
    const speculative = this.#utterance?.gate ? this.#utterance : undefined;
    if (speculative) {
      if (speculative.speculativeText === turn.text) {
        this.conversation.addUser(turn.text);
        this.#reportCallee(turn);
        // The answer now belongs to this turn: its latency is measured from it.
        speculative.turn = turn;
        const gate = speculative.gate!;
        speculative.gate = undefined;
        gate.resolve();
        return;
      }
      this.#stop(speculative, "eager transcript changed");
    }
    this.#log.info("callee said", { chars: turn.text.length });
    if (this.#log.enabled("debug")) this.#log.debug("callee text", { text: turn.text });
    // What was heard of a reply still playing goes in before the callee's new words.
    if (this.#utterance) this.#stop(this.#utterance, "superseded");
    this.conversation.addUser(turn.text);
    this.#reportCallee(turn);
    if (!this.#greetingPlayed) {
      this.#background(this.#playGreeting(turn), "greeting");
      return;
    }
    this.#background(this.#respond({ trigger: "callee", turn }), "reply");
  }

  // ---------------------------------------------------------------------------------------
  // Speaking

  #isBotActive(): boolean {
    return this.#utterance !== undefined || this.#playback.speaking;
  }

  /** False once the call ended or the agent was released: nothing new may start. */
  get #live(): boolean {
    return this.#released === undefined && !this.#session.signal.aborted;
  }

  async #playGreeting(turn: TurnEnded | undefined): Promise<void> {
    if (this.#greetingPlayed || !this.#live || this.#voicemail) return;
    this.#greetingPlayed = true;
    const outcome = await this.#speak(this.#greeting!.speech, {
      trigger: "greeting",
      turn,
      controller: this.#greeting!.controller,
      fixedText: this.conversation.greeting,
    });
    if (outcome === "failed") await this.#sayAndHangUp(CANNED.apology, "system", "vendor_error");
  }

  async #respond(options: {
    trigger: TurnMetrics["trigger"];
    turn?: TurnEnded;
    speculative?: Extract<TurnDecision, { type: "eager_turn" }>;
  }): Promise<void> {
    if (this.#ending || !this.#live || this.#voicemail) return;
    if (this.#utterance) this.#stop(this.#utterance, "superseded");
    const controller = new LinkedAbortController(this.#session.signal);
    const phrases = new AsyncQueue<PhrasePiece>();
    const messages = this.conversation.messages();
    if (options.speculative) {
      messages.push({ role: "user", content: options.speculative.text });
      this.metrics.speculativeStarted++;
    }
    const timing: LlmTiming = {};
    let endCall: { id: string; name: string; arguments: string } | undefined;

    const think = async () => {
      // The first words go to TTS as soon as they are speakable: they are what the callee waits for.
      const chunker = new PhraseChunker({ startEarly: true });
      for (let attempt = 1;; attempt++) {
        let produced = false;
        try {
          for await (
            const event of this.#deps.llm({ messages, tools: [END_CALL_TOOL] }, controller.signal)
          ) {
            if (event.type === "first_token") timing.ttft = event.ms;
            else if (event.type === "text") {
              produced = true;
              timing.firstTextAt ??= this.#clock.now();
              for (const phrase of chunker.push(event.text)) {
                timing.firstPhraseAt ??= this.#clock.now();
                phrases.push(phrase);
              }
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
      if (rest) {
        timing.firstPhraseAt ??= this.#clock.now();
        phrases.push(rest);
      }
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
    if (outcome !== "played") {
      // A reply that did not play to the end needs no more tokens.
      controller.abort(new DOMException(outcome, "AbortError"));
    } else {
      // Played to the end means the LLM stream is over; only its last events may be in flight.
      await this.#clock.deadline(thinking, LLM_SETTLE_MS, { what: "LLM stream end" })
        .catch(() => {});
    }
    if (outcome === "failed" && !this.#session.signal.aborted) {
      await this.#sayAndHangUp(CANNED.apology, "system", "vendor_error");
      return;
    }
    if (outcome === "played" && endCall) {
      this.conversation.addToolCall(endCall, "The call was ended.");
      this.#report({
        type: "tool_call",
        at: Date.now(),
        name: endCall.name,
        arguments: endCall.arguments,
      });
      this.#log.info("bot ended the call");
      if (this.#log.enabled("debug")) {
        this.#log.debug("end_call arguments", { arguments: endCall.arguments });
      }
      await this.#session.hangUp("bot_hung_up");
    }
  }

  /**
   * Plays one utterance: forwards audio to playback, marks phrase ends, waits (bounded) until it
   * has been heard, and records the turn's timings. Resolves how it ended; never rejects.
   */
  async #speak(
    speech: AsyncIterable<SpeechEvent>,
    options: {
      trigger: TurnMetrics["trigger"];
      turn?: TurnEnded;
      controller: LinkedAbortController;
      fixedText?: string;
      llmTiming?: LlmTiming;
      speculative?: string;
    },
  ): Promise<SpeakOutcome> {
    if (this.#utterance) this.#stop(this.#utterance, "superseded");
    const utterance: Utterance = {
      id: ++this.#utteranceCount,
      controller: options.controller,
      phrases: new Map(),
      text: "",
      fixedText: options.fixedText,
      turn: options.turn,
      concluded: false,
    };
    if (options.speculative !== undefined) {
      utterance.gate = Promise.withResolvers();
      utterance.speculativeText = options.speculative;
    }
    this.#utterance = utterance;
    const signal = options.controller.signal;
    const startedAt = this.#clock.now();
    let firstAudioAt: number | undefined;
    let firstFrameAt: number | undefined;
    let phraseIndex = 0;
    let result: SpeakOutcome | undefined;
    this.#playback.onFirstFrame = (at) => {
      firstFrameAt ??= at;
    };
    try {
      for await (const event of speech) {
        if (event.type === "audio") firstAudioAt ??= this.#clock.now();
        // A speculative answer's audio waits here, unplayed, until its turn is confirmed.
        if (utterance.gate) await this.#confirmation(utterance);
        if (signal.aborted) break;
        if (event.type === "audio") {
          this.#playback.enqueue(event.audio);
        } else {
          const id = `u${utterance.id}p${phraseIndex++}`;
          utterance.phrases.set(id, event.text);
          utterance.text += event.text;
          this.#playback.endPhrase(id);
        }
      }
      if (!signal.aborted) result = await this.#playedOut(utterance);
    } catch (error) {
      if (!signal.aborted) {
        result = "failed";
        if (error instanceof TtsUnavailableError) {
          this.#log.error("text-to-speech unavailable", { error });
        } else this.#log.error("bot response failed", { error });
        this.#reportError(error instanceof LlmError ? "llm" : "tts", error);
        this.#stop(utterance, "failed");
      }
    } finally {
      // A finished reply must not keep a listener on the call's signal until the call ends.
      options.controller.unlink();
    }
    // Stopped from outside (barge-in, a newer turn, the call ending): already concluded.
    result ??= utterance.stopReason === "barge-in" ? "interrupted" : "closed";
    this.#conclude(utterance, result === "played" ? "played" : { heard: [] });
    // Nothing newer took over: the callee's silence counts from now.
    if (this.#utterance === undefined) this.#armIdle();

    let metrics: TurnMetrics | undefined;
    if (firstFrameAt !== undefined) {
      metrics = this.#recordTurn(utterance, options, result, {
        startedAt,
        firstAudioAt: firstAudioAt ?? firstFrameAt,
        firstFrameAt,
      });
    }
    if (utterance.heard) {
      this.#report({
        type: "turn",
        at: Date.now(),
        role: "assistant",
        text: utterance.heard,
        offsetMs: (firstFrameAt ?? startedAt) - this.#createdAt,
        interrupted: result !== "played" ? true : undefined,
        latency: metrics && {
          sttFinalizationMs: metrics.sttFinalizationMs,
          llmTtftMs: metrics.llmTtftMs,
          ttsTtfbMs: metrics.ttsTtfbMs,
          voiceToVoiceMs: metrics.voiceToVoiceMs,
        },
      });
    }
    return result;
  }

  #recordTurn(
    utterance: Utterance,
    options: {
      trigger: TurnMetrics["trigger"];
      fixedText?: string;
      llmTiming?: LlmTiming;
      speculative?: string;
    },
    result: SpeakOutcome,
    at: { startedAt: number; firstAudioAt: number; firstFrameAt: number },
  ): TurnMetrics {
    const turn = utterance.turn;
    const turnEndAt = turn?.finalAt ?? at.startedAt;
    const timing = options.llmTiming;
    const llm = timing?.ttft;
    const tts = at.firstAudioAt - at.startedAt - (llm ?? 0);
    const speechEnded = turn?.speechEndedAt;
    const speculative = options.speculative !== undefined;
    // Started before the turn was decided, the vendors' waits overlap the turn's: ours is what
    // follows the later of the two.
    const overheadMs = speculative
      ? at.firstFrameAt - Math.max(turnEndAt, at.firstAudioAt)
      : at.firstFrameAt - turnEndAt - (llm ?? 0) - Math.max(0, tts);
    const recorded = this.metrics.record({
      turn: ++this.#turnNumber,
      trigger: options.trigger,
      sttFinalizationMs: speechEnded !== undefined && turn
        ? Math.max(0, turn.finalAt - speechEnded)
        : undefined,
      llmTtftMs: llm,
      firstTokenToTtsMs: timing?.firstTextAt !== undefined && timing.firstPhraseAt !== undefined
        ? timing.firstPhraseAt - timing.firstTextAt
        : undefined,
      ttsTtfbMs: options.fixedText ? undefined : Math.max(0, tts),
      replyMs: at.firstFrameAt - turnEndAt,
      overheadMs: Math.max(0, overheadMs),
      voiceToVoiceMs: speechEnded !== undefined ? at.firstFrameAt - speechEnded : undefined,
      speculative: speculative ? true : undefined,
      interrupted: result === "interrupted" ? true : undefined,
    });
    this.#log.info("turn", { ...recorded, outcome: result });
    return recorded;
  }

  /** Holds a speculative answer until its turn is confirmed; bounded, and cut by a stop. */
  async #confirmation(utterance: Utterance): Promise<void> {
    try {
      await this.#clock.deadline(utterance.gate!.promise, SPECULATIVE_CONFIRM_MS, {
        signal: utterance.controller.signal,
        what: "the end of turn confirming a speculative answer",
      });
      utterance.gate = undefined;
    } catch (error) {
      if (error instanceof DeadlineError) {
        this.#log.warn("speculative answer never confirmed; dropped", {
          waited_ms: SPECULATIVE_CONFIRM_MS,
        });
        this.#stop(utterance, "unconfirmed");
      }
      throw error;
    }
  }

  /**
   * Waits until the utterance has been heard to the end: its final mark echo, bounded by the
   * play time of what was sent plus a margin. Past that the audio has played whether or not
   * Telnyx said so, and the call goes on (or ends) as if the echo had come.
   */
  async #playedOut(utterance: Utterance): Promise<SpeakOutcome> {
    const finished = this.#playback.finish();
    const boundMs = this.#playback.playoutMs + PLAYOUT_MARGIN_MS;
    try {
      return await this.#clock.deadline(finished, boundMs, { what: "final mark echo" });
    } catch (error) {
      if (!(error instanceof DeadlineError)) throw error;
    }
    if (this.#playback.assumePlayed()) {
      this.#log.warn("no mark echo for the end of the bot's audio; counted as played", {
        waited_ms: Math.round(boundMs),
      });
      return "played";
    }
    this.#log.warn("bot audio stalled before it was all sent; stopped", {
      waited_ms: Math.round(boundMs),
    });
    this.#stop(utterance, "stalled");
    return "closed";
  }

  /** The callee spoke (or pressed a key) over the bot: stop at once, keep what was heard. */
  #bargeIn(cause: "speech" | "dtmf"): void {
    this.metrics.bargeIns++;
    const utterance = this.#utterance;
    if (!utterance) {
      this.#playback.interrupt();
      return;
    }
    const heard = this.#stop(utterance, "barge-in");
    this.#log.info("barge-in", { cause, heard_chars: heard.length });
  }

  /**
   * Stops an utterance before it played out (barge-in, a newer turn, the call ending, a
   * failure): stops playback, aborts its LLM and TTS, and concludes it with what was heard so
   * far. Returns the heard text.
   */
  #stop(utterance: Utterance, reason: string): string {
    if (utterance.concluded) return "";
    // A speculative answer stopped before its turn was confirmed was asked for nothing.
    if (utterance.gate) this.metrics.speculativeWasted++;
    // Only the current utterance can have audio at Telnyx, and only once it started playing.
    const heard: InterruptResult = this.#utterance === utterance && this.#playback.speaking
      ? this.#playback.interrupt()
      : { heard: [] };
    utterance.stopReason = reason;
    utterance.controller.abort(new DOMException(reason, "AbortError"));
    return this.#conclude(utterance, heard);
  }

  /**
   * The one epilogue of an utterance, run once whatever ended it: commits to the conversation
   * what the callee heard (all of it when it played to the end; otherwise the phrases whose marks
   * were echoed plus the played share of the one that was playing) and returns that text.
   */
  #conclude(utterance: Utterance, ending: "played" | InterruptResult): string {
    if (utterance.concluded) return "";
    utterance.concluded = true;
    if (this.#utterance === utterance) this.#utterance = undefined;
    let heard: string;
    if (ending === "played") {
      heard = normaliseSpaces(utterance.fixedText ?? utterance.text);
    } else {
      const parts = ending.heard.map((id) => utterance.phrases.get(id) ?? "");
      if (ending.partial) {
        const text = utterance.phrases.get(ending.partial.id) ?? "";
        parts.push(truncateToPlayed(text, ending.partial.playedMs / ending.partial.totalMs));
      }
      heard = normaliseSpaces(parts.join(""));
    }
    this.conversation.addAssistant(heard, { interrupted: ending !== "played" });
    utterance.heard = heard;
    return heard;
  }

  /** Says a fixed line (not from the LLM) and hangs up once it has been heard, or in time. */
  async #sayAndHangUp(
    text: string,
    trigger: TurnMetrics["trigger"],
    outcome: EndReason,
  ): Promise<void> {
    if (this.#ending || !this.#live) return;
    this.#ending = true;
    this.#clearIdle();
    if (this.#utterance) this.#stop(this.#utterance, "ending");
    const controller = new LinkedAbortController(this.#session.signal);
    const goodbye = this.#speak(this.#deps.speaker.speak(once(text), controller.signal), {
      trigger,
      controller,
      fixedText: text,
    });
    try {
      await this.#clock.deadline(goodbye, GOODBYE_LIMIT_MS, {
        signal: this.#session.signal,
        what: "goodbye",
      });
    } catch (error) {
      if (error instanceof DeadlineError) {
        this.#log.warn("goodbye did not play out in time; hanging up", {
          limit_ms: GOODBYE_LIMIT_MS,
        });
      }
    } finally {
      await this.#session.hangUp("bot_hung_up", outcome);
    }
  }

  // ---------------------------------------------------------------------------------------
  // The call record: reported, never awaited

  #report(event: CallEvent): void {
    this.#session.record(event);
  }

  #reportCallee(turn: TurnEnded): void {
    this.#report({
      type: "turn",
      at: Date.now(),
      role: "user",
      text: turn.text,
      offsetMs: turn.finalAt - this.#createdAt,
    });
  }

  #reportError(source: "stt" | "llm" | "tts", error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.#report({ type: "error", at: Date.now(), source, message });
  }

  // ---------------------------------------------------------------------------------------
  // Answering machines

  /**
   * Who or what answered, from Telnyx's answering-machine detection (which runs beside the
   * conversation). A person, or a detector that cannot tell: the conversation goes on. A machine:
   * the bot falls silent, and leaves the voicemail message once the machine's greeting is over
   * (or after `voicemailWaitSeconds`), then hangs up. A fax: the bot hangs up.
   */
  onAnsweredBy(answeredBy: AnsweredBy): void {
    if (this.#ending || !this.#live) return;
    switch (answeredBy) {
      case "human":
      case "unknown":
      case "not_sure":
        this.#log.info("answered by a person, or detection could not tell; carrying on", {
          answered_by: answeredBy,
          already_voicemail: this.#voicemail !== undefined,
        });
        return;
      case "fax":
        this.#log.info("a fax machine answered; hanging up");
        return this.#hangUpNow("fax");
      case "machine":
      case "machine_start":
        return this.#onMachine(answeredBy);
      case "machine_end_beep":
      case "machine_end_silence":
      case "machine_end_other":
        this.#onMachine(answeredBy);
        this.#background(this.#leaveVoicemail(answeredBy), "voicemail message");
        return;
    }
  }

  /**
   * A machine answered: stop talking (what was heard is committed as on a barge-in), answer
   * nothing it says, and get the message ready so it plays without a wait.
   */
  #onMachine(answeredBy: AnsweredBy): void {
    if (this.#voicemail || this.#ending) return;
    this.#clearIdle();
    if (this.#utterance) this.#stop(this.#utterance, "answering machine");
    else if (this.#playback.speaking) this.#playback.interrupt();
    // A greeting nobody heard yet is not needed any more.
    if (!this.#greetingPlayed) this.#greeting?.controller.abort();
    const template = this.#deps.voicemailMessage;
    if (!template) {
      this.#voicemail = {};
      this.#log.info("answering machine; no voicemail message set, hanging up", {
        answered_by: answeredBy,
      });
      return this.#hangUpNow("voicemail_skipped");
    }
    const rendered = renderTemplate(template, this.#session.info.body);
    if (rendered.missing.length > 0) {
      this.#log.warn("placeholders missing from the custom data", {
        missing: rendered.missing,
        in: "VOICEMAIL_MESSAGE",
      });
    }
    const controller = new LinkedAbortController(this.#session.signal);
    const waitSeconds = this.#deps.voicemailWaitSeconds ?? DEFAULT_VOICEMAIL_WAIT_SECONDS;
    this.#voicemail = {
      message: {
        text: rendered.text,
        speech: this.#synthesiseAhead(
          this.#deps.speaker.speak(once(rendered.text), controller.signal),
        ),
        controller,
      },
      waitTimer: this.#after(waitSeconds * 1000, "voicemail wait", () => {
        this.#log.info("no end of the machine's greeting reported; leaving the message", {
          waited_seconds: waitSeconds,
        });
        this.#background(this.#leaveVoicemail("wait elapsed"), "voicemail message");
      }),
    };
    this.#log.info("answering machine; waiting for its greeting to end", {
      answered_by: answeredBy,
    });
  }

  /**
   * What the machine says goes into the transcript, but nothing answers it and nothing it plays
   * interrupts the message.
   */
  #heardMachine(decisions: TurnDecision[]): void {
    for (const decision of decisions) {
      if (decision.type === "turn_ended") this.conversation.addUser(decision.text);
    }
  }

  /** Plays the voicemail message once, then hangs up. */
  async #leaveVoicemail(cause: string): Promise<void> {
    const message = this.#voicemail?.message;
    if (!message || this.#ending || !this.#live) return;
    this.#ending = true;
    this.#voicemail!.waitTimer?.abort();
    this.#log.info("leaving the voicemail message", { cause });
    let reason: "voicemail_left" | "error" = "voicemail_left";
    try {
      const outcome = await this.#clock.deadline(
        this.#speak(message.speech, {
          trigger: "system",
          controller: message.controller,
          fixedText: message.text,
        }),
        VOICEMAIL_LIMIT_MS,
        { signal: this.#session.signal, what: "voicemail message" },
      );
      if (outcome === "failed") reason = "error";
    } catch (error) {
      if (error instanceof DeadlineError) {
        this.#log.warn("voicemail message did not play out in time; hanging up", {
          limit_ms: VOICEMAIL_LIMIT_MS,
        });
      }
    } finally {
      await this.#session.hangUp(reason);
    }
  }

  /** Ends the call now, without a goodbye (nobody to say it to). */
  #hangUpNow(reason: "fax" | "voicemail_skipped"): void {
    this.#ending = true;
    this.#clearIdle();
    if (this.#utterance) this.#stop(this.#utterance, reason);
    this.#background(this.#session.hangUp(reason), "hang-up");
  }

  // ---------------------------------------------------------------------------------------
  // Timers, background work and teardown

  #armIdle(): void {
    this.#clearIdle();
    // On a machine's line nobody is going to answer "Are you still there?".
    if (this.#ending || !this.#live || this.#voicemail) return;
    const timer = this.#after(this.#deps.idleTimeoutSeconds * 1000, "idle timer", () => {
      if (this.#idleTimer !== timer) return;
      this.#idleTimer = undefined;
      this.#onIdle();
    });
    this.#idleTimer = timer;
  }

  #onIdle(): void {
    if (this.#ending || !this.#live) return;
    // Someone is talking: look again later rather than never.
    if (this.#isBotActive() || this.#turns.calleeSpeaking) return this.#armIdle();
    // Nobody said hello: greet anyway before asking whether anyone is there.
    if (!this.#greetingPlayed) {
      return this.#background(this.#playGreeting(undefined), "greeting");
    }
    if (!this.#idlePrompted) {
      this.#idlePrompted = true;
      this.#log.info("callee idle; prompting");
      const controller = new LinkedAbortController(this.#session.signal);
      const prompt = this.#speak(
        this.#deps.speaker.speak(once(CANNED.stillThere), controller.signal),
        { trigger: "idle", controller, fixedText: CANNED.stillThere },
      );
      this.#background(prompt, "idle prompt");
    } else {
      this.#log.info("callee still idle; ending the call");
      this.#background(
        this.#sayAndHangUp(CANNED.idleGoodbye, "idle", "idle_timeout"),
        "idle goodbye",
      );
    }
  }

  #clearIdle(): void {
    this.#idleTimer?.abort();
    this.#idleTimer = undefined;
  }

  /**
   * Collects speech as it is synthesised, for a consumer that may start reading later and then
   * streams the rest. Synthesis stops if that consumer leaves early.
   */
  #synthesiseAhead(source: AsyncIterable<SpeechEvent>): AsyncQueue<SpeechEvent> {
    const events = new AsyncQueue<SpeechEvent>();
    const collect = async () => {
      try {
        for await (const event of source) if (!events.push(event)) return;
        events.close();
      } catch (error) {
        events.fail(error);
      }
    };
    this.#background(collect(), "speech synthesis ahead");
    return events;
  }

  /** Runs `fire` after `ms` on the call's clock unless the returned controller aborts first. */
  #after(ms: number, what: string, fire: () => void): AbortController {
    const timer = new AbortController();
    const elapsed = this.#clock.delay(ms, timer.signal).then(fire, (error) => {
      if (!timer.signal.aborted) throw error; // aborted means cleared
    });
    this.#background(elapsed, what);
    return timer;
  }

  /**
   * Runs work nobody awaits. A rejection there is a bug: it is logged with this call and ends
   * this call, and never reaches the process (where it would end every call).
   */
  #background(work: Promise<unknown>, what: string): void {
    work.catch((error) => this.#failed(error, what));
  }

  #failed(error: unknown, what: string): void {
    this.#log.error("voice agent task failed; ending the call", { task: what, error });
    this.#session.hangUp("error").catch((hangUpError) => {
      this.#log.error("hang-up after a failed task failed", { error: hangUpError });
    });
  }

  /** Releases everything of the agent, once; what the callee heard last is kept. */
  #release(): Promise<void> {
    this.#released ??= this.#teardown();
    return this.#released;
  }

  async #teardown(): Promise<void> {
    this.#clearIdle();
    this.#voicemail?.waitTimer?.abort();
    this.#maxTimer?.abort();
    this.#dtmf.close();
    // A reply cut off by the hang-up was partly heard; that is part of the call too.
    if (this.#utterance) this.#stop(this.#utterance, "call ended");
    this.metrics.underruns = this.#playback.stats.underruns;
    this.#playback.close();
    this.#deps.vad.close();
    // The callee's last words may still be held for their chunk.
    this.#sttFeed?.flush();
    const closing = Promise.allSettled([
      this.#stt?.close(),
      this.#deps.speaker.close(),
      this.#warmingLlm,
    ]);
    const closed = await this.#clock.deadline(closing, VENDOR_CLOSE_MS, {
      what: "STT and TTS close, LLM warm-up",
    }).then(() => true, () => false);
    if (!closed) {
      this.#log.warn("vendor sockets did not close in time", { limit_ms: VENDOR_CLOSE_MS });
    }
    this.metrics.usage.ttsCharacters = this.#deps.speaker.charactersSent;
    this.metrics.usage.sttAudioSeconds = this.#stt?.audioSeconds ?? 0;
    this.#report({
      type: "usage",
      at: Date.now(),
      llmPromptTokens: this.metrics.usage.llmPromptTokens,
      llmCompletionTokens: this.metrics.usage.llmCompletionTokens,
      ttsCharacters: this.metrics.usage.ttsCharacters,
      sttSeconds: this.metrics.usage.sttAudioSeconds,
    });
    this.#log.info("call summary", {
      ...this.metrics.summary(),
      // Underruns whose audio had not reached the playback yet (late from TTS or the LLM, or
      // unread behind a busy event loop); the rest were sends delayed by a busy loop.
      underruns_awaiting_audio: this.#playback.stats.underrunsAwaitingAudio,
      transcript_turns: this.conversation.transcript().length,
    });
  }
}

/** Phrases keep the spacing of the LLM's text; joined, they need tidying once. */
function normaliseSpaces(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/**
 * An `AbortController` that follows the call's signal until {@link unlink}: call it when the
 * work ends, so a finished reply leaves no listener on the call's signal for the rest of the call.
 */
class LinkedAbortController extends AbortController {
  readonly #parent: AbortSignal;
  readonly #onParentAbort = () => this.abort(this.#parent.reason);

  constructor(parent: AbortSignal) {
    super();
    this.#parent = parent;
    if (parent.aborted) this.abort(parent.reason);
    else parent.addEventListener("abort", this.#onParentAbort, { once: true });
  }

  /** Stops following the call's signal; idempotent. */
  unlink(): void {
    this.#parent.removeEventListener("abort", this.#onParentAbort);
  }
}

async function* once(text: string): AsyncGenerator<string> {
  yield text;
}

/** The words of `text` that fit in `fraction` of it (at a word boundary). */
function truncateToPlayed(text: string, fraction: number): string {
  if (!(fraction > 0)) return "";
  if (fraction >= 1) return text;
  const cut = Math.floor(text.length * fraction);
  const space = text.lastIndexOf(" ", cut);
  return space > 0 ? text.slice(0, space) : "";
}
