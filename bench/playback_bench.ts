/**
 * Outbound playback cost.
 *
 * - "frame": one 20 ms frame through enqueue → pump → base64 → JSON, on an injected clock and a
 *   manual ticker (the media-frame builder alone is the baseline).
 * - "load": N concurrent playbacks streaming for a few seconds on real timers, once with the
 *   shared ticker and once with one timer per call. Printed: CPU ms per call-second, the worst
 *   lateness of a frame past the moment the lead called for it (an underrun needs lateness >
 *   leadMs), underruns, and the ticker's own worst tick delay. The output only counts, so socket
 *   writes and the wire encoding are not included.
 *
 * Run: `deno bench --allow-env bench/playback_bench.ts` (PLAYBACK_BENCH_CALLS, _SECONDS override).
 */
import process from "node:process";
import { Playback, PlaybackTicker } from "../src/session/playback.ts";
import { mediaFrameFromBytes } from "../src/telnyx/media_stream.ts";
import { type AudioOutput, MULAW_8K } from "../src/transport/call_transport.ts";

/** An output that counts what it is given and sends nothing. */
function countingOutput(onAudio: (frame: Uint8Array) => void): AudioOutput {
  return { outputFormat: MULAW_8K, sendAudio: onAudio, sendMark: () => {}, clear: () => {} };
}

const FRAME = new Uint8Array(160).map((_, i) => (i * 7) % 251);

function envNumber(name: string, fallback: number): number {
  try {
    const value = Number(Deno.env.get(name));
    return Number.isFinite(value) && value > 0 ? value : fallback;
  } catch {
    return fallback; // no --allow-env
  }
}

const CALLS = envNumber("PLAYBACK_BENCH_CALLS", 300);
const SECONDS = envNumber("PLAYBACK_BENCH_SECONDS", 3);
const LEAD_MS = 100;

Deno.bench({
  name: "frame: mediaFrameFromBytes(160 bytes) alone",
  group: "frame",
  baseline: true,
  fn: () => {
    mediaFrameFromBytes(FRAME);
  },
});

{
  let clock = 0;
  let chars = 0;
  const ticker = new PlaybackTicker({ manual: true });
  const playback = new Playback({
    output: countingOutput((frame) => chars += mediaFrameFromBytes(frame).length),
    now: () => clock,
    ticker,
    leadMs: 40,
  });
  // Prime a steady state: the lead is full, each iteration adds and sends exactly one frame.
  for (let i = 0; i < 10; i++) playback.enqueue(FRAME);
  Deno.bench({
    name: "frame: enqueue + paced send of one 20 ms frame",
    group: "frame",
    fn: () => {
      playback.enqueue(FRAME);
      clock += 20;
      ticker.tick();
    },
  });
}

interface LoadResult {
  cpuMsPerCallSecond: number;
  maxLatenessMs: number;
  p99LatenessMs: number;
  underruns: number;
  framesSent: number;
  tickerMaxDelayMs: number;
}

/** Streams CALLS playbacks for SECONDS on real timers and measures them. */
async function simulateLoad(sharedTicker: boolean): Promise<LoadResult> {
  const audio = new Uint8Array(8_000 * (SECONDS + 1)).map((_, i) => (i * 13) % 251);
  const chunk = 1_600; // TTS-sized chunks
  const latenesses: number[] = [];
  const tickers: PlaybackTicker[] = [];
  const shared = new PlaybackTicker();
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const playbacks = Array.from({ length: CALLS }, () => {
    let firstAt = 0;
    let frames = 0;
    const ticker = sharedTicker ? shared : new PlaybackTicker();
    if (!sharedTicker) tickers.push(ticker);
    const playback = new Playback({
      ticker,
      leadMs: LEAD_MS,
      output: countingOutput(() => {
        const now = performance.now();
        if (frames === 0) firstAt = now;
        // Frame k is due once the lead drops below LEAD_MS; the first frames go out at once.
        const dueAt = firstAt + Math.max(0, frames * 20 - LEAD_MS);
        if (frames * 20 >= LEAD_MS) latenesses.push(now - dueAt);
        frames++;
      }),
    });
    for (let offset = 0; offset < audio.length; offset += chunk) {
      playback.enqueue(audio.subarray(offset, offset + chunk));
    }
    playback.endPhrase("all");
    return playback;
  });
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  const elapsedS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  let underruns = 0;
  let framesSent = 0;
  for (const playback of playbacks) {
    underruns += playback.stats.underruns;
    framesSent += playback.stats.framesSent;
    playback.close();
  }
  latenesses.sort((a, b) => a - b);
  const tickerDelays = sharedTicker ? [shared.maxLatenessMs] : tickers.map((t) => t.maxLatenessMs);
  return {
    cpuMsPerCallSecond: (cpu.user + cpu.system) / 1000 / (CALLS * elapsedS),
    maxLatenessMs: latenesses.at(-1) ?? 0,
    p99LatenessMs: latenesses[Math.floor(latenesses.length * 0.99)] ?? 0,
    underruns,
    framesSent,
    tickerMaxDelayMs: Math.max(...tickerDelays),
  };
}

function report(label: string, result: LoadResult): void {
  console.log(
    `${label}: ${CALLS} calls x ${SECONDS} s, lead ${LEAD_MS} ms: ` +
      `cpu ${result.cpuMsPerCallSecond.toFixed(3)} ms per call-second ` +
      `(${(result.cpuMsPerCallSecond * 60 / 1000).toFixed(4)} cpu-s per call-minute), ` +
      `frame lateness p99 ${result.p99LatenessMs.toFixed(1)} ms / max ` +
      `${result.maxLatenessMs.toFixed(1)} ms, underruns ${result.underruns}, ` +
      `frames ${result.framesSent}, worst tick delay ${result.tickerMaxDelayMs.toFixed(1)} ms`,
  );
}

Deno.bench({
  name: `load: ${CALLS} calls streaming, one shared ticker`,
  group: "load",
  n: 1,
  warmup: 0,
  fn: async () => report("shared ticker", await simulateLoad(true)),
});

Deno.bench({
  name: `load: ${CALLS} calls streaming, one timer per call`,
  group: "load",
  n: 1,
  warmup: 0,
  fn: async () => report("timer per call", await simulateLoad(false)),
});
