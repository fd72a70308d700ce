/**
 * Frames on the Telnyx bidirectional media WebSocket (`bidirectionalMode="rtp"`, JSON text
 * frames: connected, start, media, dtmf, mark, error, stop): zod schemas for what Telnyx sends
 * us, builders for what we send back, and schemas for the latter so tests and the fake Telnyx
 * client can check our output.
 *
 * Inbound parsing is lenient where the real wire is known to vary (numbers vs strings, two
 * spellings of the encoding, optional fields, extra fields) and strict only about what the app
 * cannot work without. Every inbound field is bounded by what Telnyx actually sends, so one socket
 * cannot make the server hold (or forward to the LLM) megabytes per frame.
 *
 * @module
 */

import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// Size limits of inbound frames

/**
 * Most audio one inbound `media` frame may carry: 500 ms of 8 kHz G.711. Telnyx sends 20 ms
 * (160 bytes) per frame; the margin is for senders that bundle a few frames.
 */
export const MAX_INBOUND_MEDIA_BYTES = 4_000;

/** {@link MAX_INBOUND_MEDIA_BYTES} as base64 characters (padded). */
export const MAX_INBOUND_MEDIA_PAYLOAD_CHARS = Math.ceil(MAX_INBOUND_MEDIA_BYTES / 3) * 4;

/** Longest `mark` name accepted back; ours are short ids such as `playback-end-4`. */
export const MAX_MARK_NAME_CHARS = 128;

/** Longest stream, call, session or user id (Telnyx's are UUIDs or `v3:` + ~60 characters). */
export const MAX_ID_CHARS = 128;

/** Longest `from`/`to`: an E.164 number or a SIP URI. */
const MAX_ADDRESS_CHARS = 256;

/** Longest counter (`sequence_number`, `chunk`, `timestamp`) sent as a string: a 64-bit integer. */
const MAX_COUNTER_CHARS = 20;

/** Longest short label: `version`, `track`, `encoding`, `occurred_at`, an error `title`. */
const MAX_LABEL_CHARS = 64;

/** Longest error `detail` from Telnyx. */
const MAX_ERROR_DETAIL_CHARS = 1_024;

/** Bounds of the `start` frame's caller-defined fields (`tags`, `custom_parameters`, `client_state`). */
const MAX_TAGS = 20;
const MAX_TAG_CHARS = 128;
const MAX_CUSTOM_PARAMETERS = 32;
const MAX_CUSTOM_PARAMETER_NAME_CHARS = 128;
const MAX_CUSTOM_PARAMETER_VALUE_CHARS = 512;
const MAX_CLIENT_STATE_CHARS = 4_096;

/**
 * Longest inbound text frame we attempt to parse. A `start` frame with every field at the limits
 * above fits (a test builds one), so anything bigger is not a Telnyx frame and not worth a
 * JSON.parse.
 */
export const MAX_INBOUND_FRAME_CHARS = 32_768;

/** Longest `reason` returned by the parse functions; they end up in logs. */
const MAX_REASON_CHARS = 200;

// ---------------------------------------------------------------------------------------------
// Shared field schemas

/** Counters documented as strings; some senders emit numbers. Normalised to the documented string. */
const CounterSchema = z.union([z.string().max(MAX_COUNTER_CHARS), z.number()])
  .transform((value) => String(value));

const IdSchema = z.string().max(MAX_ID_CHARS);
const AddressSchema = z.string().max(MAX_ADDRESS_CHARS);
const LabelSchema = z.string().max(MAX_LABEL_CHARS);

/** Sample rate/channel counts are numbers in the docs; accept numeric strings too. */
const CountSchema = z.union([
  z.number().int().positive(),
  z.string().regex(/^[1-9][0-9]{0,8}$/).transform(Number),
]);

/** Encodings the app can play and transcribe without transcoding. */
export type TelephonyEncoding = "PCMU" | "PCMA";

/**
 * `media_format.encoding` after normalisation: `"PCMU"`/`"PCMA"` for any known spelling of G.711,
 * otherwise the raw string (e.g. `"G722"`, `"OPUS"`) so the caller can log it and refuse the stream.
 */
// `string & {}` keeps the two literals visible to editors instead of collapsing into `string`.
// deno-lint-ignore ban-types
export type MediaEncoding = TelephonyEncoding | (string & {});

