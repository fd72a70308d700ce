/**
 * The browser tests' microphone: a callee timeline (espeak-ng clips from `tests/fixtures`, see
 * its README) written as the WAV file Chromium's fake capture device plays
 * (`--use-file-for-fake-audio-capture`): 16-bit PCM, mono, 16 kHz. The 8 kHz mu-law clips are
 * decoded and upsampled by linear interpolation, so the file is made at test time from the
 * committed clips rather than kept as a second copy.
 *
 * @module
 */
import { decodeMuLaw } from "../../src/audio/g711.ts";
import type { SpeechSegment } from "../fakes/deepgram.ts";
import type { CallerTimeline } from "../helpers/caller_timeline.ts";

/** Sample rate of the WAV and of what the playground sends (16-bit: 32 bytes per ms). */
const WAV_SAMPLE_RATE = 16000;
const PLAYGROUND_BYTES_PER_MS = 32;

/** `caller`'s audio as a 16 kHz 16-bit mono WAV file. */
function wavOf(caller: CallerTimeline): Uint8Array {
  const narrow = decodeMuLaw(caller.audio());
  const wide = new Int16Array(narrow.length * 2);
  for (let i = 0; i < narrow.length; i++) {
    const next = narrow[i + 1] ?? narrow[i];
    wide[2 * i] = narrow[i];
    wide[2 * i + 1] = (narrow[i] + next) >> 1;
  }
  const data = new Uint8Array(wide.buffer);
  const header = new DataView(new ArrayBuffer(44));
  const ascii = (at: number, text: string) =>
    [...text].forEach((ch, i) => header.setUint8(at + i, ch.charCodeAt(0)));
  ascii(0, "RIFF");
  header.setUint32(4, 36 + data.length, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  header.setUint32(16, 16, true); // fmt chunk size
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, WAV_SAMPLE_RATE, true);
  header.setUint32(28, WAV_SAMPLE_RATE * 2, true); // bytes per second
  header.setUint16(32, 2, true); // bytes per frame
  header.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  header.setUint32(40, data.length, true);
  const file = new Uint8Array(44 + data.length);
  file.set(new Uint8Array(header.buffer), 0);
  file.set(data, 44);
  return file;
}

/**
 * The fake STT's script for `caller` heard through the playground: the same speech, at the
 * byte offsets of 16 kHz 16-bit audio.
 */
export function playgroundScript(caller: CallerTimeline): SpeechSegment[] {
  return caller.speech.map((s) => ({
    text: s.text,
    startByte: Math.round(s.startMs * PLAYGROUND_BYTES_PER_MS),
    endByte: Math.round(s.endMs * PLAYGROUND_BYTES_PER_MS),
  }));
}

/** Writes `caller` as a WAV file in a fresh temporary folder; remove it with `await using`. */
export async function microphoneFile(
  caller: CallerTimeline,
): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "playground-mic-" });
  const path = `${dir}/callee.wav`;
  await Deno.writeFile(path, wavOf(caller));
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}
