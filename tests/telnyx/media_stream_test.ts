import assert from "node:assert/strict";
import {
  clearFrame,
  decodeMediaPayload,
  DTMF_DIGITS,
  type FrameParseResult,
  type InboundFrame,
  InboundFrameSchema,
  InboundMediaFrameSchema,
  isTelephonyEncoding,
  markFrame,
  MAX_ID_CHARS,
  MAX_INBOUND_FRAME_CHARS,
  MAX_INBOUND_MEDIA_BYTES,
  MAX_INBOUND_MEDIA_PAYLOAD_CHARS,
  MAX_MARK_NAME_CHARS,
  mediaFrame,
  mediaFrameFromBytes,
  mediaPayloadBytes,
  type OutboundFrame,
  OutboundFrameSchema,
  parseInboundFrame,
  parseOutboundFrame,
  peekMediaPayload,
} from "../../src/telnyx/media_stream.ts";

/** Mulberry32: tiny seeded PRNG so the random cases are reproducible. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

/** Reference encoder independent of the one under test. */
function referenceBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function expectOk<Frame>(result: FrameParseResult<Frame>): Frame {
  if (!result.ok) assert.fail(`expected ok, got: ${result.reason}`);
  return result.frame;
}

/** Asserts failure with a short reason that mentions `reasonPattern`. */
function expectRejected<Frame>(result: FrameParseResult<Frame>, reasonPattern: RegExp): string {
  if (result.ok) {
    assert.fail(`expected rejection, got ${JSON.stringify(result.frame).slice(0, 300)}`);
  }
  assert.match(result.reason, reasonPattern);
  assert.ok(result.reason.length <= 200, `reason too long (${result.reason.length})`);
  return result.reason;
}

const STREAM_ID = "32de0dea-53cb-4b21-89a4-9ed1a2a1b2a3";
const CALL_CONTROL_ID = "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg";
const PCMU_SILENCE_20MS = referenceBase64(new Uint8Array(160).fill(0xff));

/** Frames as Telnyx sends them, with every field it documents for each event. */
const DOCUMENTED = {
  connected: '{"event":"connected","version":"1.0.0"}',
  start: JSON.stringify({
    event: "start",
    sequence_number: "1",
    stream_id: STREAM_ID,
    start: {
      user_id: "3e6f995f-85f7-4705-9741-53b116d28237",
      call_control_id: CALL_CONTROL_ID,
      call_session_id: "ff55a038-6f3d-11ef-9692-02420a0d7e15",
      from: "+13122010094",
      to: "+13122123456",
      tags: ["campaign-7"],
      client_state: "aGF2ZSBhIG5pY2UgZGF5ID1d",
      custom_parameters: { session: "sess-42" },
      media_format: { encoding: "PCMU", sample_rate: 8000, channels: 1 },
    },
  }),
  media: JSON.stringify({
    event: "media",
    sequence_number: "4",
    stream_id: STREAM_ID,
    media: { track: "inbound", chunk: "2", timestamp: "5", payload: PCMU_SILENCE_20MS },
  }),
  dtmf: JSON.stringify({
    event: "dtmf",
    sequence_number: "5",
    stream_id: STREAM_ID,
    dtmf: { digit: "5" },
  }),
  mark: JSON.stringify({
    event: "mark",
    sequence_number: "6",
    stream_id: STREAM_ID,
    mark: { name: "utt-17" },
  }),
  error: JSON.stringify({
    event: "error",
    sequence_number: "6",
    stream_id: STREAM_ID,
    error: { title: "rate_limit_reached", code: "100005", detail: "Too many requests" },
  }),
  stop: JSON.stringify({
    event: "stop",
    sequence_number: "5",
    stream_id: STREAM_ID,
    stop: { user_id: "3e6f995f-85f7-4705-9741-53b116d28237", call_control_id: CALL_CONTROL_ID },
  }),
};

