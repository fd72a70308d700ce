/**
 * Loopback webhook receiver: records every POST (raw body, headers, arrival time) and answers
 * with the next scripted reply, then 200 once the script is used up.
 *
 * @module
 */
import { CountWaiters } from "./count_waiters.ts";

/**
 * One scripted answer: an HTTP status, `drop` (headers sent, then the connection breaks), or
 * `hang` (no answer until the client gives up or the receiver closes).
 */
export type ReceiverReply = number | "drop" | "hang";

/** One request as the receiver saw it. */
export interface ReceivedWebhook {
  body: string;
  headers: Headers;
  /** `performance.now()` when the body had arrived. */
  receivedAt: number;
  /** The answer it got. */
  reply: ReceiverReply;
}

/** A running receiver; `close()` it before the test ends. */
export interface WebhookReceiver extends AsyncDisposable {
  /** `http://127.0.0.1:<port>/hooks`. */
  url: string;
  received: ReceivedWebhook[];
  /** Resolves once `count` requests have arrived. */
  waitFor(count: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a receiver answering with `script` in order, then 200. */
export function startWebhookReceiver(script: ReceiverReply[] = []): WebhookReceiver {
  const replies = [...script];
  const received: ReceivedWebhook[] = [];
  const waiters = new CountWaiters(() => received.length);
  const closing = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const body = await request.text();
      const reply = replies.shift() ?? 200;
      received.push({ body, headers: request.headers, receivedAt: performance.now(), reply });
      waiters.notify();
      if (reply === "hang") {
        const released = Promise.withResolvers<void>();
        for (const signal of [closing.signal, request.signal]) {
          signal.addEventListener("abort", () => released.resolve(), { once: true });
        }
        await released.promise;
        return new Response(null, { status: 503 });
      }
      if (reply === "drop") {
        return new Response(
          new ReadableStream({ start: (c) => c.error(new Error("connection dropped")) }),
        );
      }
      return new Response(reply === 200 ? "ok" : `status ${reply}`, { status: reply });
    },
  );
  const close = () => {
    closing.abort();
    return server.shutdown();
  };
  return {
    url: `http://127.0.0.1:${server.addr.port}/hooks`,
    received,
    waitFor: (count) => waiters.waitFor(count),
    close,
    [Symbol.asyncDispose]: close,
  };
}
