import assert from "node:assert/strict";
import { decodeMuLaw } from "../../src/audio/g711.ts";
import {
  createVad,
  preloadVad,
  SpeechSegmenter,
  type VadEvent,
  vadInstanceBytes,
  type VadOptions,
  type VoiceActivityDetector,
} from "../../src/audio/vad.ts";
import { clipInfo, loadClip, NON_SPEECH_CLIPS, SPEECH_CLIPS } from "../fixtures/clips.ts";

/** The detector's default {@link VadOptions.endMs}: silence before speech_end. */
const DEFAULT_END_MS = 400;
/** 1 s of digital silence appended to every clip so that speech_end is always reachable. */
const TAIL = new Int16Array(8000);
/** speech_start may come this long after the labelled onset (audio ms; measured max 200). */
const ONSET_TOLERANCE_MS = 300;
/** speech_end may come this long after offset + endMs (hangover + decaying tail; measured ≤ 120). */
const END_TOLERANCE_MS = 250;

function clipPcm(name: string): Int16Array {
  const speech = decodeMuLaw(loadClip(name));
  const pcm = new Int16Array(speech.length + TAIL.length);
  pcm.set(speech);
  pcm.set(TAIL, speech.length);
  return pcm;
}

/** Feeds `pcm` in `chunk`-sample pieces, collecting every event. */
function feed(vad: VoiceActivityDetector, pcm: Int16Array, chunk = 160): VadEvent[] {
  const events: VadEvent[] = [];
  for (let offset = 0; offset < pcm.length; offset += chunk) {
    events.push(...vad.push(pcm.subarray(offset, Math.min(offset + chunk, pcm.length))));
  }
  return events;
}

async function eventsFor(name: string, options?: VadOptions, chunk = 160): Promise<VadEvent[]> {
  const vad = await createVad(options);
  try {
    return feed(vad, clipPcm(name), chunk);
  } finally {
    vad.close();
  }
}

Deno.test("speech clips: one speech_start near the onset, one speech_end after the offset", async (t) => {
  for (const clip of SPEECH_CLIPS) {
    await t.step(clip.name, async () => {
      const [region] = clip.speech;
      const events = await eventsFor(clip.name);
      assert.equal(events.length, 2, `expected start + end, got ${JSON.stringify(events)}`);
      const [start, end] = events;
      assert.equal(start.type, "speech_start");
      assert.equal(end.type, "speech_end");
      if (start.type !== "speech_start" || end.type !== "speech_end") return;
      // Never before the caller opens their mouth, and soon enough for barge-in.
      assert.ok(start.onsetMs >= region.startMs - 20, `onset ${start.onsetMs} < ${region.startMs}`);
      assert.ok(start.atMs >= start.onsetMs);
      assert.ok(
        start.atMs <= region.startMs + ONSET_TOLERANCE_MS,
        `speech_start at ${start.atMs} ms, speech begins at ${region.startMs} ms`,
      );
      // Not before the caller stops, and not long after.
      // (The quietest clip's last syllable may go unheard, so the bound is the offset itself.)
      assert.ok(end.atMs >= region.endMs, `speech_end at ${end.atMs} < offset ${region.endMs}`);
      assert.ok(
        end.atMs <= region.endMs + DEFAULT_END_MS + END_TOLERANCE_MS,
        `speech_end at ${end.atMs} ms, speech ends at ${region.endMs} ms`,
      );
      assert.ok(end.offsetMs >= region.endMs - 100 && end.offsetMs <= end.atMs);
    });
  }
});

Deno.test("non-speech clips: silence and line noise never start speech", async (t) => {
  const limits = ["dtmf", "click_burst"]; // tested below
  for (const clip of NON_SPEECH_CLIPS.filter((candidate) => !limits.includes(candidate.name))) {
    await t.step(clip.name, async () => {
      assert.deepEqual(await eventsFor(clip.name), []);
    });
  }
});

Deno.test("a 5 ms click is ignored; a loud 60 ms burst is taken for speech (known limit)", async () => {
  const events = await eventsFor("click_burst");
  // Click at 500 ms, burst at 1100 ms (see manifest): nothing may start before the burst.
  assert.deepEqual(events.map((event) => event.type), ["speech_start", "speech_end"]);
  const [start] = events;
  assert.ok(start.type === "speech_start" && start.onsetMs >= 1100, JSON.stringify(events));
});

Deno.test("known limit: in-band DTMF tones are taken for speech (Telnyx reports DTMF separately)", async () => {
  const events = await eventsFor("dtmf");
  assert.equal(events[0]?.type, "speech_start");
  // The first tone starts at 300 ms: the detector needs the tone itself, not the silence before.
  assert.ok(events[0].atMs > 300);
});

