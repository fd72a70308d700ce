import assert from "node:assert/strict";
import {
  Playback,
  type PlaybackOptions,
  PlaybackTicker,
  sharedPlaybackTicker,
  TICK_MS,
} from "../../src/session/playback.ts";
import { MU_LAW_SILENCE } from "../../src/audio/g711.ts";
import { ALAW_8K, MULAW_8K } from "../../src/transport/call_transport.ts";
import { PlayoutModel } from "../helpers/playout_model.ts";

/** 20 ms of mu-law 8 kHz, the frame size the model's default format gets. */
const FRAME_BYTES = 160;
import { waitFor } from "../helpers/wait_for.ts";

// Most tests run on an injected clock with a manual ticker and a synchronous model of the far
// end's playback, so nothing depends on how fast this shared machine is. The Telnyx wire format
// is tested with the Telnyx transport (tests/transport).

/** Deterministic test audio: byte i of a stream is `(seed + i * 7) % 251` (never 0xFF). */
function audio(length: number, seed = 0): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed + i * 7) % 251;
  return bytes;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A playback wired to a model on a manual ticker and injected clock. */
function setup(options: Partial<PlaybackOptions> = {}) {
  const model = new PlayoutModel();
  const ticker = new PlaybackTicker({ manual: true });
  const playback = new Playback({ output: model, now: () => model.now, ticker, ...options });
  model.onEcho = (name) => playback.onMarkEcho(name);
  /** Advances time with ticks and echo delivery at the shared ticker's period. */
  const run = (ms: number) =>
    model.advance(ms, () => {
      ticker.tick();
      model.deliverEchoes();
    }, TICK_MS);
  return { model, ticker, playback, run };
}

