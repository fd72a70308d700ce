/**
 * The Cartesia adapter, driven through the real `@cartesia/cartesia-js` SDK against the loopback
 * TLS fake. Needs the test CA: `deno test --cert tests/fakes/tls/ca.pem …`.
 */
import assert from "node:assert/strict";
import { TTSWS } from "@cartesia/cartesia-js/resources/tts/ws";
import Cartesia from "@cartesia/cartesia-js";
import {
  CartesiaFake,
  type CartesiaFakeOptions,
  concatBytes,
  FAKE_CARTESIA_API_KEY,
} from "../fakes/cartesia.ts";
import {
  CartesiaSpeaker,
  type SpeechEvent,
  TtsError,
  type TtsOptions,
  TtsUnavailableError,
} from "../../src/services/tts.ts";
import { PhraseChunker, type PhrasePiece } from "../../src/services/phrases.ts";
import { AsyncQueue } from "../../src/async/async_queue.ts";
import { deadline, delay } from "../../src/async/deadline.ts";
import { startSilentPeer } from "../fakes/silent_peer.ts";
import { waitFor } from "../helpers/harness.ts";

// Any unhandled rejection anywhere in this file is a defect: the SDK's unlistened errors would
// kill the production process. preventDefault() keeps the test runner alive so we can assert.
const unhandledRejections: unknown[] = [];
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  unhandledRejections.push(event.reason);
});

const BYTES_PER_CHAR = 80;

async function* textOf(...deltas: string[]): AsyncGenerator<string> {
  for (const delta of deltas) {
    await Promise.resolve();
    yield delta;
  }
}

/** The audio of a response, concatenated. */
async function collect(events: AsyncIterable<SpeechEvent>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const event of events) if (event.type === "audio") chunks.push(event.audio);
  return concatBytes(chunks);
}

/** A phrase as the consumer saw it: its audio (everything since the previous phrase_end). */
interface HeardPhrase {
  index: number;
  text: string;
  bytes: number;
}

/** Splits an event sequence at its phrase_end events; `rest` is audio after the last one. */
function splitAtPhraseEnds(
  events: readonly SpeechEvent[],
): { phrases: HeardPhrase[]; rest: number } {
  const phrases: HeardPhrase[] = [];
  let bytes = 0;
  for (const event of events) {
    if (event.type === "audio") bytes += event.audio.length;
    else {
      phrases.push({ index: event.index, text: event.text, bytes });
      bytes = 0;
    }
  }
  return { phrases, rest: bytes };
}

async function events(stream: AsyncIterable<SpeechEvent>): Promise<SpeechEvent[]> {
  const out: SpeechEvent[] = [];
  for await (const event of stream) out.push(event);
  return out;
}

/** What a consumer should see for these phrases: each phrase's own audio, then its end. */
function expectedPhrases(...texts: string[]): HeardPhrase[] {
  return texts.map((text, index) => ({ index, text, bytes: text.length * BYTES_PER_CHAR }));
}

