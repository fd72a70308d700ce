import assert from "node:assert/strict";
import {
  decodeALaw,
  decodeMuLaw,
  encodeALaw,
  encodeMuLaw,
  MU_LAW_SILENCE,
} from "../../src/audio/g711.ts";

/** One code or sample through the buffer codecs, for assertions on single values. */
const muLawToLinear = (code: number) => decodeMuLaw(Uint8Array.of(code))[0];
const linearToMuLaw = (sample: number) => encodeMuLaw(Int16Array.of(sample))[0];
const aLawToLinear = (code: number) => decodeALaw(Uint8Array.of(code))[0];
const linearToALaw = (sample: number) => encodeALaw(Int16Array.of(sample))[0];

// Independent oracles, deliberately written in the style of the ITU-T G.191 STL `g711.c`
// (step arithmetic and shift loops) rather than the bit layout the module uses, so a shared
// mistake between the two is unlikely.

/** G.191 `ulaw_expand`: sign * (segment base + step * mantissa + half step - bias). */
function oracleMuLawDecode(code: number): number {
  const sign = code < 0x80 ? -1 : 1;
  const inverted = ~code;
  const exponent = (inverted >> 4) & 0x07;
  const mantissa = inverted & 0x0f;
  const step = 4 << (exponent + 1);
  // `| 0` turns the -0 that negative zero (0x7f) produces into 0, which is what Int16Array holds.
  return (sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33)) | 0;
}

/** G.191 `alaw_expand`. */
function oracleALawDecode(code: number): number {
  const toggled = (code ^ 0x55) & 0x7f;
  const exponent = toggled >> 4;
  let mantissa = toggled & 0x0f;
  if (exponent > 0) mantissa += 16;
  mantissa = (mantissa << 4) + 8;
  if (exponent > 1) mantissa <<= exponent - 1;
  return code > 127 ? mantissa : -mantissa;
}