const ENCODING_ALIASES: Readonly<Record<string, TelephonyEncoding>> = {
  "pcmu": "PCMU",
  "audio/x-mulaw": "PCMU",
  "audio/pcmu": "PCMU",
  "pcma": "PCMA",
  "audio/x-alaw": "PCMA",
  "audio/pcma": "PCMA",
};

/** Maps the spellings seen in current (`PCMU`) and older (`audio/x-mulaw`) docs onto one name. */
function normaliseEncoding(raw: string): MediaEncoding {
  // MIME spellings may carry parameters such as `;rate=8000`; they do not change the codec.
  const mimeType = raw.split(";", 1)[0].trim().toLowerCase();
  return ENCODING_ALIASES[mimeType] ?? raw;
}

/** True for the encodings the app handles; use it to refuse a stream in any other format. */
export function isTelephonyEncoding(encoding: MediaEncoding): encoding is TelephonyEncoding {
  return encoding === "PCMU" || encoding === "PCMA";
}

/**
 * Whether `value` is standard-alphabet base64 that `Uint8Array.fromBase64` decodes. Checked with a
 * flat regex plus length arithmetic rather than one grouped regex, which would backtrack per
 * quartet on large payloads.
 */
function isDecodableBase64(value: string, requirePadding: boolean): boolean {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return false;
  const padding = value.endsWith("==") ? 2 : value.endsWith("=") ? 1 : 0;
  const remainder = (value.length - padding) % 4;
  if (remainder === 1) return false; // 6 bits cannot make a byte
  if (padding === 0) return !requirePadding || remainder === 0;
  return padding === 4 - remainder;
}

/** Audio as Telnyx sends it: base64 (standard alphabet, padding optional) of a bounded size. */
const InboundPayloadSchema = z.string().max(MAX_INBOUND_MEDIA_PAYLOAD_CHARS).refine(
  (value) => isDecodableBase64(value, false),
  { message: "not base64" },
);

/**
 * Number of bytes `base64` decodes to, without decoding it (for pacing before the work). Exact
 * for any payload {@link parseInboundFrame} accepted.
 */
export function mediaPayloadBytes(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return Math.floor((base64.length - padding) * 3 / 4);
}

/** The keys of a phone keypad, as DTMF carries them. */
// deno-fmt-ignore
export const DTMF_DIGITS = [
  "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "*", "#",
] as const;
/** One DTMF key. */
export type DtmfDigit = typeof DTMF_DIGITS[number];

// The message names the allowed keys and never the value: key presses can be PINs.
const DtmfDigitSchema = z.enum(DTMF_DIGITS, { error: "not a DTMF digit (0-9, A-D, * or #)" });

// ---------------------------------------------------------------------------------------------
// Inbound frames (Telnyx → app)

/** First frame after the upgrade; carries no stream identity. */
export const ConnectedFrameSchema = z.object({
  event: z.literal("connected"),
  version: LabelSchema.optional(),
});
/** `{"event":"connected","version":"1.0.0"}` */
export type ConnectedFrame = z.infer<typeof ConnectedFrameSchema>;

/** Audio format of the call leg, announced once in `start`. */
export const MediaFormatSchema = z.object({
  encoding: LabelSchema.min(1).transform(normaliseEncoding),
  sample_rate: CountSchema,
  channels: CountSchema.optional(),
});
/** Normalised `start.media_format`. */
export type MediaFormat = z.infer<typeof MediaFormatSchema>;

/**
 * Stream metadata. `stream_id` and `media_format` are required because the app cannot route or
 * decode the stream without them; everything else is optional because TeXML and Call-Control
 * streams fill in different subsets.
 */
