/**
 * Per-frame cost of the Telnyx media socket, 50 frames a second per call in each direction:
 * reading an inbound `media` frame (fully parsed, or its payload found by `peekMediaPayload` as
 * the socket does for frames in Telnyx's shape) and decoding its payload (into a fresh array or
 * into the one buffer per socket), and building an outbound `media` frame.
 *
 * Run: `deno bench bench/media_frame_bench.ts`
 */
import {
  MAX_INBOUND_MEDIA_BYTES,
  mediaFrameFromBytes,
  parseInboundFrame,
  peekMediaPayload,
} from "../src/telnyx/media_stream.ts";

const FRAME = new Uint8Array(160).map((_, i) => (i * 7) % 251);
const PAYLOAD = FRAME.toBase64();
const INBOUND = JSON.stringify({
  event: "media",
  sequence_number: "12345",
  media: { track: "inbound", chunk: "1234", timestamp: "24680", payload: PAYLOAD },
  stream_id: "32a1a2b4-5678-4abc-9def-0123456789ab",
});
const reused = new Uint8Array(MAX_INBOUND_MEDIA_BYTES);

Deno.bench({
  name: "inbound: parse only",
  group: "inbound",
  baseline: true,
  fn: () => {
    parseInboundFrame(INBOUND);
  },
});

Deno.bench({
  name: "inbound: parse + decode into a fresh array",
  group: "inbound",
  fn: () => {
    const parsed = parseInboundFrame(INBOUND);
    if (parsed.ok && parsed.frame.event === "media") {
      Uint8Array.fromBase64(parsed.frame.media.payload);
    }
  },
});

Deno.bench({
  name: "inbound: parse + decode into the socket's buffer (frames not in Telnyx's shape)",
  group: "inbound",
  fn: () => {
    const parsed = parseInboundFrame(INBOUND);
    if (parsed.ok && parsed.frame.event === "media") {
      reused.subarray(0, reused.setFromBase64(parsed.frame.media.payload).written);
    }
  },
});

Deno.bench({
  name: "inbound: payload found by peekMediaPayload, decoded into the socket's buffer (now)",
  group: "inbound",
  fn: () => {
    reused.subarray(0, reused.setFromBase64(peekMediaPayload(INBOUND)!).written);
  },
});

Deno.bench({
  name: "outbound: media frame from 160 bytes",
  group: "outbound",
  fn: () => {
    mediaFrameFromBytes(FRAME);
  },
});
