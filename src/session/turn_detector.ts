/**
 * Turn policy: decides from local VAD events and STT transcripts when the callee starts
 * speaking and when their turn is over. Pure logic, no I/O, so the policy can be read and
 * tested on its own.
 *
 * Nova: the turn ends when the VAD says silence AND Deepgram has a final transcript that ends
 * the utterance (`speech_final` or `UtteranceEnd`). Either alone is not enough: the VAD's
 * silence can be a breath mid-sentence, and Deepgram's endpointing fires on its own schedule.
 * A final transcript that ends the utterance while the VAD's hang-over still runs is an eager
 * end of turn: the answer can start while the VAD makes sure; new words take it back.
 * Flux: Deepgram's own end-of-turn model replaces the endpointing; `EagerEndOfTurn` lets the
 * bot start thinking early, `TurnResumed` takes that back.
 *
 * @module
 */
import type { VadEvent } from "../audio/vad.ts";
import type { SttEngine, TranscriptEvent } from "../services/stt.ts";

/** What the policy concluded. */
export type TurnDecision =
  /** Speech onset in the callee's audio: barge-in if the bot is talking. */
  | { type: "callee_started" }
  /**
   * The callee's turn is over. `speechEndedAt` is when their voice stopped (VAD offset, wall
   * clock), if known; `finalAt` is when the turn was decided.
   */
  | { type: "turn_ended"; text: string; speechEndedAt: number | undefined; finalAt: number }
  /**
   * The turn is probably over with `text` (Flux's eager end of turn; Nova's final transcript
   * before the VAD's silence): a speculative answer may start, held until `turn_ended`.
   */
  | { type: "eager_turn"; text: string }
  /** The callee went on talking (new words) after an eager end of turn. */
  | { type: "turn_resumed" };

/**
 * Most characters of final transcript held for a turn that has not ended. A VAD that never hears
 * silence (a noisy line) would otherwise let a turn's text grow for the whole call; the newest
 * words are what an answer needs.
 */
export const MAX_PENDING_TURN_CHARS = 2000;

/**
 * How long after the callee's voice stopped (by the VAD's reckoning, some hundreds of ms before
 * it says so) a turn with no words yet still awaits STT: Deepgram's first transcript of a short
 * word comes with its endpointing, UtteranceEnd a second after the last word. A cough that never
 * becomes words stops counting as a turn after this. A reconnected STT starts the wait again.
 */
export const WORDLESS_TURN_MS = 2000;

/** Tracks one call's turns. */
export class TurnDetector {
  #pending: string[] = [];
  #pendingChars = 0;
  #sttDone = false;
  #vadSpeaking = false;
  #speechEndedAt: number | undefined;
  /** Nova: the text the last `eager_turn` announced, until the turn ends or the callee goes on. */
  #eagerText: string | undefined;
  /**
   * STT heard words that nothing has settled yet: Nova's interims until their final, Flux's turn
   * until its end. (Nova's finals of an unended turn are in `#pending`.)
   */
  #unsettledWords = false;
  /** When the VAD last heard the callee's voice stop, until STT ends that turn. */
  #voiceEndedAt: number | undefined;

  constructor(private readonly engine: SttEngine, private readonly now: () => number) {}

  /** True while the VAD hears the callee. */
  get calleeSpeaking(): boolean {
    return this.#vadSpeaking;
  }