/** Lets pending rejections surface as `unhandledrejection` events. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await delay(20);
}

async function withFake(
  fakeOptions: CartesiaFakeOptions,
  speakerOptions: Partial<TtsOptions>,
  body: (fake: CartesiaFake, speaker: CartesiaSpeaker) => Promise<void>,
): Promise<void> {
  const fake = await CartesiaFake.start(fakeOptions);
  const speaker = new CartesiaSpeaker({
    apiKey: FAKE_CARTESIA_API_KEY,
    baseURL: fake.baseURL,
    ...speakerOptions,
  });
  try {
    await body(fake, speaker);
  } finally {
    await speaker.close();
    await fake.close();
  }
}

/** A loopback port with nothing listening: connections are refused. */
function unusedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("speak streams phrases with continue:true, then continue:false, and returns the audio", async () => {
  await withFake({ bytesPerChar: BYTES_PER_CHAR }, {}, async (fake, speaker) => {
    await speaker.connect(AbortSignal.timeout(10_000));
    // As the orchestration does: LLM deltas through the phrase chunker, phrases into speak().
    const phrases = new AsyncQueue<PhrasePiece>();
    const chunker = new PhraseChunker();
    const delta = (text: string) => chunker.push(text).forEach((phrase) => phrases.push(phrase));
    const stream = speaker.speak(phrases, new AbortController().signal);
    const received: SpeechEvent[] = [];

    // Audio must start while the LLM is still producing the answer.
    delta("Hel");
    delta("lo there. How");
    const first = await stream.next();
    assert.equal(first.done, false);
    received.push(first.value as SpeechEvent);
    const [context] = fake.contextList();
    assert.deepEqual(context.pieces, [{ transcript: "Hello there. ", continue: true }]);

    delta(" are you today?");
    phrases.push(chunker.flush());
    phrases.close();
    for (let r = await stream.next(); !r.done; r = await stream.next()) received.push(r.value);

    const connection = fake.connections[0];
    assert.equal(fake.connections.length, 1);
    assert.equal(connection.apiKey, FAKE_CARTESIA_API_KEY);
    assert.match(connection.cartesiaVersion ?? "", /^\d{4}-\d{2}-\d{2}$/);
    assert.match(connection.client ?? "", /^cartesia-js\//);

    assert.equal(fake.contexts.size, 1);
    // The original bot's model and voice.
    assert.equal(context.request.model_id, "sonic-3");
    assert.deepEqual(context.request.voice, {
      mode: "id",
      id: "71a7ad14-091c-4e8e-a314-022ece01c121",
    });
    assert.deepEqual(context.request.output_format, {
      container: "raw",
      encoding: "pcm_mulaw",
      sample_rate: 8000,
    });
    assert.equal(context.request.language, "en");
    assert.deepEqual(context.pieces, [
      { transcript: "Hello there. ", continue: true },
      { transcript: "How are you today?", continue: true },
      { transcript: "", continue: false },
    ]);
    assert.ok(context.done);

    const spoken = "Hello there. How are you today?";
    const audio = concatBytes(received.flatMap((e) => e.type === "audio" ? [e.audio] : []));
    assert.equal(audio.length, spoken.length * BYTES_PER_CHAR);
    assert.deepEqual(audio, fake.audioOf(context.id));
    assert.equal(speaker.charactersSent, spoken.length);
    assert.deepEqual(
      splitAtPhraseEnds(received),
      { phrases: expectedPhrases("Hello there. ", "How are you today?"), rest: 0 },
    );
    assert.equal(received.at(-1)?.type, "phrase_end"); // the last event, before the return
  });
});

Deno.test("a first clause starts at once and the rest continues it in the same context", async () => {
  await withFake({ bytesPerChar: BYTES_PER_CHAR }, {}, async (fake, speaker) => {
    await speaker.connect(AbortSignal.timeout(10_000));
    const phrases = new AsyncQueue<PhrasePiece>();
    const chunker = new PhraseChunker({ startEarly: true });
    const delta = (text: string) => chunker.push(text).forEach((phrase) => phrases.push(phrase));
    const stream = speaker.speak(phrases, new AbortController().signal);

    // Token by token, as the LLM streams: "Sure," is speakable before the sentence is over.
    delta("Sure");
    delta(",");
    const first = await stream.next();
    assert.equal(first.done, false);
    assert.equal((first.value as SpeechEvent).type, "audio", "audio before the sentence is done");
    const [context] = fake.contextList();
    assert.deepEqual(context.pieces, [{ transcript: "Sure,", continue: true }]);
    assert.equal(context.flushes, 0, "no boundary after the first clause");

    for (const token of [" happy", " to", " help", "."]) delta(token);
    phrases.push(chunker.flush());
    phrases.close();
    const received = [first.value as SpeechEvent, ...await events(stream)];

    assert.equal(fake.contexts.size, 1, "one context for the whole answer");
    assert.deepEqual(context.pieces, [
      { transcript: "Sure,", continue: true },
      { transcript: " happy to help.", continue: true },
      { transcript: "", continue: false },
    ]);
    assert.equal(context.flushes, 1, "one boundary, at the end of the sentence");
    assert.deepEqual(
      splitAtPhraseEnds(received),
      { phrases: expectedPhrases("Sure, happy to help."), rest: 0 },
      "one phrase, its mark after all of its audio",
    );
    assert.equal(speaker.charactersSent, "Sure, happy to help.".length);
  });
});

Deno.test("phrase boundaries: each phrase_end follows exactly that phrase's audio", async (t) => {
  const spoken = ["Hi. ", "I am calling about your order, ", "which shipped today."];

  await t.step("one flush per phrase; flush_done ends each phrase in order", async () => {
    await withFake({ chunkBytes: 160, chunkDelayMs: 1 }, {}, async (fake, speaker) => {
      const received = await events(speaker.speak(textOf(...spoken), new AbortController().signal));

      assert.deepEqual(splitAtPhraseEnds(received), {
        phrases: expectedPhrases(...spoken),
        rest: 0,
      });
      assert.equal(received.at(-1)?.type, "phrase_end");

      // On the wire: push, flush, push, flush, …, then the end of input, in one context.
      const [context] = fake.contextList();
      assert.equal(fake.contexts.size, 1);
      const wire = fake.messages.filter((m) => m.json.context_id === context.id).map((m) =>
        m.json.flush === true ? "flush" : `${m.json.continue}:${m.json.transcript}`
      );
      assert.deepEqual(wire, [
        `true:${spoken[0]}`,
        "flush",
        `true:${spoken[1]}`,
        "flush",
        `true:${spoken[2]}`,
        "flush",
        "false:",
      ]);
      assert.deepEqual(context.flushesDone, [1, 2, 3]);
      // The fake numbers audio as documented: phrase k's chunks carry flush_id k + 1.
      const chunksPerPhrase = spoken.map((p) => Math.ceil((p.length * BYTES_PER_CHAR) / 160));
      assert.deepEqual(
        context.chunkFlushIds,
        chunksPerPhrase.flatMap((n, k) => Array(n).fill(k + 1)),
      );
    });
  });

  await t.step("a string that is not a whole phrase is still one phrase", async () => {
    await withFake({}, {}, async (_fake, speaker) => {
      const received = await events(
        speaker.speak(textOf("Hel", "lo. ", "  ", "Bye"), new AbortController().signal),
      );
      // The whitespace-only string is skipped, so it takes no index.
      assert.deepEqual(splitAtPhraseEnds(received), {
        phrases: expectedPhrases("Hel", "lo. ", "Bye"),
        rest: 0,
      });
    });
  });

  await t.step("without flush_done every phrase still ends, at done", async () => {
    await withFake({ chunkBytes: 160, omitFlushDone: true }, {}, async (_fake, speaker) => {
      const received = await events(speaker.speak(textOf(...spoken), new AbortController().signal));
      const all = spoken.join("").length * BYTES_PER_CHAR;
      assert.deepEqual(splitAtPhraseEnds(received), {
        phrases: spoken.map((text, index) => ({ index, text, bytes: index === 0 ? all : 0 })),
        rest: 0,
      });
    });
  });

  await t.step("an empty response ends with no events", async () => {
    await withFake({}, {}, async (fake, speaker) => {
      assert.deepEqual(await events(speaker.speak(textOf(), new AbortController().signal)), []);
      assert.ok(fake.contextList()[0].done);
    });
  });
});

Deno.test("abort mid-phrase: only completed phrases end, the text source is closed", async () => {
  await withFake({ chunkDelayMs: 2, chunkBytes: 160 }, {}, async (fake, speaker) => {
    const first = "First. ";
    const second = "The second phrase is long enough to be cut in the middle. ";
    const text = new AsyncQueue<string>();
    const controller = new AbortController();
    const stream = speaker.speak(text, controller.signal);
    text.push(first);
    text.push(second);

    const received: SpeechEvent[] = [];
    // Counted in bytes, not phrase_end events, so a missing phrase_end fails instead of hanging.
    const abortAtBytes = first.length * BYTES_PER_CHAR + 2 * 160;
    let bytes = 0;
    for await (const event of stream) {
      received.push(event);
      if (event.type === "audio") bytes += event.audio.length;
      if (bytes >= abortAtBytes) controller.abort();
    }

    assert.deepEqual(splitAtPhraseEnds(received), {
      phrases: expectedPhrases(first),
      rest: 2 * 160,
    });
    const [context] = fake.contextList();
    await waitFor(() => context.cancelled, "the cancel frame");
    assert.equal(context.done, false);
    assert.ok(context.audioChunks.length < (second.length * BYTES_PER_CHAR) / 160);

    // The next phrase from the LLM is not sent; the source is closed so the LLM stream stops.
    text.push("A third phrase. ");
    await waitFor(() => text.closed, "the text source to be closed");
    assert.equal(fake.transcriptOf(context.id), first + second);
  });
});

Deno.test("an error frame mid-response: events before it, then the TtsError", async () => {
  await withFake({ chunkBytes: 160 }, {}, async (fake, speaker) => {
    // "One. " is 400 bytes: chunks 1-3, then its flush_done, then chunk 4 (of phrase 2), error.
    fake.failNextContext({ afterChunks: 4, statusCode: 500, errorCode: "internal_error" });
    const received: SpeechEvent[] = [];
    await assert.rejects(
      (async () => {
        const stream = speaker.speak(
          textOf("One. ", "Two three four. "),
          new AbortController().signal,
        );
        for await (const event of stream) received.push(event);
      })(),
      (error) => error instanceof TtsError && error.reason === "server",
    );
    assert.deepEqual(splitAtPhraseEnds(received), { phrases: expectedPhrases("One. "), rest: 160 });
  });
});

Deno.test("pre-synthesis: a consumer that starts reading 300 ms late loses nothing", async (t) => {
  await t.step("speakText runs eagerly, events wait in the queue", async () => {
    await withFake({ chunkBytes: 160 }, {}, async (fake, speaker) => {
      const greeting = "Hello! This is an automated call from our Telnyx chatbot demo.";
      const stream = speaker.speakText(greeting, new AbortController().signal);
      await delay(300);
      // Synthesised in full although nothing has read the stream yet.
      await waitFor(() => fake.contextList()[0]?.done === true, "the greeting to be synthesised");
      const [context] = fake.contextList();

      const received = await events(stream);
      assert.deepEqual(splitAtPhraseEnds(received), {
        phrases: expectedPhrases(greeting),
        rest: 0,
      });
      assert.deepEqual(
        await collect(async function* () {
          yield* received;
        }()),
        fake.audioOf(context.id),
      );
      assert.equal(fake.connections.length, 1);
    });
  });

  await t.step("a slow stream keeps flowing into the queue while nobody reads", async () => {
    await withFake({ chunkBytes: 160, chunkDelayMs: 1 }, {}, async (fake, speaker) => {
      const spoken = ["One phrase. ", "And another one. "];
      const stream = speaker.speak(textOf(...spoken), new AbortController().signal);
      await delay(300);
      const first = await stream.next(); // reading starts late, mid-stream or after the end
      assert.equal(first.done, false);
      const received = [first.value as SpeechEvent, ...await events(stream)];
      assert.deepEqual(splitAtPhraseEnds(received), {
        phrases: expectedPhrases(...spoken),
        rest: 0,
      });
      assert.ok(fake.contextList()[0].done);
    });
  });

  await t.step("a response that is never read is abandoned by its signal", async () => {
    await withFake({ chunkBytes: 160, chunkDelayMs: 2 }, {}, async (fake, speaker) => {
      const controller = new AbortController();
      const stream = speaker.speakText("Words nobody will hear, ".repeat(4), controller.signal);
      await waitFor(() => (fake.contextList()[0]?.audioChunks.length ?? 0) > 0, "some audio");
      controller.abort();
      const [context] = fake.contextList();
      await waitFor(() => context.cancelled, "the cancel frame");
      assert.equal(context.done, false);
      assert.equal((await stream.next()).done, true);
    });
  });
});

Deno.test("model, voice and language are configurable", async () => {
  const options = { model: "sonic-3.5", voiceId: "voice-123", language: "de" };
  await withFake({}, options, async (fake, speaker) => {
    await collect(speaker.speak(textOf("Guten Tag."), new AbortController().signal));
    const [context] = fake.contextList();
    assert.equal(context.request.model_id, "sonic-3.5");
    assert.deepEqual(context.request.voice, { mode: "id", id: "voice-123" });
    assert.equal(context.request.language, "de");
  });
});

Deno.test("sequential responses reuse one socket, one context each", async () => {
  await withFake({}, {}, async (fake, speaker) => {
    const signal = new AbortController().signal;
    const first = await collect(speaker.speak(textOf("First answer."), signal));
    const second = await collect(speaker.speak(textOf("Second ", "answer!"), signal));

    assert.equal(fake.connections.length, 1);
    const [a, b] = fake.contextList();
    assert.notEqual(a.id, b.id);
    assert.equal(fake.transcriptOf(a.id), "First answer.");
    assert.equal(fake.transcriptOf(b.id), "Second answer!");
    assert.deepEqual(first, fake.audioOf(a.id));
    assert.deepEqual(second, fake.audioOf(b.id));
    assert.notDeepEqual(first.subarray(0, 400), second.subarray(0, 400)); // different tones
    assert.equal(speaker.charactersSent, "First answer.Second answer!".length);
  });
});

Deno.test("interleaved responses on one socket each get only their own audio", async () => {
  await withFake({ chunkDelayMs: 1, chunkBytes: 160 }, {}, async (fake, speaker) => {
    const signal = new AbortController().signal;
    const [one, two] = await Promise.all([
      collect(speaker.speak(textOf("The first of two parallel answers."), signal)),
      collect(speaker.speak(textOf("And the second one, also parallel."), signal)),
    ]);
    assert.equal(fake.connections.length, 1);
    const [a, b] = fake.contextList();
    const byText = new Map([[fake.transcriptOf(a.id), a.id], [fake.transcriptOf(b.id), b.id]]);
    assert.deepEqual(one, fake.audioOf(byText.get("The first of two parallel answers.")!));
    assert.deepEqual(two, fake.audioOf(byText.get("And the second one, also parallel.")!));
  });
});

Deno.test("abort mid-response cancels the context and stops the audio", async () => {
  await withFake({ chunkDelayMs: 2, chunkBytes: 160 }, {}, async (fake, speaker) => {
    const controller = new AbortController();
    const long = "This answer is long enough to take a while to stream out. ".repeat(4);
    const audio = speaker.speak(textOf(long), controller.signal)[Symbol.asyncIterator]();
    const first = await audio.next();
    assert.equal(first.done, false);

    controller.abort();
    assert.equal((await audio.next()).done, true); // ends quietly, no error

    const [context] = fake.contextList();
    await waitFor(() => context.cancelled, "the cancel frame");
    assert.deepEqual(fake.messages.at(-1)?.json, { cancel: true, context_id: context.id });
    assert.equal(context.done, false);
    assert.ok(context.audioChunks.length < (long.length * BYTES_PER_CHAR) / 160);

    // The socket is still good for the next response.
    const next = await collect(
      speaker.speak(textOf("Sorry, go on."), new AbortController().signal),
    );
    assert.equal(next.length, "Sorry, go on.".length * BYTES_PER_CHAR);
    assert.equal(fake.connections.length, 1);
  });
});

Deno.test("leaving the loop early also cancels the context", async () => {
  await withFake({ chunkDelayMs: 2, chunkBytes: 160 }, {}, async (fake, speaker) => {
    for await (
      const _ of speaker.speak(
        textOf("Enough audio for many chunks here."),
        new AbortController().signal,
      )
    ) break;
    const [context] = fake.contextList();
    await waitFor(() => context.cancelled, "the cancel frame");
    assert.equal(context.done, false);
  });
});

Deno.test("an aborted signal before speaking sends nothing", async () => {
  await withFake({}, {}, async (fake, speaker) => {
    const controller = new AbortController();
    controller.abort();
    assert.equal((await collect(speaker.speak(textOf("Hi."), controller.signal))).length, 0);
    assert.equal(fake.connections.length, 0);
  });
});

Deno.test("an error frame fails that response only; the socket stays usable", async () => {
  await withFake({}, {}, async (fake, speaker) => {
    fake.failNextContext({
      statusCode: 400,
      title: "Invalid voice",
      message: "voice not found",
      errorCode: "voice_not_found",
    });
    const signal = new AbortController().signal;
    await assert.rejects(collect(speaker.speak(textOf("Hello."), signal)), (error) => {
      assert.ok(error instanceof TtsError);
      assert.ok(!(error instanceof TtsUnavailableError));
      assert.equal(error.reason, "server");
      assert.equal(error.errorCode, "voice_not_found");
      assert.equal(error.statusCode, 400);
      assert.equal(error.contextId, fake.contextList()[0].id);
      return true;
    });

    const audio = await collect(speaker.speak(textOf("Hello again."), signal));
    assert.equal(audio.length, "Hello again.".length * BYTES_PER_CHAR);
    assert.equal(fake.connections.length, 1);
    // Cartesia already closed the failed context: no cancel is sent for it.
    assert.ok(fake.messages.every((m) => m.json.cancel === undefined));
  });
});

Deno.test("a drop mid-response fails it with a typed error; the next response reconnects", async () => {
  await withFake({ chunkBytes: 160 }, {}, async (fake, speaker) => {
    fake.dropNextContext(2);
    const signal = new AbortController().signal;
    const received: Uint8Array[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of speaker.speak(textOf("A sentence that will be cut."), signal)) {
          assert.equal(event.type, "audio"); // the phrase never ends
          if (event.type === "audio") received.push(event.audio);
        }
      })(),
      (error) => error instanceof TtsError && error.reason === "dropped",
    );
    assert.equal(received.length, 2);

    const audio = await collect(speaker.speak(textOf("Back again."), signal));
    assert.equal(audio.length, "Back again.".length * BYTES_PER_CHAR);
    assert.equal(fake.connections.length, 2);
    assert.equal(fake.contextList()[1].connection, 2);
  });
});

