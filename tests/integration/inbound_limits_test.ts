/**
 * What one media socket may send: audio no faster than real time, fields no bigger than Telnyx's.
 * Whatever exceeds that is dropped and counted, and the call goes on.
 */
import assert from "node:assert/strict";
import { DEFAULT_INBOUND_BURST_MS } from "../../src/session/inbound_audio_pacer.ts";
import { FRAME_BYTES } from "../fakes/telnyx_media.ts";
import { startHarness, waitFor } from "../helpers/harness.ts";
import { endLiveCall, startLiveCall } from "../helpers/call_driver.ts";

Deno.test("a media flood is paced to real time and the excess counted in the end log", async () => {
  await using h = await startHarness();
  const call = await startLiveCall(h);
  const { client, session } = call;
  const flood = 500; // 10 s of audio, sent at once
  const burstFrames = DEFAULT_INBOUND_BURST_MS / 20;
  const frame = new Uint8Array(FRAME_BYTES).fill(0xff);
  for (let i = 0; i < flood; i++) client.media(frame);
  await waitFor(
    () => session.stats.mediaFrames + session.stats.mediaFramesDropped === flood,
    "every frame handled",
  );
  // The burst is allowed, plus what real time added while the flood was read.
  assert.ok(
    session.stats.mediaFrames >= burstFrames && session.stats.mediaFrames < burstFrames + 100,
    `${session.stats.mediaFrames} frames forwarded`,
  );
  assert.equal(session.stats.mediaBytesDropped, session.stats.mediaFramesDropped * FRAME_BYTES);
  assert.ok(h.logs.some((l) => l.includes("inbound audio ahead of real time dropped")));

  await endLiveCall(call);
  const ended = h.logs.map((l) => JSON.parse(l)).find((e) => e.msg === "call session ended");
  assert.equal(ended?.media_frames_dropped, session.stats.mediaFramesDropped);
  assert.equal(ended?.media_bytes_dropped, session.stats.mediaBytesDropped);
});

Deno.test("oversized and invalid fields are dropped without their value; the call goes on", async () => {
  await using h = await startHarness();
  const call = await startLiveCall(h);
  const { client, session } = call;
  const dtmf = (digit: string) =>
    JSON.stringify({ event: "dtmf", stream_id: client.streamId, dtmf: { digit } });
  const mark = (name: string) =>
    JSON.stringify({ event: "mark", stream_id: client.streamId, mark: { name } });

  client.sendRaw(dtmf("7".repeat(65_536)));
  client.sendRaw(dtmf("pin=4711"));
  client.sendRaw(dtmf("47"));
  client.sendRaw(mark("m".repeat(1_000_000)));
  client.sendRaw(mark("m".repeat(129)));
  client.dtmf("5");
  await waitFor(() => session.stats.dtmfPresses === 1, "the valid key press");

  assert.equal(session.stats.dtmfPresses, 1, "only the valid key press reached the session");
  assert.equal(session.stats.markEchoes, 0);
  assert.equal(session.state, "active");
  const dropped = h.logs.filter((l) => l.includes("malformed frame ignored"));
  assert.equal(dropped.length, 5);
  assert.ok(dropped.some((l) => l.includes("not a DTMF digit")), dropped.join("\n"));
  assert.ok(h.logs.every((l) => !l.includes("4711") && !l.includes("mmmm")));

  await endLiveCall(call);
});
