/**
 * Chooses the VAD engine by measuring: WebRTC VAD (libfvad WASM) vs Silero v5 (ONNX through
 * onnxruntime-web's WASM backend), on the labelled clips in `tests/fixtures/`.
 *
 * Per engine configuration it reports
 * - frame accuracy of the raw per-frame decision and of the hysteresis output (`speaking`),
 *   against the clips' speech regions (pauses between words count as speech);
 * - speech recall on speech frames and false-positive rate on non-speech frames;
 * - per speech clip, onset delay (speech_start decided − labelled onset, audio ms) and end delay
 *   (speech_end decided − labelled offset), and how many speech_starts each clip produced;
 * - false speech_starts on the non-speech clips (silence, line noise, click/burst, DTMF);
 * - CPU time per second of audio for one call (process CPU time, not wall time), hence the
 *   CPU share of 300 calls.
 *
 * Not a `Deno.bench` file (it prints tables): run it by hand,
 * `deno run --allow-read --allow-env bench/vad_eval.ts` (add `--quick` to skip Silero).
 * Silero's model comes from `@ricky0123/vad-web` (inside the npm package; nothing is fetched).
 *
 * @module
 */
import process from "node:process";
import * as ort from "npm:onnxruntime-web@1.30.0";
import createFvadModule from "@echogarden/fvad-wasm";
import "npm:@ricky0123/vad-web@0.0.31"; // puts the package (and its model files) in the graph
import { decodeMuLaw } from "../src/audio/g711.ts";
import { createVad, type FvadModule, SpeechSegmenter, type VadEvent } from "../src/audio/vad.ts";
import { type Clip, CLIPS, loadClip } from "../tests/fixtures/clips.ts";

const SAMPLE_RATE = 8000;
const SAMPLES_PER_MS = SAMPLE_RATE / 1000;
const CALLS_TARGET_NOTE = "300 calls on 2 cores";
const CALLS_TARGET = 300;

/** One engine under test: classifies fixed frames, optionally in a per-call state. */
interface FrameEngine {
  readonly name: string;
  readonly frameMs: number;
  /** Speech probability or 0/1 for one frame of `frameMs`. */
  classify(frame: Int16Array): Promise<number> | number;
  reset(): void;
  close(): void;
}

type Hysteresis = { startMs: number; endMs: number };

type ClipRun = {
  clip: Clip;
  decisions: number[]; // per frame, 0/1 after threshold
  speaking: boolean[]; // per frame, hysteresis state after the frame
  events: VadEvent[];
};

function labelAt(clip: Clip, ms: number): boolean {
  return clip.speech.some((region) => ms >= region.startMs && ms < region.endMs);
}

async function runClip(
  engine: FrameEngine,
  clip: Clip,
  pcm: Int16Array,
  threshold: number,
  hysteresis: Hysteresis,
): Promise<ClipRun> {
  engine.reset();
  const segmenter = new SpeechSegmenter(hysteresis.startMs, hysteresis.endMs);
  const frameSamples = engine.frameMs * SAMPLES_PER_MS;
  const decisions: number[] = [];
  const speaking: boolean[] = [];
  const events: VadEvent[] = [];
  for (let offset = 0; offset + frameSamples <= pcm.length; offset += frameSamples) {
    const score = await engine.classify(pcm.subarray(offset, offset + frameSamples));
    const voiced = score >= threshold;
    decisions.push(voiced ? 1 : 0);
    const event = segmenter.frame(voiced, (offset + frameSamples) / SAMPLES_PER_MS, engine.frameMs);
    if (event) events.push(event);
    speaking.push(segmenter.speaking);
  }
  return { clip, decisions, speaking, events };
}

type Summary = {
  rawAccuracy: number;
  smoothAccuracy: number;
  recall: number;
  falsePositiveRate: number;
  onsetDelays: number[];
  endDelays: number[];
  missed: string[];
  split: string[];
  falseStarts: string[];
};

