/**
 * G.711 throughput. Throughput is quoted in bytes of G.711 per second (= samples per second), so
 * MB/s = G711_BYTES / (time per iteration). Target: >= 200 MB/s in every direction.
 *
 * Run: `deno bench bench/g711_bench.ts`
 */
import { decodeALaw, decodeMuLaw, encodeALaw, encodeMuLaw } from "../src/audio/g711.ts";

const ONE_MIB = 1 << 20;
const FRAME_20MS = 160; // 8 kHz * 20 ms, the typical Telnyx media frame

/**
 * Speech-like test signal: a few tones plus deterministic noise, with a slow amplitude envelope
 * so every segment (quiet to loud) is exercised, not just one corner of the encode tables.
 */
function speechLikePcm(length: number): Int16Array {
  const pcm = new Int16Array(length);
  let seed = 0x2545f491;
  for (let i = 0; i < length; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const noise = (seed | 0) / 0x80000000;
    const t = i / 8000;
    const envelope = 0.05 + 0.95 * Math.abs(Math.sin(2 * Math.PI * 0.7 * t));
    const tones = 0.5 * Math.sin(2 * Math.PI * 220 * t) + 0.3 * Math.sin(2 * Math.PI * 1170 * t);
    pcm[i] = Math.round(32767 * envelope * Math.max(-1, Math.min(1, tones + 0.2 * noise)));
  }
  return pcm;
}

function fixtures(length: number) {
  const pcm = speechLikePcm(length);
  return {
    pcm,
    muLaw: encodeMuLaw(pcm),
    aLaw: encodeALaw(pcm),
    pcmOut: new Int16Array(length),
    bytesOut: new Uint8Array(length),
  };
}

const big = fixtures(ONE_MIB);
const frame = fixtures(FRAME_20MS);

Deno.bench("decodeMuLaw 1 MiB", { group: "1 MiB", baseline: true }, () => {
  decodeMuLaw(big.muLaw, big.pcmOut);
});
Deno.bench("encodeMuLaw 1 MiB", { group: "1 MiB" }, () => {
  encodeMuLaw(big.pcm, big.bytesOut);
});
Deno.bench("decodeALaw 1 MiB", { group: "1 MiB" }, () => {
  decodeALaw(big.aLaw, big.pcmOut);
});
Deno.bench("encodeALaw 1 MiB", { group: "1 MiB" }, () => {
  encodeALaw(big.pcm, big.bytesOut);
});

Deno.bench("decodeMuLaw 160 B frame", { group: "20 ms frame", baseline: true }, () => {
  decodeMuLaw(frame.muLaw, frame.pcmOut);
});
Deno.bench("encodeMuLaw 160 B frame", { group: "20 ms frame" }, () => {
  encodeMuLaw(frame.pcm, frame.bytesOut);
});
Deno.bench("decodeALaw 160 B frame", { group: "20 ms frame" }, () => {
  decodeALaw(frame.aLaw, frame.pcmOut);
});
Deno.bench("encodeALaw 160 B frame", { group: "20 ms frame" }, () => {
  encodeALaw(frame.pcm, frame.bytesOut);
});
