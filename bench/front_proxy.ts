/**
 * What an in-process connection front would cost on the media path: an A/B of a WebSocket echo
 * server served by `Deno.serve` directly ("direct") and the same server behind our own accept
 * loop ("front"), which caps connections (overall and per client) and reads each request head
 * within a deadline and under a size cap (what `Deno.serve` cannot do), then splices the
 * connection to `Deno.serve` on a private socket.
 * Two splices: `loop`, a read/write loop with one reusable buffer per direction, and `pipe`,
 * `readable.pipeTo(writable)` between the two connections, which Deno runs natively (no
 * JavaScript per chunk) yet costs more CPU and latency than the loop here. A third variant,
 * "node", serves the echo through `node:http` and npm:ws: that server times out heads and caps
 * connections itself, with no splice, at the price of a different HTTP and WebSocket stack.
 *
 * The server runs in a child process pinned to CPU 0 and the load in this process pinned to
 * CPU 1: `--sockets` WebSockets, each sending a Telnyx-sized media frame (about 400 bytes of
 * JSON) every 20 ms and receiving it back. Reported per variant: server CPU (cores, from
 * /proc/<pid>/stat), round-trip time of a frame (p50/p95/p99), descriptors held by the server.
 *
 * Run (Linux, needs `taskset`):
 * `deno run -A bench/front_proxy.ts [--sockets 300] [--seconds 20] [--rounds 2]
 * [--variants direct,front,node] [--upstream unix|tcp] [--splice loop|pipe]`.
 * Figures depend on the machine and its load; they are reported, never asserted.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { deadline, delay } from "../src/async/deadline.ts";
import { percentile } from "../src/session/call_metrics.ts";
import { inboundMediaFrame } from "../tests/fakes/telnyx_media.ts";
import { cpuSeconds } from "../tests/helpers/process_stats.ts";

const FRAME_MS = 20;
const HEADER_TIMEOUT_MS = 10_000;
const MAX_HEAD_BYTES = 16 * 1024;
const MAX_CONNECTIONS = 10_000;
const MAX_CONNECTIONS_PER_CLIENT = 1_000;
const HEAD_END = new Uint8Array([13, 10, 13, 10]);

const SENT_AT_OFFSET = (frame: string) => frame.lastIndexOf(":") + 1;

/** Index just past the first CRLFCRLF in `bytes[0, length)`, or -1. */
function headEnd(bytes: Uint8Array, length: number): number {
  outer: for (let i = 0; i + 4 <= length; i++) {
    for (let k = 0; k < 4; k++) if (bytes[i + k] !== HEAD_END[k]) continue outer;
    return i + 4;
  }
  return -1;
}

/** Reads until the end of the request head; everything read so far (the head and maybe more). */
async function readHead(conn: Deno.Conn): Promise<Uint8Array> {
  const buffer = new Uint8Array(MAX_HEAD_BYTES);
  let length = 0;
  while (length < buffer.length) {
    const n = await conn.read(buffer.subarray(length));
    if (n === null) throw new Error("closed before the end of the request head");
    length += n;
    if (headEnd(buffer, length) >= 0) return buffer.subarray(0, length);
  }
  throw new Error("request head too large");
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/** Copies `from` to `to` with one reusable buffer until `from` ends. */
async function copyLoop(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(16 * 1024);
  try {
    for (let n; (n = await from.read(buffer)) !== null;) await writeAll(to, buffer.subarray(0, n));
  } finally {
    try {
      to.closeWrite();
    } catch { /* already closed */ }
  }
}

/** How the front copies bytes: Deno's native pipe between two conns, or a read/write loop. */
type Splice = "pipe" | "loop";

/** The prototype front: the request head within a deadline, then a splice to the upstream. */
async function front(
  conn: Deno.Conn,
  upstream: () => Promise<Deno.Conn>,
  splice: Splice,
): Promise<void> {
  let up: Deno.Conn | undefined;
  try {
    const head = await deadline(readHead(conn), HEADER_TIMEOUT_MS, { what: "request head" });
    up = await upstream();
    await writeAll(up, head);
    await Promise.allSettled(
      splice === "pipe"
        ? [conn.readable.pipeTo(up.writable), up.readable.pipeTo(conn.writable)]
        : [copyLoop(conn, up), copyLoop(up, conn)],
    );
  } catch {
    // A head too slow, too large or cut off: the connection is dropped.
  } finally {
    for (const c of [conn, up]) {
      try {
        c?.close();
      } catch { /* already closed by the pipe */ }
    }
  }
}

/** What the echo uses of npm:ws's socket (the package ships no types). */
interface NodeWebSocket {
  on(event: "message", listener: (data: Uint8Array, isBinary: boolean) => void): void;
  send(data: Uint8Array, options: { binary: boolean }): void;
}

/**
 * The same echo on `node:http` and npm:ws, whose server times out request heads
 * (`headersTimeout`) and caps connections (`maxConnections`) itself, with no splice.
 */
async function serveNode(): Promise<void> {
  const http = await import("node:http");
  // Loaded by a computed name so the app's lockfile and type check never see it (the child runs
  // with `--no-lock`): the version deepgram's SDK already pulls in.
  const wsPackage = ["npm:ws", "8.23.0"].join("@");
  const { WebSocketServer } = await import(wsPackage);
  const server = http.createServer({
    connectionsCheckingInterval: 1000,
    headersTimeout: HEADER_TIMEOUT_MS,
    requestTimeout: HEADER_TIMEOUT_MS,
  }, (_request, response) => response.end());
  server.maxConnections = MAX_CONNECTIONS;
  const sockets = new WebSocketServer({ noServer: true });
  server.on("upgrade", (request, socket, head) => {
    sockets.handleUpgrade(request, socket, head, (ws: NodeWebSocket) => {
      ws.on(
        "message",
        (data: Uint8Array, isBinary: boolean) => ws.send(data, { binary: isBinary }),
      );
    });
  });
  server.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ port: (server.address() as { port: number }).port }));
  });
}