Deno.test("playback: framing, marks and finish", async (t) => {
  await t.step(
    "frames are 160 bytes and carry the enqueued audio plus silence padding",
    async () => {
      const { model, playback, run } = setup();
      const source = audio(5_003);
      // Uneven chunk sizes, as TTS delivers them.
      const sizes = [1, 159, 161, 320, 7, 1_000, 2_355, 1_000];
      let offset = 0;
      for (const size of sizes) {
        playback.enqueue(source.subarray(offset, offset + size));
        offset += size;
      }
      assert.equal(offset, source.length);
      const done = playback.finish();
      run(1_000);
      assert.equal(await done, "played");
      const frames = model.media();
      assert.ok(frames.every((f) => f.length === FRAME_BYTES));
      const sent = concat(frames);
      const padded = Math.ceil(source.length / FRAME_BYTES) * FRAME_BYTES;
      assert.equal(sent.length, padded);
      assert.deepEqual(sent.subarray(0, source.length), source);
      assert.ok(sent.subarray(source.length).every((b) => b === MU_LAW_SILENCE));
      assert.equal(playback.stats.framesSent, frames.length);
      assert.equal(playback.stats.bytesSent, padded);
      assert.equal(playback.stats.paddingBytes, padded - source.length);
      assert.equal(playback.stats.underruns, 0);
    },
  );

  await t.step("enqueued bytes are copied, so the caller may reuse its buffer", () => {
    const { model, playback } = setup();
    const buffer = audio(320, 3);
    const expected = buffer.slice();
    playback.enqueue(buffer);
    buffer.fill(0);
    assert.deepEqual(concat(model.media()).subarray(0, 320), expected);
  });

  await t.step("first frame goes out inside enqueue; the lead is topped up, not exceeded", () => {
    const { model, playback, run } = setup({ leadMs: 100 });
    let firstFrameAt: number | undefined;
    playback.onFirstFrame = (at) => firstFrameAt = at;
    model.now = 500;
    playback.enqueue(audio(8_000 * 3)); // 3 s at once
    assert.equal(firstFrameAt, 500);
    assert.equal(playback.stats.firstFrameAtMs, 500);
    assert.equal(model.media().length, 100 / 20, "exactly the lead is queued at first");
    run(2_000);
    assert.ok(model.maxQueuedMs <= 100 + 20, `max queued ${model.maxQueuedMs} ms`);
    // Still pacing, not dumping: ~2 s + lead sent after 2 s.
    const sentMs = playback.stats.bytesSent / 8;
    assert.ok(sentMs >= 2_000 && sentMs <= 2_000 + 120, `sent ${sentMs} ms after 2 s`);
    assert.ok(playback.speaking);
  });

  await t.step("the frames of one pump go out as one message, never past a mark", () => {
    const { model, playback, ticker } = setup();
    playback.enqueue(audio(1_000)); // 125 ms
    assert.equal(model.audioMessages, 1, "the whole 120 ms lead in one message");
    assert.equal(model.media().length, 6);
    playback.endPhrase("a"); // ends inside frame 7
    playback.enqueue(audio(8_000, 1));
    model.advance(40);
    ticker.tick(); // two frames due: frame 7 (end of "a"), its mark, frame 8
    assert.deepEqual(model.sequence().slice(6), ["m", "mark:a", "m"]);
    assert.equal(model.audioMessages, 3);
    model.advance(40);
    ticker.tick();
    assert.equal(model.media().length, 10);
    assert.equal(model.audioMessages, 4, "two frames in one message");
  });

  await t.step("leadMs is clamped to one tick plus a frame", () => {
    const { model, playback, run } = setup({ leadMs: 5 });
    assert.equal(playback.leadMs, 60);
    playback.enqueue(audio(8_000));
    assert.equal(model.media().length, 3);
    run(500);
    assert.ok(model.maxQueuedMs <= 60 + 20);
  });

  await t.step("marks follow the frame holding their phrase's last byte, in order", async () => {
    const { model, playback, run } = setup();
    playback.enqueue(audio(400));
    playback.endPhrase("p1"); // ends inside frame 3 (bytes 320..479)
    playback.enqueue(audio(480, 1));
    playback.endPhrase("p2"); // ends exactly at byte 880, inside frame 6
    playback.enqueue(audio(800, 2));
    playback.endPhrase("p3"); // 1680 = frame boundary after 10.5 frames
    const done = playback.finish();
    run(600);
    assert.equal(await done, "played");
    const sequence = model.sequence();
    const marks = sequence.filter((e) => e.startsWith("mark:"));
    assert.deepEqual(
      marks,
      ["mark:p1", "mark:p2", "mark:p3"],
      "finish reuses the last phrase mark",
    );
    const mediaBefore = (name: string) =>
      sequence.slice(0, sequence.indexOf(`mark:${name}`)).filter((e) => e === "m").length;
    assert.equal(mediaBefore("p1"), Math.ceil(400 / 160));
    assert.equal(mediaBefore("p2"), Math.ceil(880 / 160));
    assert.equal(mediaBefore("p3"), Math.ceil(1_680 / 160));
  });

  await t.step("finish resolves 'played' only after the final mark echo", async () => {
    const { model, playback, run } = setup();
    let outcome: string | undefined;
    playback.enqueue(audio(1_000));
    playback.finish().then((o) => outcome = o);
    assert.ok(playback.speaking);
    const endMark = model.sequence().find((e) => e.startsWith("mark:"));
    assert.equal(endMark, undefined, "the tail has not gone out yet");
    run(100); // 125 ms of audio: not played yet
    await Promise.resolve();
    assert.equal(outcome, undefined);
    assert.ok(playback.speaking);
    run(60);
    await Promise.resolve();
    assert.equal(outcome, "played");
    assert.equal(playback.speaking, false);
    assert.equal(model.playedBytes, 1_120);
    // An automatic mark ended the unnamed audio.
    assert.equal(model.sequence().filter((e) => e.startsWith("mark:")).length, 1);
  });

  await t.step(
    "finish with no audio resolves at once; finish twice shares the outcome",
    async () => {
      const { playback, run } = setup();
      assert.equal(await playback.finish(), "played");
      playback.enqueue(audio(200));
      const first = playback.finish();
      const second = playback.finish();
      run(100);
      assert.deepEqual(await Promise.all([first, second]), ["played", "played"]);
    },
  );

  await t.step("finish after the last phrase already echoed resolves at once", async () => {
    const { playback, run } = setup();
    playback.enqueue(audio(320));
    playback.endPhrase("only");
    run(100);
    assert.equal(await playback.finish(), "played");
    assert.equal(playback.speaking, false);
  });
});

