import assert from "node:assert/strict";
import {
  DEFAULT_MAX_BUFFER_SECONDS,
  type LiveTranscriber,
  openLiveTranscriber,
  type SttOptions,
  SttUnavailableError,
  type TranscriptEvent,
} from "../../src/services/stt.ts";
import {
  type FakeDeepgram,
  type FakeDeepgramOptions,
  startFakeDeepgram,
} from "../fakes/deepgram.ts";
import { startSilentPeer } from "../fakes/silent_peer.ts";
import { deadline, DeadlineError } from "../../src/async/deadline.ts";
import { waitFor } from "../helpers/harness.ts";

/** Deterministic non-silent mu-law bytes, so content (not just length) can be compared. */
function audio(length: number, seed = 1): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    bytes[i] = x >> 16;
  }
  return bytes;
}

/** Sends `bytes` as 20 ms Telnyx-sized frames, each a fresh array as the media socket gives. */
function feed(stt: LiveTranscriber, bytes: Uint8Array, frame = 160): void {
  for (let i = 0; i < bytes.length; i += frame) stt.sendAudio(bytes.slice(i, i + frame));
}

/** Pulls events until one matches `until`; returns all of them, the matching one last. */
async function readUntil(
  events: AsyncIterator<TranscriptEvent>,
  until: (e: TranscriptEvent) => boolean,
): Promise<TranscriptEvent[]> {
  const seen: TranscriptEvent[] = [];
  // Turns a hang into a failure with context; asserts nothing about speed.
  const giveUpAt = performance.now() + 10_000;
  while (true) {
    const r = await deadline(events.next(), Math.max(0, giveUpAt - performance.now()), {
      what: "a matching event",
    }).catch((error) => {
      if (error instanceof DeadlineError) throw new Error(`no match; saw ${JSON.stringify(seen)}`);
      throw error;
    });
    if (r.done) throw new Error(`iterator ended; saw ${JSON.stringify(seen)}`);
    seen.push(r.value);
    if (until(r.value)) return seen;
  }
}

async function drain(events: AsyncIterator<TranscriptEvent>): Promise<TranscriptEvent[]> {
  const seen: TranscriptEvent[] = [];
  for (let r = await events.next(); !r.done; r = await events.next()) seen.push(r.value);
  return seen;
}

/**
 * Opens a Nova transcriber (`options` over these defaults), offers it a chunk of audio and
 * returns the {@link SttUnavailableError} its stream ends with, once it is closed.
 */
async function connectionFailure(
  options: Pick<SttOptions, "baseUrl"> & Partial<SttOptions>,
): Promise<SttUnavailableError> {
  const stt = openLiveTranscriber({
    apiKey: "k",
    engine: "nova",
    signal: new AbortController().signal,
    ...options,
  });
  stt.sendAudio(audio(160));
  const error = await drain(stt[Symbol.asyncIterator]()).catch((e) => e);
  await stt.close();
  assert.ok(error instanceof SttUnavailableError, String(error));
  return error;
}

interface Harness {
  fake: FakeDeepgram;
  stt: LiveTranscriber;
  events: AsyncIterator<TranscriptEvent>;
  controller: AbortController;
  logs: { level: string; msg: string }[];
  [Symbol.asyncDispose](): Promise<void>;
}

function harness(
  fakeOptions: FakeDeepgramOptions,
  sttOptions: Partial<SttOptions> = {},
): Harness {
  const fake = startFakeDeepgram(fakeOptions);
  const controller = new AbortController();
  const logs: { level: string; msg: string }[] = [];
  const stt = openLiveTranscriber({
    apiKey: fake.apiKey,
    baseUrl: fake.url,
    engine: "nova",
    signal: controller.signal,
    reconnect: { attempts: 3, backoffMs: 5 },
    log: (level, msg) => logs.push({ level, msg }),
    ...sttOptions,
  });
  return {
    fake,
    stt,
    events: stt[Symbol.asyncIterator](),
    controller,
    logs,
    async [Symbol.asyncDispose]() {
      await stt.close();
      await fake.close();
    },
  };
}

