/**
 * What sending the callee's audio to Deepgram costs the server's JavaScript thread, through the
 * official SDK, with its default socket under Deno (npm `ws` over Node's stream emulation)
 * and with Deno's own WebSocket through the SDK's `transportFactory` (what `stt.ts` uses).
 *
 * N connections each send 40 ms of 8 kHz audio (320 bytes) every 40 ms, as a call does. The
 * receiving end runs in a worker, so only the sending thread's CPU time is measured (read from
 * `/proc/self/task/<pid>/stat`, Linux only). Printed: CPU ms of that thread per
 * connection-minute, for each socket.
 *
 * Run: `deno run -A --cert tests/fakes/tls/ca.pem bench/stt_socket_bench.ts [--connections 100]
 * [--seconds 10]`
 * (pin it for steadier figures: `taskset -c 1 …`).
 *
 * @module
 */
import { DeepgramClient } from "@deepgram/sdk";
import { parseArgs } from "node:util";
import { delay } from "../src/async/deadline.ts";
import { NativeDeepgramSocket } from "../src/services/deepgram_native_socket.ts";
import { startWebSocketSink } from "../tests/fakes/websocket_sink.ts";

const CHUNK = new Uint8Array(320).fill(0xff);
const CHUNK_MS = 40;

/** CPU time (user + system) of this process's main thread, in ms. */
async function mainThreadCpuMs(): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/self/task/${Deno.pid}/stat`);
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticksPerSecond = 100; // USER_HZ on Linux
  return (Number(fields[11]) + Number(fields[12])) * 1000 / ticksPerSecond;
}

async function measure(native: boolean, baseUrl: string, connections: number, seconds: number) {
  const client = new DeepgramClient({
    apiKey: "bench",
    baseUrl,
    ...(native ? { transportFactory: (_u, _h, request) => new NativeDeepgramSocket(request) } : {}),
  });
  const sockets = await Promise.all(
    Array.from({ length: connections }, async () => {
      const socket = await client.listen.v1.connect({
        model: "nova-3",
        encoding: "mulaw",
        sample_rate: 8000,
        reconnectAttempts: 0,
      });
      const opened = new Promise<void>((resolve) => socket.on("open", () => resolve()));
      socket.connect();
      await opened;
      return socket;
    }),
  );
  const before = await mainThreadCpuMs();
  const startedAt = performance.now();
  const timer = setInterval(() => {
    for (const socket of sockets) socket.sendMedia(CHUNK);
  }, CHUNK_MS);
  await delay(seconds * 1000);
  clearInterval(timer);
  const cpuMs = (await mainThreadCpuMs()) - before;
  const minutes = connections * (performance.now() - startedAt) / 60_000;
  for (const socket of sockets) socket.close();
  await delay(200);
  return cpuMs / minutes;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      connections: { type: "string", default: "100" },
      seconds: { type: "string", default: "10" },
    },
  });
  const connections = Number(values.connections);
  const seconds = Number(values.seconds);
  const sink = await startWebSocketSink();
  console.log(
    `| socket (${connections} connections, ${seconds} s) | main-thread CPU ms per connection-minute |`,
  );
  console.log("|---|---|");
  // Alternated, so a noisy neighbour weighs on both.
  for (const native of [false, true, false, true]) {
    const ms = await measure(native, `https://127.0.0.1:${sink.port}`, connections, seconds);
    console.log(
      `| ${native ? "Deno WebSocket (transportFactory)" : "SDK default (npm ws)"} | ${
        ms.toFixed(0)
      } |`,
    );
  }
  sink.close();
  Deno.exit(0);
}
