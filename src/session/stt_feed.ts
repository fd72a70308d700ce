/**
 * The callee's audio on its way to STT: how much goes in each write, and where it lives until
 * the transcriber lets go of it. The voice agent says, frame by frame, what the callee is doing;
 * this decides the chunking. Every chunk is a socket write, the largest single cost per call in
 * profiles, so chunks are as long as nothing waiting on Deepgram allows.
 *
 * @module
 */

import { type AudioFormat, bytesFor } from "../transport/call_transport.ts";
import type { LiveTranscriber } from "../services/stt.ts";

/**
 * Callee audio per STT write while the callee talks or their turn awaits a transcript; Deepgram
 * suggests 20–250 ms per write.
 */
export const STT_CHUNK_MS = 40;
/**
 * Callee audio per STT write while the callee is silent and no turn of theirs awaits a
 * transcript: nothing waits on Deepgram then, so fewer, larger writes.
 */
export const STT_CHUNK_WHILE_CALLEE_SILENT_MS = 200;
/**
 * Audio the transcriber keeps for a reconnect while the callee is silent and no turn is
 * underway: enough for the start of words the VAD has not yet called speech. Otherwise it keeps
 * everything since Deepgram's last final, up to its bound, which silence would fill.
 */
export const SILENCE_KEPT_FOR_REPLAY_MS = 2000;
/**
 * Chunks are views into slabs of this much audio: the transcriber keeps each chunk until it is
 * transcribed, and one allocation per second of audio is far cheaper than one per write.
 */
const STT_SLAB_MS = 1000;

/**
 * What the callee is doing, as of the frame being fed:
 * - `silent`: not speaking and no turn of theirs awaits a transcript;
 * - `pausing`: the VAD hears a pause inside their speech (or its hang-over);
 * - `talking`: anything else (speaking, or a turn awaiting its transcript).
 */
export type CalleeState = "talking" | "pausing" | "silent";

/**
 * Forwards callee audio to a {@link LiveTranscriber} in {@link STT_CHUNK_MS} chunks while the
 * callee talks, {@link STT_CHUNK_WHILE_CALLEE_SILENT_MS} while they are silent. While they pause
 * every frame goes out at once: Deepgram's end of utterance (or of turn) is decided on the
 * silence it has received, so a frame held back for its chunk would delay the answer by a frame.
 * When the silence ends, what was held before goes out at once. While the callee is silent the
 * transcriber also lets go of what it kept for a reconnect, but for the last
 * {@link SILENCE_KEPT_FOR_REPLAY_MS}.
 */
export class SttFeed {
  readonly #stt: LiveTranscriber;
  readonly #chunkBytes: number;
  readonly #silentChunkBytes: number;
  /** The chunk being filled is `#slab[#slabUsed, #slabUsed + #fill)`. */
  #slab: Uint8Array;
  #slabUsed = 0;
  #fill = 0;

  constructor(stt: LiveTranscriber, format: AudioFormat) {
    this.#stt = stt;
    this.#chunkBytes = bytesFor(format, STT_CHUNK_MS);
    this.#silentChunkBytes = bytesFor(format, STT_CHUNK_WHILE_CALLEE_SILENT_MS);
    this.#slab = new Uint8Array(bytesFor(format, STT_SLAB_MS));
  }

  /** Feeds one frame. The payload is only lent: it is copied before this returns. */
  push(payload: Uint8Array, callee: CalleeState): void {
    const silent = callee === "silent";
    const chunkBytes = silent ? this.#silentChunkBytes : this.#chunkBytes;
    if (this.#fill + payload.length > chunkBytes) this.flush();
    if (payload.length >= chunkBytes) {
      // The transcriber keeps what it is given; the transport reuses the payload.
      this.#stt.sendAudio(payload.slice());
      return;
    }
    // Room for the largest chunk, since a chunk begun while the callee talks may end silent.
    if (this.#fill === 0 && this.#slabUsed + this.#silentChunkBytes > this.#slab.length) {
      // Chunks already sent keep the old slab alive until they are transcribed.
      this.#slab = new Uint8Array(this.#slab.length);
      this.#slabUsed = 0;
    }
    this.#slab.set(payload, this.#slabUsed + this.#fill);
    this.#fill += payload.length;
    if (this.#fill >= chunkBytes || callee === "pausing") {
      this.flush();
      if (silent) this.#stt.forgetSilence(SILENCE_KEPT_FOR_REPLAY_MS);
    }
  }

  /** Sends what is held now: at the end of the call, the callee's last words. */
  flush(): void {
    if (this.#fill === 0) return;
    // The transcriber keeps sent chunks for replay after a reconnect: each is its own region of
    // the slab, never written again.
    const start = this.#slabUsed;
    this.#slabUsed += this.#fill;
    this.#fill = 0;
    this.#stt.sendAudio(this.#slab.subarray(start, this.#slabUsed));
  }
}
