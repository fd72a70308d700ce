/**
 * What happens to a call, as facts the rest of the service reports and the call record is built
 * from: `/start` placed it, Telnyx reported progress or an answering machine, the media stream
 * started, the callee and the bot said something, the call ended and why.
 *
 * Producers (routes, the session, the voice agent) call {@link CallEventSink.record} and never
 * wait: the sink batches writes off the audio path, and a storage failure never reaches a call.
 *
 * @module
 */
import { z } from "zod";

/** Why a call ended: one documented list for records, webhooks and the API. */
export const END_REASONS = [
  "callee_hung_up", // the callee hung up (Telnyx `stop`, or a progress callback after answer)
  "bot_ended", // the LLM called end_call and the goodbye played
  "max_duration", // MAX_CALL_SECONDS reached
  "idle_timeout", // the callee stayed silent after "Are you still there?"
  "voicemail_left", // an answering machine answered and the voicemail message was played
  "voicemail_skipped", // an answering machine answered and no message is configured
  "fax", // a fax machine answered
  "no_answer", // it rang out
  "busy", // the line was busy
  "failed", // Telnyx could not place or connect it
  "canceled", // hung up before it was answered (e.g. through the API)
  "api_hangup", // ended through POST /calls/:id/hangup
  "vendor_error", // STT, LLM or TTS failed and the bot apologised
  "media_error", // the media socket failed or closed without `stop`
  "internal_error", // a bug in this service ended the call (see the logs)
  "shutdown", // the server was stopping
] as const;
/** One of {@link END_REASONS}. */
export type EndReason = typeof END_REASONS[number];

/** Every spelling Telnyx documents for `AnsweredBy` (AMD callbacks and the SDK types differ). */
export const ANSWERED_BY = [
  "human",
  "machine",
  "machine_start",
  "machine_end_beep",
  "machine_end_silence",
  "machine_end_other",
  "fax",
  "unknown",
  "not_sure",
] as const;
export type AnsweredBy = typeof ANSWERED_BY[number];
export const AnsweredBySchema = z.enum(ANSWERED_BY);

/** Telnyx's `CallStatus` values on progress callbacks. */
export const CALL_PROGRESS = [
  "initiated",
  "ringing",
  "in-progress",
  "completed",
  "no-answer",
  "busy",
  "failed",
  "canceled",
] as const;
export type CallProgress = typeof CALL_PROGRESS[number];

/** Per-turn latency of a bot reply (milliseconds), as the voice agent measures it. */
export interface TurnLatency {
  sttFinalizationMs?: number;
  llmTtftMs?: number;
  ttsTtfbMs?: number;
  voiceToVoiceMs?: number;
}

/** One fact about a call. `at` is epoch milliseconds when it happened. */
export type CallEvent =
  | {
    type: "placed";
    at: number;
    to: string;
    from: string;
    body: Record<string, unknown>;
    /** Per-call post-call analysis request from `/start`, if any. */
    analysis?: { schema: Record<string, unknown>; instructions?: string };
    /** Per-call webhook target from `/start`, if any. */
    webhookUrl?: string;
    /** True with ENV=production: the conversation (and its transcript) runs on Pipecat Cloud. */
    remoteConversation: boolean;
  }
  | {
    type: "progress";
    at: number;
    status: CallProgress;
    /** Telnyx's `SequenceNumber`: callbacks repeat and arrive out of order. */
    sequence: number;
    durationSeconds?: number;
    hangupCause?: string;
    hangupSource?: string;
  }
  | { type: "answered_by"; at: number; answeredBy: AnsweredBy }
  | { type: "streaming"; at: number }
  | {
    type: "turn";
    at: number;
    role: "user" | "assistant";
    /** For the assistant, the words the callee heard. */
    text: string;
    /** Milliseconds since the stream started. */
    offsetMs: number;
    interrupted?: boolean;
    latency?: TurnLatency;
  }
  | { type: "dtmf"; at: number; digits: string }
  | { type: "tool_call"; at: number; name: string; arguments: string }
  | {
    type: "error";
    at: number;
    source: "stt" | "llm" | "tts" | "telnyx" | "media";
    message: string;
  }
  | {
    type: "usage";
    at: number;
    llmPromptTokens: number;
    llmCompletionTokens: number;
    ttsCharacters: number;
    sttSeconds: number;
  }
  | { type: "ended"; at: number; reason: EndReason };

/** Where facts about calls go. Never blocks and never throws into the caller. */
export interface CallEventSink {
  /** `callId` is the id `/start` returned (Telnyx's call_sid = call_control_id). */
  record(callId: string, event: CallEvent): void;
}

/** A sink that drops everything (records disabled, and unit tests that do not look). */
export const discardCallEvents: CallEventSink = { record() {} };