Deno.test("parseInboundFrame accepts the documented frames", async (t) => {
  await t.step("connected", () => {
    assert.deepEqual(expectOk(parseInboundFrame(DOCUMENTED.connected)), {
      event: "connected",
      version: "1.0.0",
    });
  });

  await t.step("start keeps every documented field", () => {
    const frame = expectOk(parseInboundFrame(DOCUMENTED.start));
    assert.equal(frame.event, "start");
    if (frame.event !== "start") return;
    assert.equal(frame.stream_id, STREAM_ID);
    assert.equal(frame.sequence_number, "1");
    assert.equal(frame.start.call_control_id, CALL_CONTROL_ID);
    assert.equal(frame.start.from, "+13122010094");
    assert.equal(frame.start.to, "+13122123456");
    assert.deepEqual(frame.start.tags, ["campaign-7"]);
    assert.equal(frame.start.client_state, "aGF2ZSBhIG5pY2UgZGF5ID1d");
    assert.deepEqual(frame.start.custom_parameters, { session: "sess-42" });
    assert.deepEqual(frame.start.media_format, {
      encoding: "PCMU",
      sample_rate: 8000,
      channels: 1,
    });
  });

  await t.step("media", () => {
    const frame = expectOk(parseInboundFrame(DOCUMENTED.media));
    assert.deepEqual(frame, {
      event: "media",
      sequence_number: "4",
      stream_id: STREAM_ID,
      media: { track: "inbound", chunk: "2", timestamp: "5", payload: PCMU_SILENCE_20MS },
    });
  });

  await t.step("dtmf, mark, error, stop", () => {
    const dtmf = expectOk(parseInboundFrame(DOCUMENTED.dtmf));
    assert.ok(dtmf.event === "dtmf" && dtmf.dtmf.digit === "5");
    const mark = expectOk(parseInboundFrame(DOCUMENTED.mark));
    assert.ok(mark.event === "mark" && mark.mark.name === "utt-17");
    const error = expectOk(parseInboundFrame(DOCUMENTED.error));
    assert.deepEqual(error, {
      event: "error",
      sequence_number: "6",
      stream_id: STREAM_ID,
      error: { title: "rate_limit_reached", code: "100005", detail: "Too many requests" },
    });
    const stop = expectOk(parseInboundFrame(DOCUMENTED.stop));
    assert.ok(stop.event === "stop" && stop.stop?.call_control_id === CALL_CONTROL_ID);
  });

  await t.step("the exported union schema agrees with parseInboundFrame", () => {
    for (const text of Object.values(DOCUMENTED)) {
      const viaSchema = InboundFrameSchema.parse(JSON.parse(text));
      assert.deepEqual(viaSchema, expectOk(parseInboundFrame(text)));
    }
  });
});

