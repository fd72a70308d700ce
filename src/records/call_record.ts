/**
 * The call record: what is stored about one call and how {@link CallEvent}s change it.
 *
 * {@link applyEvent} is pure: the store reads the stored header, applies a batch of events and
 * writes the result back, so the same rules hold on every instance sharing one KV. Applying an
 * event twice, or progress callbacks out of order, never moves a call backwards: each timeline
 * moment is set once and the status only moves forward.
 *
 * @module
 */
import { MAX_ANALYSIS_BYTES } from "../analysis/analysis_spec.ts";
import { unansweredEndReason } from "../telnyx/callbacks.ts";
import type { CallEvent, EndReason, TurnLatency } from "./call_events.ts";

/** Where a call is, in the only order it moves. */
export const CALL_STATUSES = ["initiated", "ringing", "answered", "streaming", "ended"] as const;
export type CallStatus = typeof CALL_STATUSES[number];

/**
 * Longest call id the routes look up (`/calls/:id`, the console): Telnyx ids are far shorter and a
 * KV key holds at most 2 KiB, so a longer one names no call.
 */
export const MAX_CALL_ID_CHARS = 256;

/** Most entries kept per list on the record header (a KV value holds at most 64 KiB). */
const RECORD_LIMITS = {
  dtmf: 100,
  toolCalls: 20,
  toolArgumentChars: 1000,
  errors: 20,
  errorMessageChars: 500,
  dtmfDigits: 64,
} as const;

/** One turn of the transcript, as stored (one KV key per turn). */
export interface StoredTurn {
  role: "user" | "assistant";
  /** For the assistant, the words the callee heard. */
  text: string;
  /** Milliseconds since the voice agent started on the stream. */
  offset_ms: number;
  interrupted?: boolean;
  latency?: TurnLatency;
  /** Epoch ms. */
  at: number;
}

/** Vendor usage of the call. */
export interface StoredUsage {
  llm_prompt_tokens: number;
  llm_completion_tokens: number;
  tts_characters: number;
  stt_seconds: number;
}

/** The record header: everything but the transcript and the custom data (own keys). */
export interface StoredCall {
  id: string;
  to: string | null;
  from: string | null;
  /** Epoch ms of the first thing known about the call (normally `/start`). */
  created_at: number;
  status: CallStatus;
  /** Epoch ms of each status reached. */
  timeline: Partial<Record<CallStatus, number>>;
  /** True while `timeline.answered` is the stream's start, standing in for Telnyx's figure. */
  answered_inferred?: boolean;
  answered_by: string | null;
  end_reason: EndReason | null;
  /** Where `end_reason` came from: the live call (or the API) knows better than a callback. */
  end_reason_source: "call" | "progress" | null;
  /** Telnyx's `CallDuration` when it reported one. */
  reported_duration_seconds: number | null;
  hangup_cause: string | null;
  hangup_source: string | null;
  /** Highest Telnyx `SequenceNumber` applied. */
  progress_sequence: number | null;
  /** True with ENV=production: the transcript lives with the Pipecat Cloud agent. */
  remote_conversation: boolean;
  turn_count: number;
  dtmf: { at: number; digits: string }[];
  tool_calls: { at: number; name: string; arguments: string }[];
  errors: { at: number; source: string; message: string }[];
  /** Entries left off the lists above once they were full. */
  dropped: { dtmf: number; tool_calls: number; errors: number };
  usage: StoredUsage | null;
  /** Post-call analysis, filled by the analysis step. */
  analysis: unknown;
  /** What `/start` asked for, kept for the analysis and webhook steps. */
  analysis_request: { schema: Record<string, unknown>; instructions?: string } | null;
  webhook_url: string | null;
}

/** A record's line in `GET /calls` (the index value). */
export interface CallSummary {
  id: string;
  to: string | null;
  from: string | null;
  status: CallStatus;
  created_at: string;
  ended_at: string | null;
  answered_by: string | null;
  end_reason: EndReason | null;
  duration_seconds: number | null;
}