/** The server side (child process): a WebSocket echo, direct or behind the front. */
async function serve(variant: string, upstreamKind: string, splice: Splice): Promise<void> {
  const handler = (request: Request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  };
  if (variant === "node") {
    await serveNode();
    return;
  }
  if (variant === "direct") {
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
    console.log(JSON.stringify({ port: server.addr.port }));
    return;
  }
  let upstream: () => Promise<Deno.Conn>;
  if (upstreamKind === "unix") {
    const path = await Deno.makeTempFile({ prefix: "front-", suffix: ".sock" });
    await Deno.remove(path);
    Deno.serve({ transport: "unix", path, onListen: () => {} }, handler);
    upstream = () => Deno.connect({ transport: "unix", path });
  } else {
    const inner = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
    upstream = () => Deno.connect({ hostname: "127.0.0.1", port: inner.addr.port });
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(JSON.stringify({ port: (listener.addr as Deno.NetAddr).port }));
  // Connection caps, overall and per client: a connection over either is closed at once.
  let connections = 0;
  const perClient = new Map<string, number>();
  for await (const conn of listener) {
    const client = (conn.remoteAddr as Deno.NetAddr).hostname;
    const fromClient = perClient.get(client) ?? 0;
    if (connections >= MAX_CONNECTIONS || fromClient >= MAX_CONNECTIONS_PER_CLIENT) {
      conn.close();
      continue;
    }
    connections++;
    perClient.set(client, fromClient + 1);
    void front(conn, upstream, splice).finally(() => {
      connections--;
      const left = perClient.get(client)! - 1;
      if (left === 0) perClient.delete(client);
      else perClient.set(client, left);
    });
  }
}

/** A Telnyx media frame of the usual size, stamped with its send time. */
function mediaFrame(sequence: number, sentAt: number): string {
  return inboundMediaFrame({
    sequence,
    chunk: sequence,
    payload: "/".repeat(216), // base64 of 160 PCMU bytes
    streamId: "32de0dea-53cb-4b21-89a4-9e1819c043bc",
  }, { sent_at: sentAt });
}

interface Result {
  variant: string;
  server_cpu_cores: number;
  rtt_p50_ms: number;
  rtt_p95_ms: number;
  rtt_p99_ms: number;
  frames_echoed: number;
  frames_expected: number;
  server_descriptors: number;
  descriptors_per_socket: number;
}

async function openDescriptors(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Runs one variant: spawns its server on CPU 0 and drives it from this process. */
async function measure(
  variant: string,
  sockets: number,
  seconds: number,
  upstream: string,
  splice: Splice,
): Promise<Result> {
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      "0",
      Deno.execPath(),
      "run",
      "-A",
      "--no-lock",
      new URL(import.meta.url).pathname,
      "--serve",
      variant,
      "--upstream",
      upstream,
      "--splice",
      splice,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await lines.read();
  const { port } = JSON.parse(value!);
  const idleDescriptors = await openDescriptors(child.pid);

  const rtts: number[] = [];
  let recording = false;
  const open: WebSocket[] = [];
  for (let i = 0; i < sockets; i++) {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    socket.onmessage = (event) => {
      // The stamp ends the frame: cheaper than parsing it, so the load stays off the figures.
      const text = event.data as string;
      if (recording) rtts.push(performance.now() - Number(text.slice(SENT_AT_OFFSET(text), -1)));
    };
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    open.push(socket);
  }
  // Each socket on its own 20 ms clock, phases spread over the frame as independent calls are.
  const timers: ReturnType<typeof setInterval>[] = [];
  open.forEach((socket, i) => {
    let sequence = 0;
    setTimeout(() => {
      timers.push(setInterval(() => socket.send(mediaFrame(++sequence, performance.now())), 20));
    }, (i * FRAME_MS) / sockets);
  });
  await delay(3000); // warm-up
  recording = true;
  const cpuBefore = await cpuSeconds(child.pid);
  const startedAt = performance.now();
  await delay(seconds * 1000);
  const cpuAfter = await cpuSeconds(child.pid);
  const elapsed = (performance.now() - startedAt) / 1000;
  recording = false;
  const descriptors = await openDescriptors(child.pid);
  for (const timer of timers) clearInterval(timer);
  for (const socket of open) socket.close();
  child.kill("SIGKILL");
  await child.status;
  await lines.cancel().catch(() => {});
  const round = (v: number | undefined) => +(v ?? NaN).toFixed(2);
  return {
    variant: variant === "front" ? `front (${upstream} upstream, ${splice})` : variant,
    server_cpu_cores: +((cpuAfter - cpuBefore) / elapsed).toFixed(3),
    rtt_p50_ms: round(percentile(rtts, 50)),
    rtt_p95_ms: round(percentile(rtts, 95)),
    rtt_p99_ms: round(percentile(rtts, 99)),
    frames_echoed: rtts.length,
    frames_expected: Math.round(sockets * elapsed * 1000 / FRAME_MS),
    server_descriptors: descriptors,
    descriptors_per_socket: +((descriptors - idleDescriptors) / sockets).toFixed(2),
  };
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    serve: { type: "string" },
    upstream: { type: "string", default: "unix" },
    sockets: { type: "string", default: "300" },
    seconds: { type: "string", default: "20" },
    rounds: { type: "string", default: "2" },
    splice: { type: "string", default: "loop" },
    variants: { type: "string", default: "direct,front,node" },
  },
});
const splice = values.splice as Splice;
if (values.serve) {
  await serve(values.serve, values.upstream, splice);
} else {
  // The load runs on CPU 1, away from the server.
  await new Deno.Command("taskset", { args: ["-a", "-c", "-p", "1", String(Deno.pid)] }).output();
  const sockets = Number(values.sockets);
  const seconds = Number(values.seconds);
  const results: Result[] = [];
  // Alternated rounds, so a change in the machine's load hits both variants alike.
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const variant of values.variants.split(",")) {
      const result = await measure(variant, sockets, seconds, values.upstream, splice);
      console.log(JSON.stringify(result));
      results.push(result);
    }
  }
  const mean = (variant: string, key: keyof Result) => {
    const of = results.filter((r) => r.variant.startsWith(variant)).map((r) => Number(r[key]));
    return of.reduce((a, b) => a + b, 0) / of.length;
  };
  const direct = mean("direct", "server_cpu_cores");
  for (const variant of values.variants.split(",").filter((v) => v !== "direct")) {
    const added = mean(variant, "server_cpu_cores") - direct;
    const delta = (key: keyof Result) => +(mean(variant, key) - mean("direct", key)).toFixed(2);
    console.log(JSON.stringify({
      variant,
      sockets,
      added_cpu_cores: +added.toFixed(3),
      added_cpu_percent_of_direct: Math.round((added / direct) * 100),
      added_rtt_p50_ms: delta("rtt_p50_ms"),
      added_rtt_p95_ms: delta("rtt_p95_ms"),
      added_descriptors_per_socket: delta("descriptors_per_socket"),
    }));
  }
}
