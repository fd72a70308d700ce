/**
 * What the wire alone costs a Deno server per call, with no call logic at all: the floor under
 * the server's CPU per call-minute in `bench/calls.ts`.
 *
 * A child server (pinned with `--pin-server`) accepts N media WebSockets and, cumulatively by
 * `--mode`:
 * - `inbound`: reads Telnyx-shaped `media` frames, 20 ms of PCMU each, 50 a second per call, and
 *   only counts them;
 * - `outbound`: also sends half the calls (the bot speaks about half of a call) one 40 ms
 *   `media` message every 40 ms, from one shared timer, as the playback does;
 * - `stt`: also opens one `wss:` connection per call to a sink and sends it 40 ms of audio
 *   (320 bytes) every 40 ms, as the audio to Deepgram goes.
 *
 * The callers and the sink run in this process, on other CPUs than the server's. Printed: the
 * server process's CPU (every thread, from `/proc`, Linux only) as cores busy and as CPU seconds
 * per call-minute, to set beside what `bench/calls.ts --capacity` reports for whole calls, and
 * the share of the callers' frames the server read (below 100 %, it fell behind).
 *
 * Run: `deno run -A --cert tests/fakes/tls/ca.pem bench/wire_floor.ts [--calls 300]
 * [--seconds 20] [--pin-server 0] [--pin-bench 1] [--mode inbound|outbound|stt|all]` (it pins
 * itself and the server with `taskset`, when there is one and a second CPU).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { delay } from "../src/async/deadline.ts";
import { loopbackTls } from "../tests/fakes/loopback_tls.ts";
import { cpuSeconds } from "../tests/helpers/child_server.ts";
import { pinThreads, tasksetAvailable } from "./calls.ts";

const FRAME_MS = 20;
const OUTBOUND_MS = 40;
/** Measuring starts this long after the callers start sending. */
const WARM_UP_MS = 3000;
const MODES = ["inbound", "outbound", "stt"] as const;
type Mode = typeof MODES[number];

/** A Telnyx `media` frame in the shape Telnyx sends, 20 ms of PCMU silence. */
function telnyxFrame(sequence: number): string {
  const payload = new Uint8Array(160).fill(0xff).toBase64();
  return JSON.stringify({
    event: "media",
    sequence_number: String(sequence),
    media: { track: "inbound", chunk: String(sequence), timestamp: String(sequence * 20), payload },
    stream_id: "32f5a1d0-8b1e-4c1b-9b0e-2d5f0a1c9e77",
  });
}

/** The child server: what `--serve` runs. Prints its port, then serves until killed. */
function serve(mode: Mode, sinkUrl: string): void {
  const outbound = MODES.indexOf(mode) >= MODES.indexOf("outbound");
  const stt = MODES.indexOf(mode) >= MODES.indexOf("stt");
  const speaking = new Set<WebSocket>();
  const links: WebSocket[] = [];
  let accepted = 0;
  let received = 0;
  const media = JSON.stringify({
    event: "media",
    media: { payload: new Uint8Array(320).fill(0xff).toBase64() },
  });
  const chunk = new Uint8Array(320).fill(0xff);
  if (outbound || stt) {
    setInterval(() => {
      for (const socket of speaking) socket.send(media);
      for (const link of links) if (link.readyState === WebSocket.OPEN) link.send(chunk);
    }, OUTBOUND_MS);
  }
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    const half = accepted++ % 2 === 0;
    socket.onopen = () => {
      if (outbound && half) speaking.add(socket);
      if (stt) links.push(new WebSocket(sinkUrl));
    };
    socket.onmessage = () => received++;
    socket.onclose = () => speaking.delete(socket);
    return response;
  });
  console.log(JSON.stringify({ port: server.addr.port }));
  // The bench stops the server with SIGTERM; how many frames it read shows it kept up.
  Deno.addSignalListener("SIGTERM", () => {
    console.log(JSON.stringify({ received }));
    Deno.exit(0);
  });
}

/** A `wss:` sink in a worker: accepts every upgrade and discards what it receives. */
function startSink(): Promise<{ url: string; worker: Worker }> {
  const { cert, key } = loopbackTls();
  const source = `
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {},
      cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }, (request) => {
      const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
      socket.onmessage = () => {};
      return response;
    });
    self.postMessage(server.addr.port);
  `;
  const worker = new Worker(`data:application/javascript;base64,${btoa(source)}`, {
    type: "module",
  });
  return new Promise((resolve) => {
    worker.onmessage = (event) => resolve({ url: `wss://localhost:${event.data}`, worker });
  });
}

