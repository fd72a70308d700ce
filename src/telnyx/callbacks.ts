/**
 * The form-encoded callbacks Telnyx posts about a TeXML call we placed: call progress
 * (`StatusCallback`) and the answering-machine result (`AsyncAmdStatusCallback`).
 *
 * Only the fields this service uses are read; every other field is ignored, and a field that is
 * present but malformed is treated as absent, except the call id, without which a callback says
 * nothing.
 *
 * @module
 */
import { z } from "zod";
import {
  ANSWERED_BY,
  type AnsweredBy,
  CALL_PROGRESS,
  type CallProgress,
} from "../records/call_events.ts";

/** Telnyx's CallSid (= call_control_id): printable ASCII of a sane length, as `/answer` takes it. */
const CallSidSchema = z.string().regex(/^[\x21-\x7e]{1,256}$/);

/** A short free-text field from Telnyx (causes, sources), kept only when it is plausible. */
const shortText = z.string().regex(/^[\x20-\x7e]{1,64}$/).optional().catch(undefined);

/** A non-negative integer sent as text. */
const count = z.string().regex(/^\d{1,9}$/).transform(Number).optional().catch(undefined);

/**
 * Rank of each status in a call's life, standing in for a missing `SequenceNumber` so that a
 * later status still sorts after an earlier one.
 */
const PROGRESS_RANK: Record<CallProgress, number> = {
  initiated: 0,
  ringing: 1,
  "in-progress": 2,
  completed: 3,
  "no-answer": 3,
  busy: 3,
  failed: 3,
  canceled: 3,
};

/** A progress callback, as used. `status` is undefined for a status this service does not know. */
export interface ProgressCallback {
  callSid: string;
  status: CallProgress | undefined;
  /** The raw `CallStatus`, for the log when it is not one we know. */
  rawStatus: string | undefined;
  /** Telnyx's `SequenceNumber`, or the status's rank in a call's life when it is missing. */
  sequence: number;
  durationSeconds?: number;
  hangupCause?: string;
  hangupSource?: string;
}

const ProgressFormSchema = z.object({
  CallSid: CallSidSchema,
  CallStatus: z.string().max(64).optional().catch(undefined),
  SequenceNumber: count,
  CallDuration: count,
  HangupCause: shortText,
  HangupSource: shortText,
});

/** An answering-machine callback, as used. */
export interface AmdCallback {
  callSid: string;
  /** One of Telnyx's spellings; anything else reads as `unknown` (see {@link rawAnsweredBy}). */
  answeredBy: AnsweredBy;
  /** Set when Telnyx sent a value this service does not know (logged, then treated as unknown). */
  rawAnsweredBy?: string;
}

const AmdFormSchema = z.object({
  CallSid: CallSidSchema,
  AnsweredBy: z.string().max(64).optional().catch(undefined),
});

/** Why a callback could not be read. */
export class CallbackFormError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CallbackFormError";
  }
}

function formFields(rawBody: string): Record<string, string> {
  // A repeated field keeps its first value: Telnyx sends each once.
  const fields: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(rawBody)) fields[name] ??= value;
  return fields;
}

function callSidProblem(): CallbackFormError {
  return new CallbackFormError(
    "CallSid is missing or malformed: a Telnyx callback names its call in the CallSid form field.",
  );
}

/** Reads a progress callback's form body. Throws {@link CallbackFormError} without a CallSid. */
export function parseProgressCallback(rawBody: string): ProgressCallback {
  const parsed = ProgressFormSchema.safeParse(formFields(rawBody));
  if (!parsed.success) throw callSidProblem();
  const form = parsed.data;
  const status = (CALL_PROGRESS as readonly string[]).includes(form.CallStatus ?? "")
    ? form.CallStatus as CallProgress
    : undefined;
  return {
    callSid: form.CallSid,
    status,
    rawStatus: form.CallStatus,
    sequence: form.SequenceNumber ?? (status ? PROGRESS_RANK[status] : 0),
    durationSeconds: form.CallDuration,
    hangupCause: form.HangupCause,
    hangupSource: form.HangupSource,
  };
}

/** Reads an answering-machine callback's form body. Throws {@link CallbackFormError} without a CallSid. */
export function parseAmdCallback(rawBody: string): AmdCallback {
  const parsed = AmdFormSchema.safeParse(formFields(rawBody));
  if (!parsed.success) throw callSidProblem();
  const raw = parsed.data.AnsweredBy?.trim().toLowerCase();
  if (raw && (ANSWERED_BY as readonly string[]).includes(raw)) {
    return { callSid: parsed.data.CallSid, answeredBy: raw as AnsweredBy };
  }
  return {
    callSid: parsed.data.CallSid,
    answeredBy: "unknown",
    rawAnsweredBy: parsed.data.AnsweredBy ?? "",
  };
}

/** The end reason of a call that was never answered, by its final status. */
export function unansweredEndReason(
  status: CallProgress,
): "no_answer" | "busy" | "failed" | "canceled" | undefined {
  switch (status) {
    case "no-answer":
      return "no_answer";
    case "busy":
      return "busy";
    case "failed":
      return "failed";
    case "canceled":
      return "canceled";
    default:
      return undefined;
  }
}
