/**
 * A vendor that goes silent: it accepts TCP (and TLS) connections and, depending on `answer`,
 * either never answers the HTTP request or completes the WebSocket upgrade and then never sends
 * a frame, not even the reply to a close frame. What a hung vendor or a black-holed network
 * looks like to a client; every wait on it must be bounded by the client itself.
 *
 * @module
 */
import { loopbackTls } from "./loopback_tls.ts";

const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Options of {@link startSilentPeer}. */
export interface SilentPeerOptions {
  /** `upgrade`: answer 101 then stay silent; `nothing`: never answer the request. */
  answer: "upgrade" | "nothing";
  /** Serve TLS with the test certificate (the Cartesia SDK only speaks `wss:`). */
  tls?: boolean;
}

/** A running silent peer; `await close()` releases its listener and connections. */
export interface SilentPeer extends AsyncDisposable {
  /** `http(s)://127.0.0.1:<port>`. */
  readonly url: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Upgrades answered with 101 so far. */
  readonly upgraded: number;
  close(): Promise<void>;
}

/** Starts a silent peer on an ephemeral loopback port. */
export function startSilentPeer(options: SilentPeerOptions): SilentPeer {
  const listener = options.tls
    ? Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...loopbackTls() })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let accepted = 0;
  let upgraded = 0;

  const serve = async (conn: Deno.Conn) => {
    try {
      const head = await readHead(conn);
      const key = head.match(/^sec-websocket-key:\s*(\S+)\s*$/im)?.[1];
      if (options.answer === "upgrade" && key) {
        await writeAll(conn, await switchingProtocols(key));
        upgraded++;
      }
      // Read and discard whatever the client sends, answer nothing, until the end.
      const sink = new Uint8Array(16 * 1024);
      while ((await conn.read(sink)) !== null);
    } catch {
      // Closed by close() or by the client: nothing left to do.
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        conns.add(conn);
        const task = serve(conn);
        tasks.add(task);
        void task.finally(() => tasks.delete(task));
      }
    } catch {
      // The listener was closed.
    }
  })();

  const { port } = listener.addr as Deno.NetAddr;
  const close = async () => {
    listener.close();
    await accepting;
    for (const conn of conns) conn.close();
    await Promise.all(tasks);
  };
  return {
    url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    get upgraded() {
      return upgraded;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Reads up to the blank line that ends an HTTP request head. */
async function readHead(conn: Deno.Conn): Promise<string> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(8 * 1024);
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error("closed before the request head ended");
    head += decoder.decode(buffer.subarray(0, n), { stream: true });
  }
  return head;
}

async function switchingProtocols(key: string): Promise<Uint8Array> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(key + WEBSOCKET_GUID),
  );
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  return new TextEncoder().encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}