export const StartFrameSchema = z.object({
  event: z.literal("start"),
  sequence_number: CounterSchema.optional(),
  stream_id: IdSchema.min(1),
  start: z.object({
    user_id: IdSchema.optional(),
    call_control_id: IdSchema.optional(),
    call_session_id: IdSchema.optional(),
    from: AddressSchema.optional(),
    to: AddressSchema.optional(),
    tags: z.array(z.string().max(MAX_TAG_CHARS)).max(MAX_TAGS).optional(),
    client_state: z.string().max(MAX_CLIENT_STATE_CHARS).nullable().optional(),
    custom_parameters: z.record(
      z.string().max(MAX_CUSTOM_PARAMETER_NAME_CHARS),
      z.string().max(MAX_CUSTOM_PARAMETER_VALUE_CHARS),
    ).refine((parameters) => Object.keys(parameters).length <= MAX_CUSTOM_PARAMETERS, {
      message: `more than ${MAX_CUSTOM_PARAMETERS} parameters`,
    }).optional(),
    media_format: MediaFormatSchema,
  }),
});
/** The `start` frame, with `media_format.encoding` normalised. */
export type StartFrame = z.infer<typeof StartFrameSchema>;

// After `start`, `stream_id` is optional: the socket already identifies the stream, and an error
// frame about a malformed message of ours may come without one.

/** One chunk of call audio; `payload` is base64 of the RTP payload (no RTP header). */
export const InboundMediaFrameSchema = z.object({
  event: z.literal("media"),
  sequence_number: CounterSchema.optional(),
  stream_id: IdSchema.optional(),
  media: z.object({
    track: LabelSchema.optional(),
    chunk: CounterSchema.optional(),
    timestamp: CounterSchema.optional(),
    payload: InboundPayloadSchema,
  }),
});
/** Inbound `media` frame. */
export type InboundMediaFrame = z.infer<typeof InboundMediaFrameSchema>;

/** A key press on the call. */
export const DtmfFrameSchema = z.object({
  event: z.literal("dtmf"),
  sequence_number: CounterSchema.optional(),
  stream_id: IdSchema.optional(),
  dtmf: z.object({
    digit: DtmfDigitSchema,
    occurred_at: LabelSchema.optional(),
  }),
});
/** Inbound `dtmf` frame. */
export type DtmfFrame = z.infer<typeof DtmfFrameSchema>;

/** Echo of a mark we sent, once the audio queued before it has played (or was cleared). */
export const InboundMarkFrameSchema = z.object({
  event: z.literal("mark"),
  sequence_number: CounterSchema.optional(),
  stream_id: IdSchema.optional(),
  mark: z.object({ name: z.string().max(MAX_MARK_NAME_CHARS) }),
});
/** Inbound `mark` frame. */
export type InboundMarkFrame = z.infer<typeof InboundMarkFrameSchema>;

/** The stream ended; Telnyx closes the socket after it. */
export const StopFrameSchema = z.object({
  event: z.literal("stop"),
  sequence_number: CounterSchema.optional(),
  stream_id: IdSchema.optional(),
  stop: z.object({
    user_id: IdSchema.optional(),
    call_control_id: IdSchema.optional(),
  }).optional(),
});
/** Inbound `stop` frame. */
export type StopFrame = z.infer<typeof StopFrameSchema>;

/**
 * Telnyx complaining about something we sent (e.g. `100003 malformed_frame`,
 * `100005 rate_limit_reached`). Every detail is optional: the event alone is worth logging.
 */
export const ErrorFrameSchema = z.object({
  event: z.literal("error"),
  sequence_number: CounterSchema.optional(),
  stream_id: IdSchema.optional(),
  error: z.object({
    title: LabelSchema.optional(),
    code: CounterSchema.optional(),
    detail: z.string().max(MAX_ERROR_DETAIL_CHARS).optional(),
  }).optional(),
});
/** Inbound `error` frame. */
export type ErrorFrame = z.infer<typeof ErrorFrameSchema>;

/** Every frame Telnyx sends on the media WebSocket, discriminated on `event`. */
export const InboundFrameSchema = z.discriminatedUnion("event", [
  ConnectedFrameSchema,
  StartFrameSchema,
  InboundMediaFrameSchema,
  DtmfFrameSchema,
  InboundMarkFrameSchema,
  StopFrameSchema,
  ErrorFrameSchema,
]);
/** Any inbound frame, after normalisation. */
export type InboundFrame = z.infer<typeof InboundFrameSchema>;

const INBOUND_SCHEMAS: Readonly<Record<InboundFrame["event"], z.ZodType<InboundFrame>>> = {
  connected: ConnectedFrameSchema,
  start: StartFrameSchema,
  media: InboundMediaFrameSchema,
  dtmf: DtmfFrameSchema,
  mark: InboundMarkFrameSchema,
  stop: StopFrameSchema,
  error: ErrorFrameSchema,
};

