/**
 * The Deepgram SDK's streaming connection over the runtime's own WebSocket, through the SDK's
 * `transportFactory` seam.
 *
 * Under Deno the SDK picks the npm `ws` package, which writes through Node's stream emulation:
 * in CPU profiles of the server under load, sending the callee's audio that way cost more than
 * anything the call itself does. Deno's WebSocket takes the same URL and headers and sends a
 * binary frame in one native call. The SDK keeps everything else (URL, auth header, query
 * parameters, message types); only the socket changes.
 *
 * @module
 */
import { deadline } from "../async/deadline.ts";
import type {
  DeepgramTransport,
  DeepgramTransportCloseEvent,
  DeepgramTransportMessage,
  DeepgramTransportRequest,
} from "@deepgram/sdk";

/** Close codes a WebSocket client may send; any other is replaced by 1000 (normal). */
function sendableCloseCode(code: number | undefined): number {
  return code === 1000 || (code !== undefined && code >= 3000 && code <= 4999) ? code : 1000;
}

/** A close reason must fit in 123 UTF-8 bytes. */
function sendableReason(reason: string | undefined): string {
  const text = reason ?? "";
  const bytes = new TextEncoder().encode(text);
  return bytes.length <= 123 ? text : new TextDecoder().decode(bytes.subarray(0, 120));
}

/** One connection to Deepgram on Deno's WebSocket, as a {@link DeepgramTransport}. */
export class NativeDeepgramSocket implements DeepgramTransport {
  readonly #socket: WebSocket;
  readonly #request: Pick<DeepgramTransportRequest, "url" | "headers">;
  /** Resolves once the socket is closed, whoever closed it. */
  readonly closed: Promise<void>;

  constructor(request: Pick<DeepgramTransportRequest, "url" | "headers" | "protocols">) {
    this.#request = request;
    // Deno's WebSocket takes request headers in its options argument (the auth header).
    const options = { headers: request.headers, protocols: request.protocols };
    this.#socket = new WebSocket(request.url, options as unknown as string[]);
    this.#socket.binaryType = "arraybuffer";
    this.closed = new Promise((resolve) => {
      this.#socket.addEventListener("close", () => resolve(), { once: true });
    });
  }

  send(data: DeepgramTransportMessage): void {
    this.#socket.send(data as string | ArrayBufferLike | Blob | ArrayBufferView<ArrayBuffer>);
  }

  onOpen(listener: () => void): void {
    this.#socket.addEventListener("open", () => listener());
  }

  onMessage(listener: (message: DeepgramTransportMessage) => void): void {
    this.#socket.addEventListener("message", (event) => listener(event.data));
  }

  onError(listener: (error: Error) => void): void {
    this.#socket.addEventListener("error", (event) => {
      // A refused `ws:` handshake reads "... Invalid status code: 401"; the transcriber parses
      // it. Over `wss:` the status is lost: see refusalStatus().
      listener(new Error(event instanceof ErrorEvent ? event.message : "WebSocket error"));
    });
  }

  onClose(listener: (event: DeepgramTransportCloseEvent) => void): void {
    this.#socket.addEventListener("close", (event) => {
      listener({ code: event.code, reason: event.reason });
    });
  }

  isOpen(): boolean {
    return this.#socket.readyState === WebSocket.OPEN;
  }

  /**
   * The HTTP status Deepgram answers this socket's request with when asked again as a plain
   * HTTPS request (no upgrade). Undefined for a `ws:` URL (its error event carries the status),
   * on a network error, after `ms`, or once `signal` aborts. Deno's `wss:` client retries a
   * refused HTTP/1.1 handshake over HTTP/2 and reports only the second failure, so a wrong key's
   * 401 never reaches the error event.
   */
  async refusalStatus(ms: number, signal?: AbortSignal): Promise<number | undefined> {
    const request = new AbortController();
    try {
      const url = new URL(this.#request.url);
      // The WebSocket takes `https:` for `wss:`, as the SDK passes it.
      if (url.protocol !== "wss:" && url.protocol !== "https:") return undefined;
      url.protocol = "https:";
      const asked = fetch(url, { headers: this.#request.headers, signal: request.signal });
      const response = await deadline(asked, ms, { what: "Deepgram refusal status", signal });
      await response.body?.cancel();
      return response.status;
    } catch {
      return undefined;
    } finally {
      request.abort();
    }
  }

  close(code?: number, reason?: string): void {
    const state = this.#socket.readyState;
    if (state === WebSocket.OPEN || state === WebSocket.CONNECTING) {
      // The SDK closes with 1011 after an error; a client may not send that code.
      this.#socket.close(sendableCloseCode(code), sendableReason(reason));
    }
  }
}
