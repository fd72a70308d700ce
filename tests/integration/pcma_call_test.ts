/**
 * A call whose Telnyx leg announces PCMA, on the loopback fakes: A-law must be what Deepgram is
 * told it hears, what Cartesia is asked to produce and what the playback pads with. A stream
 * labelled wrongly anywhere would be transcribed or played as noise.
 */
import assert from "node:assert/strict";
import { CallerTimeline } from "../helpers/caller_timeline.ts";
import { waitFor } from "../helpers/harness.ts";
import { startVoiceHarness } from "../helpers/voice_harness.ts";
import type { TelnyxMediaClient } from "../fakes/telnyx_media.ts";

const A_LAW_SILENCE = 0xd5;
/** An odd number of characters: the fake's audio for it ends half-way through a 20 ms frame. */
const GREETING = "Hello, this is a test call.";

/** Bot audio the fake Telnyx received before the mark named `name`, frame by frame. */
function framesBeforeMark(client: TelnyxMediaClient, name: string): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (const frame of client.received) {
    if (frame.event === "mark" && frame.mark.name === name) return frames;
    if (frame.event === "media") frames.push(Uint8Array.fromBase64(frame.media.payload));
  }
  throw new Error(`no mark ${name}`);
}

Deno.test({
  name: "a PCMA call is A-law end to end: Deepgram alaw, Cartesia pcm_alaw, 0xD5 padding",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(4000);
    await using v = await startVoiceHarness({
      caller,
      encoding: "PCMA",
      env: { GREETING },
    });
    const { client, session, agent } = await v.call();

    assert.deepEqual(session.inputFormat, { encoding: "alaw", sampleRate: 8000 });
    await waitFor(() => agent.conversation.transcript().length >= 2, "greeting heard", 10_000);
    assert.deepEqual(agent.conversation.transcript()[0], { role: "callee", text: "Hello?" });

    const stt = v.deepgram.connections[0].params;
    assert.equal(stt.encoding, "alaw");
    assert.equal(stt.sample_rate, "8000");

    const contexts = v.cartesia.contextList();
    assert.ok(contexts.length > 0);
    for (const context of contexts) {
      assert.deepEqual(context.request.output_format, {
        container: "raw",
        encoding: "pcm_alaw",
        sample_rate: 8000,
      });
    }

    // The greeting as played: Cartesia's audio in order, each frame completed with A-law silence.
    const greeting = contexts[0];
    assert.equal(v.cartesia.transcriptOf(greeting.id), GREETING);
    const audio = v.cartesia.audioOf(greeting.id);
    const firstMark = client.framesOf("mark")[0].mark.name;
    let offset = 0;
    let padding = 0;
    for (const frame of framesBeforeMark(client, firstMark)) {
      let take = 0;
      while (take < frame.length && offset + take < audio.length) {
        if (frame[take] !== audio[offset + take]) break;
        take++;
      }
      offset += take;
      const pad = frame.subarray(take);
      assert.ok(pad.every((byte) => byte === A_LAW_SILENCE), "padding is A-law silence");
      padding += pad.length;
    }
    assert.equal(offset, audio.length, "all of the greeting's audio was played, in order");
    assert.ok(padding > 0, "the greeting's last frame was padded");

    client.stop();
    await session.ended;
  },
});
