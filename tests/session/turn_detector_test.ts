import assert from "node:assert/strict";
import {
  MAX_PENDING_TURN_CHARS,
  TurnDetector,
  WORDLESS_TURN_MS,
} from "../../src/session/turn_detector.ts";

function clock() {
  const c = { t: 1000, now: () => c.t };
  return c;
}

Deno.test("Nova: the turn ends only when the VAD is silent and STT has ended the utterance", async (t) => {
  await t.step("final with speech_final while the VAD still hears speech is only eager", () => {
    const c = clock();
    const d = new TurnDetector("nova", c.now);
    assert.deepEqual(d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 }), [
      { type: "callee_started" },
    ]);
    assert.deepEqual(
      d.onTranscript({
        type: "final",
        text: "Hello there.",
        speechFinal: true,
        fromFinalize: false,
      }),
      [{ type: "eager_turn", text: "Hello there." }],
      "the answer may start while the VAD's hang-over runs; the turn is not over yet",
    );
    c.t = 1500;
    const [decision] = d.onVad({ type: "speech_end", atMs: 1400, offsetMs: 1000 });
    assert.deepEqual(decision, {
      type: "turn_ended",
      text: "Hello there.",
      speechEndedAt: 1100, // the voice stopped 400 ms of audio before the VAD decided
      finalAt: 1500,
    });
  });
  await t.step("VAD silence first, then the final ends the turn at once", () => {
    const c = clock();
    const d = new TurnDetector("nova", c.now);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    d.onVad({ type: "speech_end", atMs: 900, offsetMs: 500 });
    assert.deepEqual(
      d.onTranscript({ type: "final", text: "Part one,", speechFinal: false, fromFinalize: false }),
      [],
      "an is_final segment without speech_final does not end the turn",
    );
    const [decision] = d.onTranscript({
      type: "final",
      text: "part two.",
      speechFinal: true,
      fromFinalize: false,
    });
    assert.equal(decision.type, "turn_ended");
    assert.equal(decision.type === "turn_ended" && decision.text, "Part one, part two.");
  });
  await t.step("UtteranceEnd ends a turn whose finals lacked speech_final", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onTranscript({ type: "final", text: "Yes.", speechFinal: false, fromFinalize: false });
    const [decision] = d.onTranscript({ type: "utterance_end" });
    assert.equal(decision.type === "turn_ended" && decision.text, "Yes.");
  });
  await t.step("UtteranceEnd with nothing pending does nothing", () => {
    const d = new TurnDetector("nova", clock().now);
    assert.deepEqual(d.onTranscript({ type: "utterance_end" }), []);
    assert.deepEqual(
      d.onTranscript({ type: "final", text: "Hi", speechFinal: false, fromFinalize: false }),
      [],
    );
  });
  await t.step("speaking again cancels an earlier end of utterance", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    d.onTranscript({ type: "final", text: "Well,", speechFinal: true, fromFinalize: false });
    d.onVad({ type: "speech_end", atMs: 900, offsetMs: 500 });
    // (that ended the turn) — a new utterance starts clean:
    d.onVad({ type: "speech_start", atMs: 1200, onsetMs: 1100 });
    d.onTranscript({ type: "final", text: "so", speechFinal: true, fromFinalize: false });
    d.onVad({ type: "speech_start", atMs: 1500, onsetMs: 1450 });
    assert.deepEqual(
      d.onVad({ type: "speech_end", atMs: 2000, offsetMs: 1600 }),
      [],
      "no STT end yet",
    );
  });
  await t.step("empty finals are ignored", () => {
    const d = new TurnDetector("nova", clock().now);
    assert.deepEqual(
      d.onTranscript({ type: "final", text: "  ", speechFinal: true, fromFinalize: false }),
      [],
    );
  });
});