/**
 * A harness whose first connection dropped after 1600 bytes of audio and whose reconnection
 * attempts are refused until the test allows them: the transcriber is in a gap.
 */
async function harnessInGap(sttOptions: Partial<SttOptions> = {}): Promise<Harness> {
  const h = harness({ drops: [{ connection: 0, afterBytes: 1600 }] }, {
    reconnect: { attempts: 100, backoffMs: 5 },
    ...sttOptions,
  });
  try {
    await h.fake.waitFor(() => h.fake.connections.length === 1);
    h.fake.refuseConnections(Infinity);
    feed(h.stt, audio(1600, 5));
    await h.fake.waitFor(() => h.fake.rejectedUpgrades >= 1); // reconnecting, not yet connected
    return h;
  } catch (error) {
    await h[Symbol.asyncDispose]();
    throw error;
  }
}

const conn = (fake: FakeDeepgram, i: number) => {
  const c = fake.connections[i];
  assert.ok(c, `connection ${i} exists`);
  return c;
};

Deno.test("nova: query params, auth header, and audio forwarded byte-exact", async () => {
  await using h = harness({});
  const sent = audio(16_000);
  feed(h.stt, sent); // starts before the socket is open: must be buffered, not lost
  await h.fake.waitFor(() => h.fake.totalAudioBytes === sent.length);

  const c = conn(h.fake, 0);
  assert.equal(c.path, "/v1/listen");
  assert.equal(c.headers.get("authorization"), "Token test-key");
  assert.deepEqual(
    {
      model: c.params.model,
      encoding: c.params.encoding,
      sample_rate: c.params.sample_rate,
      channels: c.params.channels,
      interim_results: c.params.interim_results,
      endpointing: c.params.endpointing,
      utterance_end_ms: c.params.utterance_end_ms,
      vad_events: c.params.vad_events,
    },
    {
      model: "nova-3",
      encoding: "mulaw",
      sample_rate: "8000",
      channels: "1",
      interim_results: "true",
      endpointing: "300",
      utterance_end_ms: "1000",
      vad_events: "true",
    },
  );
  assert.deepEqual(c.audio, sent);
  assert.equal(h.stt.audioSeconds, 2);

  await h.stt.close();
  assert.deepEqual(c.controlMessages, ["CloseStream"]);
  // The client is closed once the server's close frame is answered; the fake sees it just after.
  await waitFor(() => c.closed !== undefined, "the fake to see the close", 2000);
  assert.equal(c.closed?.code, 1000);
  assert.equal(c.sentMessages.at(-1)?.type, "Metadata");
  assert.deepEqual(await drain(h.events), []);
  assert.equal(h.fake.connections.length, 1);
});

Deno.test("nova: options override model, endpointing and utterance end", async () => {
  await using h = harness({}, {
    model: "nova-2-phonecall",
    endpointingMs: 500,
    utteranceEndMs: 1500,
  });
  feed(h.stt, audio(160));
  await h.fake.waitFor(() => h.fake.totalAudioBytes === 160);
  const { model, endpointing, utterance_end_ms } = conn(h.fake, 0).params;
  assert.deepEqual({ model, endpointing, utterance_end_ms }, {
    model: "nova-2-phonecall",
    endpointing: "500",
    utterance_end_ms: "1500",
  });
});

Deno.test("nova: a scripted utterance yields speech_started, interims, final, utterance_end", async () => {
  await using h = harness({
    script: [{ text: "Hello there, how are you?", startByte: 4000, endByte: 16_000 }],
  });
  // speech ends at 16000; endpointing 300 ms (+2400 B); utterance end 1000 ms (+8000 B).
  feed(h.stt, audio(26_000));
  const events = await readUntil(h.events, (e) => e.type === "utterance_end");

  assert.deepEqual(events[0], { type: "speech_started", atSeconds: 0.5 });
  const interims = events.filter((e) => e.type === "interim").map((e) => e.text);
  assert.deepEqual(interims, [
    "Hello",
    "Hello there,",
    "Hello there, how",
    "Hello there, how are",
    "Hello there, how are you?",
  ]);
  const finals = events.filter((e) => e.type === "final");
  assert.deepEqual(finals, [{
    type: "final",
    text: "Hello there, how are you?",
    speechFinal: true,
    fromFinalize: false,
  }]);
  assert.deepEqual(events.map((e) => e.type).slice(-2), ["final", "utterance_end"]);
});

