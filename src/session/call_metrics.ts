/**
 * Per-turn latency and per-call usage: what a voice bot is judged by, in numbers.
 *
 * All times are milliseconds on one monotonic clock (`performance.now()`).
 *
 * @module
 */

/** Timings of one bot turn; undefined where a stage did not happen (e.g. a canned line). */
export interface TurnMetrics {
  turn: number;
  trigger: "callee" | "dtmf" | "greeting" | "idle" | "system";
  /** Callee's speech ended (local VAD) → STT's final transcript. */
  sttFinalizationMs?: number;
  /** Request sent → first token. */
  llmTtftMs?: number;
  /** LLM's first token → first phrase handed to TTS: the wait for something speakable. */
  firstTokenToTtsMs?: number;
  /** First phrase sent to TTS → first audio byte. */
  ttsTtfbMs?: number;
  /** Turn decided (final transcript + silence) → first outbound frame, vendor waits included. */
  replyMs?: number;
  /**
   * The time that is ours: {@link replyMs} minus the LLM and TTS waits; for a reply started
   * before the turn was decided, the first frame minus the later of the turn decision and the
   * first audio.
   */
  overheadMs?: number;
  /** The reply was started before the turn was decided (and used). */
  speculative?: boolean;
  /** Callee's speech ended → first frame of the answer sent to Telnyx. */
  voiceToVoiceMs?: number;
  interrupted?: boolean;
}

/** Vendor usage of one call. */
export interface CallUsage {
  llmPromptTokens: number;
  llmCompletionTokens: number;
  ttsCharacters: number;
  sttAudioSeconds: number;
}

/**
 * Turns kept for the call-end percentiles. A call's turns are counted in full, but only the most
 * recent are kept, so a call that runs for hours does not grow without bound.
 */
export const MAX_KEPT_TURNS = 500;

/** Collects a call's turns and usage. */
export class CallMetrics {
  /** The most recent {@link MAX_KEPT_TURNS} turns, oldest first. */
  readonly turns: TurnMetrics[] = [];
  /** Every turn recorded, including those no longer kept. */
  turnCount = 0;
  readonly usage: CallUsage = {
    llmPromptTokens: 0,
    llmCompletionTokens: 0,
    ttsCharacters: 0,
    sttAudioSeconds: 0,
  };
  bargeIns = 0;
  /** Gaps inside bot utterances (playback ran dry mid-sentence). */
  underruns = 0;
  /** Replies started before the turn was decided. */
  speculativeStarted = 0;
  /** Of those, the ones dropped (the callee went on, or said something else) and re-asked. */
  speculativeWasted = 0;

  /** Records a finished turn and returns it, rounded for logging. */
  record(turn: TurnMetrics): TurnMetrics {
    const rounded = Object.fromEntries(
      Object.entries(turn).map(([k, v]) => [k, typeof v === "number" ? round(v) : v]),
    ) as unknown as TurnMetrics;
    this.turns.push(rounded);
    this.turnCount++;
    if (this.turns.length > MAX_KEPT_TURNS) this.turns.shift();
    return rounded;
  }

  /** One object for the call-end log line. */
  summary(): Record<string, unknown> {
    const answered = this.turns.filter((t) => t.voiceToVoiceMs !== undefined);
    return {
      turns: this.turnCount,
      barge_ins: this.bargeIns,
      underruns: this.underruns,
      speculative_replies: this.speculativeStarted,
      speculative_replies_wasted: this.speculativeWasted,
      voice_to_voice_ms_p50: percentile(answered.map((t) => t.voiceToVoiceMs!), 50),
      voice_to_voice_ms_max: percentile(answered.map((t) => t.voiceToVoiceMs!), 100),
      overhead_ms_max: percentile(
        this.turns.flatMap((t) => (t.overheadMs === undefined ? [] : [t.overheadMs])),
        100,
      ),
      llm_prompt_tokens: this.usage.llmPromptTokens,
      llm_completion_tokens: this.usage.llmCompletionTokens,
      tts_characters: this.usage.ttsCharacters,
      stt_audio_seconds: round(this.usage.sttAudioSeconds),
    };
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

/** Nearest-rank percentile; undefined for no samples. */
export function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}