Deno.test("playback: interrupt", async (t) => {
  await t.step("clears, reports heard and partial, ignores echoes after the clear", async () => {
    const { model, playback, run } = setup();
    playback.enqueue(audio(1_600)); // 200 ms
    playback.endPhrase("a");
    playback.enqueue(audio(2_400, 1)); // 300 ms
    playback.endPhrase("b");
    playback.enqueue(audio(3_200, 2)); // 400 ms
    playback.endPhrase("c");
    const done = playback.finish();
    run(420); // "a" echoed at ~200 ms; "b" (mark sent at ~400 ms) playing for ~220 ms
    const result = playback.interrupt();
    assert.deepEqual(result.heard, ["a"]);
    assert.ok(result.partial);
    assert.equal(result.partial.id, "b");
    assert.equal(result.partial.totalMs, 300);
    // Echo delivery is tick-quantised in this model, so allow 20 ms either way.
    assert.ok(
      Math.abs(result.partial.playedMs - 220) <= 20,
      `played ${result.partial.playedMs} ms of b`,
    );
    assert.equal(model.sequence().at(-1), "clear");
    assert.equal(await done, "interrupted");
    assert.equal(playback.speaking, false);
    // Telnyx echoes the cleared marks: they must not count as heard.
    assert.deepEqual(model.echoes, ["b"]);
    const framesBefore = model.media().length;
    run(200);
    assert.equal(model.media().length, framesBefore, "nothing is sent after the interrupt");

    // The next utterance starts fresh, immediately.
    let firstFrameAt: number | undefined;
    playback.onFirstFrame = (at) => firstFrameAt = at;
    playback.enqueue(audio(800, 3));
    assert.equal(firstFrameAt, model.now);
    playback.endPhrase("b"); // reusing a name is fine once the stale echo has been consumed
    const next = playback.finish();
    run(200);
    assert.equal(await next, "played");
    const again = playback.interrupt();
    assert.deepEqual(again.heard, ["b"]);
    assert.equal(again.partial, undefined);
    assert.notEqual(model.sequence().at(-1), "clear", "nothing queued, so no clear");
  });

  await t.step("stale echoes delivered late do not confuse the next utterance", async () => {
    const { model, playback, ticker } = setup();
    playback.enqueue(audio(1_600));
    playback.endPhrase("x1");
    playback.enqueue(audio(1_600));
    playback.endPhrase("x2");
    model.advance(50);
    const result = playback.interrupt();
    assert.deepEqual(result.heard, []);
    assert.equal(result.partial?.id, "x1");
    // Next utterance begins before the stale echoes of x1/x2 arrive.
    playback.enqueue(audio(480));
    playback.endPhrase("y1");
    const done = playback.finish();
    model.deliverEchoes(); // x1, x2 (from the clear)
    for (let i = 0; i < 10; i++) {
      model.advance(20);
      ticker.tick();
      model.deliverEchoes();
    }
    assert.equal(await done, "played");
    assert.deepEqual(playback.interrupt().heard, ["y1"]);
  });

  await t.step("partial for audio not yet closed by endPhrase has an empty id", () => {
    const { playback, run } = setup();
    playback.enqueue(audio(800));
    playback.endPhrase("first");
    playback.enqueue(audio(4_000));
    run(160);
    const result = playback.interrupt();
    assert.deepEqual(result.heard, ["first"]);
    assert.equal(result.partial?.id, "");
    assert.equal(result.partial?.totalMs, 500);
    assert.ok(result.partial.playedMs > 0 && result.partial.playedMs <= 80);
  });

  await t.step("partial is capped by what was sent of the phrase", () => {
    const { model, playback } = setup();
    playback.enqueue(audio(8_000)); // 1 s, only the 120 ms lead sent without ticks
    playback.endPhrase("long");
    model.advance(400); // no ticks: Telnyx ran dry after 120 ms
    const result = playback.interrupt();
    assert.equal(result.partial?.id, "long");
    assert.equal(result.partial?.playedMs, 120);
    assert.equal(result.partial?.totalMs, 1_000);
  });

  await t.step("interrupt while idle sends nothing", () => {
    const { model, playback } = setup();
    assert.deepEqual(playback.interrupt(), { heard: [] });
    assert.equal(model.frames.length, 0);
  });
});