Deno.test("nova: finalize() flushes the words heard so far", async () => {
  await using h = harness({
    script: [{ text: "one two three four", startByte: 0, endByte: 8000 }],
  });
  feed(h.stt, audio(4000));
  await h.fake.waitFor(() => h.fake.totalAudioBytes === 4000);
  h.stt.finalize();
  const events = await readUntil(h.events, (e) => e.type === "final");
  assert.deepEqual(events.at(-1), {
    type: "final",
    text: "one two",
    speechFinal: false,
    fromFinalize: true,
  });
  assert.deepEqual(conn(h.fake, 0).controlMessages, ["Finalize"]);
});

Deno.test("nova: KeepAlive is sent while no audio flows", async () => {
  await using h = harness({}, { keepAliveMs: 20 });
  feed(h.stt, audio(160));
  await h.fake.waitFor(() => h.fake.connections[0]?.controlMessages.includes("KeepAlive") ?? false);
  assert.equal(conn(h.fake, 0).bytesReceived, 160);
});

Deno.test("nova: a dropped socket is replaced and no audio is lost", async (t) => {
  for (const mode of ["error_1011", "no_status", "normal_1000", "abrupt"] as const) {
    await t.step(mode, async () => {
      await using h = harness({
        script: (i) =>
          i === 0
            ? [{ text: "Good morning.", startByte: 0, endByte: 4000 }]
            : [{ text: "Still there?", startByte: 6000, endByte: 9000 }],
        drops: [{ connection: 0, afterBytes: 10_000, mode }],
      });
      const first = audio(10_000, 7);
      feed(h.stt, first.subarray(0, 8000), 200);
      // Wait for the final before the drop: an abrupt cut loses messages in flight.
      const before = await readUntil(h.events, (e) => e.type === "final");
      feed(h.stt, first.subarray(8000), 200);
      assert.deepEqual(before.at(-1), {
        type: "final",
        text: "Good morning.",
        speechFinal: true,
        fromFinalize: false,
      });
      await h.fake.waitFor(() => h.fake.connections[0]?.closed !== undefined);

      const second = audio(8000, 9); // sent while the adapter notices the drop and reconnects
      feed(h.stt, second, 200);
      const after = await readUntil(h.events, (e) => e.type === "final");

      const reconnected = after.find((e) => e.type === "reconnected");
      assert.ok(reconnected?.type === "reconnected", JSON.stringify(after));
      assert.equal(reconnected.attempt, 1);
      // Everything after the last final (6400 = end of speech + endpointing) is replayed.
      assert.ok(reconnected.bufferedBytes >= 10_000 - 6400);
      const all = new Uint8Array([...first, ...second]);
      assert.deepEqual(conn(h.fake, 0).audio, first);
      assert.deepEqual(conn(h.fake, 1).audio, all.subarray(6400));
      assert.equal(h.stt.audioSeconds, (10_000 + all.length - 6400) / 8000);
      assert.deepEqual(conn(h.fake, 1).params, conn(h.fake, 0).params);

      // Timestamps continue in call time: connection 1 starts at call byte 6400.
      const started = after.find((e) => e.type === "speech_started");
      assert.ok(started?.type === "speech_started");
      assert.ok(Math.abs(started.atSeconds - (6400 + 6000) / 8000) < 1e-9);
      assert.deepEqual(after.at(-1), {
        type: "final",
        text: "Still there?",
        speechFinal: true,
        fromFinalize: false,
      });
      assert.ok(h.logs.some((l) => l.level === "warn" && l.msg.includes("dropped")));
    });
  }
});