/** What `GET /calls/:id` answers (and what call-event listeners get, without transcript). */
export interface CallRecordView extends Omit<CallSummary, "created_at" | "ended_at"> {
  created_at: string;
  timeline: Partial<Record<CallStatus, string>>;
  custom_data: Record<string, unknown> | null;
  hangup_cause: string | null;
  hangup_source: string | null;
  /** Null when the conversation ran elsewhere (see `transcript_location`) or was not read. */
  transcript: TranscriptTurn[] | null;
  transcript_location: "local" | "pipecat_cloud";
  dtmf: { at: string; digits: string }[];
  tool_calls: { at: string; name: string; arguments: string }[];
  errors: { at: string; source: string; message: string }[];
  dropped: StoredCall["dropped"];
  usage: StoredUsage | null;
  analysis: unknown;
  webhook_deliveries: unknown[];
}

/** A transcript turn in the API. */
export interface TranscriptTurn {
  role: "user" | "assistant";
  text: string;
  offset_ms: number;
  interrupted: boolean;
  latency: TurnLatency | null;
  at: string;
}

const STATUS_RANK: Record<CallStatus, number> = {
  initiated: 0,
  ringing: 1,
  answered: 2,
  streaming: 3,
  ended: 4,
};

/** A fresh header for a call first heard of at `at`. */
export function newStoredCall(id: string, at: number): StoredCall {
  return {
    id,
    to: null,
    from: null,
    created_at: at,
    status: "initiated",
    timeline: {},
    answered_by: null,
    end_reason: null,
    end_reason_source: null,
    reported_duration_seconds: null,
    hangup_cause: null,
    hangup_source: null,
    progress_sequence: null,
    remote_conversation: false,
    turn_count: 0,
    dtmf: [],
    tool_calls: [],
    errors: [],
    dropped: { dtmf: 0, tool_calls: 0, errors: 0 },
    usage: null,
    analysis: null,
    analysis_request: null,
    webhook_url: null,
  };
}

/**
 * A copy of `call` that {@link applyEvent} may change without touching the original: the parts
 * it changes in place are copied; list items and replaced values are shared.
 */
export function copyStoredCall(call: StoredCall): StoredCall {
  return {
    ...call,
    timeline: { ...call.timeline },
    dtmf: [...call.dtmf],
    tool_calls: [...call.tool_calls],
    errors: [...call.errors],
    dropped: { ...call.dropped },
  };
}

/** What applying one event changed besides the header. */
export interface AppliedEvent {
  /** The turn to store under index `header.turn_count - 1`, for a `turn` event. */
  turn?: StoredTurn;
  /** The custom data to store, for a `placed` event. */
  customData?: Record<string, unknown>;
}

/** Moves the status forward to `status` at `at`; never back, and each moment is kept once. */
function reach(call: StoredCall, status: CallStatus, at: number): void {
  call.timeline[status] ??= at;
  if (STATUS_RANK[status] > STATUS_RANK[call.status]) call.status = status;
}

/** End reasons the API's hang-up overrides: they are what the hang-up it asked for looks like. */
const OVERRIDDEN_BY_API_HANGUP: ReadonlySet<EndReason | null> = new Set([
  null,
  "callee_hung_up",
  "media_error",
  "canceled",
]);

function setEndReason(call: StoredCall, reason: EndReason, source: "call" | "progress"): void {
  if (source === "progress") {
    // A callback only says how the line ended; the live call knows why.
    if (call.end_reason === null) {
      call.end_reason = reason;
      call.end_reason_source = "progress";
    }
    return;
  }
  const replace = call.end_reason_source !== "call" ||
    (reason === "api_hangup" && OVERRIDDEN_BY_API_HANGUP.has(call.end_reason));
  if (replace) {
    call.end_reason = reason;
    call.end_reason_source = "call";
  }
}

