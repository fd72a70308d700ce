/**
 * What the wire alone costs a Deno server per call, with no call logic at all: the floor under
 * the server's CPU per call-minute in `bench/calls.ts`.
 *
 * A child server accepts N media WebSockets and, cumulatively by `--mode`:
 * - `inbound`: reads Telnyx-shaped `media` frames, 20 ms of PCMU each, 50 a second per call, and
 *   only counts them;
 * - `outbound`: also sends half the calls (standing for the bot's share of a call in the load of
 *   `bench/calls.ts`) one 40 ms `media` message every 40 ms, from one shared timer, as the
 *   playback does;
 * - `stt`: also opens one `wss:` connection per call to a sink and sends it the callee's audio
 *   as the server sends it to Deepgram: 40 ms every 40 ms while the callee talks (here, the calls
 *   whose bot is silent), 200 ms every 200 ms while they are silent (the calls whose bot speaks).
 *
 * The callers and the sink run in this process. The server runs on the first CPU this process
 * may use and this process on the others, when there are two and `taskset` is there
 * (`--pin-server` names the server's CPUs instead). Printed: the server process's CPU (every
 * thread, from `/proc`, Linux only) as cores busy and as CPU seconds per call-minute, to set
 * beside what `bench/calls.ts --capacity` reports for whole calls, and the share of the callers'
 * frames the server read (short of 100 %: it fell behind, or frames were in flight at the end).
 *
 * Run: `deno run -A --cert tests/fakes/tls/ca.pem bench/wire_floor.ts [--calls 300]
 * [--seconds 20] [--pin-server 0] [--mode inbound|outbound|stt|all] [--plain-sink]`
 * (`--plain-sink`: the audio goes over `ws:`, to see what TLS adds).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { deadline, delay } from "../src/async/deadline.ts";
import { inboundMediaFrame } from "../tests/fakes/telnyx_media.ts";
import { startWebSocketSink } from "../tests/fakes/websocket_sink.ts";
import { outputLines } from "../tests/helpers/output_lines.ts";
import {
  cpuSeconds,
  onCpus,
  pinThreads,
  serverAndLoadCpus,
} from "../tests/helpers/process_stats.ts";
import { mediaFrameFromBytes } from "../src/telnyx/media_stream.ts";

const FRAME_MS = 20;
const OUTBOUND_MS = 40;
/** STT chunks of a silent callee go out every this many playback ticks (200 ms). */
const SILENT_STT_TICKS = 5;
/** Measuring starts this long after the callers start sending. */
const WARM_UP_MS = 3000;
/** Longest wait for the child server to say its port, or its count at the end. */
const CHILD_LINE_MS = 10_000;
const MODES = ["inbound", "outbound", "stt"] as const;
type Mode = typeof MODES[number];

function isMode(value: string): value is Mode {
  return (MODES as readonly string[]).includes(value);
}

/** A Telnyx `media` frame in the shape Telnyx sends, 20 ms of PCMU silence. */
function telnyxFrame(sequence: number): string {
  const payload = new Uint8Array(160).fill(0xff).toBase64();
  const streamId = "32f5a1d0-8b1e-4c1b-9b0e-2d5f0a1c9e77";
  return inboundMediaFrame({ sequence, chunk: sequence, payload, streamId });
}

/** The child server: what `--serve` runs. Prints its port, then serves until SIGTERM. */
function serve(mode: Mode, sinkUrl: string): void {
  const outbound = MODES.indexOf(mode) >= MODES.indexOf("outbound");
  const stt = MODES.indexOf(mode) >= MODES.indexOf("stt");
  /**
   * Calls whose bot speaks, each with its link to the sink when there is one and the tick (of
   * every {@link SILENT_STT_TICKS}) its silent callee's chunk goes on, spread as calls spread.
   */
  const speaking = new Map<WebSocket, { link: WebSocket | undefined; phase: number }>();
  /** Links of the calls whose bot is silent. */
  const listening: WebSocket[] = [];
  let accepted = 0;
  let received = 0;
  let ticks = 0;
  // The very message the playback sends: 40 ms of PCMU.
  const playbackMessage = mediaFrameFromBytes(new Uint8Array(320).fill(0xff));
  const sttChunk = new Uint8Array(320).fill(0xff);
  const silentSttChunk = new Uint8Array(1600).fill(0xff);
  const send = (link: WebSocket | undefined, chunk: Uint8Array) => {
    if (link?.readyState === WebSocket.OPEN) link.send(chunk);
  };
  if (outbound) {
    setInterval(() => {
      const phase = ticks++ % SILENT_STT_TICKS;
      for (const [socket, call] of speaking) {
        socket.send(playbackMessage);
        if (call.phase === phase) send(call.link, silentSttChunk);
      }
      for (const link of listening) send(link, sttChunk);
    }, OUTBOUND_MS);
  }
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    const speaks = outbound && accepted++ % 2 === 0;
    socket.onopen = () => {
      const link = stt ? new WebSocket(sinkUrl) : undefined;
      if (speaks) speaking.set(socket, { link, phase: speaking.size % SILENT_STT_TICKS });
      else if (link) listening.push(link);
    };
    socket.onmessage = () => received++;
    socket.onclose = () => speaking.delete(socket);
    return response;
  });
  console.log(JSON.stringify({ port: server.addr.port }));
  // The bench stops the server with SIGTERM: how many frames it read shows it kept up, and how
  // many links are open that the audio to the sink was sent.
  Deno.addSignalListener("SIGTERM", () => {
    const links = [...[...speaking.values()].map((call) => call.link), ...listening];
    const openLinks = links.filter((link) => link?.readyState === WebSocket.OPEN).length;
    console.log(JSON.stringify({ received, openLinks }));
    Deno.exit(0);
  });
}