Deno.test("nova: reconnection retries with backoff through refused attempts", async () => {
  await using h = harness({ drops: [{ connection: 0, afterBytes: 1600 }] }, {
    reconnect: { attempts: 4, backoffMs: 5 },
  });
  await h.fake.waitFor(() => h.fake.connections.length === 1);
  h.fake.refuseConnections(2); // the first two reconnection attempts get HTTP 503
  feed(h.stt, audio(1600));
  const events = await readUntil(h.events, (e) => e.type === "reconnected");
  assert.deepEqual(events.at(-1), { type: "reconnected", attempt: 3, bufferedBytes: 1600 });
  assert.equal(h.fake.rejectedUpgrades, 2);
  await h.fake.waitFor(() => h.fake.connections[1]?.bytesReceived === 1600);
  assert.deepEqual(conn(h.fake, 1).audio, audio(1600));
});

Deno.test("nova: audio beyond the buffer bound during a long gap drops the oldest", async () => {
  await using h = await harnessInGap({ maxBufferBytes: 4000 });
  const gap = audio(8000, 6);
  feed(h.stt, gap);
  h.fake.refuseConnections(0);
  const events = await readUntil(h.events, (e) => e.type === "reconnected");
  assert.deepEqual(events.at(-1), {
    type: "reconnected",
    attempt: h.fake.rejectedUpgrades + 1,
    bufferedBytes: 4000,
  });
  await h.fake.waitFor(() => h.fake.connections[1]?.bytesReceived === 4000);
  assert.deepEqual(conn(h.fake, 1).audio, gap.subarray(-4000));
  assert.ok(h.logs.some((l) => l.level === "warn" && l.msg.includes("buffer full")));
});

Deno.test("nova: by default a gap keeps the last DEFAULT_MAX_BUFFER_SECONDS of audio for replay", async () => {
  await using h = await harnessInGap();
  const bound = DEFAULT_MAX_BUFFER_SECONDS * 8000;
  const gap = audio(bound + 16_000, 6);
  feed(h.stt, gap);
  h.fake.refuseConnections(0);
  const events = await readUntil(h.events, (e) => e.type === "reconnected");
  assert.deepEqual(events.at(-1), {
    type: "reconnected",
    attempt: h.fake.rejectedUpgrades + 1,
    bufferedBytes: bound,
  });
  await h.fake.waitFor(() => h.fake.connections[1]?.bytesReceived === bound);
  assert.deepEqual(conn(h.fake, 1).audio, gap.subarray(-bound));
});

Deno.test("silence forgotten is not replayed: a reconnect sends only what was kept", async () => {
  await using h = harness({ drops: [{ connection: 0, afterBytes: 40_000 }] });
  const silence = audio(32_000, 6);
  feed(h.stt, silence);
  await h.fake.waitFor(() => h.fake.connections[0]?.bytesReceived === 32_000);
  h.stt.forgetSilence(1000);
  const after = audio(8000, 9);
  feed(h.stt, after); // the connection drops once this has arrived
  const events = await readUntil(h.events, (e) => e.type === "reconnected");
  assert.deepEqual(events.at(-1), { type: "reconnected", attempt: 1, bufferedBytes: 16_000 });
  await h.fake.waitFor(() => h.fake.connections[1]?.bytesReceived === 16_000);
  assert.deepEqual(conn(h.fake, 1).audio, new Uint8Array([...silence.subarray(-8000), ...after]));
});

Deno.test("audio not yet sent is never forgotten as silence", async () => {
  await using h = await harnessInGap();
  const gap = audio(32_000, 6);
  feed(h.stt, gap);
  h.stt.forgetSilence(1000);
  h.fake.refuseConnections(0);
  const events = await readUntil(h.events, (e) => e.type === "reconnected");
  const kept = 1600 + gap.length; // the dropped connection's audio too: no final covered it
  assert.deepEqual(events.at(-1), {
    type: "reconnected",
    attempt: h.fake.rejectedUpgrades + 1,
    bufferedBytes: kept,
  });
  await h.fake.waitFor(() => h.fake.connections[1]?.bytesReceived === kept);
  assert.deepEqual(conn(h.fake, 1).audio.subarray(1600), gap);
});