/** The end reason a final progress status implies. */
function progressEndReason(call: StoredCall, status: CallEvent & { type: "progress" }): EndReason {
  const unanswered = unansweredEndReason(status.status);
  if (unanswered) return unanswered;
  return call.timeline.answered !== undefined || call.timeline.streaming !== undefined
    ? "callee_hung_up"
    : "canceled";
}

function clip(text: string, chars: number): string {
  return text.length <= chars ? text : `${text.slice(0, chars - 1)}…`;
}

function pushBounded<T>(
  list: T[],
  item: T,
  limit: number,
  call: StoredCall,
  kind: keyof StoredCall["dropped"],
) {
  if (list.length < limit) list.push(item);
  else call.dropped[kind]++;
}

/** Applies one event to `call` in place. */
export function applyEvent(call: StoredCall, event: CallEvent): AppliedEvent {
  switch (event.type) {
    case "placed":
      call.to = event.to;
      call.from = event.from;
      call.created_at = Math.min(call.created_at, event.at);
      call.remote_conversation = event.remoteConversation;
      call.analysis_request = event.analysis ?? null;
      call.webhook_url = event.webhookUrl ?? null;
      reach(call, "initiated", event.at);
      return { customData: event.body };
    case "progress": {
      if (call.progress_sequence === null || event.sequence > call.progress_sequence) {
        call.progress_sequence = event.sequence;
      }
      if (event.durationSeconds !== undefined) {
        call.reported_duration_seconds = event.durationSeconds;
      }
      if (event.hangupCause !== undefined) call.hangup_cause = event.hangupCause;
      if (event.hangupSource !== undefined) call.hangup_source = event.hangupSource;
      switch (event.status) {
        case "initiated":
          reach(call, "initiated", event.at);
          break;
        case "ringing":
          reach(call, "ringing", event.at);
          break;
        case "in-progress":
          if (call.answered_inferred) {
            call.timeline.answered = event.at;
            call.answered_inferred = false;
          }
          reach(call, "answered", event.at);
          break;
        default:
          setEndReason(call, progressEndReason(call, event), "progress");
          reach(call, "ended", event.at);
      }
      return {};
    }
    case "answered_by":
      call.answered_by = event.answeredBy;
      return {};
    case "streaming":
      // The stream starts only on an answered call; until a progress callback says when it was
      // answered, this is the best figure.
      if (call.timeline.answered === undefined) {
        call.answered_inferred = true;
        reach(call, "answered", event.at);
      }
      reach(call, "streaming", event.at);
      return {};
    case "turn": {
      call.turn_count++;
      const turn: StoredTurn = {
        role: event.role,
        text: event.text,
        offset_ms: Math.round(event.offsetMs),
        at: event.at,
      };
      if (event.interrupted) turn.interrupted = true;
      if (event.latency) turn.latency = roundLatency(event.latency);
      return { turn };
    }
    case "dtmf":
      pushBounded(
        call.dtmf,
        { at: event.at, digits: clip(event.digits, RECORD_LIMITS.dtmfDigits) },
        RECORD_LIMITS.dtmf,
        call,
        "dtmf",
      );
      return {};
    case "tool_call":
      pushBounded(
        call.tool_calls,
        {
          at: event.at,
          name: clip(event.name, 100),
          arguments: clip(event.arguments, RECORD_LIMITS.toolArgumentChars),
        },
        RECORD_LIMITS.toolCalls,
        call,
        "tool_calls",
      );
      return {};
    case "error":
      pushBounded(
        call.errors,
        {
          at: event.at,
          source: event.source,
          message: clip(event.message, RECORD_LIMITS.errorMessageChars),
        },
        RECORD_LIMITS.errors,
        call,
        "errors",
      );
      return {};
    case "usage":
      call.usage = {
        llm_prompt_tokens: event.llmPromptTokens,
        llm_completion_tokens: event.llmCompletionTokens,
        tts_characters: event.ttsCharacters,
        stt_seconds: Math.round(event.sttSeconds * 10) / 10,
      };
      return {};
    case "ended":
      setEndReason(call, event.reason, "call");
      reach(call, "ended", event.at);
      return {};
  }
}

