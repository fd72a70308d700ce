/**
 * The Telnyx media WebSocket as a {@link CallTransport}: agent audio goes out as `media` JSON
 * frames with base64 payloads, marks and clear as their own frames, and Telnyx's frames come
 * back as {@link TransportEvent}s. Only this module and `telnyx/media_stream.ts` know the JSON.
 *
 * In bidirectional RTP mode Telnyx plays back in the codec of the call leg, so the output format
 * is the announced input format.
 *
 * @module
 */
import {
  clearFrame,
  type InboundFrame,
  markFrame,
  type MediaFormat,
  mediaFrameFromBytes,
} from "../telnyx/media_stream.ts";
import {
  ALAW_8K,
  type AudioFormat,
  type CallTransport,
  MULAW_8K,
  type TransportEvent,
} from "./call_transport.ts";

/** The call's audio format, or why the stream cannot be served. */
export type StreamFormatCheck =
  | { ok: true; format: AudioFormat }
  | { ok: false; reason: string };

/**
 * Maps the `start` frame's `media_format` onto an {@link AudioFormat}. Only 8 kHz G.711 is
 * served: it is what phone legs carry, and Deepgram, Cartesia and the VAD all take it as is.
 */
export function telnyxStreamFormat(format: MediaFormat): StreamFormatCheck {
  const known = format.encoding === "PCMU"
    ? MULAW_8K
    : format.encoding === "PCMA"
    ? ALAW_8K
    : undefined;
  if (known === undefined) {
    return { ok: false, reason: `unsupported media encoding ${String(format.encoding)}` };
  }
  if (format.sample_rate !== known.sampleRate) {
    return {
      ok: false,
      reason: `unsupported sample rate ${format.sample_rate} for ${format.encoding}`,
    };
  }
  if ((format.channels ?? 1) !== 1) {
    return { ok: false, reason: `unsupported channel count ${format.channels}` };
  }
  return { ok: true, format: known };
}

/**
 * The event a non-media, non-start Telnyx frame means for the call, or undefined for frames that
 * carry nothing for it (`connected`). Media is handled by the socket (it is paced first).
 */
export function telnyxTransportEvent(frame: InboundFrame): TransportEvent | undefined {
  switch (frame.event) {
    case "dtmf":
      return { type: "dtmf", digit: frame.dtmf.digit };
    case "mark":
      return { type: "mark", name: frame.mark.name };
    case "stop":
      return { type: "stop" };
    case "error":
      return { type: "stream_error", code: frame.error?.code, title: frame.error?.title };
    default:
      return undefined;
  }
}

/** The outbound side of one Telnyx media socket. Sends on a closed socket are dropped. */
export class TelnyxMediaTransport implements CallTransport {
  readonly kind = "telnyx";
  readonly inputFormat: AudioFormat;
  readonly outputFormat: AudioFormat;
  readonly #socket: WebSocket;

  constructor(socket: WebSocket, format: AudioFormat) {
    this.#socket = socket;
    this.inputFormat = format;
    this.outputFormat = format;
  }

  sendAudio(frame: Uint8Array): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(mediaFrameFromBytes(frame));
  }

  sendMark(name: string): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(markFrame(name));
  }

  clear(): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(clearFrame());
  }

  close(code: number, reason: string): void {
    const state = this.#socket.readyState;
    if (state === WebSocket.OPEN || state === WebSocket.CONNECTING) {
      this.#socket.close(code, reason);
    }
  }
}