Deno.test("parseInboundFrame is lenient where the wire varies", async (t) => {
  const startWith = (mediaFormat: unknown, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      event: "start",
      stream_id: STREAM_ID,
      start: { media_format: mediaFormat },
      ...extra,
    });

  await t.step("normalises every G.711 encoding spelling", () => {
    const cases: Array<[string, string]> = [
      ["PCMU", "PCMU"],
      ["audio/x-mulaw", "PCMU"],
      ["pcmu", "PCMU"],
      ["audio/x-mulaw;rate=8000", "PCMU"],
      ["PCMA", "PCMA"],
      ["audio/x-alaw", "PCMA"],
      ["Audio/X-ALAW", "PCMA"],
    ];
    for (const [raw, expected] of cases) {
      const frame = expectOk(parseInboundFrame(startWith({ encoding: raw, sample_rate: 8000 })));
      assert.ok(frame.event === "start");
      assert.equal(frame.start.media_format.encoding, expected, raw);
      assert.ok(isTelephonyEncoding(frame.start.media_format.encoding));
    }
  });

  await t.step("keeps other encodings raw so the caller can refuse them", () => {
    for (const raw of ["G722", "OPUS", "AMR-WB", "L16"]) {
      const frame = expectOk(parseInboundFrame(startWith({ encoding: raw, sample_rate: 16000 })));
      assert.ok(frame.event === "start");
      assert.equal(frame.start.media_format.encoding, raw);
      assert.equal(isTelephonyEncoding(frame.start.media_format.encoding), false);
    }
  });

  await t.step("accepts numbers for counters and numeric strings for rates, consistently", () => {
    const start = expectOk(
      parseInboundFrame(
        startWith({ encoding: "PCMU", sample_rate: "8000", channels: "1" }, { sequence_number: 1 }),
      ),
    );
    assert.ok(start.event === "start");
    assert.equal(start.sequence_number, "1");
    assert.equal(start.start.media_format.sample_rate, 8000);
    assert.equal(start.start.media_format.channels, 1);

    const media = expectOk(
      parseInboundFrame(JSON.stringify({
        event: "media",
        sequence_number: 4,
        stream_id: STREAM_ID,
        media: { track: "inbound", chunk: 2, timestamp: 5, payload: PCMU_SILENCE_20MS },
      })),
    );
    assert.deepEqual(media, expectOk(parseInboundFrame(DOCUMENTED.media)));

    const error = expectOk(parseInboundFrame('{"event":"error","error":{"code":100003}}'));
    assert.ok(error.event === "error" && error.error?.code === "100003");
  });

  await t.step("optional fields may be missing; client_state may be null", () => {
    const start = expectOk(
      parseInboundFrame(
        JSON.stringify({
          event: "start",
          stream_id: STREAM_ID,
          start: { client_state: null, media_format: { encoding: "PCMU", sample_rate: 8000 } },
        }),
      ),
    );
    assert.ok(start.event === "start" && start.start.client_state === null);
    assert.equal(start.start.custom_parameters, undefined);
    assert.ok(expectOk(parseInboundFrame('{"event":"connected"}')).event === "connected");
    assert.ok(expectOk(parseInboundFrame('{"event":"stop"}')).event === "stop");
    assert.ok(expectOk(parseInboundFrame('{"event":"error"}')).event === "error");
    const media = expectOk(parseInboundFrame('{"event":"media","media":{"payload":"/w"}}'));
    assert.ok(media.event === "media" && media.media.payload === "/w");
  });

  await t.step("unknown extra fields are dropped, never an error", () => {
    const frame = expectOk(
      parseInboundFrame(JSON.stringify({
        event: "dtmf",
        stream_id: STREAM_ID,
        brand_new: { nested: [1, 2, 3] },
        dtmf: { digit: "#", occurred_at: "2024-01-01T00:00:00Z", duration_ms: 80 },
      })),
    );
    assert.deepEqual(frame, {
      event: "dtmf",
      stream_id: STREAM_ID,
      dtmf: { digit: "#", occurred_at: "2024-01-01T00:00:00Z" },
    });
  });
});

