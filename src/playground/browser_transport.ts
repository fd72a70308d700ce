/**
 * The playground page's WebSocket as a {@link CallTransport}: binary frames carry 16-bit
 * little-endian PCM both ways (the microphone at 16 kHz in, the bot at the output rate out),
 * text frames carry JSON control messages. The page plays the bot's audio itself and reports
 * each mark once the audio before it has played, which is how the agent learns what was heard.
 *
 * @module
 */
import { z } from "zod";
import type { AudioFormat, CallTransport, TransportEvent } from "../transport/call_transport.ts";

/** The microphone as the page sends it. */
export const BROWSER_INPUT: AudioFormat = Object.freeze({
  encoding: "linear16",
  sampleRate: 16000,
});
/** The bot as the page plays it: one AudioContext at the capture rate plays it without effort. */
const BROWSER_OUTPUT: AudioFormat = Object.freeze({
  encoding: "linear16",
  sampleRate: 16000,
});

/** Longest text message accepted from the page (the start message carries prompt and data). */
const MAX_CONTROL_CHARS = 64_000;

/** What the page sends first. */
export const StartMessageSchema = z.strictObject({
  type: z.literal("start"),
  /** The API token, needed when the page is not on the server's machine. */
  token: z.string().max(1024).optional(),
  custom_data: z.record(z.string(), z.unknown()).default({}),
  system_prompt: z.string().max(20_000).optional(),
  greeting: z.string().max(2_000).optional(),
  first_speaker: z.enum(["bot", "callee"]).default("bot"),
});
export type StartMessage = z.infer<typeof StartMessageSchema>;

/** What the page sends during the call. */
const CallMessageSchema = z.discriminatedUnion("type", [
  /** The audio before mark `name` has played on the page. */
  z.strictObject({ type: z.literal("played"), name: z.string().max(200) }),
  /** The user hung up. */
  z.strictObject({ type: z.literal("stop") }),
]);

/**
 * The page's text message as `schema` reads it, or why it is not one; `what` names the message
 * in the reason.
 */
export function parsePageMessage<T>(
  text: string,
  schema: z.ZodType<T>,
  what: string,
): { ok: true; message: T } | { ok: false; reason: string } {
  if (text.length > MAX_CONTROL_CHARS) return { ok: false, reason: `${what} too long` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: `the ${what} is not JSON` };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    return {
      ok: false,
      reason: parsed.error.issues.map((i) => `${i.path.join(".") || "message"}: ${i.message}`)
        .join("; "),
    };
  }
  return { ok: true, message: parsed.data };
}

/** The transport event a text message from the page means, or why it means nothing. */
export function browserTransportEvent(
  text: string,
): { ok: true; event: TransportEvent } | { ok: false; reason: string } {
  const parsed = parsePageMessage(text, CallMessageSchema, "message");
  if (!parsed.ok) return parsed;
  return parsed.message.type === "played"
    ? { ok: true, event: { type: "mark", name: parsed.message.name } }
    : { ok: true, event: { type: "stop" } };
}

/** What the server tells the page besides audio. */
export type PageMessage =
  | {
    type: "started";
    call_id: string;
    input: { encoding: string; sample_rate: number };
    output: { encoding: string; sample_rate: number };
  }
  | { type: "mark"; name: string }
  | { type: "clear" }
  | { type: "transcript"; text: string; final: boolean }
  | {
    type: "turn";
    role: "user" | "assistant";
    text: string;
    interrupted: boolean;
    latency: Record<string, number> | null;
  }
  | { type: "ended"; reason: string }
  | { type: "error"; code: string; message: string };

/** The outbound side of one playground socket. Sends on a closed socket are dropped. */
export class BrowserTransport implements CallTransport {
  readonly kind = "browser";
  readonly inputFormat = BROWSER_INPUT;
  readonly outputFormat = BROWSER_OUTPUT;
  readonly #socket: WebSocket;

  constructor(socket: WebSocket) {
    this.#socket = socket;
  }

  sendAudio(frame: Uint8Array): void {
    // Copied: the playback reuses its frame buffer.
    if (this.#open) this.#socket.send(frame.slice());
  }

  sendMark(name: string): void {
    this.send({ type: "mark", name });
  }

  clear(): void {
    this.send({ type: "clear" });
  }

  /** Sends a control message to the page. */
  send(message: PageMessage): void {
    if (this.#open) this.#socket.send(JSON.stringify(message));
  }

  close(code: number, reason: string): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.close(code, reason);
  }

  get #open(): boolean {
    return this.#socket.readyState === WebSocket.OPEN;
  }
}
