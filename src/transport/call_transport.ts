/**
 * The boundary between a conversation and the wire that carries it.
 *
 * A call reaches the agent over some transport (the Telnyx media WebSocket today, a browser
 * tomorrow). The transport turns its own frames into {@link TransportEvent}s for the call's
 * session, and plays what the agent says through {@link CallTransport}: audio frames, marks,
 * clear. The conversation never sees a wire format; it only learns the call's
 * {@link AudioFormat}, which it passes on to speech-to-text, text-to-speech and playback.
 *
 * "How much was played" comes back as `played` events naming a mark the playback sent: Telnyx
 * echoes marks once the audio before them has played; a browser client reports them from its
 * own player.
 *
 * @module
 */

import { decodeALaw, decodeMuLaw } from "../audio/g711.ts";

/** How the samples of a call's audio are encoded. */
export type AudioEncoding = "mulaw" | "alaw" | "linear16";

/** Audio format of one direction of a call: mono, one encoding, one sample rate. */
export interface AudioFormat {
  readonly encoding: AudioEncoding;
  /** Samples per second. */
  readonly sampleRate: number;
}

/** G.711 mu-law at 8 kHz: what a PCMU phone call carries. */
export const MULAW_8K: AudioFormat = Object.freeze({ encoding: "mulaw", sampleRate: 8000 });
/** G.711 A-law at 8 kHz: what a PCMA phone call carries. */
export const ALAW_8K: AudioFormat = Object.freeze({ encoding: "alaw", sampleRate: 8000 });

/** Bytes per sample of an encoding. */
function bytesPerSample(encoding: AudioEncoding): number {
  return encoding === "linear16" ? 2 : 1;
}

/** Bytes of `format` audio per millisecond (may be fractional for odd rates). */
export function bytesPerMs(format: AudioFormat): number {
  return format.sampleRate * bytesPerSample(format.encoding) / 1000;
}

/** Bytes of `ms` milliseconds of `format` audio, rounded down to whole samples. */
export function bytesFor(format: AudioFormat, ms: number): number {
  const size = bytesPerSample(format.encoding);
  return Math.floor(format.sampleRate * ms / 1000) * size;
}

/**
 * The byte value whose repetition is digital silence in `format`: 0xFF for mu-law, 0xD5 for
 * A-law (0x00 would be a loud click in either), 0x00 for linear PCM.
 */
export function silenceByte(format: AudioFormat): number {
  switch (format.encoding) {
    case "mulaw":
      return 0xff;
    case "alaw":
      return 0xd5;
    case "linear16":
      return 0x00;
  }
}

/** Decodes `format` bytes to 16-bit linear samples into `dst` (or a fresh array). */
export type PcmDecoder = (bytes: Uint8Array, dst?: Int16Array) => Int16Array;

/** The decoder from `format` bytes to linear samples (what the VAD listens to). */
export function pcmDecoderFor(format: AudioFormat): PcmDecoder {
  switch (format.encoding) {
    case "mulaw":
      return decodeMuLaw;
    case "alaw":
      return decodeALaw;
    case "linear16":
      // The VAD listens at 8 kHz: 16 kHz speech (the browser playground) is halved.
      return format.sampleRate === 16000 ? decodeLinear16Halved : decodeLinear16;
  }
}

/**
 * Little-endian 16-bit PCM at 16 kHz to samples at 8 kHz, each the mean of a pair: a crude
 * low-pass, enough for voice activity detection (the STT gets the 16 kHz audio as is).
 */
function decodeLinear16Halved(bytes: Uint8Array, dst?: Int16Array): Int16Array {
  const count = bytes.length >> 2;
  const out = dst === undefined ? new Int16Array(count) : dst.subarray(0, count);
  if (out.length < count) throw new RangeError(`dst holds ${out.length} of ${count} samples`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 4);
  for (let i = 0; i < count; i++) {
    out[i] = (view.getInt16(i * 4, true) + view.getInt16(i * 4 + 2, true)) >> 1;
  }
  return out;
}

/** Little-endian 16-bit PCM to samples; copies, because the bytes may not be 2-aligned. */
function decodeLinear16(bytes: Uint8Array, dst?: Int16Array): Int16Array {
  const count = bytes.length >> 1;
  const out = dst === undefined ? new Int16Array(count) : dst.subarray(0, count);
  if (out.length < count) throw new RangeError(`dst holds ${out.length} of ${count} samples`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
  for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true);
  return out;
}

/** What a transport tells the call, in the order it happened on the wire. */
export type TransportEvent =
  /**
   * Callee audio in the transport's `inputFormat`. The bytes are lent: valid until the receiver
   * returns (transports decode every frame into one buffer); copy what must be kept.
   */
  | { type: "media"; payload: Uint8Array }
  /** A key press. */
  | { type: "dtmf"; digit: string }
  /** The audio sent before the mark named `name` has been played to the callee. */
  | { type: "mark"; name: string }
  /** The far end ended the stream (callee hung up, browser tab left). */
  | { type: "stop" }
  /** The far end reported a problem with what we sent; the call goes on. */
  | { type: "stream_error"; code?: string; title?: string }
  /** The connection closed without a `stop`. */
  | { type: "socket_closed"; code: number; reason: string };

/**
 * The wire of one call, as the conversation uses it. Sends are fire-and-forget and never throw
 * once the connection is closed (they are dropped); they may throw on a broken encoder, which
 * the playback contains.
 */
export interface CallTransport {
  /** Short name for logs, e.g. `"telnyx"`. */
  readonly kind: string;
  /** Format of the callee audio the transport delivers. */
  readonly inputFormat: AudioFormat;
  /** Format the agent's audio must be in: TTS output and playback padding follow it. */
  readonly outputFormat: AudioFormat;
  /**
   * Sends agent audio in `outputFormat`, one or more whole 20 ms frames. The bytes are consumed
   * before this returns, so the caller may reuse the array.
   */
  sendAudio(frame: Uint8Array): void;
  /** Asks the far end to report `name` (a `mark` event) once the audio sent before has played. */
  sendMark(name: string): void;
  /** Drops the audio the far end has queued but not played yet (barge-in). */
  clear(): void;
  /** Closes the connection; `code`/`reason` as in a WebSocket close frame. */
  close(code: number, reason: string): void;
}

/** The outbound half of a {@link CallTransport}: what the playback needs. */
export type AudioOutput = Pick<CallTransport, "outputFormat" | "sendAudio" | "sendMark" | "clear">;
