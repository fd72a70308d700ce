/**
 * ITU-T G.711 companding: mu-law (PCMU) and A-law (PCMA) <-> 16-bit linear PCM.
 *
 * Every direction is a single table read per sample. The tables are built once at module load
 * from the classic reference bit-twiddling formulas (Sun/CCITT `g711.c` lineage), so the hot
 * path never branches on segment boundaries and never allocates per sample.
 *
 * Encoding rules (these matter when comparing against other G.711 implementations):
 * - mu-law: sign-magnitude input (`|sample|`), clip at 32635, bias 0x84 (132). -1..-3 encode to
 *   0x7f ("negative zero", which also decodes to 0); 0..3 encode to 0xff.
 * - A-law: 13-bit input (`sample >> 3`), negative values use the one's complement (`~x`) so the
 *   two halves are mirror images; even bits are inverted with 0x55.
 *
 * @module
 */

/** mu-law byte for digital silence (decodes to 0). Telnyx and Deepgram both treat it as silence. */
export const MU_LAW_SILENCE = 0xff;

/** Largest input magnitude mu-law can represent before the top code saturates. */
const MU_LAW_CLIP = 32635;
/** mu-law bias: shifts every magnitude so segment 0 starts at a power of two (132 = 33 << 2). */
const MU_LAW_BIAS = 0x84;
/** Number of distinct 16-bit samples; the encode tables cover all of them. */
const SAMPLE_COUNT = 65536;

/** Reference mu-law expansion of one code, used only to build the decode table. */
function referenceMuLawDecode(code: number): number {
  // mu-law bytes are transmitted bit-inverted so that silence is all ones.
  const inverted = ~code & 0xff;
  const segment = (inverted >> 4) & 0x07;
  const magnitude = ((((inverted & 0x0f) << 3) + MU_LAW_BIAS) << segment) - MU_LAW_BIAS;
  return (inverted & 0x80) !== 0 ? -magnitude : magnitude;
}

/** Reference mu-law compression of one 16-bit sample, used only to build the encode table. */
function referenceMuLawEncode(sample: number): number {
  const sign = sample < 0 ? 0x80 : 0x00;
  let magnitude = sample < 0 ? -sample : sample;
  if (magnitude > MU_LAW_CLIP) magnitude = MU_LAW_CLIP;
  magnitude += MU_LAW_BIAS;
  // Biased magnitude is in [132, 32767], so its top set bit (7..14) picks the segment.
  const segment = 31 - Math.clz32(magnitude) - 7;
  const mantissa = (magnitude >> (segment + 3)) & 0x0f;
  return ~(sign | (segment << 4) | mantissa) & 0xff;
}

/** Reference A-law expansion of one code, used only to build the decode table. */
function referenceALawDecode(code: number): number {
  // A-law bytes are transmitted with the even bits inverted (XOR 0x55).
  const toggled = code ^ 0x55;
  const segment = (toggled >> 4) & 0x07;
  let magnitude = (toggled & 0x0f) << 4;
  if (segment === 0) {
    magnitude += 8;
  } else {
    // Segments >= 1 carry an implicit leading one (0x100) plus the half-step offset (8).
    magnitude = (magnitude + 0x108) << (segment - 1);
  }
  return (toggled & 0x80) !== 0 ? magnitude : -magnitude;
}

/** Reference A-law compression of one 16-bit sample, used only to build the encode table. */
function referenceALawEncode(sample: number): number {
  let value = sample >> 3;
  let mask: number;
  if (value >= 0) {
    mask = 0xd5;
  } else {
    mask = 0x55;
    value = ~value; // one's complement keeps positive and negative step grids symmetric
  }
  // value is a 12-bit magnitude in [0, 4095]; segment 0 and 1 share the same step size.
  const segment = value < 0x20 ? 0 : 31 - Math.clz32(value) - 4;
  const mantissa = segment < 2 ? (value >> 1) & 0x0f : (value >> segment) & 0x0f;
  return ((segment << 4) | mantissa) ^ mask;
}

function buildDecodeTable(decodeOne: (code: number) => number): Int16Array {
  const table = new Int16Array(256);
  for (let code = 0; code < 256; code++) table[code] = decodeOne(code);
  return table;
}