Deno.test("a longer startMs suppresses the 60 ms burst; a shorter one lets a click through", async () => {
  assert.deepEqual(await eventsFor("click_burst", { startMs: 140 }), []);
  const eager = await eventsFor("click_burst", { startMs: 60 });
  // The click is at 500 ms; its one voiced frame plus libfvad's hangover makes an 80 ms run.
  assert.ok(
    eager.some((event) => event.type === "speech_start" && event.atMs >= 500 && event.atMs < 700),
    JSON.stringify(eager),
  );
});

Deno.test("mode and endMs options reach the engine and the hysteresis", async () => {
  const [region] = clipInfo("hello").speech;
  const quick = await eventsFor("hello", { endMs: 200 });
  const slow = await eventsFor("hello", { endMs: 800 });
  assert.equal(quick.at(-1)?.type, "speech_end");
  assert.equal(slow.at(-1)?.type, "speech_end");
  assert.equal(slow.at(-1)!.atMs - quick.at(-1)!.atMs, 600);
  assert.ok(quick.at(-1)!.atMs >= region.endMs + 200);
  // Mode 0 is the least aggressive: it holds on to speech longer in the noisy clip.
  const lenient = await eventsFor("noisy_tier", { mode: 0 });
  const strict = await eventsFor("noisy_tier", { mode: 3 });
  assert.ok(lenient.at(-1)!.atMs > strict.at(-1)!.atMs, JSON.stringify({ lenient, strict }));
});

Deno.test("chunk size does not change the events (80, 160, 320, 117 samples)", async () => {
  for (const name of ["barge_in", "noisy_zoe", "click_burst"]) {
    const reference = await eventsFor(name, {}, 160);
    for (const chunk of [80, 320, 117, 1]) {
      assert.deepEqual(await eventsFor(name, {}, chunk), reference, `${name}, chunks of ${chunk}`);
    }
  }
});

Deno.test("atMs is audio time: a multiple of the frame, equal to audioMs when emitted", async () => {
  const vad = await createVad();
  try {
    const pcm = clipPcm("goodbye");
    for (let offset = 0; offset < pcm.length; offset += 160) {
      for (const event of vad.push(pcm.subarray(offset, offset + 160))) {
        assert.equal(event.atMs, vad.audioMs);
        assert.equal(event.atMs % 20, 0);
      }
    }
    assert.equal(vad.audioMs, pcm.length / 8);
    vad.push(new Int16Array(4)); // a partial frame still counts as audio time
    assert.equal(vad.audioMs, pcm.length / 8 + 0.5);
  } finally {
    vad.close();
  }
});

Deno.test("speaking follows the events", async () => {
  const vad = await createVad();
  try {
    const pcm = clipPcm("account_tier");
    let speaking = false;
    for (let offset = 0; offset < pcm.length; offset += 160) {
      for (const event of vad.push(pcm.subarray(offset, offset + 160))) {
        speaking = event.type === "speech_start";
      }
      assert.equal(vad.speaking, speaking);
    }
    assert.equal(vad.speaking, false);
  } finally {
    vad.close();
  }
});

Deno.test("push returns one shared empty array when nothing happens (no per-frame garbage)", async () => {
  const vad = await createVad();
  try {
    const silence = new Int16Array(160);
    const first = vad.push(silence);
    assert.equal(first.length, 0);
    assert.equal(vad.push(silence), first);
    assert.ok(Object.isFrozen(first));
  } finally {
    vad.close();
  }
});

Deno.test("reset mid-utterance forgets everything: same events as a fresh detector", async () => {
  const pcm = clipPcm("yes_zoe");
  const fresh = await eventsFor("yes_zoe");
  const vad = await createVad();
  try {
    feed(vad, pcm.subarray(0, 8 * 1500 + 37)); // inside the sentence, mid-frame
    assert.equal(vad.speaking, true);
    vad.reset();
    assert.equal(vad.speaking, false);
    assert.equal(vad.audioMs, 0);
    assert.deepEqual(feed(vad, pcm), fresh);
  } finally {
    vad.close();
  }
});

