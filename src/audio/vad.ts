/**
 * Local voice activity detection on the call's decoded 8 kHz audio, for barge-in and turn ends.
 *
 * Engine: the WebRTC VAD (libfvad compiled to WASM, `@echogarden/fvad-wasm`, 20 KB of wasm
 * inside the npm package, nothing fetched at run time). Chosen over Silero v5 (ONNX through
 * onnxruntime-web) by `bench/vad_eval.ts` on the clips in `tests/fixtures/`: both find every
 * utterance without splitting it and ignore silence, line noise and clicks; Silero is more
 * accurate frame by frame (88% vs 85% after smoothing) and also ignores DTMF and a 60 ms noise
 * burst, but it costs ~7 ms of CPU per call-second against ~0.12 ms (5.3 ms even with the
 * native onnxruntime-node): 300 calls would need ~2 cores for Silero alone (~1.3 batched
 * across calls), against ~4% of one core with WebRTC.
 *
 * Layering: the engine classifies fixed frames (20 ms) as voiced or not; {@link SpeechSegmenter}
 * turns those per-frame decisions into `speech_start` / `speech_end` events with hysteresis,
 * so a click (one voiced frame plus hangover) does not count as the callee talking and a short
 * pause between words does not end the turn. Known limits, measured: in-band DTMF tones and
 * loud broadband bursts of ≥ 60 ms are taken for speech; a cough will be too.
 *
 * The wasm module is instantiated once per process and shared by every call; each detector
 * owns one libfvad instance plus one frame buffer inside that module's heap.
 *
 * @module
 */
import createFvadModule from "@echogarden/fvad-wasm";

/** What the detector reports. `atMs` is audio time (samples fed / 8), never wall-clock time. */
export type VadEvent =
  | {
    type: "speech_start";
    /** Audio time at which the start was decided (end of the frame that confirmed it). */
    atMs: number;
    /** Audio time at which the confirmed run of voiced frames began: the speech onset. */
    onsetMs: number;
  }
  | {
    type: "speech_end";
    /** Audio time at which the end was decided (after `endMs` of non-speech). */
    atMs: number;
    /** Audio time at which the last voiced frame ended: the speech offset. */
    offsetMs: number;
  };

/** Tuning of a detector; every field has a default chosen by `bench/vad_eval.ts`. */
export interface VadOptions {
  /** ms of continuous voiced frames needed to declare speech_start. libfvad extends every
   * voiced run by 60 ms of hangover, so a lone voiced frame (a click, or the first frame of a
   * noisy line before the noise model adapts) reads as an 80 ms run. Default 120: ≥ ~60 ms
   * of real voicing; on the clips, speech_start comes 120–200 ms after the onset. */
  startMs?: number;
  /** ms of continuous non-speech needed to declare speech_end. Default 400: 350 was the
   * shortest that split no clip's sentence at its commas; speech_end then comes ~480 ms
   * (378–517) after the last audible sample, hangover included. */
  endMs?: number;
  /** libfvad aggressiveness 0..3 (higher: fewer false positives, more missed quiet speech).
   * Default 2: as few false frames as 3 on our noise clips (9.9% vs 9.3%) but it keeps quiet
   * speech (recall 84% vs 74%) where 3 cut a quiet sentence in pieces. */
  mode?: number;
  /** Engine frame length: 10, 20 or 30 ms (libfvad's choices). Default 20, the Telnyx frame;
   * it was also the most accurate of the three in the eval. */
  frameMs?: VadFrameMs;
}

/** Frame lengths libfvad accepts. */
export type VadFrameMs = 10 | 20 | 30;

/** Streaming VAD for one call. Not thread-safe; one instance per call. */
export interface VoiceActivityDetector {
  /** Feeds decoded 16-bit PCM at 8 kHz, in any chunk size (Telnyx sends 160 samples per
   * 20 ms). Returns the events this chunk produced: almost always a shared empty array, so the
   * hot path allocates nothing. Do not mutate the returned array. */
  push(pcm: Int16Array): readonly VadEvent[];
  /** True between a speech_start and the following speech_end. */
  readonly speaking: boolean;
  /**
   * Speaking, but the last frame was unvoiced: the callee may just have stopped, and the
   * speech_end (and the transcript's end) may be due.
   */
  readonly pausing: boolean;
  /** Audio time fed so far, in ms (samples / 8). */
  readonly audioMs: number;
  /** Forgets all audio and state (the adaptive noise model too); audio time restarts at 0. */
  reset(): void;
  /** Frees the wasm memory of this detector. Idempotent; `push` after `close` throws. */
  close(): void;
}

