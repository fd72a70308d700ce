/** The callee's audio on its way to STT: chunk sizes by what the callee does, and slabs. */
import assert from "node:assert/strict";
import {
  SILENCE_KEPT_FOR_REPLAY_MS,
  STT_CHUNK_MS,
  STT_CHUNK_WHILE_CALLEE_SILENT_MS,
  SttFeed,
} from "../../src/session/stt_feed.ts";
import { FakeTranscriber } from "../helpers/agent_harness.ts";
import { MULAW_8K } from "../../src/transport/call_transport.ts";

/** A 20 ms mu-law frame whose bytes all hold `value`. */
const frame = (value = 0xff) => new Uint8Array(160).fill(value);
const BYTES_PER_MS = 8;

Deno.test("a talking callee's frames go to STT two by two", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  feed.push(frame(), "talking");
  assert.equal(stt.audioBytes, 0, "the first frame waits for its chunk");
  feed.push(frame(), "talking");
  assert.deepEqual(stt.chunks.map((c) => c.length), [STT_CHUNK_MS * BYTES_PER_MS]);
  assert.deepEqual(stt.silenceForgotten, [], "talking: the replay keeps everything");
});

Deno.test("a pausing callee's frames go to STT one by one", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  feed.push(frame(), "pausing");
  feed.push(frame(), "pausing");
  assert.deepEqual(stt.chunks.map((c) => c.length), [160, 160]);
  assert.deepEqual(stt.silenceForgotten, [], "a pause inside speech is kept for a replay");
});

Deno.test("a silent callee's audio goes to STT in long chunks, and the replay lets go of it", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  const framesPerChunk = STT_CHUNK_WHILE_CALLEE_SILENT_MS / 20;
  for (let i = 1; i < framesPerChunk; i++) feed.push(frame(), "silent");
  assert.equal(stt.audioBytes, 0, "held for its chunk");
  feed.push(frame(), "silent");
  assert.deepEqual(stt.chunks.map((c) => c.length), [
    STT_CHUNK_WHILE_CALLEE_SILENT_MS * BYTES_PER_MS,
  ]);
  assert.deepEqual(stt.silenceForgotten, [SILENCE_KEPT_FOR_REPLAY_MS]);
});

Deno.test("the end of the silence sends what was held at once", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  for (let i = 0; i < 5; i++) feed.push(frame(), "silent");
  feed.push(frame(), "talking");
  assert.deepEqual(stt.chunks.map((c) => c.length), [5 * 160]);
  assert.deepEqual(stt.silenceForgotten, [], "talking: the replay keeps everything");
});

Deno.test("flush sends a partial chunk", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  feed.push(frame(1), "talking");
  feed.flush();
  assert.deepEqual(stt.chunks, [frame(1)]);
});

Deno.test("flush sends nothing when nothing is held", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  feed.flush();
  assert.deepEqual(stt.chunks, []);
});

Deno.test("a payload as long as a chunk goes alone, copied", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  const payload = new Uint8Array(STT_CHUNK_MS * BYTES_PER_MS).fill(7);
  feed.push(payload, "talking");
  payload.fill(0); // the transport reuses its buffer
  assert.deepEqual(stt.chunks, [new Uint8Array(STT_CHUNK_MS * BYTES_PER_MS).fill(7)]);
});

Deno.test("a payload longer than the largest chunk goes whole, wherever the slab is", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  // 800 ms into the slab, less room is left than this payload takes.
  for (let i = 0; i < 40; i++) feed.push(frame(), "talking");
  const long = new Uint8Array((STT_CHUNK_WHILE_CALLEE_SILENT_MS + 100) * BYTES_PER_MS).fill(9);
  feed.push(long, "silent");
  assert.deepEqual(stt.chunks.at(-1), long);
});

Deno.test("chunks STT was given keep their audio while later ones fill new slabs", () => {
  const stt = new FakeTranscriber();
  const feed = new SttFeed(stt, MULAW_8K);
  const frames = Array.from({ length: 120 }, (_, i) => frame(i));
  // 40 ms chunks, then a chunk begun while talking grows silent: were room kept only for a 40 ms
  // chunk, it would run past the slab's end (1 s) into audio already given to STT.
  for (const [i, payload] of frames.entries()) feed.push(payload, i < 49 ? "talking" : "silent");
  feed.flush();
  const sent = new Uint8Array(stt.chunks.flatMap((chunk) => [...chunk]));
  assert.deepEqual(sent, new Uint8Array(frames.flatMap((f) => [...f])));
});