Deno.test("parseInboundFrame rejects malformed frames with a short reason", async (t) => {
  const cases: Array<[name: string, text: string, reason: RegExp]> = [
    ["invalid JSON", '{"event":"media",', /invalid JSON/],
    ["empty text", "", /invalid JSON/],
    ["array", "[]", /not a JSON object but an array/],
    ["null", "null", /not a JSON object but null/],
    ["number", "42", /not a JSON object but number/],
    ["string", '"media"', /not a JSON object but string/],
    ["missing event", '{"media":{"payload":"AA=="}}', /missing event/],
    ["non-string event", '{"event":7}', /event is number/],
    ["unknown event", '{"event":"transcription"}', /unknown event "transcription"/],
    ["prototype key as event", '{"event":"__proto__"}', /unknown event/],
    ["outbound-only event", '{"event":"clear"}', /unknown event "clear"/],
    ["media without payload", '{"event":"media","media":{"track":"inbound"}}', /media\.payload/],
    ["media without media", '{"event":"media"}', /media/],
    ["media with non-base64 payload", '{"event":"media","media":{"payload":"%%%"}}', /not base64/],
    ["media with 4n+1 payload", '{"event":"media","media":{"payload":"AAAAA"}}', /not base64/],
    [
      "start without stream_id",
      '{"event":"start","start":{"media_format":{"encoding":"PCMU","sample_rate":8000}}}',
      /stream_id/,
    ],
    ["start without media_format", `{"event":"start","stream_id":"s","start":{}}`, /media_format/],
    [
      "start with zero sample rate",
      '{"event":"start","stream_id":"s","start":{"media_format":{"encoding":"PCMU","sample_rate":0}}}',
      /sample_rate/,
    ],
    ["mark without name", '{"event":"mark","mark":{}}', /mark\.name/],
    ["dtmf with empty digit", '{"event":"dtmf","dtmf":{"digit":""}}', /dtmf\.digit/],
    ["dtmf with two digits", '{"event":"dtmf","dtmf":{"digit":"12"}}', /not a DTMF digit/],
    ["dtmf with a letter beyond D", '{"event":"dtmf","dtmf":{"digit":"E"}}', /not a DTMF digit/],
    ["dtmf with a lowercase letter", '{"event":"dtmf","dtmf":{"digit":"a"}}', /not a DTMF digit/],
    ["dtmf with a number", '{"event":"dtmf","dtmf":{"digit":5}}', /not a DTMF digit/],
    ["counter of the wrong type", '{"event":"stop","sequence_number":true}', /sequence_number/],
  ];
  for (const [name, text, reason] of cases) {
    await t.step(name, () => {
      expectRejected(parseInboundFrame(text), reason);
    });
  }

  await t.step("huge strings never make it into the reason", () => {
    // Over every field limit, under the frame cap, so each reaches the schema.
    const huge = "x".repeat(20_000);
    const reasons = [
      expectRejected(parseInboundFrame(huge), /invalid JSON/),
      expectRejected(parseInboundFrame(JSON.stringify({ event: huge })), /unknown event/),
      expectRejected(
        parseInboundFrame(JSON.stringify({ event: "media", media: { payload: `${huge}!` } })),
        /media\.payload/,
      ),
      expectRejected(
        parseInboundFrame(JSON.stringify({ event: "mark", mark: { [huge]: 1 } })),
        /mark\.name/,
      ),
      expectRejected(
        parseInboundFrame(
          JSON.stringify({
            event: "start",
            stream_id: "s",
            start: { custom_parameters: { [huge]: 1 } },
          }),
        ),
        /start/,
      ),
    ];
    for (const reason of reasons) assert.ok(!reason.includes("x".repeat(100)), reason);
  });

  await t.step("frames above the size cap are refused before parsing", () => {
    const oversized = JSON.stringify({
      event: "media",
      media: { payload: "A".repeat(MAX_INBOUND_FRAME_CHARS) },
    });
    expectRejected(parseInboundFrame(oversized), /too large/);
  });

  await t.step("never throws, even for non-string input from untyped callers", () => {
    const untyped = parseInboundFrame as (text: unknown) => FrameParseResult<InboundFrame>;
    for (const value of [undefined, null, 42, {}, new Uint8Array(3)]) {
      expectRejected(untyped(value), /not text/);
    }
  });
});

Deno.test("inbound payload validation agrees with the decoder", () => {
  // Any string the schema accepts must decode; any it rejects must fail to decode.
  const random = seededRandom(7);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  let accepted = 0;
  for (let i = 0; i < 400; i++) {
    let payload = "";
    const length = Math.floor(random() * 12);
    for (let j = 0; j < length; j++) payload += alphabet[Math.floor(random() * alphabet.length)];
    payload += "=".repeat(Math.floor(random() * 3));
    const result = parseInboundFrame(JSON.stringify({ event: "media", media: { payload } }));
    let decodes = true;
    try {
      decodeMediaPayload(payload);
    } catch {
      decodes = false;
    }
    assert.equal(result.ok, decodes, JSON.stringify(payload));
    if (result.ok) accepted++;
  }
  // Both branches must actually have been exercised.
  assert.ok(accepted > 50 && accepted < 350, `accepted ${accepted} of 400`);
});