Deno.test("nova: close() flushes speech in progress before the stream ends", async () => {
  await using h = harness({
    script: [{ text: "wait a moment please", startByte: 0, endByte: 8000 }],
  });
  feed(h.stt, audio(6000));
  await h.fake.waitFor(() => h.fake.totalAudioBytes === 6000);
  const rest = drain(h.events);
  await h.stt.close();
  const finals = (await rest).filter((e) => e.type === "final");
  assert.deepEqual(finals, [{
    type: "final",
    text: "wait a moment",
    speechFinal: false,
    fromFinalize: false,
  }]);
});

Deno.test("nova: leaving the for-await loop closes the stream", async () => {
  await using fake = startFakeDeepgram({
    script: [{ text: "Hi.", startByte: 0, endByte: 1600 }],
  });
  const stt = openLiveTranscriber({
    apiKey: fake.apiKey,
    baseUrl: fake.url,
    engine: "nova",
    signal: new AbortController().signal,
  });
  feed(stt, audio(1600));
  for await (const event of stt) {
    assert.equal(event.type, "speech_started");
    break;
  }
  await stt.close(); // the same close the loop exit started
  assert.deepEqual(fake.connections[0].controlMessages, ["CloseStream"]);
  await waitFor(() => fake.connections[0].closed !== undefined, "the fake to see the close", 2000);
  assert.equal(fake.connections[0].closed?.code, 1000);
});

Deno.test("nova: unrecoverable drop ends the iterator with SttUnavailableError", async () => {
  await using h = harness({ drops: [{ connection: 0, afterBytes: 1600 }] });
  await h.fake.waitFor(() => h.fake.connections.length === 1);
  h.fake.refuseConnections(Infinity);
  feed(h.stt, audio(1600));
  const error = await readUntil(h.events, () => false).catch((e) => e);
  assert.ok(error instanceof SttUnavailableError, String(error));
  assert.equal(error.reason, "unreachable");
  assert.equal(error.attempts, 3);
  assert.equal(h.fake.rejectedUpgrades, 3);
  h.stt.sendAudio(audio(160)); // never throws, even after failure
  assert.deepEqual(await drain(h.events), []);
});

Deno.test("closing while a refused handshake's status is asked stops the question quietly", async () => {
  await using fake = startFakeDeepgram({ apiKey: "right", holdPlainRequests: true });
  const logs: string[] = [];
  const stt = openLiveTranscriber({
    apiKey: "wrong",
    baseUrl: fake.url,
    engine: "nova",
    signal: new AbortController().signal,
    log: (level, msg) => logs.push(`${level} ${msg}`),
  });
  const events = drain(stt[Symbol.asyncIterator]());
  await fake.waitFor(() => fake.heldRequests === 1);
  await stt.close();
  assert.deepEqual(await events, [], "the stream ends without an error");
  assert.deepEqual(logs.filter((l) => !l.startsWith("debug")), []);
  // At once, not when the question's own bound (REFUSAL_STATUS_WAIT_MS, longer) runs out.
  await fake.waitFor(() => fake.abandonedRequests === 1, 1_000);
});

Deno.test("over ws: a wrong key fails as auth from the handshake's own status", async () => {
  await using fake = startFakeDeepgram({ apiKey: "right", tls: false });
  const error = await connectionFailure({ apiKey: "wrong", baseUrl: fake.url });
  assert.equal(error.reason, "auth");
  assert.equal(error.attempts, 1);
  assert.equal(fake.rejectedUpgrades, 1);
});

