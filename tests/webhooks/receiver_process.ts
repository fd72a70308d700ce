/**
 * A loopback webhook receiver in a process of its own, answering 200 to every POST: a bench
 * whose own event loop is busy with hundreds of simulated callers would otherwise delay the
 * arrivals it measures. Every request is passed back with its arrival time.
 *
 * @module
 */
import { outputLines } from "../helpers/output_lines.ts";

/** One request as the receiver saw it. */
export interface ReceivedInProcess {
  body: string;
  /** Arrival, on this process's `performance.now()` clock. */
  receivedAt: number;
}

/** A running receiver process; close it when done. */
export interface ReceiverProcess extends AsyncDisposable {
  url: string;
  received: ReceivedInProcess[];
  close(): Promise<void>;
}

const RECEIVER = `
Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: ({ port }) => {
  console.log("http://127.0.0.1:" + port + "/hooks");
} }, async (request) => {
  const body = await request.text();
  // One line each: the server's JSON bodies hold no raw line break.
  console.log(Date.now() + " " + body);
  return new Response("ok");
});
`;

/** Starts the receiver and resolves once it listens. */
export async function startWebhookReceiverProcess(): Promise<ReceiverProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", RECEIVER],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = outputLines(child.stdout).getReader();
  const first = await lines.read();
  if (first.done) throw new Error("the webhook receiver process exited before listening");
  const received: ReceivedInProcess[] = [];
  const reading = (async () => {
    for (;;) {
      const { value, done } = await lines.read();
      if (done) return;
      const space = value.indexOf(" ");
      const at = Number(value.slice(0, space));
      received.push({ body: value.slice(space + 1), receivedAt: at - performance.timeOrigin });
    }
  })();
  const close = async () => {
    try {
      child.kill();
    } catch {
      // already gone
    }
    await child.status;
    await reading.catch(() => {});
  };
  return { url: first.value.trim(), received, close, [Symbol.asyncDispose]: close };
}
