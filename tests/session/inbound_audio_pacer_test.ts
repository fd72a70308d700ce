import assert from "node:assert/strict";
import {
  DEFAULT_INBOUND_BURST_MS,
  InboundAudioPacer,
} from "../../src/session/inbound_audio_pacer.ts";

const BYTES_PER_SECOND = 8_000;
/** 20 ms of 8 kHz G.711, as Telnyx sends it. */
const FRAME_BYTES = 160;

/** A pacer at the G.711 rate on a clock the test moves by hand. */
function pacedCall(burstMs?: number) {
  const clock = { ms: 0 };
  const pacer = new InboundAudioPacer({
    bytesPerSecond: BYTES_PER_SECOND,
    burstMs,
    now: () => clock.ms,
  });
  let admittedBytes = 0;
  let droppedFrames = 0;
  /** Offers `count` frames of `bytes` at the current time. */
  const offer = (count: number, bytes = FRAME_BYTES) => {
    for (let i = 0; i < count; i++) {
      if (pacer.admit(bytes)) admittedBytes += bytes;
      else droppedFrames++;
    }
  };
  return {
    clock,
    offer,
    get admittedSeconds() {
      return admittedBytes / BYTES_PER_SECOND;
    },
    get droppedFrames() {
      return droppedFrames;
    },
  };
}

Deno.test("audio in real time passes in full", () => {
  const call = pacedCall();
  for (let frame = 0; frame < 3_000; frame++) {
    call.offer(1);
    call.clock.ms += 20;
  }
  assert.equal(call.droppedFrames, 0);
  assert.equal(call.admittedSeconds, 60);
});

Deno.test("a reader that falls seconds behind real time and catches up loses nothing", () => {
  const call = pacedCall();
  const behindMs = DEFAULT_INBOUND_BURST_MS - 1_000;
  for (let frame = 0; frame < 100; frame++) {
    call.offer(1);
    call.clock.ms += 20;
  }
  // Our event loop stalls (frames wait in the socket), then reads the backlog in one go.
  call.clock.ms += behindMs;
  call.offer(behindMs / 20);
  for (let frame = 0; frame < 100; frame++) {
    call.offer(1);
    call.clock.ms += 20;
  }
  assert.equal(call.droppedFrames, 0);
  assert.equal(call.admittedSeconds, 4 + behindMs / 1_000);
});

Deno.test("1,000 frames a second for 10 s pass as 10 s of audio plus the burst", () => {
  const call = pacedCall(1_000);
  for (let ms = 0; ms < 10_000; ms++) {
    call.offer(1);
    call.clock.ms += 1;
  }
  assert.ok(
    call.admittedSeconds >= 10.9 && call.admittedSeconds <= 11,
    `${call.admittedSeconds} s admitted`,
  );
  assert.equal(call.droppedFrames, 10_000 - call.admittedSeconds * 50);
});

Deno.test("a frame larger than the burst never passes", () => {
  const call = pacedCall(1_000);
  for (let second = 0; second < 10; second++) {
    call.offer(1, BYTES_PER_SECOND + 1);
    call.clock.ms += 1_000;
  }
  assert.equal(call.admittedSeconds, 0);
  assert.equal(call.droppedFrames, 10);
});

Deno.test("frames bunched by jitter within the burst all pass", () => {
  const call = pacedCall(500);
  for (let gap = 0; gap < 20; gap++) {
    // 400 ms without a frame, then the 20 frames of those 400 ms at once.
    call.clock.ms += 400;
    call.offer(20);
  }
  assert.equal(call.droppedFrames, 0);
  assert.equal(call.admittedSeconds, 8);
});

Deno.test("the start of a stream may carry one burst at once, not more", () => {
  const call = pacedCall(1_000);
  call.offer(60);
  assert.equal(call.admittedSeconds, 1);
  assert.equal(call.droppedFrames, 10);
});

Deno.test("a refunded frame leaves room for another, never beyond the burst", () => {
  const clock = { ms: 0 };
  const pacer = new InboundAudioPacer({
    bytesPerSecond: BYTES_PER_SECOND,
    burstMs: 40,
    now: () => clock.ms,
  });
  assert.equal(pacer.admit(FRAME_BYTES), true);
  assert.equal(pacer.admit(FRAME_BYTES), true);
  assert.equal(pacer.admit(FRAME_BYTES), false, "the 40 ms burst is spent");
  pacer.refund(FRAME_BYTES);
  assert.equal(pacer.admit(FRAME_BYTES), true);
  pacer.refund(FRAME_BYTES);
  pacer.refund(FRAME_BYTES);
  pacer.refund(FRAME_BYTES);
  assert.equal(pacer.admit(FRAME_BYTES), true);
  assert.equal(pacer.admit(FRAME_BYTES), true);
  assert.equal(pacer.admit(FRAME_BYTES), false, "refunds never bank more than the burst");
});

Deno.test("a long silence does not bank more than the burst", () => {
  const call = pacedCall(1_000);
  call.offer(50);
  call.clock.ms += 60_000;
  call.offer(100);
  assert.equal(call.admittedSeconds, 2);
  assert.equal(call.droppedFrames, 50);
});

Deno.test("a clock that steps back admits nothing extra", () => {
  let now = 5_000;
  const pacer = new InboundAudioPacer({
    bytesPerSecond: BYTES_PER_SECOND,
    burstMs: 1_000,
    now: () => now,
  });
  assert.equal(pacer.admit(BYTES_PER_SECOND), true, "the initial burst");
  now = 4_000;
  assert.equal(pacer.admit(FRAME_BYTES), false);
  now = 5_020;
  assert.equal(pacer.admit(FRAME_BYTES), true, "20 ms after the latest reading");
});

Deno.test("a rate or burst that is not positive is refused", () => {
  for (const options of [{ bytesPerSecond: 0 }, { bytesPerSecond: 8_000, burstMs: -1 }]) {
    assert.throws(() => new InboundAudioPacer(options), RangeError);
  }
  assert.throws(() => new InboundAudioPacer({ bytesPerSecond: NaN }), RangeError);
});

Deno.test("by default the pacer runs at the call's 8000 bytes/s with a 5 s burst", () => {
  let now = 0;
  const pacer = new InboundAudioPacer({ now: () => now });
  assert.equal(DEFAULT_INBOUND_BURST_MS, 5_000);
  assert.equal(pacer.admit(5 * BYTES_PER_SECOND), true, "five seconds at once");
  assert.equal(pacer.admit(1), false);
  now += 20;
  assert.equal(pacer.admit(FRAME_BYTES), true, "20 ms later, 20 ms of audio");
  assert.equal(pacer.admit(1), false);
});

Deno.test("a caller's reading of the clock counts as the pacer's own", () => {
  let reads = 0;
  const pacer = new InboundAudioPacer({
    bytesPerSecond: BYTES_PER_SECOND,
    burstMs: 20,
    now: () => (reads++, 0),
  });
  const readsAtStart = reads;
  assert.equal(pacer.admit(FRAME_BYTES, 0), true);
  assert.equal(pacer.admit(FRAME_BYTES, 10), false, "10 ms refill half a frame");
  assert.equal(pacer.admit(FRAME_BYTES, 20), true);
  assert.equal(reads, readsAtStart, "the pacer did not read its clock again");
});