Deno.test("Flux: Deepgram's turn events drive the decisions", () => {
  const d = new TurnDetector("flux", clock().now);
  assert.deepEqual(d.onTranscript({ type: "eager_end_of_turn", text: "I need help" }), [
    { type: "eager_turn", text: "I need help" },
  ]);
  assert.deepEqual(d.onTranscript({ type: "turn_resumed" }), [{ type: "turn_resumed" }]);
  const [decision] = d.onTranscript({ type: "end_of_turn", text: "I need help with my bill" });
  assert.equal(decision.type === "turn_ended" && decision.text, "I need help with my bill");
  assert.deepEqual(
    d.onTranscript({ type: "final", text: "x", speechFinal: true, fromFinalize: false }),
    [],
  );
  assert.deepEqual(d.onTranscript({ type: "end_of_turn", text: "" }), []);
});

Deno.test("Nova: a turn that never ends holds a bounded text, the newest words", () => {
  const d = new TurnDetector("nova", clock().now);
  d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
  for (let i = 0; i < 1000; i++) {
    d.onTranscript({ type: "final", text: `words ${i}`, speechFinal: false, fromFinalize: false });
  }
  d.onTranscript({ type: "final", text: "the end", speechFinal: true, fromFinalize: false });
  const [turn] = d.onVad({ type: "speech_end", atMs: 900, offsetMs: 500 });
  assert.equal(turn.type, "turn_ended");
  if (turn.type !== "turn_ended") return;
  assert.ok(turn.text.length <= MAX_PENDING_TURN_CHARS, `${turn.text.length} chars`);
  assert.ok(turn.text.endsWith("words 999 the end"));
});

Deno.test("Nova: an eager end of turn is announced once and taken back by new words", async (t) => {
  const eagerFinal = (d: TurnDetector, text: string) =>
    d.onTranscript({ type: "final", text, speechFinal: true, fromFinalize: false });

  await t.step("a repeated end of utterance with the same words is not announced again", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    assert.equal(eagerFinal(d, "Yes.").length, 1);
    assert.deepEqual(d.onTranscript({ type: "utterance_end" }), []);
  });
  await t.step("new words in an interim take it back", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    eagerFinal(d, "I think");
    assert.deepEqual(d.onTranscript({ type: "interim", text: "that" }), [
      { type: "turn_resumed" },
    ]);
    assert.deepEqual(d.onTranscript({ type: "interim", text: "that is" }), [], "only once");
  });
  await t.step("a further final takes it back and announces the longer turn", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    eagerFinal(d, "I think");
    assert.deepEqual(eagerFinal(d, "that is all."), [
      { type: "turn_resumed" },
      { type: "eager_turn", text: "I think that is all." },
    ]);
  });
  await t.step("the VAD hearing speech again clears it; the turn then ends with all words", () => {
    const c = clock();
    const d = new TurnDetector("nova", c.now);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    eagerFinal(d, "I think");
    assert.deepEqual(d.onVad({ type: "speech_start", atMs: 900, onsetMs: 800 }), [
      { type: "callee_started" },
    ]);
    assert.deepEqual(d.onTranscript({ type: "interim", text: "so" }), [], "nothing to take back");
    assert.deepEqual(eagerFinal(d, "so."), [{ type: "eager_turn", text: "I think so." }]);
    const [decision] = d.onVad({ type: "speech_end", atMs: 1600, offsetMs: 1200 });
    assert.equal(decision.type === "turn_ended" && decision.text, "I think so.");
  });
});

/** Nova, after a voice the VAD heard from 0 to 1100 (clock time) and STT put no words to. */
function wordlessVoice() {
  const c = clock();
  const d = new TurnDetector("nova", c.now);
  d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
  c.t = 1500;
  d.onVad({ type: "speech_end", atMs: 900, offsetMs: 500 }); // the voice stopped at 1100
  return { c, d };
}