function summarise(runs: ClipRun[], frameMs: number): Summary {
  let frames = 0, rawCorrect = 0, smoothCorrect = 0, speechFrames = 0, speechHit = 0;
  let silentFrames = 0, silentHit = 0;
  const onsetDelays: number[] = [], endDelays: number[] = [];
  const missed: string[] = [], split: string[] = [], falseStarts: string[] = [];
  for (const run of runs) {
    run.decisions.forEach((decision, i) => {
      const truth = labelAt(run.clip, i * frameMs + frameMs / 2);
      frames++;
      if ((decision === 1) === truth) rawCorrect++;
      if (run.speaking[i] === truth) smoothCorrect++;
      if (truth) {
        speechFrames++;
        if (decision === 1) speechHit++;
      } else {
        silentFrames++;
        if (decision === 1) silentHit++;
      }
    });
    const starts = run.events.filter((event) => event.type === "speech_start");
    const ends = run.events.filter((event) => event.type === "speech_end");
    if (run.clip.kind === "non-speech") {
      if (starts.length > 0) {
        falseStarts.push(`${run.clip.name}@${starts.map((s) => s.atMs).join(",")}`);
      }
      continue;
    }
    const region = run.clip.speech[0];
    if (starts.length === 0) {
      missed.push(run.clip.name);
      continue;
    }
    if (starts.length > 1) split.push(`${run.clip.name}×${starts.length}`);
    onsetDelays.push(starts[0].atMs - region.startMs);
    const lastEnd = ends.at(-1);
    // A clip whose trailing pad is shorter than endMs may not see speech_end: treat as the end
    // of the clip (lower bound), which the tests avoid by padding.
    endDelays.push((lastEnd?.atMs ?? run.clip.durationMs) - region.endMs);
  }
  return {
    rawAccuracy: rawCorrect / frames,
    smoothAccuracy: smoothCorrect / frames,
    recall: speechHit / speechFrames,
    falsePositiveRate: silentHit / silentFrames,
    onsetDelays,
    endDelays,
    missed,
    split,
    falseStarts,
  };
}

function stats(values: number[]): string {
  if (values.length === 0) return "-";
  const sorted = [...values].sort((a, b) => a - b);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return `${mean.toFixed(0)} (${sorted[0].toFixed(0)}..${sorted.at(-1)!.toFixed(0)})`;
}