Deno.test("outbound builders", async (t) => {
  await t.step("produce exactly the documented JSON", () => {
    assert.equal(mediaFrame("/38="), '{"event":"media","media":{"payload":"/38="}}');
    assert.equal(
      mediaFrameFromBytes(new Uint8Array([0xff, 0x7f])),
      '{"event":"media","media":{"payload":"/38="}}',
    );
    assert.equal(markFrame("utt-17"), '{"event":"mark","mark":{"name":"utt-17"}}');
    assert.equal(clearFrame(), '{"event":"clear"}');
  });

  await t.step("output parses back with parseOutboundFrame and the union schema", () => {
    const cases: Array<[string, OutboundFrame]> = [
      [mediaFrame(PCMU_SILENCE_20MS), { event: "media", media: { payload: PCMU_SILENCE_20MS } }],
      [markFrame('we"ird \\ name ✓'), { event: "mark", mark: { name: 'we"ird \\ name ✓' } }],
      [markFrame(""), { event: "mark", mark: { name: "" } }],
      [clearFrame(), { event: "clear" }],
    ];
    for (const [text, expected] of cases) {
      assert.deepEqual(expectOk(parseOutboundFrame(text)), expected);
      assert.deepEqual(OutboundFrameSchema.parse(JSON.parse(text)), expected);
    }
  });

  await t.step("mediaFrameFromBytes encodes only the bytes in view", () => {
    const buffer = new Uint8Array([1, 2, 3, 4, 5, 6]);
    const frame = expectOk(parseOutboundFrame(mediaFrameFromBytes(buffer.subarray(2, 5))));
    assert.ok(frame.event === "media");
    assert.deepEqual(decodeMediaPayload(frame.media.payload), new Uint8Array([3, 4, 5]));
  });

  await t.step("parseOutboundFrame is strict about our own output", () => {
    const cases: Array<[string, RegExp]> = [
      ['{"event":"media","media":{"payload":"/38="},"stream_id":"s"}', /stream_id/],
      ['{"event":"media","media":{"payload":""}}', /media\.payload/],
      ['{"event":"media","media":{"payload":"/38"}}', /not padded base64/],
      ['{"event":"mark","mark":{"name":1}}', /mark\.name/],
      ['{"event":"clear","extra":true}', /extra/],
      ['{"event":"start"}', /unknown event "start"/],
      ["not json", /invalid JSON/],
      ["[]", /array/],
    ];
    for (const [text, reason] of cases) {
      const message = expectRejected(parseOutboundFrame(text), reason);
      assert.match(message, /^outbound frame: /);
    }
  });
});

Deno.test("base64 payload round trip for random bytes of every length 0..1000", () => {
  const random = seededRandom(0xb64);
  for (let length = 0; length <= 1000; length++) {
    const bytes = randomBytes(random, length);
    const text = mediaFrameFromBytes(bytes);
    if (length === 0) {
      // We never send empty audio, but the inbound side tolerates it.
      expectRejected(parseOutboundFrame(text), /media\.payload/);
    } else {
      const frame = expectOk(parseOutboundFrame(text));
      assert.ok(frame.event === "media");
      assert.equal(frame.media.payload, referenceBase64(bytes), `length ${length}`);
    }
    // The same text is also a valid inbound media frame; decoding it must give the bytes back.
    const inbound = expectOk(parseInboundFrame(text));
    assert.ok(inbound.event === "media");
    assert.deepEqual(decodeMediaPayload(inbound.media.payload), bytes, `length ${length}`);
  }
});