/** The 16-bit mu-law compressor (bias 0x84, clip 32635), exponent found by scanning bits. */
function oracleMuLawEncode(sample: number): number {
  const sign = (sample >> 8) & 0x80;
  let magnitude = sign !== 0 ? -sample : sample;
  if (magnitude > 32635) magnitude = 32635;
  magnitude += 0x84;
  let exponent = 7;
  for (let bit = 0x4000; (magnitude & bit) === 0 && exponent > 0; bit >>= 1) exponent--;
  const mantissa = (magnitude >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** G.191 `alaw_compress`: one's complement for negatives, 12 MSBs, shift loop for the segment. */
function oracleALawEncode(sample: number): number {
  let ix = sample < 0 ? (~sample) >> 4 : sample >> 4;
  if (ix > 15) {
    let exponent = 1;
    while (ix > 16 + 15) {
      ix >>= 1;
      exponent++;
    }
    ix -= 16;
    ix += exponent << 4;
  }
  if (sample >= 0) ix |= 0x80;
  return ix ^ 0x55;
}

/** Quantiser step (16-bit scale) of the segment a mu-law code belongs to. */
function muLawStep(code: number): number {
  return 8 << ((~code >> 4) & 0x07);
}

/** Quantiser step (16-bit scale) of the segment an A-law code belongs to (segments 0 and 1 match). */
function aLawStep(code: number): number {
  const segment = ((code ^ 0x55) >> 4) & 0x07;
  return 16 << Math.max(0, segment - 1);
}

const ALL_CODES = Uint8Array.from({ length: 256 }, (_, code) => code);
const ALL_SAMPLES = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);

Deno.test("mu-law decode matches the reference formula for all 256 codes", () => {
  const decoded = decodeMuLaw(ALL_CODES);
  for (let code = 0; code < 256; code++) {
    const expected = oracleMuLawDecode(code);
    assert.equal(decoded[code], expected, `code 0x${code.toString(16)}`);
    assert.equal(muLawToLinear(code), expected, `single code 0x${code.toString(16)}`);
  }
});

Deno.test("A-law decode matches the reference formula for all 256 codes", () => {
  const decoded = decodeALaw(ALL_CODES);
  for (let code = 0; code < 256; code++) {
    const expected = oracleALawDecode(code);
    assert.equal(decoded[code], expected, `code 0x${code.toString(16)}`);
    assert.equal(aLawToLinear(code), expected, `single code 0x${code.toString(16)}`);
  }
});

Deno.test("known code values", async (t) => {
  await t.step("mu-law", () => {
    assert.equal(muLawToLinear(0xff), 0);
    assert.equal(muLawToLinear(0x7f), 0);
    assert.equal(muLawToLinear(0x00), -32124);
    assert.equal(muLawToLinear(0x80), 32124);
    assert.equal(muLawToLinear(0xfe), 8);
    assert.equal(muLawToLinear(0x7e), -8);
    assert.equal(muLawToLinear(MU_LAW_SILENCE), 0);
    assert.equal(MU_LAW_SILENCE, 0xff);
  });
  await t.step("A-law", () => {
    assert.equal(aLawToLinear(0xd5), 8);
    assert.equal(aLawToLinear(0x55), -8);
    assert.equal(aLawToLinear(0x2a), -32256);
    assert.equal(aLawToLinear(0xaa), 32256);
  });
});

Deno.test("encode(decode(code)) round-trips every code", async (t) => {
  await t.step("mu-law: all but negative zero 0x7f, which collapses onto 0xff", () => {
    const reencoded = encodeMuLaw(decodeMuLaw(ALL_CODES));
    for (let code = 0; code < 256; code++) {
      const expected = code === 0x7f ? 0xff : code;
      assert.equal(reencoded[code], expected, `code 0x${code.toString(16)}`);
    }
  });
  await t.step("A-law: all 256 codes (A-law has no duplicate zero)", () => {
    const reencoded = encodeALaw(decodeALaw(ALL_CODES));
    assert.deepEqual(reencoded, ALL_CODES);
  });
});

Deno.test("encode matches the reference encoder for every 16-bit sample", async (t) => {
  await t.step("mu-law", () => {
    const encoded = encodeMuLaw(ALL_SAMPLES);
    for (let i = 0; i < ALL_SAMPLES.length; i++) {
      const sample = ALL_SAMPLES[i];
      const expected = oracleMuLawEncode(sample);
      if (encoded[i] !== expected) {
        assert.fail(`sample ${sample}: got ${encoded[i]}, want ${expected}`);
      }
    }
    assert.equal(linearToMuLaw(0), 0xff);
    assert.equal(linearToMuLaw(-1), 0x7f, "small negatives keep their sign as negative zero");
    assert.equal(linearToMuLaw(-32768), 0x00);
    assert.equal(linearToMuLaw(32767), 0x80);
  });
  await t.step("A-law", () => {
    const encoded = encodeALaw(ALL_SAMPLES);
    for (let i = 0; i < ALL_SAMPLES.length; i++) {
      const sample = ALL_SAMPLES[i];
      const expected = oracleALawEncode(sample);
      if (encoded[i] !== expected) {
        assert.fail(`sample ${sample}: got ${encoded[i]}, want ${expected}`);
      }
    }
    assert.equal(linearToALaw(0), 0xd5);
    assert.equal(linearToALaw(-1), 0x55);
    assert.equal(linearToALaw(-32768), 0x2a);
    assert.equal(linearToALaw(32767), 0xaa);
  });
  await t.step("every code is reachable by the encoder", () => {
    assert.equal(new Set(encodeMuLaw(ALL_SAMPLES)).size, 256);
    assert.equal(new Set(encodeALaw(ALL_SAMPLES)).size, 256);
  });
});

/**
 * Quantises every 16-bit sample and returns the worst |error| seen per (sign, segment) bucket,
 * asserting on the way that the reconstruction is monotonic in the input.
 */
function worstErrorPerSegment(
  encode: (src: Int16Array) => Uint8Array,
  decode: (src: Uint8Array) => Int16Array,
  segmentOf: (code: number) => number,
  skip: (sample: number) => boolean,
): Map<string, { worst: number; code: number }> {
  const codes = encode(ALL_SAMPLES);
  const reconstructed = decode(codes);
  const worst = new Map<string, { worst: number; code: number }>();
  for (let i = 0; i < ALL_SAMPLES.length; i++) {
    if (i > 0 && reconstructed[i] < reconstructed[i - 1]) {
      assert.fail(`reconstruction not monotonic at sample ${ALL_SAMPLES[i]}`);
    }
    const sample = ALL_SAMPLES[i];
    if (skip(sample)) continue;
    const key = `${codes[i] & 0x80 ? "+" : "-"}${segmentOf(codes[i])}`;
    const error = Math.abs(reconstructed[i] - sample);
    const entry = worst.get(key);
    if (entry === undefined || error > entry.worst) {
      worst.set(key, { worst: error, code: codes[i] });
    }
  }
  return worst;
}

Deno.test("quantisation error is at most half a step, and that bound is reached", async (t) => {
  await t.step("mu-law (unclipped range |sample| <= 32635)", () => {
    const worst = worstErrorPerSegment(
      encodeMuLaw,
      decodeMuLaw,
      (code) => (~code >> 4) & 0x07,
      (sample) => sample > 32635 || sample < -32635,
    );
    assert.equal(worst.size, 16, "both signs of all 8 segments are exercised");
    for (const [segment, { worst: error, code }] of worst) {
      assert.equal(error, muLawStep(code) / 2, `segment ${segment}`);
    }
  });
  await t.step("mu-law clipped samples saturate at +/-32124", () => {
    for (let sample = 32636; sample <= 32767; sample++) {
      assert.equal(muLawToLinear(linearToMuLaw(sample)), 32124);
      assert.equal(muLawToLinear(linearToMuLaw(-sample)), -32124);
    }
    assert.equal(muLawToLinear(linearToMuLaw(-32768)), -32124);
  });
  await t.step("A-law (whole 16-bit range, no clipping region)", () => {
    const worst = worstErrorPerSegment(
      encodeALaw,
      decodeALaw,
      (code) => ((code ^ 0x55) >> 4) & 0x07,
      () => false,
    );
    assert.equal(worst.size, 16, "both signs of all 8 segments are exercised");
    for (const [segment, { worst: error, code }] of worst) {
      assert.equal(error, aLawStep(code) / 2, `segment ${segment}`);
    }
  });
});

Deno.test("dst buffers are reused and length-checked", async (t) => {
  const pcm = Int16Array.of(0, 1000, -1000, 32767, -32768);
  const mulaw = Uint8Array.of(0xff, 0x00, 0x80, 0x7e, 0x12);

  await t.step("exact-length dst is returned as-is and filled", () => {
    const dst = new Int16Array(mulaw.length);
    const out = decodeMuLaw(mulaw, dst);
    assert.equal(out, dst);
    assert.deepEqual(Array.from(out), Array.from(mulaw, muLawToLinear));

    const bytes = new Uint8Array(pcm.length);
    assert.equal(encodeALaw(pcm, bytes), bytes);
    assert.deepEqual(Array.from(bytes), Array.from(pcm, linearToALaw));
  });

  await t.step("longer dst yields a src-length view over the same memory, tail untouched", () => {
    const dst = new Uint8Array(pcm.length + 3).fill(0x5a);
    const out = encodeMuLaw(pcm, dst);
    assert.equal(out.length, pcm.length);
    assert.equal(out.buffer, dst.buffer);
    assert.equal(out.byteOffset, dst.byteOffset);
    assert.deepEqual(Array.from(out), Array.from(pcm, linearToMuLaw));
    assert.deepEqual(Array.from(dst.subarray(pcm.length)), [0x5a, 0x5a, 0x5a]);

    const samples = new Int16Array(mulaw.length + 1).fill(7);
    const decoded = decodeALaw(mulaw, samples);
    assert.equal(decoded.length, mulaw.length);
    assert.equal(decoded.buffer, samples.buffer);
    assert.deepEqual(Array.from(decoded), Array.from(mulaw, aLawToLinear));
    assert.equal(samples[mulaw.length], 7);
  });

  await t.step("reused dst is overwritten on the next call", () => {
    const dst = new Int16Array(2);
    decodeMuLaw(Uint8Array.of(0x00, 0x80), dst);
    decodeMuLaw(Uint8Array.of(0xff, 0xfe), dst);
    assert.deepEqual(Array.from(dst), [0, 8]);
  });

  await t.step("too-short dst throws RangeError in every direction", () => {
    assert.throws(() => decodeMuLaw(mulaw, new Int16Array(mulaw.length - 1)), RangeError);
    assert.throws(() => decodeALaw(mulaw, new Int16Array(0)), RangeError);
    assert.throws(() => encodeMuLaw(pcm, new Uint8Array(pcm.length - 1)), RangeError);
    assert.throws(() => encodeALaw(pcm, new Uint8Array(1)), RangeError);
  });

  await t.step("without dst a fresh exact-length buffer is returned; empty input is fine", () => {
    const out = encodeMuLaw(pcm);
    assert.ok(out instanceof Uint8Array);
    assert.equal(out.length, pcm.length);
    assert.equal(out.byteLength, out.buffer.byteLength);
    assert.equal(decodeALaw(new Uint8Array(0)).length, 0);
    assert.equal(encodeALaw(new Int16Array(0), new Uint8Array(0)).length, 0);
  });

  await t.step("src is a view with an offset", () => {
    const backing = Uint8Array.of(0x11, 0x00, 0x80, 0x22);
    assert.deepEqual(Array.from(decodeMuLaw(backing.subarray(1, 3))), [-32124, 32124]);
  });
});

Deno.test("G.711 buffer codecs on small samples", () => {
  assert.deepEqual(Array.from(decodeMuLaw(encodeMuLaw(Int16Array.of(0, 8)))), [0, 8]);
  assert.deepEqual(Array.from(encodeALaw(Int16Array.of(8, -8))), [0xd5, 0x55]);
});
