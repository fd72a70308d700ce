/**
 * How late a busy server reads a streamed LLM answer, by transport: `fetch` over HTTP/1.1, over
 * HTTP/2 (what Deno's `fetch` speaks to a TLS server offering it, as vendors' fronts do), and
 * `fetch` in a Worker that posts each chunk to the main thread.
 *
 * A server process streams `--streams` responses of 20 chunks, one every 20 ms, as OpenAI streams
 * tokens, each chunk carrying its send time. A reader process reads them all at once while its
 * event loop is kept busy: each turn blocks for `--busy-ms`, as a server's turns grow near a full
 * core. Printed per transport: how long after it was sent each chunk was read, p50 / p90 / max.
 * With `taskset` and two CPUs the reader runs on the first CPU this process may use and the
 * server on the others.
 *
 * Run: `deno run -A --cert tests/fakes/tls/ca.pem bench/llm_stream_read_bench.ts [--streams 30]
 * [--busy-ms 45]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loopbackTls } from "../tests/fakes/loopback_tls.ts";
import { onCpus, serverAndLoadCpus } from "../tests/helpers/process_stats.ts";

const CHUNKS = 20;
const CHUNK_INTERVAL_MS = 20;
const SELF = new URL(import.meta.url).pathname;
const CA = new URL("../tests/fakes/tls/ca.pem", import.meta.url).pathname;

type Transport = "http1" | "http2" | "worker";

const wallNow = () => performance.timeOrigin + performance.now();

/** One response: CHUNKS server-sent events, each `data: <send time>`. */
function streamedAnswer(): Response {
  let sent = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(() => {
        controller.enqueue(encoder.encode(`data: ${wallNow()}\n\n`));
        if (++sent === CHUNKS) {
          clearInterval(timer);
          controller.close();
        }
      }, CHUNK_INTERVAL_MS);
    },
    cancel: () => clearInterval(timer),
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/** Reads one stream; calls `onChunk` with each chunk's text as it is read. */
async function readStream(url: string, client: Deno.HttpClient, onChunk: (text: string) => void) {
  const response = await fetch(url, { client });
  const decoder = new TextDecoder();
  for await (const chunk of response.body!) onChunk(decoder.decode(chunk));
}

/** Milliseconds between each chunk's send time (in `text`) and `readAt`. */
function lateness(text: string, readAt: number): number[] {
  return [...text.matchAll(/data: ([\d.]+)/g)].map((m) => readAt - Number(m[1]));
}

async function reader(transport: Transport, url: string, streams: number, busyMs: number) {
  const late: number[] = [];
  let running = true;
  // The busy event loop: each turn blocks for busyMs, then yields.
  (function turn() {
    if (!running) return;
    const until = performance.now() + busyMs;
    while (performance.now() < until) { /* a long turn */ }
    setTimeout(turn, 0);
  })();
  if (transport === "worker") {
    const worker = new Worker(import.meta.url, { type: "module" });
    let read = 0;
    await new Promise<void>((resolve) => {
      worker.onmessage = (event: MessageEvent<string>) => {
        late.push(...lateness(event.data, wallNow()));
        if (++read >= streams * CHUNKS) resolve();
      };
      worker.postMessage({ url, streams });
    });
    worker.terminate();
  } else {
    const client = Deno.createHttpClient(
      transport === "http1" ? { http2: false } : { http1: false },
    );
    await Promise.all(
      Array.from(
        { length: streams },
        () => readStream(url, client, (text) => late.push(...lateness(text, wallNow()))),
      ),
    );
    client.close();
  }
  running = false;
  late.sort((a, b) => a - b);
  const at = (q: number) => late[Math.min(late.length - 1, Math.floor(q * late.length))];
  console.log(JSON.stringify({ p50: at(0.5), p90: at(0.9), max: late[late.length - 1] }));
}

/** In the Worker: reads every stream and posts each chunk's text as it comes. */
function workerReader() {
  // The main-thread types lack the worker's: what this scope offers, typed here.
  const scope = self as unknown as {
    onmessage: (event: MessageEvent<{ url: string; streams: number }>) => void;
    postMessage(text: string): void;
  };
  const client = Deno.createHttpClient({ http1: false });
  scope.onmessage = (event) => {
    const { url, streams } = event.data;
    for (let i = 0; i < streams; i++) {
      void readStream(url, client, (text) => scope.postMessage(text));
    }
  };
}

/** This script with `args`, on `cpus` when given. */
function thisScript(cpus: string | undefined, args: string[]): Deno.Command {
  const [command, ...argv] = onCpus(cpus, [
    Deno.execPath(),
    ...["run", "-A", "--cert", CA, SELF, ...args],
  ]);
  return new Deno.Command(command, { args: argv, stdout: "piped" });
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      streams: { type: "string", default: "30" },
      "busy-ms": { type: "string", default: "45" },
      role: { type: "string" },
      transport: { type: "string" },
      url: { type: "string" },
    },
  });
  const streams = Number(values.streams);
  const busyMs = Number(values["busy-ms"]);
  if (values.role === "server") {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, ...loopbackTls(), onListen: () => {} },
      streamedAnswer,
    );
    console.log(`https://127.0.0.1:${server.addr.port}/`);
    return;
  }
  if (values.role === "reader") {
    return await reader(values.transport as Transport, values.url!, streams, busyMs);
  }

  // The reader on the first CPU, the server on the others, when they can be kept apart.
  const split = await serverAndLoadCpus();
  const server = thisScript(split?.load, ["--role", "server"]).spawn();
  const lines = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const url = (await lines.read()).value!.trim();
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  console.log(
    `${streams} streams of ${CHUNKS} chunks ${CHUNK_INTERVAL_MS} ms apart, reader's turns ${busyMs} ms\n`,
  );
  console.log("| read by | p50 | p90 | max |\n|---|---|---|---|");
  for (const transport of ["http1", "http2", "worker"] as const) {
    const args = ["--role", "reader", "--transport", transport, "--url", url];
    const out = await thisScript(split?.server, [
      ...args,
      "--streams",
      `${streams}`,
      "--busy-ms",
      `${busyMs}`,
    ]).output();
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    console.log(`| ${transport} | ${ms(r.p50)} | ${ms(r.p90)} | ${ms(r.max)} |`);
  }
  server.kill();
  await server.status;
  await lines.cancel();
}

if ("WorkerGlobalScope" in globalThis) workerReader();
else if (import.meta.main) await main();