function roundLatency(latency: TurnLatency): TurnLatency {
  return Object.fromEntries(
    Object.entries(latency).filter(([, v]) => typeof v === "number").map((
      [k, v],
    ) => [k, Math.round(v as number)]),
  );
}

/** Call length in seconds: Telnyx's figure when it gave one, else answered → ended. */
export function durationSeconds(call: StoredCall): number | null {
  if (call.reported_duration_seconds !== null) return call.reported_duration_seconds;
  const start = call.timeline.answered ?? call.timeline.streaming;
  const end = call.timeline.ended;
  if (start === undefined || end === undefined) return null;
  return Math.max(0, Math.round((end - start) / 100) / 10);
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The index line of a call. */
export function summarise(call: StoredCall): CallSummary {
  return {
    id: call.id,
    to: call.to,
    from: call.from,
    status: call.status,
    created_at: iso(call.created_at),
    ended_at: call.timeline.ended !== undefined ? iso(call.timeline.ended) : null,
    answered_by: call.answered_by,
    end_reason: call.end_reason,
    duration_seconds: durationSeconds(call),
  };
}

/**
 * An upper bound of the header's stored size, without serialising it: a fixed part and the
 * bounded lists at their longest text (three bytes a character).
 */
export function headerBytesBound(call: StoredCall): number {
  return 4096 + (call.analysis_request ? MAX_ANALYSIS_BYTES : 0) +
    3 * (call.webhook_url?.length ?? 0) +
    call.dtmf.length * (64 + 3 * RECORD_LIMITS.dtmfDigits) +
    call.tool_calls.length * (64 + 3 * (100 + RECORD_LIMITS.toolArgumentChars)) +
    call.errors.length * (64 + 3 * (100 + RECORD_LIMITS.errorMessageChars));
}

/** True when `a` and `b` have the same index line ({@link summarise} reads only these). */
export function sameSummary(a: StoredCall, b: StoredCall): boolean {
  return a.id === b.id && a.to === b.to && a.from === b.from && a.status === b.status &&
    a.created_at === b.created_at && a.timeline.ended === b.timeline.ended &&
    a.answered_by === b.answered_by && a.end_reason === b.end_reason &&
    durationSeconds(a) === durationSeconds(b);
}

/** The API view of a record. */
export function viewOf(
  call: StoredCall,
  parts: {
    customData: Record<string, unknown> | null;
    turns: StoredTurn[] | null;
    webhookDeliveries?: unknown[];
  },
): CallRecordView {
  const summary = summarise(call);
  return {
    id: summary.id,
    to: summary.to,
    from: summary.from,
    status: summary.status,
    created_at: summary.created_at,
    answered_by: summary.answered_by,
    end_reason: summary.end_reason,
    duration_seconds: summary.duration_seconds,
    timeline: Object.fromEntries(
      Object.entries(call.timeline).map(([status, at]) => [status, iso(at)]),
    ),
    custom_data: parts.customData,
    hangup_cause: call.hangup_cause,
    hangup_source: call.hangup_source,
    transcript: call.remote_conversation || parts.turns === null ? null : parts.turns.map((t) => ({
      role: t.role,
      text: t.text,
      offset_ms: t.offset_ms,
      interrupted: t.interrupted === true,
      latency: t.latency ?? null,
      at: iso(t.at),
    })),
    transcript_location: call.remote_conversation ? "pipecat_cloud" : "local",
    dtmf: call.dtmf.map((d) => ({ at: iso(d.at), digits: d.digits })),
    tool_calls: call.tool_calls.map((t) => ({ ...t, at: iso(t.at) })),
    errors: call.errors.map((e) => ({ ...e, at: iso(e.at) })),
    dropped: call.dropped,
    usage: call.usage,
    analysis: call.analysis,
    webhook_deliveries: parts.webhookDeliveries ?? [],
  };
}