Deno.test("over ws: a handshake refused with another 4xx is rejected, not retried", async () => {
  await using fake = startFakeDeepgram({ tls: false });
  fake.refuseConnections(Infinity, 400);
  const error = await connectionFailure({ apiKey: fake.apiKey, baseUrl: fake.url });
  assert.equal(error.reason, "rejected");
  assert.equal(error.attempts, 1);
});

Deno.test("over wss: a refusal that is not the key's is retried, its status unknown", async () => {
  await using fake = startFakeDeepgram();
  fake.refuseConnections(Infinity, 400);
  const error = await connectionFailure({
    apiKey: fake.apiKey,
    baseUrl: fake.url,
    reconnect: { attempts: 2, backoffMs: 5 },
  });
  assert.equal(error.reason, "unreachable");
  assert.equal(error.attempts, 2);
  assert.equal(fake.rejectedUpgrades, 2);
});

Deno.test("nova: wrong API key fails fast with an auth SttUnavailableError", async () => {
  await using fake = startFakeDeepgram({ apiKey: "right" });
  const error = await connectionFailure({ apiKey: "wrong", baseUrl: fake.url });
  assert.equal(error.reason, "auth");
  assert.equal(error.attempts, 1);
  assert.equal(fake.rejectedUpgrades, 1);
  assert.equal(fake.connections.length, 0);
});

Deno.test("nova: nothing listening is reported as unreachable", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const error = await connectionFailure({
    baseUrl: `http://127.0.0.1:${port}`,
    reconnect: { attempts: 2, backoffMs: 5 },
  });
  assert.equal(error.reason, "unreachable");
  assert.equal(error.attempts, 2);
});

Deno.test("nova: a handshake that is never answered fails within connectTimeoutMs", async () => {
  await using peer = startSilentPeer({ answer: "nothing" });
  const stt = openLiveTranscriber({
    apiKey: "k",
    baseUrl: peer.url,
    engine: "nova",
    signal: new AbortController().signal,
    reconnect: { attempts: 2, backoffMs: 5 },
    connectTimeoutMs: 50,
  });
  // The SDK's own timeout is in whole seconds: failing well before one proves ours applies.
  const error = await deadline(drain(stt[Symbol.asyncIterator]()), 900).catch((e) => e);
  assert.ok(error instanceof SttUnavailableError, String(error));
  assert.equal(error.reason, "unreachable");
  assert.match(error.message, /Deepgram handshake did not happen within 50 ms/);
  assert.equal(peer.accepted, 2);
  await stt.close();
});

Deno.test("nova: close() is bounded when the server ignores CloseStream and the close frame", async () => {
  await using peer = startSilentPeer({ answer: "upgrade" });
  const stt = openLiveTranscriber({
    apiKey: "k",
    baseUrl: peer.url,
    engine: "nova",
    signal: new AbortController().signal,
    closeTimeoutMs: 30,
  });
  feed(stt, audio(160));
  const events = stt[Symbol.asyncIterator]();
  await waitFor(() => peer.upgraded === 1, "the upgrade");
  await deadline(stt.close(), 1000, { what: "close()" });
  assert.deepEqual(await drain(events), []);
});