Deno.test("a turn is underway from the callee's first sound or word until it ends", async (t) => {
  await t.step("Nova: from the VAD's onset, through its silence, until the final ends it", () => {
    const d = new TurnDetector("nova", clock().now);
    assert.equal(d.turnUnderway, false);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    assert.equal(d.turnUnderway, true);
    d.onTranscript({ type: "interim", text: "Hello" });
    d.onVad({ type: "speech_end", atMs: 900, offsetMs: 500 });
    assert.equal(d.turnUnderway, true, "the final transcript is still awaited");
    d.onTranscript({ type: "final", text: "Hello there.", speechFinal: true, fromFinalize: false });
    assert.equal(d.turnUnderway, false);
  });
  await t.step("Nova: a voice with no words yet keeps it open for a bound after it stops", () => {
    const { c, d } = wordlessVoice();
    assert.equal(d.turnUnderway, true, "its first transcript may still come");
    c.t = 1100 + WORDLESS_TURN_MS;
    assert.equal(d.turnUnderway, false, "a cough that never became words");
  });
  await t.step("Nova: a reconnected STT starts a wordless turn's wait again", () => {
    const { c, d } = wordlessVoice();
    c.t = 1100 + WORDLESS_TURN_MS;
    assert.equal(d.turnUnderway, false);
    d.onTranscript({ type: "reconnected", attempt: 1, bufferedBytes: 16_000 });
    assert.equal(d.turnUnderway, true, "the audio the outage held back is being transcribed");
    c.t += WORDLESS_TURN_MS;
    assert.equal(d.turnUnderway, false);
  });
  await t.step("Nova: words after the final that ended a turn keep it open", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onVad({ type: "speech_start", atMs: 120, onsetMs: 0 });
    d.onTranscript({ type: "final", text: "Yes.", speechFinal: true, fromFinalize: false });
    d.onTranscript({ type: "interim", text: "and" });
    const [decision] = d.onVad({ type: "speech_end", atMs: 900, offsetMs: 500 });
    assert.equal(decision.type, "turn_ended");
    assert.equal(d.turnUnderway, true, 'the final of "and" is still due');
    d.onTranscript({ type: "final", text: "and you?", speechFinal: true, fromFinalize: false });
    assert.equal(d.turnUnderway, false);
  });
  await t.step("Nova: words the VAD did not hear open it too", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onTranscript({ type: "interim", text: "yes" });
    assert.equal(d.turnUnderway, true);
    d.onTranscript({ type: "interim", text: " " });
    assert.equal(d.turnUnderway, true, "a blank guess changes nothing");
  });
  await t.step("Nova: an utterance that ends with no words closes it", () => {
    const d = new TurnDetector("nova", clock().now);
    d.onTranscript({ type: "interim", text: "uh" });
    d.onTranscript({ type: "final", text: "", speechFinal: true, fromFinalize: false });
    assert.equal(d.turnUnderway, false);
    d.onTranscript({ type: "interim", text: "hm" });
    d.onTranscript({ type: "utterance_end" });
    assert.equal(d.turnUnderway, false);
  });
  await t.step("Flux: from StartOfTurn until EndOfTurn, an eager end included", () => {
    const d = new TurnDetector("flux", clock().now);
    d.onTranscript({ type: "start_of_turn" });
    assert.equal(d.turnUnderway, true);
    d.onTranscript({ type: "eager_end_of_turn", text: "Yes." });
    assert.equal(d.turnUnderway, true);
    d.onTranscript({ type: "turn_resumed" });
    assert.equal(d.turnUnderway, true, "the callee went on");
    d.onTranscript({ type: "end_of_turn", text: "Yes." });
    assert.equal(d.turnUnderway, false);
  });
  await t.step("Flux: an end of turn with no words closes it too", () => {
    const d = new TurnDetector("flux", clock().now);
    d.onTranscript({ type: "start_of_turn" });
    d.onTranscript({ type: "end_of_turn", text: "" });
    assert.equal(d.turnUnderway, false);
  });
});