Deno.test("decodeMediaPayload", async (t) => {
  await t.step("accepts payloads with and without padding", () => {
    assert.deepEqual(decodeMediaPayload("/38="), new Uint8Array([0xff, 0x7f]));
    assert.deepEqual(decodeMediaPayload("/38"), new Uint8Array([0xff, 0x7f]));
    assert.deepEqual(decodeMediaPayload(""), new Uint8Array(0));
  });

  await t.step("throws SyntaxError on garbage", () => {
    for (const garbage of ["%%%%", "AAAAA", "AA=A", "-_8="]) {
      assert.throws(() => decodeMediaPayload(garbage), SyntaxError, garbage);
    }
  });
});

Deno.test("parseInboundFrame accepts and returns exactly what the media schema does", async (t) => {
  // Each list straddles the field's limit.
  const payloads = [
    "",
    "/w==",
    "/w",
    "!!",
    "AAAA",
    "AAAAA",
    5,
    null,
    "A".repeat(MAX_INBOUND_MEDIA_PAYLOAD_CHARS),
    "A".repeat(MAX_INBOUND_MEDIA_PAYLOAD_CHARS + 4),
  ];
  const counters = [undefined, "1", 2, null, true, "9".repeat(20), "9".repeat(21)];
  const tracks = [undefined, "inbound", 3, "t".repeat(64), "t".repeat(65)];
  const extras = [
    {},
    { extra: "x" },
    { stream_id: 7 },
    { stream_id: "s" },
    { stream_id: "s".repeat(MAX_ID_CHARS) },
    { stream_id: "s".repeat(MAX_ID_CHARS + 1) },
  ];
  let cases = 0;
  for (const payload of payloads) {
    for (const chunk of counters) {
      for (const track of tracks) {
        for (const extra of extras) {
          const frame = {
            event: "media",
            sequence_number: chunk,
            ...extra,
            media: { track, chunk, timestamp: chunk, payload, junk: 1 },
          };
          const text = JSON.stringify(frame);
          const viaSchema = InboundMediaFrameSchema.safeParse(JSON.parse(text));
          const viaParser = parseInboundFrame(text);
          cases++;
          assert.equal(viaParser.ok, viaSchema.success, text);
          if (viaParser.ok && viaSchema.success) assert.deepEqual(viaParser.frame, viaSchema.data);
        }
      }
    }
  }
  await t.step(`${cases} frame variants agree`, () => assert.ok(cases > 2000));
});

/** `count` characters of `char`. */
const chars = (count: number, char = "a") => char.repeat(count);

/** A `start` frame with every field at the most it may hold. */
function largestStartFrame() {
  return {
    event: "start",
    sequence_number: "9".repeat(20),
    stream_id: chars(MAX_ID_CHARS),
    start: {
      user_id: chars(MAX_ID_CHARS),
      call_control_id: chars(MAX_ID_CHARS),
      call_session_id: chars(MAX_ID_CHARS),
      from: chars(256),
      to: chars(256),
      tags: Array.from({ length: 20 }, () => chars(128)),
      client_state: chars(4_096),
      custom_parameters: Object.fromEntries(
        Array.from({ length: 32 }, (_, i) => [`${i}`.padStart(128, "k"), chars(512)]),
      ),
      media_format: { encoding: "PCMU", sample_rate: 8000, channels: 1 },
    },
  };
}