Deno.test("a drop between responses is healed by the next response", async () => {
  await withFake({}, {}, async (fake, speaker) => {
    const signal = new AbortController().signal;
    await collect(speaker.speak(textOf("One."), signal));
    await fake.dropAllConnections();
    const audio = await collect(speaker.speak(textOf("Two."), signal));
    assert.equal(audio.length, "Two.".length * BYTES_PER_CHAR);
    assert.equal(fake.connections.length, 2);
  });
});

Deno.test("a silent server fails the response with a timeout", async () => {
  await withFake({ chunkDelayMs: 60_000 }, { stallTimeoutMs: 50 }, async (fake, speaker) => {
    await assert.rejects(
      collect(speaker.speak(textOf("Hello?"), new AbortController().signal)),
      (error) => error instanceof TtsError && error.reason === "timeout",
    );
    const [context] = fake.contextList();
    await waitFor(() => context.cancelled, "the cancel frame"); // free Cartesia's context
  });
});

Deno.test("a context that never answers fails the response while the text still streams", async () => {
  await withFake({ chunkDelayMs: 60_000 }, { stallTimeoutMs: 50 }, async (fake, speaker) => {
    const text = new AsyncQueue<string>();
    text.push("Hello, are you there? "); // the LLM is still thinking about the rest
    const failure = await deadline(
      collect(speaker.speak(text, new AbortController().signal)),
      2000,
      { what: "the response to fail" },
    ).catch((error) => error);
    assert.ok(failure instanceof TtsError && failure.reason === "timeout", String(failure));
    const [context] = fake.contextList();
    await waitFor(() => context.cancelled, "the cancel frame");
  });
});