function pct(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

// --- engines -----------------------------------------------------------------------------------

const fvad = (await createFvadModule()) as FvadModule;

/** Raw libfvad decisions, to see the engine without our hysteresis. */
function webRtcEngine(mode: number, frameMs: number): FrameEngine {
  const handle = fvad._fvad_new();
  const buffer = fvad._malloc(frameMs * SAMPLES_PER_MS * 2);
  const configure = () => {
    fvad._fvad_set_sample_rate(handle, SAMPLE_RATE);
    fvad._fvad_set_mode(handle, mode);
  };
  configure();
  return {
    name: `webrtc mode ${mode}, ${frameMs} ms`,
    frameMs,
    classify(frame) {
      fvad.HEAP16.set(frame, buffer >> 1);
      return fvad._fvad_process(handle, buffer, frame.length);
    },
    reset() {
      fvad._fvad_reset(handle);
      configure();
    },
    close() {
      fvad._fvad_free(handle);
      fvad._free(buffer);
    },
  };
}

/** Silero v5 at 8 kHz: 256-sample (32 ms) frames plus 32 samples of the previous frame. */
const SILERO_FRAME = 256;
const SILERO_CONTEXT = 32;

async function sileroSession(): Promise<ort.InferenceSession> {
  ort.env.wasm.numThreads = 1; // threads would need workers + SharedArrayBuffer; also unfair
  ort.env.logLevel = "error";
  const modelUrl = import.meta.resolve("npm:@ricky0123/vad-web@0.0.31/dist/silero_vad_v5.onnx");
  const model = await Deno.readFile(new URL(modelUrl));
  return await ort.InferenceSession.create(model, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
}

function sileroEngine(session: ort.InferenceSession): FrameEngine {
  const input = new Float32Array(SILERO_CONTEXT + SILERO_FRAME);
  const zeroState = (): ort.Tensor =>
    new ort.Tensor("float32", new Float32Array(2 * 128), [2, 1, 128]);
  const sampleRate = new ort.Tensor("int64", BigInt64Array.from([BigInt(SAMPLE_RATE)]), []);
  const inputTensor = new ort.Tensor("float32", input, [1, input.length]);
  let state = zeroState();
  return {
    name: "silero v5 (onnxruntime-web wasm)",
    frameMs: SILERO_FRAME / SAMPLES_PER_MS,
    async classify(frame) {
      input.copyWithin(0, SILERO_FRAME, SILERO_FRAME + SILERO_CONTEXT);
      for (let i = 0; i < SILERO_FRAME; i++) input[SILERO_CONTEXT + i] = frame[i] / 32768;
      const out = await session.run({ input: inputTensor, state, sr: sampleRate });
      state = out.stateN as ort.Tensor;
      return (out.output.data as Float32Array)[0];
    },
    reset() {
      input.fill(0);
      state = zeroState();
    },
    close() {},
  };
}

// --- CPU -----------------------------------------------------------------------------------

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/** CPU ms per second of audio for the production path (`createVad`, 160-sample pushes). */
async function webRtcCpu(audio: Int16Array[], rounds: number, mode: number): Promise<number> {
  const vad = await createVad({ mode });
  let audioMs = 0;
  const before = cpuMs();
  for (let round = 0; round < rounds; round++) {
    for (const pcm of audio) {
      vad.reset();
      for (let offset = 0; offset + 160 <= pcm.length; offset += 160) {
        vad.push(pcm.subarray(offset, offset + 160));
      }
      audioMs += Math.floor(pcm.length / 160) * 20;
    }
  }
  const spent = cpuMs() - before;
  vad.close();
  return spent / (audioMs / 1000);
}

async function sileroCpu(session: ort.InferenceSession, audio: Int16Array[]): Promise<number> {
  const engine = sileroEngine(session);
  let audioMs = 0;
  const before = cpuMs();
  for (const pcm of audio) {
    engine.reset();
    for (let offset = 0; offset + SILERO_FRAME <= pcm.length; offset += SILERO_FRAME) {
      await engine.classify(pcm.subarray(offset, offset + SILERO_FRAME));
      audioMs += SILERO_FRAME / SAMPLES_PER_MS;
    }
  }
  return (cpuMs() - before) / (audioMs / 1000);
}

/** Best case for Silero: one `run` for a batch of calls (state [2, B, 128]). */
async function sileroBatchedCpu(session: ort.InferenceSession, batch: number): Promise<number> {
  const input = new Float32Array(batch * (SILERO_CONTEXT + SILERO_FRAME));
  for (let i = 0; i < input.length; i++) input[i] = Math.sin(i / 7) * 0.1;
  const inputTensor = new ort.Tensor("float32", input, [batch, SILERO_CONTEXT + SILERO_FRAME]);
  const sampleRate = new ort.Tensor("int64", BigInt64Array.from([BigInt(SAMPLE_RATE)]), []);
  let state: ort.Tensor = new ort.Tensor("float32", new Float32Array(2 * batch * 128), [
    2,
    batch,
    128,
  ]);
  const runs = 60;
  const before = cpuMs();
  for (let i = 0; i < runs; i++) {
    const out = await session.run({ input: inputTensor, state, sr: sampleRate });
    state = out.stateN as ort.Tensor;
  }
  const callSeconds = (runs * batch * SILERO_FRAME) / SAMPLE_RATE;
  return (cpuMs() - before) / callSeconds;
}

// --- main ----------------------------------------------------------------------------------

const quick = Deno.args.includes("--quick");
const audio = CLIPS.map((clip) => decodeMuLaw(loadClip(clip.name)));
const totalSeconds = audio.reduce((sum, pcm) => sum + pcm.length, 0) / SAMPLE_RATE;
console.log(`clips: ${CLIPS.length}, ${totalSeconds.toFixed(1)} s of audio (${CALLS_TARGET_NOTE})`);

async function evaluate(engine: FrameEngine, threshold: number, hysteresis: Hysteresis) {
  const runs: ClipRun[] = [];
  for (const [i, clip] of CLIPS.entries()) {
    runs.push(await runClip(engine, clip, audio[i], threshold, hysteresis));
  }
  return summarise(runs, engine.frameMs);
}

function table(title: string) {
  console.log(`\n${title}\n`);
  console.log(
    "| engine | start/end ms | raw acc | smoothed acc | speech recall | FPR non-speech frames | " +
      "onset delay ms mean (min..max) | end delay ms | missed | split | false starts |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
}
function row(name: string, hysteresis: Hysteresis, s: Summary) {
  console.log(
    `| ${name} | ${hysteresis.startMs}/${hysteresis.endMs} | ${pct(s.rawAccuracy)} | ` +
      `${pct(s.smoothAccuracy)} | ${pct(s.recall)} | ${pct(s.falsePositiveRate)} | ` +
      `${stats(s.onsetDelays)} | ${stats(s.endDelays)} | ${s.missed.join(" ") || 0} | ` +
      `${s.split.join(" ") || 0} | ${s.falseStarts.join(" ") || 0} |`,
  );
}

async function webRtcRow(mode: number, frameMs: number, hysteresis: Hysteresis) {
  const engine = webRtcEngine(mode, frameMs);
  row(engine.name, hysteresis, await evaluate(engine, 0.5, hysteresis));
  engine.close();
}

table("WebRTC, every mode and frame length, hysteresis 80/400 ms:");
for (const frameMs of [10, 20, 30]) {
  for (const mode of [0, 1, 2, 3]) await webRtcRow(mode, frameMs, { startMs: 80, endMs: 400 });
}

table(
  "WebRTC modes 2-3: startMs sweep (libfvad adds 60 ms of hangover to every voiced run in " +
    "mode 3, so a 1-frame click reads as 80 ms of speech):",
);
for (const frameMs of [10, 20, 30]) {
  for (const mode of [2, 3]) {
    for (const startMs of [100, 120, 140]) await webRtcRow(mode, frameMs, { startMs, endMs: 400 });
  }
}

table("WebRTC mode 2, 20 ms, startMs 120: endMs sweep (split = utterance cut in two):");
for (const endMs of [250, 300, 350, 400, 500]) await webRtcRow(2, 20, { startMs: 120, endMs });

let session: ort.InferenceSession | undefined;
if (!quick) {
  const loadStart = performance.now();
  session = await sileroSession();
  console.log(`\n(silero session created in ${(performance.now() - loadStart).toFixed(0)} ms)`);
  table("Silero v5, 32 ms frames (startMs rounds up to whole frames):");
  const engine = sileroEngine(session);
  for (const threshold of [0.3, 0.5, 0.7]) {
    for (const startMs of [64, 96]) {
      const hysteresis = { startMs, endMs: 400 };
      row(
        `${engine.name}, p >= ${threshold}`,
        hysteresis,
        await evaluate(engine, threshold, hysteresis),
      );
    }
  }
}

table("Chosen default (createVad: mode 2, 20 ms, 120/400) next to Silero at p >= 0.5:");
await webRtcRow(2, 20, { startMs: 120, endMs: 400 });
if (session) {
  const hysteresis = { startMs: 96, endMs: 400 };
  row("silero v5, p >= 0.5", hysteresis, await evaluate(sileroEngine(session), 0.5, hysteresis));
}

console.log("\nCPU per second of audio (one call), process CPU time:");
await webRtcCpu(audio, 2, 2); // warm-up: JIT and wasm tier-up
const webRtc = await webRtcCpu(audio, 20, 2);
console.log(
  `- webrtc (createVad, 160-sample pushes): ${(webRtc * 1000).toFixed(1)} µs CPU per call-second` +
    ` → ${CALLS_TARGET} calls use ${(webRtc * CALLS_TARGET / 10).toFixed(2)}% of one core`,
);
if (session) {
  await sileroCpu(session, audio.slice(0, 2)); // warm-up
  const silero = await sileroCpu(session, audio);
  console.log(
    `- silero, one run per call per 32 ms: ${(silero * 1000).toFixed(0)} µs CPU per call-second` +
      ` → ${CALLS_TARGET} calls use ${(silero * CALLS_TARGET / 10).toFixed(0)}% of one core`,
  );
  for (const batch of [16, 64]) {
    await sileroBatchedCpu(session, batch);
    const batched = await sileroBatchedCpu(session, batch);
    console.log(
      `- silero batched ×${batch} calls per run: ${
        (batched * 1000).toFixed(0)
      } µs per call-second` +
        ` → ${CALLS_TARGET} calls use ${(batched * CALLS_TARGET / 10).toFixed(0)}% of one core`,
    );
  }
  await session.release();
}