Deno.test("every inbound field is bounded by what Telnyx sends", async (t) => {
  await t.step("a start frame with every field at its limit fits the frame cap", () => {
    const text = JSON.stringify(largestStartFrame());
    assert.ok(text.length < MAX_INBOUND_FRAME_CHARS, `${text.length} chars`);
    expectOk(parseInboundFrame(text));
  });

  await t.step("one more character or entry in any start field rejects the frame", () => {
    type Frame = ReturnType<typeof largestStartFrame>;
    const over: Array<[path: RegExp, grow: (frame: Frame) => void]> = [
      [/stream_id/, (f) => f.stream_id += "a"],
      [/sequence_number/, (f) => f.sequence_number += "9"],
      [/start\.user_id/, (f) => f.start.user_id += "a"],
      [/start\.call_control_id/, (f) => f.start.call_control_id += "a"],
      [/start\.call_session_id/, (f) => f.start.call_session_id += "a"],
      [/start\.from/, (f) => f.start.from += "a"],
      [/start\.to/, (f) => f.start.to += "a"],
      [/start\.tags\.0/, (f) => f.start.tags[0] += "a"],
      [/start\.tags/, (f) => f.start.tags.push("a")],
      [/start\.client_state/, (f) => f.start.client_state = chars(4_097)],
      [/start\.custom_parameters/, (f) => f.start.custom_parameters["0".padStart(128, "k")] += "a"],
      [/start\.custom_parameters/, (f) => f.start.custom_parameters[chars(129, "n")] = "v"],
      [/more than 32 parameters/, (f) => f.start.custom_parameters.extra = "v"],
      [/start\.media_format\.encoding/, (f) => f.start.media_format.encoding = chars(65)],
    ];
    for (const [path, grow] of over) {
      const frame = largestStartFrame();
      grow(frame);
      expectRejected(parseInboundFrame(JSON.stringify(frame)), path);
    }
  });

  await t.step("the other frames' fields are bounded too", () => {
    const cases: Array<[frame: unknown, path: RegExp]> = [
      [{ event: "connected", version: chars(65) }, /version/],
      [{ event: "mark", stream_id: chars(MAX_ID_CHARS + 1), mark: { name: "m" } }, /stream_id/],
      [{ event: "dtmf", dtmf: { digit: "1", occurred_at: chars(65) } }, /dtmf\.occurred_at/],
      [
        { event: "stop", stop: { call_control_id: chars(MAX_ID_CHARS + 1) } },
        /stop\.call_control_id/,
      ],
      [{ event: "stop", stop: { user_id: chars(MAX_ID_CHARS + 1) } }, /stop\.user_id/],
      [{ event: "error", error: { title: chars(65) } }, /error\.title/],
      [{ event: "error", error: { detail: chars(1_025) } }, /error\.detail/],
      [{ event: "error", error: { code: "9".repeat(21) } }, /error\.code/],
      [{ event: "media", media: { track: chars(65), payload: "" } }, /media\.track/],
      [{ event: "media", media: { chunk: "9".repeat(21), payload: "" } }, /media\.chunk/],
    ];
    for (const [frame, path] of cases) {
      expectRejected(parseInboundFrame(JSON.stringify(frame)), path);
    }
  });

  await t.step("a mark name is at most MAX_MARK_NAME_CHARS", () => {
    const markWith = (name: string) => JSON.stringify({ event: "mark", mark: { name } });
    const longest = chars(MAX_MARK_NAME_CHARS);
    const frame = expectOk(parseInboundFrame(markWith(longest)));
    assert.ok(frame.event === "mark" && frame.mark.name === longest);
    expectRejected(parseInboundFrame(markWith(`${longest}a`)), /mark\.name/);
  });

  await t.step("the adversarial 1 MB mark name and 64 KiB digit never reach JSON.parse", () => {
    const mark = JSON.stringify({ event: "mark", mark: { name: chars(1_000_000) } });
    expectRejected(parseInboundFrame(mark), /too large/);
    const dtmf = JSON.stringify({ event: "dtmf", dtmf: { digit: chars(65_536, "1") } });
    expectRejected(parseInboundFrame(dtmf), /too large/);
  });

  await t.step("media carries at most MAX_INBOUND_MEDIA_BYTES of audio", () => {
    const mediaOf = (bytes: number) => mediaFrameFromBytes(new Uint8Array(bytes).fill(0xff));
    const frame = expectOk(parseInboundFrame(mediaOf(MAX_INBOUND_MEDIA_BYTES)));
    assert.ok(frame.event === "media");
    assert.equal(frame.media.payload.length, MAX_INBOUND_MEDIA_PAYLOAD_CHARS);
    expectRejected(parseInboundFrame(mediaOf(MAX_INBOUND_MEDIA_BYTES + 3)), /media\.payload/);
  });
});