Deno.test("many detectors at once stay independent", async () => {
  const names = [...SPEECH_CLIPS, ...NON_SPEECH_CLIPS].map((clip) => clip.name);
  const expected = new Map<string, VadEvent[]>();
  for (const name of names) expected.set(name, await eventsFor(name));

  const calls = await Promise.all(
    Array.from({ length: 120 }, async (_, i) => {
      const name = names[i % names.length];
      return { name, pcm: clipPcm(name), vad: await createVad(), events: [] as VadEvent[] };
    }),
  );
  try {
    // Interleave frame by frame, as the server does with concurrent calls.
    const longest = Math.max(...calls.map((call) => call.pcm.length));
    for (let offset = 0; offset < longest; offset += 160) {
      for (const call of calls) {
        if (offset < call.pcm.length) {
          call.events.push(...call.vad.push(call.pcm.subarray(offset, offset + 160)));
        }
      }
    }
    for (const call of calls) assert.deepEqual(call.events, expected.get(call.name), call.name);
  } finally {
    for (const call of calls) call.vad.close();
  }
});

Deno.test("close is idempotent and push afterwards throws; an instance is small", async () => {
  const vad = await createVad();
  vad.close();
  vad.close();
  assert.throws(() => vad.push(new Int16Array(160)), /after close/);
  vad.reset(); // harmless after close
  const perInstance = await vadInstanceBytes();
  assert.ok(perInstance > 0 && perInstance < 4096, `instance bytes ${perInstance}`);
});

Deno.test("preloadVad can run any number of times, and detectors made after it detect speech", async () => {
  await Promise.all([preloadVad(), preloadVad()]);
  await preloadVad();
  const events = await eventsFor(SPEECH_CLIPS[0].name);
  assert.deepEqual(events.map((e) => e.type), ["speech_start", "speech_end"]);
});

Deno.test("invalid options are refused", async () => {
  await assert.rejects(createVad({ mode: 4 }), RangeError);
  await assert.rejects(createVad({ mode: 1.5 }), RangeError);
  await assert.rejects(createVad({ startMs: 0 }), RangeError);
  await assert.rejects(createVad({ endMs: -1 }), RangeError);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(createVad({ frameMs: 25 as any }), RangeError);
});

Deno.test("other frame lengths work too (10 and 30 ms)", async () => {
  for (const frameMs of [10, 30] as const) {
    const events = await eventsFor("barge_in", { frameMs });
    assert.deepEqual(events.map((event) => event.type), ["speech_start", "speech_end"]);
    assert.equal(events[0].atMs % frameMs, 0);
  }
});

Deno.test("SpeechSegmenter: hysteresis on per-frame decisions", async (t) => {
  await t.step("a voiced run shorter than startMs is ignored", () => {
    const segmenter = new SpeechSegmenter(100, 300);
    let at = 0;
    const step = (voiced: boolean) => segmenter.frame(voiced, at += 20, 20);
    for (let i = 0; i < 4; i++) assert.equal(step(true), undefined); // 80 ms
    assert.equal(step(false), undefined);
    for (let i = 0; i < 4; i++) assert.equal(step(true), undefined); // runs do not add up
    assert.equal(segmenter.speaking, false);
  });
  await t.step("start at startMs with the onset, end after endMs with the offset", () => {
    const segmenter = new SpeechSegmenter(100, 300);
    let at = 200;
    const step = (voiced: boolean) => segmenter.frame(voiced, at += 20, 20);
    for (let i = 0; i < 4; i++) step(true);
    assert.deepEqual(step(true), { type: "speech_start", atMs: 300, onsetMs: 200 });
    assert.equal(segmenter.speaking, true);
    for (let i = 0; i < 10; i++) assert.equal(step(true), undefined);
    for (let i = 0; i < 14; i++) assert.equal(step(false), undefined);
    step(true); // a short gap does not end the turn, and resets the silence count
    for (let i = 0; i < 14; i++) assert.equal(step(false), undefined);
    assert.deepEqual(step(false), { type: "speech_end", atMs: 1100, offsetMs: 800 });
    assert.equal(segmenter.speaking, false);
  });
  await t.step("pausing: speaking with the last frame unvoiced, until speech_end", () => {
    const segmenter = new SpeechSegmenter(40, 60);
    let at = 0;
    const step = (voiced: boolean) => segmenter.frame(voiced, at += 20, 20);
    step(false);
    assert.equal(segmenter.pausing, false, "silence before speech is no pause");
    step(true);
    step(true);
    assert.equal(segmenter.pausing, false);
    step(false);
    assert.equal(segmenter.pausing, true);
    step(true);
    assert.equal(segmenter.pausing, false, "voiced again");
    step(false);
    step(false);
    assert.equal(step(false)?.type, "speech_end");
    assert.equal(segmenter.pausing, false);
  });
  await t.step("reset returns to not speaking", () => {
    const segmenter = new SpeechSegmenter(20, 20);
    assert.equal(segmenter.frame(true, 20, 20)?.type, "speech_start");
    segmenter.reset();
    assert.equal(segmenter.speaking, false);
    assert.equal(segmenter.frame(false, 40, 20), undefined);
  });
});