// ---------------------------------------------------------------------------------------------
// Outbound frames (app → Telnyx)

/** Padded standard base64, as `toBase64()` and Cartesia produce; empty audio is never sent. */
const OutboundBase64Schema = z.string().min(1).refine((value) => isDecodableBase64(value, true), {
  message: "not padded base64",
});

/** Audio for Telnyx to play; in RTP mode each frame must hold 20 ms – 30 s of audio. */
export const OutboundMediaFrameSchema = z.strictObject({
  event: z.literal("media"),
  media: z.strictObject({ payload: OutboundBase64Schema }),
});
/** Outbound `media` frame. */
export type OutboundMediaFrame = z.infer<typeof OutboundMediaFrameSchema>;

/** Asks Telnyx to echo `name` once everything queued before it has played. */
export const OutboundMarkFrameSchema = z.strictObject({
  event: z.literal("mark"),
  mark: z.strictObject({ name: z.string() }),
});
/** Outbound `mark` frame. */
export type OutboundMarkFrame = z.infer<typeof OutboundMarkFrameSchema>;

/** Drops queued audio (barge-in); queued marks are echoed. */
export const ClearFrameSchema = z.strictObject({ event: z.literal("clear") });
/** Outbound `clear` frame. */
export type ClearFrame = z.infer<typeof ClearFrameSchema>;

/** Every frame the app sends, discriminated on `event`. Extra fields are rejected. */
export const OutboundFrameSchema = z.discriminatedUnion("event", [
  OutboundMediaFrameSchema,
  OutboundMarkFrameSchema,
  ClearFrameSchema,
]);
/** Any outbound frame. */
export type OutboundFrame = z.infer<typeof OutboundFrameSchema>;

const OUTBOUND_SCHEMAS: Readonly<Record<OutboundFrame["event"], z.ZodType<OutboundFrame>>> = {
  media: OutboundMediaFrameSchema,
  mark: OutboundMarkFrameSchema,
  clear: ClearFrameSchema,
};

// ---------------------------------------------------------------------------------------------
// Parsing

/** Result of {@link parseInboundFrame} / {@link parseOutboundFrame}; `reason` is short and loggable. */
export type FrameParseResult<Frame> = { ok: true; frame: Frame } | { ok: false; reason: string };

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** First few issues as `path: message`; keys and messages come from the input, so each is capped. */
function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => {
      const path = issue.path.map((key) => truncate(String(key), 32)).join(".");
      return `${path.length > 0 ? path : "(frame)"}: ${truncate(issue.message, 80)}`;
    })
    .join("; ");
}

/**
 * Shared pipeline: size guard, JSON, object check, `event` dispatch, schema. Dispatching on `event`
 * ourselves gives "unknown event" a clear reason and validates against one member only.
 */
