/**
 * VAD cost on the hot path: one 20 ms Telnyx frame (160 samples) and one second of audio per
 * call. Deno.bench's "time/iter" for "1 s of audio" is the CPU one call's VAD costs per second
 * of conversation; 1 s / that = calls one core can carry (VAD alone). A one-off summary with
 * exactly those figures is printed first.
 *
 * Run: `deno bench --allow-read bench/vad_bench.ts`
 *
 * @module
 */
import { decodeMuLaw } from "../src/audio/g711.ts";
import { createVad, vadInstanceBytes } from "../src/audio/vad.ts";
import { loadClip } from "../tests/fixtures/clips.ts";

const FRAME = 160;
const SECOND = 8000;

/** One second of realistic caller audio: the 10 dB SNR clip (speech over pink noise). */
const speech = decodeMuLaw(loadClip("noisy_zoe")).subarray(0, SECOND);
const silence = new Int16Array(SECOND);

const frameVad = await createVad();
const secondVad = await createVad();
const silenceVad = await createVad();

function pushSecond(vad: Awaited<ReturnType<typeof createVad>>, pcm: Int16Array): void {
  for (let offset = 0; offset < SECOND; offset += FRAME) {
    vad.push(pcm.subarray(offset, offset + FRAME));
  }
}

// One-off summary: median of a few timed batches, so a noisy neighbour does not dominate.
{
  const vad = await createVad();
  for (let i = 0; i < 20; i++) pushSecond(vad, speech); // JIT + wasm tier-up
  const samples: number[] = [];
  for (let batch = 0; batch < 7; batch++) {
    const start = performance.now();
    for (let i = 0; i < 50; i++) pushSecond(vad, speech);
    samples.push(((performance.now() - start) * 1000) / 50);
  }
  vad.close();
  samples.sort((a, b) => a - b);
  const perCallSecondUs = samples[3];
  console.log(
    `VAD: ${perCallSecondUs.toFixed(1)} µs per call-second (median of 7 × 50 s), ` +
      `${(perCallSecondUs / 50).toFixed(2)} µs per 20 ms frame → ` +
      `~${Math.floor(1e6 / perCallSecondUs)} calls per core (VAD alone); ` +
      `${await vadInstanceBytes()} bytes of wasm heap per instance`,
  );
}

let frameOffset = 0;
Deno.bench("VAD push, one 20 ms frame (160 samples)", { group: "frame", baseline: true }, () => {
  frameVad.push(speech.subarray(frameOffset, frameOffset + FRAME));
  frameOffset = (frameOffset + FRAME) % SECOND;
});

Deno.bench("VAD, 1 s of speech+noise audio per call (50 pushes)", { group: "second" }, () => {
  pushSecond(secondVad, speech);
});

Deno.bench("VAD, 1 s of digital silence per call (50 pushes)", { group: "second" }, () => {
  pushSecond(silenceVad, silence);
});

Deno.bench("createVad + close (per call setup)", { group: "lifecycle" }, async () => {
  (await createVad()).close();
});