/** One mode's figures. */
interface WireCost {
  cores: number;
  perCallMinute: number;
  benchCores: number;
  /** Frames the server read of those the callers sent. */
  readShare: number;
  /** Links to the sink open at the end (0 unless the mode is `stt`). */
  openLinks: number;
}

interface MeasureOptions {
  mode: Mode;
  calls: number;
  seconds: number;
  /** The server's CPUs; unpinned when undefined. */
  serverCpus?: string;
  plainSink: boolean;
}

async function measure(options: MeasureOptions): Promise<WireCost> {
  const { mode, calls, seconds, serverCpus, plainSink } = options;
  const sink = await startWebSocketSink({ tls: !plainSink });
  const sinkUrl = `${plainSink ? "ws" : "wss"}://localhost:${sink.port}`;
  const script = new URL(import.meta.url).pathname;
  const ca = new URL("../tests/fakes/tls/ca.pem", import.meta.url).pathname;
  const [command, ...args] = onCpus(serverCpus, [
    Deno.execPath(),
    ...["run", "-A", "--cert", ca, script, "--serve", mode, sinkUrl],
  ]);
  const child = new Deno.Command(command, { args, stdout: "piped", stderr: "inherit" }).spawn();
  const lines = outputLines(child.stdout).getReader();
  /** The child's next line as JSON; throws if it ends or says nothing in time. */
  const nextLine = async (what: string) => {
    const { value } = await deadline(lines.read(), CHILD_LINE_MS, { what });
    if (value === undefined) throw new Error(`the server exited before ${what}`);
    return JSON.parse(value);
  };
  const sockets: WebSocket[] = [];
  let sender: ReturnType<typeof setInterval> | undefined;
  let sent = 0;
  try {
    const { port } = await nextLine("saying its port");
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
    sender = setInterval(() => {
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
    const { received, openLinks } = await nextLine("saying what it read");
    return {
      cores: cpu / wall,
      perCallMinute: cpu / (calls * wall / 60),
      benchCores: bench / wall,
      readShare: received / sent,
      openLinks,
    };
  } finally {
    clearInterval(sender);
    for (const socket of sockets) socket.close();
    try {
      child.kill();
    } catch {
      // Already gone.
    }
    await child.status;
    await lines.cancel();
    sink.close();
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "--serve") {
    const [, mode, sinkUrl] = Deno.args;
    if (!isMode(mode)) throw new Error(`unknown mode ${mode}`);
    serve(mode, sinkUrl);
  } else {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        calls: { type: "string", default: "300" },
        seconds: { type: "string", default: "20" },
        "pin-server": { type: "string", default: "" },
        mode: { type: "string", default: "all" },
        "plain-sink": { type: "boolean", default: false },
      },
    });
    if (values.mode !== "all" && !isMode(values.mode)) {
      throw new Error(`--mode must be all or one of ${MODES.join(", ")}, not ${values.mode}`);
    }
    const split = values["pin-server"] ? undefined : await serverAndLoadCpus();
    if (split) await pinThreads(Deno.pid, split.load);
    const serverCpus = values["pin-server"] || split?.server;
    console.log(
      serverCpus
        ? `server on CPU ${serverCpus}, callers and sink on ${
          split?.load ?? "the CPUs this runs on"
        }`
        : "unpinned: taskset or a second CPU is missing, so the figures are rough",
    );
    const modes = isMode(values.mode) ? [values.mode] : MODES;
    const calls = Number(values.calls);
    console.log(
      `| wire only, ${calls} calls | server cores busy | server CPU s per call-minute | frames read | links open | callers + sink cores busy |`,
    );
    console.log("|---|---|---|---|---|---|");
    for (const mode of modes) {
      const cost = await measure({
        mode,
        calls,
        seconds: Number(values.seconds),
        serverCpus,
        plainSink: values["plain-sink"],
      });
      console.log(
        `| ${mode === "inbound" ? "inbound" : `+ ${mode}`} | ${cost.cores.toFixed(2)} | ${
          cost.perCallMinute.toFixed(3)
        } | ${(cost.readShare * 100).toFixed(1)} % | ${cost.openLinks} | ${
          cost.benchCores.toFixed(2)
        } |`,
      );
    }
  }
}