function parseFrame<Frame>(
  text: string,
  direction: "inbound" | "outbound",
  schemas: Readonly<Record<string, z.ZodType<Frame>>>,
): FrameParseResult<Frame> {
  const fail = (reason: string): FrameParseResult<Frame> => ({
    ok: false,
    reason: truncate(`${direction} frame: ${reason}`, MAX_REASON_CHARS),
  });
  if (typeof text !== "string") return fail(`not text but ${typeof text}`);
  if (text.length > MAX_INBOUND_FRAME_CHARS) return fail(`too large (${text.length} chars)`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // SyntaxError messages quote the input; keep only their start.
    return fail(`invalid JSON (${truncate(String((error as Error).message), 80)})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return fail(
      `not a JSON object but ${
        json === null ? "null" : Array.isArray(json) ? "an array" : typeof json
      }`,
    );
  }
  const event = (json as { event?: unknown }).event;
  if (event === undefined) return fail("missing event");
  if (typeof event !== "string") return fail(`event is ${typeof event}, not a string`);
  if (!Object.hasOwn(schemas, event)) {
    return fail(`unknown event ${JSON.stringify(truncate(event, 40))}`);
  }
  const parsed = schemas[event].safeParse(json);
  if (!parsed.success) return fail(`${event}: ${describeIssues(parsed.error)}`);
  return { ok: true, frame: parsed.data };
}

const MEDIA_FRAME_START = '{"event":"media",';
const MEDIA_KEY = '"media":{';
const PAYLOAD_KEY = '"payload":"';
/** What may follow the payload's closing quote: the end of `media`, then of the frame. */
const MEDIA_FRAME_END = /^\}(?:,"stream_id":"[^"\\]*")?\}$/;

/**
 * The payload of an inbound `media` frame in the shape Telnyx sends it (`event` first and only
 * once, no whitespace, a `media` object whose last key is `payload`, then at most `stream_id`),
 * found with string searches rather than `JSON.parse`, the largest single cost of a frame that
 * arrives 50 times a second per call. Undefined for any other text, which goes through
 * {@link parseInboundFrame}. The sequence number and the fields of `media` before `payload` are
 * not read, so they are not checked; the payload is, by its decoder: one that does not decode
 * (an escaped `\/`, or garbage) goes through {@link parseInboundFrame} too.
 */
export function peekMediaPayload(text: string): string | undefined {
  if (text.length > MAX_INBOUND_FRAME_CHARS || !text.startsWith(MEDIA_FRAME_START)) return;
  const media = text.indexOf(MEDIA_KEY, MEDIA_FRAME_START.length);
  const key = media < 0 ? -1 : text.indexOf(PAYLOAD_KEY, media);
  if (key < 0) return;
  const start = key + PAYLOAD_KEY.length;
  const end = text.indexOf('"', start);
  if (end < 0 || end - start > MAX_INBOUND_MEDIA_PAYLOAD_CHARS) return;
  if (!MEDIA_FRAME_END.test(text.slice(end + 1))) return;
  // A second `event` (JSON.parse would keep the last) is left to the full parser.
  if (text.includes('"event":', MEDIA_FRAME_START.length)) return;
  return text.slice(start, end);
}

/**
 * Parses one text frame received from Telnyx. Never throws: invalid JSON, non-objects, unknown
 * events and schema mismatches all come back as `ok: false` with a reason of at most 200 chars
 * that never echoes the whole payload.
 */
export function parseInboundFrame(text: string): FrameParseResult<InboundFrame> {
  return parseFrame(text, "inbound", INBOUND_SCHEMAS);
}

/**
 * Parses one text frame the app sent to Telnyx (for tests and the fake Telnyx client). Never
 * throws; same result shape as {@link parseInboundFrame}. Unknown fields are errors here.
 */
export function parseOutboundFrame(text: string): FrameParseResult<OutboundFrame> {
  return parseFrame(text, "outbound", OUTBOUND_SCHEMAS);
}

// ---------------------------------------------------------------------------------------------
// Builders and payload codecs

/** JSON text of a `media` frame carrying already-base64 audio (e.g. Cartesia's `pcm_mulaw`). */
export function mediaFrame(payloadBase64: string): string {
  return JSON.stringify({ event: "media", media: { payload: payloadBase64 } });
}

/**
 * JSON text of a `media` frame carrying `bytes` (encoded audio in the stream's codec). Only the
 * bytes in view are sent, so subarrays of a larger buffer are fine.
 */
export function mediaFrameFromBytes(bytes: Uint8Array): string {
  // V8's native encoder: one pass, no per-byte intermediate strings. Its output never needs JSON
  // escaping, so the frame is concatenated rather than stringified (sent 50 times a second).
  return `{"event":"media","media":{"payload":"${bytes.toBase64()}"}}`;
}

/** JSON text of a `mark` frame; Telnyx echoes it once the audio queued before it has played. */
export function markFrame(name: string): string {
  return JSON.stringify({ event: "mark", mark: { name } });
}

/** JSON text of a `clear` frame, which drops audio Telnyx has queued but not yet played. */
export function clearFrame(): string {
  return JSON.stringify({ event: "clear" });
}

/**
 * Decodes an inbound `media.payload` to the raw codec bytes. Padding is optional, as on the wire.
 *
 * @throws {SyntaxError} if `base64` is not valid base64; payloads that passed
 * {@link parseInboundFrame} always decode.
 */
export function decodeMediaPayload(base64: string): Uint8Array {
  return Uint8Array.fromBase64(base64);
}