Deno.test("abort closes the socket and ends the iterator", async (t) => {
  await t.step("while open", async () => {
    await using h = harness({}, { keepAliveMs: 10 });
    feed(h.stt, audio(800));
    await h.fake.waitFor(() => h.fake.totalAudioBytes === 800);
    const rest = drain(h.events);
    h.controller.abort();
    assert.deepEqual(await rest, []);
    await h.stt.close();
    await h.fake.waitFor(() => h.fake.connections[0]?.closed !== undefined);
    assert.ok(!conn(h.fake, 0).controlMessages.includes("CloseStream"));
    h.stt.sendAudio(audio(160));
    assert.equal(conn(h.fake, 0).bytesReceived, 800);
  });

  await t.step("while reconnecting", async () => {
    await using h = harness({ drops: [{ connection: 0, afterBytes: 160 }] }, {
      reconnect: { attempts: 5, backoffMs: 60_000 },
    });
    await h.fake.waitFor(() => h.fake.connections.length === 1);
    h.fake.refuseConnections(Infinity);
    feed(h.stt, audio(160));
    await h.fake.waitFor(() => h.fake.rejectedUpgrades === 1); // now in a 60 s backoff
    h.controller.abort();
    assert.deepEqual(await drain(h.events), []);
    await h.stt.close();
    assert.equal(h.fake.rejectedUpgrades, 1);
  });

  await t.step("before the transcriber starts", async () => {
    await using fake = startFakeDeepgram();
    const stt = openLiveTranscriber({
      apiKey: fake.apiKey,
      baseUrl: fake.url,
      engine: "nova",
      signal: AbortSignal.abort(),
    });
    assert.deepEqual(await drain(stt[Symbol.asyncIterator]()), []);
    await stt.close();
    assert.equal(fake.connections.length, 0);
  });
});

Deno.test("close() during connection and twice is safe", async () => {
  await using h = harness({});
  const first = h.stt.close();
  const second = h.stt.close();
  assert.equal(first, second);
  await first;
  assert.deepEqual(await drain(h.events), []);
});

Deno.test("flux: /v2/listen params and turn events map to typed events", async () => {
  await using h = harness({
    script: [
      { text: "I want to", startByte: 0, endByte: 6000 },
      { text: "book a table.", startByte: 9000, endByte: 15_000, continuesTurn: true },
    ],
  }, { engine: "flux", eagerEotThreshold: 0.5, eotThreshold: 0.8, keepAliveMs: 10 });
  feed(h.stt, audio(20_000));
  const events = await readUntil(h.events, (e) => e.type === "end_of_turn");

  const c = conn(h.fake, 0);
  assert.equal(c.path, "/v2/listen");
  assert.equal(c.headers.get("authorization"), "Token test-key");
  assert.deepEqual(c.params, {
    model: "flux-general-en",
    encoding: "mulaw",
    sample_rate: "8000",
    eager_eot_threshold: "0.5",
    eot_threshold: "0.8",
  });
  assert.deepEqual(events.filter((e) => e.type !== "interim"), [
    { type: "start_of_turn" },
    { type: "eager_end_of_turn", text: "I want to" },
    { type: "turn_resumed" },
    { type: "eager_end_of_turn", text: "I want to book a table." },
    { type: "end_of_turn", text: "I want to book a table." },
  ]);
  const interims = events.filter((e) => e.type === "interim").map((e) => e.text);
  assert.ok(interims.length > 0);
  assert.ok(interims.every((text) => "I want to book a table.".startsWith(text)));

  await h.stt.close();
  assert.deepEqual(c.controlMessages, ["CloseStream"]); // no KeepAlive on Flux
  // The client is closed once the server's close frame is answered; the fake sees it just after.
  await waitFor(() => c.closed !== undefined, "the fake to see the close", 2000);
  assert.equal(c.closed?.code, 1000);
  assert.deepEqual(c.audio, audio(20_000));
});

Deno.test("flux: a drop mid-turn replays the unfinished turn on the new connection", async () => {
  await using h = harness({
    script: (i) => i === 0 ? [] : [{ text: "Can you hear me?", startByte: 0, endByte: 8000 }],
    drops: [{ connection: 0, afterBytes: 4000 }],
  }, { engine: "flux" });
  const sent = audio(12_000, 3);
  feed(h.stt, sent.subarray(0, 4000));
  await h.fake.waitFor(() => h.fake.connections[0]?.closed !== undefined);
  feed(h.stt, sent.subarray(4000));
  const events = await readUntil(h.events, (e) => e.type === "end_of_turn");
  assert.ok(events.some((e) => e.type === "reconnected"));
  assert.deepEqual(events.at(-1), { type: "end_of_turn", text: "Can you hear me?" });
  // No turn ended on connection 0, so all of its audio is replayed.
  assert.deepEqual(conn(h.fake, 1).audio, sent);
});
