import assert from "node:assert/strict";
import { MULAW_8K } from "../../src/transport/call_transport.ts";
import {
  TelnyxMediaTransport,
  telnyxStreamFormat,
  telnyxTransportEvent,
} from "../../src/transport/telnyx_media_transport.ts";
import { parseInboundFrame } from "../../src/telnyx/media_stream.ts";
import { Playback } from "../../src/session/playback.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { waitFor } from "../helpers/wait_for.ts";

/** Deterministic test audio: byte i of a stream is `(seed + i * 7) % 251` (never 0xFF). */
function audio(length: number, seed = 0): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed + i * 7) % 251;
  return bytes;
}

/** A server socket and the fake Telnyx client connected to it. */
async function connectFakeTelnyx() {
  const accepted = Promise.withResolvers<WebSocket>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    accepted.resolve(socket);
    return response;
  });
  const client = await TelnyxMediaClient.connect(`ws://127.0.0.1:${server.addr.port}/`);
  const socket = await accepted.promise;
  return {
    socket,
    client,
    async close() {
      await client.close();
      await server.shutdown();
    },
  };
}

Deno.test("telnyx transport: the announced media format", async (t) => {
  await t.step("PCMU at 8 kHz is mu-law", () => {
    const check = telnyxStreamFormat({ encoding: "PCMU", sample_rate: 8000, channels: 1 });
    assert.deepEqual(check, { ok: true, format: { encoding: "mulaw", sampleRate: 8000 } });
  });

  await t.step("PCMA at 8 kHz is A-law", () => {
    const check = telnyxStreamFormat({ encoding: "PCMA", sample_rate: 8000 });
    assert.deepEqual(check, { ok: true, format: { encoding: "alaw", sampleRate: 8000 } });
  });

  await t.step("another codec is refused with a reason naming it", () => {
    const check = telnyxStreamFormat({ encoding: "G722", sample_rate: 16000 });
    assert.equal(check.ok, false);
    assert.match(!check.ok ? check.reason : "", /G722/);
  });

  await t.step("G.711 at another sample rate is refused", () => {
    const check = telnyxStreamFormat({ encoding: "PCMU", sample_rate: 16000 });
    assert.equal(check.ok, false);
    assert.match(!check.ok ? check.reason : "", /16000/);
  });

  await t.step("more than one channel is refused", () => {
    assert.equal(
      telnyxStreamFormat({ encoding: "PCMU", sample_rate: 8000, channels: 2 }).ok,
      false,
    );
  });
});

Deno.test("telnyx transport: inbound frames become transport events", () => {
  const parse = (text: string) => {
    const parsed = parseInboundFrame(text);
    if (!parsed.ok) throw new Error(parsed.reason);
    return telnyxTransportEvent(parsed.frame);
  };
  assert.deepEqual(parse('{"event":"dtmf","dtmf":{"digit":"5"}}'), { type: "dtmf", digit: "5" });
  assert.deepEqual(parse('{"event":"mark","mark":{"name":"p1"}}'), { type: "mark", name: "p1" });
  assert.deepEqual(parse('{"event":"stop"}'), { type: "stop" });
  assert.deepEqual(parse('{"event":"error","error":{"code":"100003","title":"malformed"}}'), {
    type: "stream_error",
    code: "100003",
    title: "malformed",
  });
  assert.equal(parse('{"event":"connected","version":"1.0.0"}'), undefined);
});

Deno.test("telnyx transport: audio, mark and clear reach Telnyx as its JSON frames", async () => {
  const wire = await connectFakeTelnyx();
  try {
    wire.client.start();
    const transport = new TelnyxMediaTransport(wire.socket, MULAW_8K);
    const frame = audio(160);
    transport.sendAudio(frame);
    frame.fill(0); // the caller reuses its buffer; what was sent must not change
    transport.sendMark("phrase-1");
    transport.clear();
    await waitFor(() => wire.client.framesOf("clear").length === 1, "the clear frame");
    // The fake client parses every frame with Telnyx's outbound schema.
    assert.deepEqual(wire.client.invalidFrames, []);
    const media = wire.client.framesOf("media");
    assert.equal(media.length, 1);
    assert.deepEqual(Uint8Array.fromBase64(media[0].media.payload), audio(160));
    assert.deepEqual(wire.client.framesOf("mark").map((m) => m.mark.name), ["phrase-1"]);
  } finally {
    await wire.close();
  }
});

Deno.test("telnyx transport: sends after the socket closed are dropped", async () => {
  const wire = await connectFakeTelnyx();
  const transport = new TelnyxMediaTransport(wire.socket, MULAW_8K);
  await wire.close();
  await waitFor(() => wire.socket.readyState === WebSocket.CLOSED, "the socket to close");
  transport.sendAudio(audio(160));
  transport.sendMark("late");
  transport.clear();
  transport.close(1000, "done");
  assert.equal(wire.socket.readyState, WebSocket.CLOSED);
});

Deno.test("telnyx transport: paced playback, marks and barge-in against the fake Telnyx", async () => {
  const wire = await connectFakeTelnyx();
  const { socket, client } = wire;
  const echoes: string[] = [];
  const playback = new Playback({ output: new TelnyxMediaTransport(socket, MULAW_8K) });
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data as string);
    if (frame.event !== "mark") return;
    echoes.push(frame.mark.name);
    playback.onMarkEcho(frame.mark.name);
  });
  try {
    client.start();
    playback.enqueue(audio(1_200));
    playback.endPhrase("hello");
    playback.enqueue(audio(1_000, 1));
    playback.endPhrase("there");
    assert.equal(await playback.finish(), "played");
    assert.equal(client.playedBytes, playback.stats.bytesSent);
    assert.deepEqual(client.framesOf("mark").map((m) => m.mark.name), ["hello", "there"]);

    // Barge-in mid-answer: the fake drops queued audio and echoes the cleared mark.
    const sentBefore = playback.stats.bytesSent;
    playback.enqueue(audio(1_600, 2));
    playback.endPhrase("one");
    playback.enqueue(audio(80_000, 3)); // 10 s
    playback.endPhrase("two");
    const done = playback.finish();
    await waitFor(
      () => echoes.includes("one") && client.playedBytes >= sentBefore + 1_600 + 400,
      'the echo of "one", then a bit into "two"',
    );
    const result = playback.interrupt();
    assert.equal(await done, "interrupted");
    assert.deepEqual(result.heard, ["one"]);
    assert.equal(result.partial?.id, "two");
    await waitFor(() => client.framesOf("clear").length > 0, "the clear to arrive");
    assert.equal(client.framesOf("clear").length, 1);
    assert.ok(
      playback.stats.bytesSent - sentBefore < 1_600 + 80_000,
      "most of the long phrase was never sent",
    );

    // The next utterance plays to the end although the stale echo of "two" arrives meanwhile.
    playback.enqueue(audio(800, 4));
    playback.endPhrase("bye");
    assert.equal(await playback.finish(), "played");
    assert.deepEqual(playback.interrupt().heard, ["bye"]);
  } finally {
    playback.close();
    await wire.close();
  }
});