Deno.test("the silence bound pauses while Cartesia owes nothing (a slow LLM)", async () => {
  await withFake({}, { stallTimeoutMs: 50 }, async (_fake, speaker) => {
    const text = new AsyncQueue<string>();
    const stream = speaker.speak(text, new AbortController().signal);
    text.push("First. ");
    const received: SpeechEvent[] = [];
    for (let r = await stream.next(); !r.done; r = await stream.next()) {
      received.push(r.value);
      if (r.value.type === "phrase_end") break;
    }
    // Everything sent has been answered: three stall bounds of silence are the LLM's, not ours.
    await delay(150);
    text.push("Second. ");
    text.close();
    received.push(...await events(stream));
    assert.deepEqual(splitAtPhraseEnds(received), {
      phrases: expectedPhrases("First. ", "Second. "),
      rest: 0,
    });
  });
});

Deno.test("close() is bounded when Cartesia never answers the close frame", async () => {
  await using peer = startSilentPeer({ answer: "upgrade", tls: true });
  const speaker = new CartesiaSpeaker({
    apiKey: FAKE_CARTESIA_API_KEY,
    baseURL: peer.url,
    closeTimeoutMs: 30,
  });
  await speaker.connect(AbortSignal.timeout(5000));
  assert.equal(peer.upgraded, 1);
  await deadline(speaker.close(), 1000, { what: "close()" });
});

