/**
 * The far end of a WebSocket whose sending side a bench measures: a server on a thread of its
 * own that accepts every upgrade and discards what it receives, so its work does not count
 * against the sender's thread. Over TLS with the loopback certificate unless told otherwise, as
 * Deepgram is reached over `wss:`.
 *
 * @module
 */
import { loopbackTls } from "./loopback_tls.ts";

/** A running sink. */
export interface WebSocketSink {
  /** Its port on 127.0.0.1. */
  port: number;
  /** Stops it (terminates its worker). */
  close(): void;
}

/** Starts a sink; `tls: false` serves plain `ws:`. */
export function startWebSocketSink(options: { tls?: boolean } = {}): Promise<WebSocketSink> {
  const tls = options.tls === false ? {} : loopbackTls();
  const source = `
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {}, ...${JSON.stringify(tls)} },
      (request) => {
        const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
        socket.onmessage = () => {};
        return response;
      },
    );
    self.postMessage(server.addr.port);
  `;
  const worker = new Worker(`data:application/javascript;base64,${btoa(source)}`, {
    type: "module",
  });
  return new Promise((resolve, reject) => {
    worker.onerror = (event) => {
      event.preventDefault();
      worker.terminate();
      reject(new Error(`the WebSocket sink failed: ${event.message}`));
    };
    worker.onmessage = (event) =>
      resolve({ port: Number(event.data), close: () => worker.terminate() });
  });
}