/** Sample rate of telephone audio and of every detector. */
const VAD_SAMPLE_RATE = 8000;
/** Default {@link VadOptions.frameMs}. */
const DEFAULT_FRAME_MS: VadFrameMs = 20;
/** Default {@link VadOptions.startMs}. */
const DEFAULT_START_MS = 120;
/** Default {@link VadOptions.endMs}. */
const DEFAULT_END_MS = 400;
/** Default {@link VadOptions.mode}. */
const DEFAULT_MODE = 2;

const SAMPLES_PER_MS = VAD_SAMPLE_RATE / 1000;
const NO_EVENTS: readonly VadEvent[] = Object.freeze([]);

/**
 * Hysteresis from per-frame voiced/unvoiced decisions to speech_start / speech_end events.
 * Engine-agnostic (the eval drives it with Silero frames too), allocation-free unless an
 * event is produced.
 */
export class SpeechSegmenter {
  readonly #startMs: number;
  readonly #endMs: number;
  #speaking = false;
  #voicedRunMs = 0;
  #unvoicedRunMs = 0;
  #runStartMs = 0;
  #lastVoicedEndMs = 0;

  /** @param startMs voiced ms needed for speech_start; @param endMs unvoiced ms for speech_end */
  constructor(startMs: number, endMs: number) {
    this.#startMs = startMs;
    this.#endMs = endMs;
  }

  /** True between a speech_start and the following speech_end. */
  get speaking(): boolean {
    return this.#speaking;
  }

  /** Speaking, with the last frame unvoiced. */
  get pausing(): boolean {
    return this.#speaking && this.#unvoicedRunMs > 0;
  }