Deno.test("a text source failure cancels the context and surfaces the same error", async () => {
  await withFake({ chunkDelayMs: 2 }, {}, async (fake, speaker) => {
    const llmFailure = new Error("LLM stream broke");
    async function* failing(): AsyncGenerator<string> {
      yield "Let me check that for you. ";
      await delay(5);
      throw llmFailure;
    }
    await assert.rejects(collect(speaker.speak(failing(), new AbortController().signal)), (e) => {
      return e === llmFailure;
    });
    const [context] = fake.contextList();
    await waitFor(() => context.cancelled, "the cancel frame");
  });
});

Deno.test("close() ends an in-flight response with a closed TtsError", async () => {
  await withFake({ chunkDelayMs: 2, chunkBytes: 160 }, {}, async (_fake, speaker) => {
    const audio = speaker.speak(textOf("Some words to say slowly."), new AbortController().signal)[
      Symbol.asyncIterator
    ]();
    await audio.next();
    await speaker.close();
    await assert.rejects(
      (async () => {
        for (let r = await audio.next(); !r.done; r = await audio.next());
      })(),
      (error) => error instanceof TtsError && error.reason === "closed",
    );
    await assert.rejects(
      collect(speaker.speak(textOf("Hi."), new AbortController().signal)),
      (error) => error instanceof TtsError && error.reason === "closed",
    );
  });
});