Deno.test("playback: underruns", async (t) => {
  await t.step("none when audio arrives in real time, even in odd-sized chunks", async () => {
    const { model, playback, ticker } = setup();
    model.inUtterance = true;
    // 100 ms of audio up front (what a TTS's first chunk typically is), then 10 ms every 10 ms.
    playback.enqueue(audio(800));
    for (let ms = 0; ms < 1_000; ms += 10) {
      model.advance(10);
      playback.enqueue(audio(80, ms));
      if (ms % 20 === 0) ticker.tick();
      model.deliverEchoes();
    }
    const done = playback.finish();
    model.inUtterance = false;
    model.advance(300, () => {
      ticker.tick();
      model.deliverEchoes();
    });
    assert.equal(await done, "played");
    assert.equal(playback.stats.underruns, 0);
    assert.equal(playback.stats.underrunMs, 0);
    assert.equal(model.dryMs, 0);
  });

  await t.step("counted when audio arrives slower than real time", async () => {
    const { model, playback, ticker } = setup();
    // 20 ms of audio every 40 ms: Telnyx runs dry for ~20 ms each time.
    for (let i = 0; i < 10; i++) {
      playback.enqueue(audio(160, i));
      model.advance(40);
      ticker.tick();
      model.deliverEchoes();
    }
    const done = playback.finish();
    model.advance(100, () => {
      ticker.tick();
      model.deliverEchoes();
    });
    assert.equal(await done, "played");
    assert.equal(playback.stats.underruns, 9);
    assert.equal(playback.stats.underrunMs, 9 * 20);
    assert.equal(playback.stats.underrunsAwaitingAudio, 9, "each gap was the audio's lateness");
  });

  await t.step("a send delayed past the lead is told apart from late audio", () => {
    const { model, playback, ticker } = setup({ leadMs: 100 });
    playback.enqueue(audio(8_000)); // 1 s, all here from the start
    model.advance(20, () => ticker.tick());
    model.advance(150); // the event loop is blocked: no tick for 150 ms
    ticker.tick();
    assert.equal(playback.stats.underruns, 1);
    assert.equal(playback.stats.underrunsAwaitingAudio, 0);
    playback.close();
  });

  await t.step("late ticks under load are absorbed by the lead", () => {
    const { model, playback, ticker } = setup({ leadMs: 100 });
    playback.enqueue(audio(8_000 * 2));
    // Ticks 70 ms apart: late, but less than the lead.
    for (let i = 0; i < 25; i++) {
      model.advance(70);
      ticker.tick();
    }
    assert.equal(playback.stats.underruns, 0);
  });

  await t.step("a stalled phrase tail is padded and sent before Telnyx runs dry", () => {
    const { model, playback, run } = setup();
    playback.enqueue(audio(1_000)); // 6.25 frames
    playback.endPhrase("p1");
    run(200); // TTS stalls: no more audio
    assert.ok(model.sequence().includes("mark:p1"), "the tail went out with its mark");
    assert.equal(playback.stats.paddingBytes, 7 * 160 - 1_000);
    assert.equal(playback.stats.underruns, 0);
    assert.deepEqual(playback.interrupt().heard, ["p1"], "and was heard to the end");
  });

  await t.step(
    "a phrase's partial tail goes out before Telnyx runs dry, whatever the phase",
    () => {
      for (let phase = 0; phase < TICK_MS; phase++) {
        const { model, playback, run } = setup();
        model.advance(phase);
        playback.enqueue(audio(1_680)); // 10.5 frames
        playback.endPhrase("p1");
        run(600); // no more audio: the TTS is slow with the next phrase
        assert.equal(playback.stats.underruns, 0, `phase ${phase}`);
        assert.ok(model.sequence().includes("mark:p1"), `phase ${phase}`);
        playback.close();
      }
    },
  );

  await t.step("a partial first frame waits for more audio instead of padding", () => {
    const { model, playback, run } = setup();
    playback.enqueue(audio(100));
    run(60);
    assert.equal(model.media().length, 0);
    playback.enqueue(audio(100));
    assert.equal(model.media().length, 1);
    assert.equal(playback.stats.paddingBytes, 0);
    playback.close();
  });
});