/** Indexed by the sample's 16-bit two's-complement pattern (`sample & 0xffff`). */
function buildEncodeTable(encodeOne: (sample: number) => number): Uint8Array {
  const table = new Uint8Array(SAMPLE_COUNT);
  for (let pattern = 0; pattern < SAMPLE_COUNT; pattern++) {
    table[pattern] = encodeOne((pattern << 16) >> 16);
  }
  return table;
}

const MU_LAW_DECODE_TABLE = buildDecodeTable(referenceMuLawDecode);
const A_LAW_DECODE_TABLE = buildDecodeTable(referenceALawDecode);
// Full 16-bit tables (64 KiB each): mu-law's sign-magnitude rule is not a function of
// `sample >> 2` for negative samples, so a 14-bit table could not reproduce the reference exactly.
const MU_LAW_ENCODE_TABLE = buildEncodeTable(referenceMuLawEncode);
const A_LAW_ENCODE_TABLE = buildEncodeTable(referenceALawEncode);

/** Returns the caller's buffer (trimmed to `length`) or a fresh one; throws if it is too short. */
function int16Output(length: number, dst: Int16Array | undefined): Int16Array {
  if (dst === undefined) return new Int16Array(length);
  if (dst.length < length) {
    throw new RangeError(`dst holds ${dst.length} samples but ${length} are needed`);
  }
  return dst.length === length ? dst : dst.subarray(0, length);
}

/** Returns the caller's buffer (trimmed to `length`) or a fresh one; throws if it is too short. */
function uint8Output(length: number, dst: Uint8Array | undefined): Uint8Array {
  if (dst === undefined) return new Uint8Array(length);
  if (dst.length < length) {
    throw new RangeError(`dst holds ${dst.length} bytes but ${length} are needed`);
  }
  return dst.length === length ? dst : dst.subarray(0, length);
}

/**
 * Decodes mu-law (PCMU) bytes to 16-bit linear PCM.
 *
 * @param src mu-law bytes, one per sample.
 * @param dst optional reusable output; must hold at least `src.length` samples.
 * @returns a view of exactly `src.length` samples (`dst` itself when the lengths match).
 * @throws {RangeError} if `dst` is shorter than `src`.
 */
export function decodeMuLaw(src: Uint8Array, dst?: Int16Array): Int16Array {
  const out = int16Output(src.length, dst);
  const table = MU_LAW_DECODE_TABLE;
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

/**
 * Encodes 16-bit linear PCM to mu-law (PCMU) bytes.
 *
 * @param src linear samples; magnitudes above 32635 saturate to the loudest code.
 * @param dst optional reusable output; must hold at least `src.length` bytes.
 * @returns a view of exactly `src.length` bytes (`dst` itself when the lengths match).
 * @throws {RangeError} if `dst` is shorter than `src`.
 */
export function encodeMuLaw(src: Int16Array, dst?: Uint8Array): Uint8Array {
  const out = uint8Output(src.length, dst);
  const table = MU_LAW_ENCODE_TABLE;
  for (let i = 0; i < src.length; i++) out[i] = table[src[i] & 0xffff];
  return out;
}

/**
 * Decodes A-law (PCMA) bytes to 16-bit linear PCM.
 *
 * @param src A-law bytes, one per sample.
 * @param dst optional reusable output; must hold at least `src.length` samples.
 * @returns a view of exactly `src.length` samples (`dst` itself when the lengths match).
 * @throws {RangeError} if `dst` is shorter than `src`.
 */
export function decodeALaw(src: Uint8Array, dst?: Int16Array): Int16Array {
  const out = int16Output(src.length, dst);
  const table = A_LAW_DECODE_TABLE;
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

/**
 * Encodes 16-bit linear PCM to A-law (PCMA) bytes.
 *
 * @param src linear samples (the 3 least significant bits are below A-law resolution).
 * @param dst optional reusable output; must hold at least `src.length` bytes.
 * @returns a view of exactly `src.length` bytes (`dst` itself when the lengths match).
 * @throws {RangeError} if `dst` is shorter than `src`.
 */
export function encodeALaw(src: Int16Array, dst?: Uint8Array): Uint8Array {
  const out = uint8Output(src.length, dst);
  const table = A_LAW_ENCODE_TABLE;
  for (let i = 0; i < src.length; i++) out[i] = table[src[i] & 0xffff];
  return out;
}