  /** Takes one frame's decision; `frameEndMs` is the audio time at the end of the frame.
   * Returns the event this frame completed, if any. */
  frame(voiced: boolean, frameEndMs: number, frameMs: number): VadEvent | undefined {
    if (voiced) {
      if (this.#voicedRunMs === 0) this.#runStartMs = frameEndMs - frameMs;
      this.#voicedRunMs += frameMs;
      this.#unvoicedRunMs = 0;
      this.#lastVoicedEndMs = frameEndMs;
      if (!this.#speaking && this.#voicedRunMs >= this.#startMs) {
        this.#speaking = true;
        return { type: "speech_start", atMs: frameEndMs, onsetMs: this.#runStartMs };
      }
      return undefined;
    }
    // A start needs *continuous* voicing: isolated voiced frames (clicks, bursts) never add up.
    this.#voicedRunMs = 0;
    this.#unvoicedRunMs += frameMs;
    if (this.#speaking && this.#unvoicedRunMs >= this.#endMs) {
      this.#speaking = false;
      return { type: "speech_end", atMs: frameEndMs, offsetMs: this.#lastVoicedEndMs };
    }
    return undefined;
  }

  /** Back to "not speaking" with no history. */
  reset(): void {
    this.#speaking = false;
    this.#voicedRunMs = 0;
    this.#unvoicedRunMs = 0;
    this.#runStartMs = 0;
    this.#lastVoicedEndMs = 0;
  }
}

/** The part of the Emscripten module we use (the package ships no type declarations). */
export interface FvadModule {
  _fvad_new(): number;
  _fvad_free(handle: number): void;
  _fvad_reset(handle: number): void;
  _fvad_set_mode(handle: number, mode: number): number;
  _fvad_set_sample_rate(handle: number, sampleRate: number): number;
  _fvad_process(handle: number, frame: number, length: number): number;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  /** Re-created by Emscripten whenever the heap grows, so always read it from the module. */
  HEAP16: Int16Array;
}

let fvadModule: Promise<FvadModule> | undefined;

/** The shared wasm module, instantiated on first use. A failed load is not cached. */
function loadFvadModule(): Promise<FvadModule> {
  fvadModule ??= (createFvadModule() as Promise<FvadModule>).catch((error: unknown) => {
    fvadModule = undefined;
    throw error;
  });
  return fvadModule;
}

/**
 * Loads the shared wasm module ahead of the first call. Instantiating it makes the process
 * resident in about ten megabytes once (measured with `Deno.memoryUsage().rss`), whatever the
 * number of calls: better paid at start than by the first caller, in time and in the figure of
 * memory per call. A failed load is not kept; the first `createVad` tries again and fails that
 * call.
 */
export async function preloadVad(): Promise<void> {
  await loadFvadModule();
}

/** Bytes of wasm heap one detector holds (libfvad state + frame buffer), measured at load. */
export async function vadInstanceBytes(): Promise<number> {
  const module = await loadFvadModule();
  const first = module._fvad_new();
  const second = module._fvad_new();
  module._fvad_free(second);
  module._fvad_free(first);
  // Consecutive allocations: the gap is one libfvad instance including allocator overhead.
  const frameBytes = DEFAULT_FRAME_MS * SAMPLES_PER_MS * Int16Array.BYTES_PER_ELEMENT;
  return Math.abs(second - first) + frameBytes + 8;
}

function checkOptions(options: VadOptions): Required<VadOptions> {
  const startMs = options.startMs ?? DEFAULT_START_MS;
  const endMs = options.endMs ?? DEFAULT_END_MS;
  const mode = options.mode ?? DEFAULT_MODE;
  const frameMs = options.frameMs ?? DEFAULT_FRAME_MS;
  if (frameMs !== 10 && frameMs !== 20 && frameMs !== 30) {
    throw new RangeError(`VAD frameMs must be 10, 20 or 30 (got ${frameMs})`);
  }
  if (!(startMs > 0) || !(endMs > 0)) {
    throw new RangeError(`VAD startMs and endMs must be > 0 (got ${startMs}, ${endMs})`);
  }
  if (!Number.isInteger(mode) || mode < 0 || mode > 3) {
    throw new RangeError(`VAD mode must be an integer 0..3 (got ${mode})`);
  }
  return { startMs, endMs, mode, frameMs };
}

class WebRtcVad implements VoiceActivityDetector {
  readonly #module: FvadModule;
  readonly #mode: number;
  readonly #segmenter: SpeechSegmenter;
  readonly #frameMs: number;
  readonly #frameSamples: number;
  #handle: number;
  /** Byte address of this detector's frame buffer in the wasm heap. */
  #frame: number;
  #filled = 0;
  #samples = 0;

  constructor(module: FvadModule, options: Required<VadOptions>) {
    this.#module = module;
    this.#mode = options.mode;
    this.#segmenter = new SpeechSegmenter(options.startMs, options.endMs);
    this.#frameMs = options.frameMs;
    this.#frameSamples = options.frameMs * SAMPLES_PER_MS;
    this.#handle = module._fvad_new();
    this.#frame = module._malloc(this.#frameSamples * Int16Array.BYTES_PER_ELEMENT);
    if (this.#handle === 0 || this.#frame === 0) {
      this.close();
      throw new Error("libfvad: out of wasm memory");
    }
    this.#configure();
  }

  get speaking(): boolean {
    return this.#segmenter.speaking;
  }

  get pausing(): boolean {
    return this.#segmenter.pausing;
  }

  get audioMs(): number {
    return this.#samples / SAMPLES_PER_MS;
  }

  push(pcm: Int16Array): readonly VadEvent[] {
    if (this.#handle === 0) throw new Error("VAD used after close()");
    let events: VadEvent[] | undefined;
    let heap = this.#module.HEAP16;
    const base = this.#frame >> 1;
    const frameSamples = this.#frameSamples;
    // Whole runs are copied into the WASM frame at once (50 times a second per call).
    for (let offset = 0; offset < pcm.length;) {
      const n = Math.min(frameSamples - this.#filled, pcm.length - offset);
      heap.set(pcm.subarray(offset, offset + n), base + this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled < frameSamples) continue;
      this.#filled = 0;
      const voiced = this.#module._fvad_process(this.#handle, this.#frame, frameSamples);
      if (voiced < 0) throw new Error("libfvad rejected a frame");
      const frameEndMs = (this.#samples + offset) / SAMPLES_PER_MS;
      const event = this.#segmenter.frame(voiced === 1, frameEndMs, this.#frameMs);
      if (event) (events ??= []).push(event);
      // Processing never grows the heap today, but re-reading the view is cheap insurance.
      heap = this.#module.HEAP16;
    }
    this.#samples += pcm.length;
    return events ?? NO_EVENTS;
  }

  reset(): void {
    if (this.#handle === 0) return;
    this.#module._fvad_reset(this.#handle);
    this.#configure(); // fvad_reset also resets mode and sample rate to libfvad's defaults
    this.#segmenter.reset();
    this.#filled = 0;
    this.#samples = 0;
  }

  close(): void {
    if (this.#handle !== 0) this.#module._fvad_free(this.#handle);
    if (this.#frame !== 0) this.#module._free(this.#frame);
    this.#handle = 0;
    this.#frame = 0;
  }

  #configure(): void {
    if (this.#module._fvad_set_sample_rate(this.#handle, VAD_SAMPLE_RATE) !== 0) {
      throw new Error("libfvad refused 8 kHz");
    }
    if (this.#module._fvad_set_mode(this.#handle, this.#mode) !== 0) {
      throw new Error(`libfvad refused mode ${this.#mode}`);
    }
  }
}

/**
 * Creates a detector for one call. The first call loads the shared wasm module (a few ms);
 * later calls only allocate the instance. Call `close()` when the call ends.
 */
export async function createVad(options: VadOptions = {}): Promise<VoiceActivityDetector> {
  const checked = checkOptions(options);
  return new WebRtcVad(await loadFvadModule(), checked);
}