Deno.test("playback: close, abort and errors", async (t) => {
  await t.step("close resolves finish with 'closed' and stops sending", async () => {
    const { model, playback, ticker, run } = setup();
    playback.enqueue(audio(8_000));
    const done = playback.finish();
    assert.equal(ticker.size, 1);
    playback.close();
    assert.equal(ticker.size, 0);
    assert.equal(await done, "closed");
    const frames = model.frames.length;
    run(100);
    playback.enqueue(audio(800));
    assert.equal(model.frames.length, frames);
    assert.equal(await playback.finish(), "closed");
  });

  await t.step("aborting the signal closes the playback", async () => {
    const controller = new AbortController();
    const { playback } = setup({ signal: controller.signal });
    playback.enqueue(audio(8_000));
    const done = playback.finish();
    controller.abort();
    assert.equal(await done, "closed");
  });

  await t.step("a throwing send closes that playback only and is reported", () => {
    const model = new PlayoutModel();
    const ticker = new PlaybackTicker({ manual: true });
    const errors: unknown[] = [];
    let fail = false;
    const broken = new Playback({
      output: {
        outputFormat: model.outputFormat,
        sendAudio: (frame) => {
          if (fail) throw new Error("socket gone");
          model.sendAudio(frame);
        },
        sendMark: model.sendMark,
        clear: model.clear,
      },
      now: () => model.now,
      ticker,
      onError: (error) => errors.push(error),
    });
    const healthy = setupOn(ticker, () => model.now);
    broken.enqueue(audio(8_000));
    healthy.playback.enqueue(audio(8_000));
    fail = true;
    model.advance(40);
    ticker.tick();
    assert.equal(errors.length, 1);
    assert.equal(ticker.size, 1);
    const before = healthy.model.media().length;
    model.advance(40);
    ticker.tick();
    assert.ok(healthy.model.media().length > before, "the other call kept playing");
    healthy.playback.close();
  });
});

/** A second playback on an existing ticker and clock. */
function setupOn(ticker: PlaybackTicker, now: () => number) {
  const model = new PlayoutModel();
  const playback = new Playback({ output: model, now, ticker });
  model.onEcho = (name) => playback.onMarkEcho(name);
  return { model, playback };
}

Deno.test("playback: the shared ticker serves every instance and stops when idle", async () => {
  assert.equal(sharedPlaybackTicker.running, false);
  const count = 50;
  const sent = new Array<number>(count).fill(0);
  const playbacks = Array.from(
    { length: count },
    (_, i) =>
      new Playback({
        output: {
          outputFormat: MULAW_8K,
          sendAudio: (audio) => sent[i] += audio.length,
          sendMark: () => {},
          clear: () => {},
        },
        leadMs: 40,
      }),
  );
  for (const playback of playbacks) playback.enqueue(audio(1_600)); // 200 ms each
  assert.equal(sharedPlaybackTicker.size, count);
  assert.equal(sharedPlaybackTicker.running, true);
  await waitFor(() => sharedPlaybackTicker.size === 0, "every instance to send everything");
  assert.equal(sharedPlaybackTicker.running, false);
  assert.ok(sent.every((n) => n === 1_600), "every instance sent all its audio");
  for (const playback of playbacks) playback.close();
});