  /**
   * True from the VAD's speech onset or STT's first words of a turn until the turn ends (or STT
   * closes the utterance without words, or {@link WORDLESS_TURN_MS} after a voice that never
   * became words): STT's verdict on the callee's audio is awaited.
   */
  get turnUnderway(): boolean {
    if (this.#vadSpeaking || this.#unsettledWords || this.#pending.length > 0) return true;
    return this.#voiceEndedAt !== undefined && this.now() - this.#voiceEndedAt < WORDLESS_TURN_MS;
  }

  /** Feeds one VAD event. */
  onVad(event: VadEvent): TurnDecision[] {
    if (event.type === "speech_start") {
      this.#vadSpeaking = true;
      this.#speechEndedAt = undefined;
      // Talking again: an earlier end-of-utterance from STT no longer ends the turn, and an
      // eager end of turn is taken back (the speech onset itself stops what it started).
      this.#sttDone = false;
      this.#eagerText = undefined;
      return [{ type: "callee_started" }];
    }
    this.#vadSpeaking = false;
    // The VAD decides `endMs` after the voice stopped; the callee stopped talking back then.
    this.#speechEndedAt = this.now() - Math.max(0, event.atMs - event.offsetMs);
    this.#voiceEndedAt = this.#speechEndedAt;
    return this.#maybeEnd();
  }

  /** Feeds one transcript event. */
  onTranscript(event: TranscriptEvent): TurnDecision[] {
    const now = this.now();
    if (bringsWords(event)) this.#unsettledWords = true;
    // Audio the outage held back is transcribed now: a wordless turn's wait starts again.
    if (event.type === "reconnected" && this.#voiceEndedAt !== undefined) this.#voiceEndedAt = now;
    if (this.engine === "flux") {
      switch (event.type) {
        case "eager_end_of_turn":
          return event.text.trim() ? [{ type: "eager_turn", text: event.text.trim() }] : [];
        case "turn_resumed":
          return [{ type: "turn_resumed" }];
        case "end_of_turn": {
          this.#unsettledWords = false;
          this.#voiceEndedAt = undefined;
          const text = event.text.trim();
          if (!text) return [];
          return [{ type: "turn_ended", text, speechEndedAt: this.#speechEndedAt, finalAt: now }];
        }
        default:
          return [];
      }
    }
    switch (event.type) {
      case "interim":
        return event.text.trim() ? this.#resumed() : [];
      case "final": {
        this.#unsettledWords = false;
        const text = event.text.trim();
        const resumed = text ? this.#resumed() : [];
        if (text) this.#hold(text);
        if (event.speechFinal || event.fromFinalize) {
          this.#sttDone = true;
          // An utterance that ended with no words (a cough Deepgram guessed at) awaits nothing.
          if (this.#pending.length === 0) this.#voiceEndedAt = undefined;
        }
        return [...resumed, ...this.#maybeEnd()];
      }
      case "utterance_end":
        this.#unsettledWords = false;
        if (this.#pending.length === 0) {
          this.#voiceEndedAt = undefined;
          return [];
        }
        this.#sttDone = true;
        return this.#maybeEnd();
      default:
        return [];
    }
  }

  /** New words after an eager end of turn take it back. */
  #resumed(): TurnDecision[] {
    if (this.#eagerText === undefined) return [];
    this.#eagerText = undefined;
    return [{ type: "turn_resumed" }];
  }

  #maybeEnd(): TurnDecision[] {
    if (!this.#sttDone || this.#pending.length === 0) return [];
    if (this.#vadSpeaking) {
      // Deepgram heard the utterance end, the VAD's hang-over has not: say so once.
      const text = this.#pending.join(" ");
      if (this.#eagerText === text) return [];
      this.#eagerText = text;
      return [{ type: "eager_turn", text }];
    }
    this.#eagerText = undefined;
    const decision: TurnDecision = {
      type: "turn_ended",
      text: this.#pending.join(" "),
      speechEndedAt: this.#speechEndedAt,
      finalAt: this.now(),
    };
    this.#pending = [];
    this.#pendingChars = 0;
    this.#sttDone = false;
    // Words after the final that ended it (`#unsettledWords`) are the next turn's.
    this.#voiceEndedAt = undefined;
    return [decision];
  }

  #hold(text: string): void {
    this.#pending.push(text);
    this.#pendingChars += text.length + 1;
    while (this.#pendingChars > MAX_PENDING_TURN_CHARS && this.#pending.length > 1) {
      this.#pendingChars -= this.#pending.shift()!.length + 1;
    }
  }
}

/** Whether `event` brings words a later event settles (or, Flux, says a turn began). */
function bringsWords(event: TranscriptEvent): boolean {
  switch (event.type) {
    case "interim":
    case "eager_end_of_turn":
      return event.text.trim() !== "";
    case "start_of_turn":
      return true;
    default:
      return false;
  }
}