/** One mode's figures. */
interface WireCost {
  cores: number;
  perCallMinute: number;
  benchCores: number;
  /** Frames the server read of those the callers sent: below 1, it fell behind. */
  readShare: number;
}

async function measure(
  mode: Mode,
  calls: number,
  seconds: number,
  pin?: string,
): Promise<WireCost> {
  const sink = await startSink();
  const self = new URL(import.meta.url).pathname;
  const ca = new URL("../tests/fakes/tls/ca.pem", import.meta.url).pathname;
  const deno = [Deno.execPath(), "run", "-A", "--cert", ca, self, "--serve", mode, sink.url];
  const [command, ...args] = pin ? ["taskset", "--cpu-list", pin, ...deno] : deno;
  const child = new Deno.Command(command, { args, stdout: "piped", stderr: "inherit" }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter())
    .getReader();
  const sockets: WebSocket[] = [];
  let sent = 0;
  try {
    const { port } = JSON.parse((await lines.read()).value!);
    for (let i = 0; i < calls; i++) {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      socket.onmessage = () => {};
      await new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = reject;
      });
      sockets.push(socket);
    }
    const frames = Array.from({ length: 50 }, (_, i) => telnyxFrame(i));
    let sequence = 0;
    // One timer sends what the wall clock says is due, as the load bench's callers do.
    const startedAt = performance.now();
    const sender = setInterval(() => {
      const due = Math.floor((performance.now() - startedAt) / FRAME_MS);
      for (; sequence < due; sequence++) {
        const frame = frames[sequence % frames.length];
        for (const socket of sockets) socket.send(frame);
        sent += sockets.length;
      }
    }, FRAME_MS);
    await delay(WARM_UP_MS);
    const cpu0 = await cpuSeconds(child.pid);
    const bench0 = await cpuSeconds(Deno.pid);
    const t0 = performance.now();
    await delay(seconds * 1000);
    const wall = (performance.now() - t0) / 1000;
    const cpu = (await cpuSeconds(child.pid)) - cpu0;
    const bench = (await cpuSeconds(Deno.pid)) - bench0;
    clearInterval(sender);
    child.kill("SIGTERM");
    const { received } = JSON.parse((await lines.read()).value ?? '{"received":0}');
    return {
      cores: cpu / wall,
      perCallMinute: cpu / (calls * wall / 60),
      benchCores: bench / wall,
      readShare: received / sent,
    };
  } finally {
    for (const socket of sockets) socket.close();
    try {
      child.kill();
    } catch {
      // Already gone.
    }
    await child.status;
    await lines.cancel();
    sink.worker.terminate();
  }
}

/** Splits a text stream into lines. */
function lineSplitter(): TransformStream<string, string> {
  let buffer = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      for (const line of parts) controller.enqueue(line);
    },
  });
}

if (import.meta.main) {
  if (Deno.args[0] === "--serve") {
    serve(Deno.args[1] as Mode, Deno.args[2]);
  } else {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        calls: { type: "string", default: "300" },
        seconds: { type: "string", default: "20" },
        "pin-server": { type: "string", default: "0" },
        "pin-bench": { type: "string", default: "1" },
        mode: { type: "string", default: "all" },
      },
    });
    const pinned = navigator.hardwareConcurrency >= 2 && await tasksetAvailable();
    if (pinned) await pinThreads(Deno.pid, values["pin-bench"]);
    else console.log("unpinned: taskset or a second CPU is missing, so the figures are rough");
    const modes = values.mode === "all" ? MODES : [values.mode as Mode];
    console.log(
      `| wire only, ${values.calls} calls | server cores busy | server CPU s per call-minute | frames read | callers + sink cores busy |`,
    );
    console.log("|---|---|---|---|---|");
    for (const mode of modes) {
      const cost = await measure(
        mode,
        Number(values.calls),
        Number(values.seconds),
        pinned ? values["pin-server"] : undefined,
      );
      console.log(
        `| ${mode === "inbound" ? "inbound" : `+ ${mode}`} | ${cost.cores.toFixed(2)} | ${
          cost.perCallMinute.toFixed(3)
        } | ${(cost.readShare * 100).toFixed(1)} % | ${cost.benchCores.toFixed(2)} |`,
      );
    }
  }
}