Deno.test("playback: a lost final echo", async (t) => {
  await t.step("playoutMs is the audio not sent plus what is queued at Telnyx", () => {
    const { model, playback, ticker } = setup();
    playback.enqueue(audio(8_000)); // 1 s
    playback.endPhrase("a");
    assert.equal(playback.playoutMs, 1000);
    model.advance(500, () => ticker.tick());
    assert.equal(playback.playoutMs, 500);
    model.advance(600, () => ticker.tick());
    assert.equal(playback.playoutMs, 0);
  });

  await t.step("assumePlayed settles finish as played and counts the phrases heard", async () => {
    const { model, playback, ticker } = setup();
    playback.enqueue(audio(1_600));
    playback.endPhrase("a");
    playback.enqueue(audio(1_600));
    playback.endPhrase("b");
    const done = playback.finish();
    model.advance(1_000, () => ticker.tick()); // echoes withheld
    assert.equal(playback.speaking, true);
    assert.equal(playback.assumePlayed(), true);
    assert.equal(await done, "played");
    assert.equal(playback.speaking, false);
    model.deliverEchoes(); // late echoes change nothing
    playback.enqueue(audio(160));
    assert.deepEqual(playback.interrupt().heard, [], "a new utterance starts clean");
  });

  await t.step("assumePlayed refuses while audio is still unsent", () => {
    const { playback } = setup();
    playback.enqueue(audio(8_000));
    void playback.finish();
    assert.equal(playback.assumePlayed(), false);
    playback.close();
  });
});

Deno.test("playback: frames follow the output format", async (t) => {
  await t.step("A-law: 160-byte frames padded with A-law silence (0xD5)", () => {
    const model = new PlayoutModel(ALAW_8K);
    const ticker = new PlaybackTicker({ manual: true });
    const playback = new Playback({ output: model, now: () => model.now, ticker });
    playback.enqueue(audio(250));
    void playback.finish();
    model.advance(200, () => ticker.tick());
    const frames = model.media();
    assert.deepEqual(frames.map((f) => f.length), [160, 160]);
    assert.ok(frames[1].subarray(90).every((b) => b === 0xd5));
    assert.equal(playback.stats.paddingBytes, 70);
    playback.close();
  });

  await t.step("linear16 at 16 kHz: 640-byte frames padded with zeros, paced in real time", () => {
    const format = { encoding: "linear16", sampleRate: 16000 } as const;
    const model = new PlayoutModel(format);
    const ticker = new PlaybackTicker({ manual: true });
    const playback = new Playback({ output: model, now: () => model.now, ticker, leadMs: 100 });
    playback.enqueue(audio(32_000 + 100)); // 1 s and a bit
    void playback.finish();
    assert.equal(model.media().length, 5, "the lead (100 ms) goes out at once");
    model.advance(500, () => ticker.tick());
    assert.ok(model.maxQueuedMs <= 120, "never more than the lead queued");
    model.advance(1000, () => ticker.tick());
    const frames = model.media();
    assert.ok(frames.every((f) => f.length === 640));
    assert.equal(frames.length, 51);
    assert.ok(frames[50].subarray(100).every((b) => b === 0));
    playback.close();
  });
});

Deno.test("playback ticker: a poll ticks once a period has passed, however late the timer is", () => {
  let now = 0;
  const ticker = new PlaybackTicker({ manual: true, intervalMs: 20, now: () => now });
  let pumped = 0;
  ticker.add(() => {
    pumped++;
    return true;
  });
  ticker.poll();
  assert.equal(pumped, 0, "no period has passed since the pump joined");
  now = 19;
  ticker.poll();
  assert.equal(pumped, 0);
  now = 20;
  ticker.poll();
  assert.equal(pumped, 1, "a period has passed");
  now = 35;
  ticker.poll();
  assert.equal(pumped, 1, "the period restarts at the poll's tick");
  now = 140;
  ticker.poll();
  ticker.poll();
  assert.equal(pumped, 2, "one tick however long the wait was");
});