Deno.test("unreachable Cartesia: TtsUnavailableError and no unhandled rejection", async (t) => {
  await t.step("control: a bare TTSWS without an error listener does cause one", async () => {
    const before = unhandledRejections.length;
    const client = new Cartesia({
      apiKey: "k",
      baseURL: `https://127.0.0.1:${unusedPort()}`,
    });
    const ws = new TTSWS(client);
    await assert.rejects(ws.connect());
    await settle();
    assert.ok(unhandledRejections.length > before, "the detector must see the SDK's rejection");
    unhandledRejections.length = before;
  });

  await t.step("connection refused", async () => {
    const speaker = new CartesiaSpeaker({
      apiKey: FAKE_CARTESIA_API_KEY,
      baseURL: `https://127.0.0.1:${unusedPort()}`,
      reconnectDelayMs: 1,
    });
    try {
      await assert.rejects(
        speaker.connect(new AbortController().signal),
        (error) => error instanceof TtsUnavailableError && error.reason === "unavailable",
      );
      await assert.rejects(
        collect(speaker.speak(textOf("Hello?"), new AbortController().signal)),
        TtsUnavailableError,
      );
    } finally {
      await speaker.close();
    }
  });

  await t.step("handshake refused with HTTP 503, then service comes back", async () => {
    await withFake({}, { reconnectDelayMs: 1 }, async (fake, speaker) => {
      fake.refuseConnections = true;
      const signal = new AbortController().signal;
      await assert.rejects(collect(speaker.speak(textOf("Hi."), signal)), TtsUnavailableError);
      fake.refuseConnections = false;
      const audio = await collect(speaker.speak(textOf("Hi."), signal));
      assert.equal(audio.length, 3 * BYTES_PER_CHAR);
    });
  });

  await t.step("wrong API key", async () => {
    await withFake({}, { apiKey: "wrong", reconnectDelayMs: 1 }, async (fake, speaker) => {
      await assert.rejects(speaker.connect(new AbortController().signal), TtsUnavailableError);
      assert.equal(fake.connections.length, 0);
    });
  });

  for (const tls of [false, true]) {
    const what = tls ? "WebSocket upgrade" : "TLS handshake";
    await t.step(`${what} never completes: connect times out`, async () => {
      // Without TLS on the peer, the client's TLS hello is what goes unanswered.
      await using peer = startSilentPeer({ answer: "nothing", tls });
      const speaker = new CartesiaSpeaker({
        apiKey: "k",
        baseURL: peer.url.replace("http:", "https:"),
        connectTimeoutMs: 50,
        connectAttempts: 1,
      });
      try {
        await assert.rejects(
          speaker.connect(new AbortController().signal),
          (error) => error instanceof TtsUnavailableError && /within 50 ms/.test(error.message),
        );
      } finally {
        await speaker.close();
      }
    });
  }

  await settle();
  assert.deepEqual(unhandledRejections, []);
});