Deno.test("DTMF digits are exactly the sixteen keys, and a bad one is never echoed", async (t) => {
  const dtmfWith = (digit: unknown) => JSON.stringify({ event: "dtmf", dtmf: { digit } });

  await t.step("every key is accepted as is", () => {
    assert.equal(DTMF_DIGITS.length, 16);
    for (const digit of DTMF_DIGITS) {
      const frame = expectOk(parseInboundFrame(dtmfWith(digit)));
      assert.ok(frame.event === "dtmf" && frame.dtmf.digit === digit, digit);
    }
  });

  await t.step("anything else is refused with a reason that leaves the value out", () => {
    for (const digit of ["pin=4711", "12", " 1", "1\n", "#*", "\u0000"]) {
      const reason = expectRejected(parseInboundFrame(dtmfWith(digit)), /not a DTMF digit/);
      assert.ok(!reason.includes(digit), reason);
    }
    assert.ok(!expectRejected(parseInboundFrame(dtmfWith("pin=4711")), /dtmf/).includes("4711"));
  });
});

Deno.test("peekMediaPayload finds the payload of Telnyx's media frames without JSON.parse", async (t) => {
  await t.step("the documented frame, and the same keys in other orders", () => {
    assert.equal(peekMediaPayload(DOCUMENTED.media), PCMU_SILENCE_20MS);
    const streamIdFirst = JSON.stringify({
      event: "media",
      stream_id: STREAM_ID,
      media: { track: "inbound", payload: PCMU_SILENCE_20MS },
    });
    assert.equal(peekMediaPayload(streamIdFirst), PCMU_SILENCE_20MS);
    const minimal = JSON.stringify({ event: "media", media: { payload: PCMU_SILENCE_20MS } });
    assert.equal(peekMediaPayload(minimal), PCMU_SILENCE_20MS);
  });

  await t.step("anything else is left to parseInboundFrame", () => {
    const media = { track: "inbound", chunk: "2", timestamp: "5", payload: PCMU_SILENCE_20MS };
    const others = [
      DOCUMENTED.connected,
      DOCUMENTED.start,
      DOCUMENTED.stop,
      JSON.stringify({ event: "media", media }, null, 1), // whitespace
      JSON.stringify({ sequence_number: "4", event: "media", media }), // event not first
      JSON.stringify({ event: "media", media: { payload: PCMU_SILENCE_20MS, track: "inbound" } }),
      `{"event":"media","media":{"payload":"AAAA"},"x":{"payload":"BBBB"}}`, // a second key
      JSON.stringify({
        event: "media",
        media: { payload: "A".repeat(MAX_INBOUND_MEDIA_PAYLOAD_CHARS + 4) },
      }),
      '{"event":"media","media":{"payload":"AAAA',
      '{"event":"media","payload":"QUFB"}', // no media object
      '{"event":"media","media":{"payload":"QUFB"}', // unterminated
      '{"event":"media","media":{"payload":"QUFB"}}trailing',
      '{"event":"media","event":"stop","media":{"payload":"QUFB"}}', // JSON.parse: a stop
    ];
    for (const text of others) assert.equal(peekMediaPayload(text), undefined, text.slice(0, 80));
  });
});

Deno.test("mediaPayloadBytes counts the decoded bytes without decoding", () => {
  for (let length = 0; length <= 300; length++) {
    const padded = new Uint8Array(length).toBase64();
    const unpadded = padded.replace(/=+$/, "");
    assert.equal(mediaPayloadBytes(padded), length, padded);
    assert.equal(mediaPayloadBytes(unpadded), length, unpadded);
    assert.equal(decodeMediaPayload(unpadded).length, length);
  }
});
