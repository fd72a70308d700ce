/**
 * Speculative replies: started on an eager end of turn (Nova: the final transcript while the
 * VAD's hang-over runs; Flux: `EagerEndOfTurn`), held unheard until the turn is confirmed, reused
 * only if the callee's words are still the whole turn.
 */
import assert from "node:assert/strict";
import { type AgentCall, greeted, playMs, startAgentCall } from "../helpers/agent_harness.ts";
import { settle } from "../helpers/manual_clock.ts";

/** Nova: Deepgram ends the utterance (`speech_final`) while the VAD still hears the callee. */
async function finalDuringHangover(call: AgentCall, text: string): Promise<void> {
  call.stt.emit({ type: "final", text, speechFinal: true, fromFinalize: false });
  await settle();
}

/** The callee starts speaking at 5 s and Nova finalises `text` 400 ms later, in the hang-over. */
async function startsSpeakingThenFinal(call: AgentCall, text: string): Promise<void> {
  await call.hear({ type: "speech_start", atMs: 5000, onsetMs: 4880 });
  await call.run(400);
  await finalDuringHangover(call, text);
}

function mediaFrames(call: AgentCall): number {
  return call.wire.frames.filter((f) => f.event === "media").length;
}

Deno.test("Nova: an unchanged transcript reuses the speculative reply, held until the VAD's silence", async () => {
  const call = startAgentCall({ replies: ["Nice to meet you."] });
  await greeted(call);
  const framesBefore = mediaFrames(call);

  await startsSpeakingThenFinal(call, "Yes it is");
  await call.run(200);
  assert.equal(call.llm.requests.length, 1, "asked at the final transcript, not at the silence");
  assert.equal(call.llm.outline(0).at(-1), "user: Yes it is");
  assert.equal(mediaFrames(call), framesBefore, "its audio is held until the turn is confirmed");

  await call.hear({ type: "speech_end", atMs: 5900, offsetMs: 5500 });
  await call.run(playMs("Nice to meet you.") + 200);
  assert.equal(call.llm.requests.length, 1, "reused, not asked again");
  assert.ok(mediaFrames(call) > framesBefore, "played once confirmed");
  assert.deepEqual(call.transcript().slice(2), ["callee: Yes it is", "bot: Nice to meet you."]);
  const turn = call.agent.metrics.turns.at(-1)!;
  assert.equal(turn.speculative, true);
  assert.equal(call.agent.metrics.speculativeStarted, 1);
  assert.equal(call.agent.metrics.speculativeWasted, 0);
  await call.hangUp();
});

Deno.test("Nova: a continued utterance cancels the speculative reply and none of it is heard", async () => {
  const call = startAgentCall({ replies: ["Sorry to hear that.", "Let me check that for you."] });
  await greeted(call);
  const framesBefore = mediaFrames(call);

  await startsSpeakingThenFinal(call, "I would like");
  await call.run(100);
  assert.equal(call.llm.requests.length, 1, "the speculative reply started");
  assert.equal(call.speaker.open, 1, "its speech is held");

  // The callee goes on before the VAD heard enough silence.
  await call.hear({ type: "speech_start", atMs: 5700, onsetMs: 5580 });
  await call.run(20);
  assert.equal(call.speaker.open, 0, "the cancelled reply let go of its speech");
  assert.equal(mediaFrames(call), framesBefore, "none of it was sent");
  await call.run(400);
  await finalDuringHangover(call, "to check my balance.");
  await call.hear({ type: "speech_end", atMs: 6700, offsetMs: 6300 });
  await call.run(playMs("Let me check that for you.") + 200);

  assert.equal(call.llm.requests.length, 2);
  assert.equal(call.llm.outline(1).at(-1), "user: I would like to check my balance.");
  assert.deepEqual(call.transcript().slice(2), [
    "callee: I would like to check my balance.",
    "bot: Let me check that for you.",
  ]);
  assert.ok(
    !call.transcript().some((line) => line.includes("Sorry")),
    "nothing of the cancelled reply is in the conversation",
  );
  assert.equal(call.agent.metrics.speculativeWasted, 1);
  await call.hangUp();
  const summary = call.logs.map((line) => JSON.parse(line)).find((l) => l.msg === "call summary");
  assert.equal(summary?.speculative_replies, 2, "the call summary counts them");
  assert.equal(summary?.speculative_replies_wasted, 1);
});

Deno.test("Nova: new words change the turn and make one fresh request", async () => {
  const call = startAgentCall({ replies: ["Which one?", "Premium, since March."] });
  await greeted(call);

  await startsSpeakingThenFinal(call, "My account");
  await call.run(40);
  // Deepgram finalises more words before the VAD's silence: the turn is not what was answered.
  call.stt.emit({ type: "final", text: "tier, please.", speechFinal: true, fromFinalize: false });
  await settle();
  await call.hear({ type: "speech_end", atMs: 5900, offsetMs: 5500 });
  await call.run(playMs("Premium, since March.") + 200);

  assert.equal(call.llm.requests.length, 2, "one request for the changed turn, no more");
  assert.equal(call.llm.outline(1).at(-1), "user: My account tier, please.");
  assert.deepEqual(call.transcript().slice(2), [
    "callee: My account tier, please.",
    "bot: Premium, since March.",
  ]);
  assert.equal(call.agent.metrics.speculativeWasted, 1);
  await call.hangUp();
});

Deno.test("Flux: an end of turn with other words than the eager one makes one fresh request", async () => {
  const call = startAgentCall({ sttEngine: "flux", replies: ["Which one?", "Premium."] });
  await greeted(call);

  call.stt.emit({ type: "eager_end_of_turn", text: "My account" });
  await call.run(40);
  call.stt.emit({ type: "end_of_turn", text: "My account tier" });
  await call.run(playMs("Premium.") + 200);

  assert.equal(call.llm.requests.length, 2);
  assert.equal(call.llm.outline(1).at(-1), "user: My account tier");
  assert.deepEqual(call.transcript().slice(2), ["callee: My account tier", "bot: Premium."]);
  assert.equal(call.agent.metrics.speculativeWasted, 1);
  await call.hangUp();
});

Deno.test("barge-in during a held speculative reply stops it like any barge-in", async () => {
  const call = startAgentCall({ replies: ["Of course.", "Go ahead."] });
  await greeted(call);
  const framesBefore = mediaFrames(call);

  await startsSpeakingThenFinal(call, "Can I ask");
  await call.run(40);
  assert.equal(call.speaker.open, 1, "held");

  await call.hear({ type: "speech_start", atMs: 5600, onsetMs: 5480 });
  await settle();
  assert.equal(call.speaker.open, 0, "its LLM and TTS are stopped at once");
  await call.run(400);
  assert.equal(mediaFrames(call), framesBefore, "nothing of it reached the callee");
  assert.deepEqual(call.transcript().slice(2), [], "nothing of it is in the conversation");

  // The callee's words are answered as usual.
  await call.say("something?");
  await call.hear({ type: "speech_end", atMs: 6600, offsetMs: 6200 });
  await call.run(playMs("Go ahead.") + 200);
  assert.deepEqual(call.transcript().slice(2), [
    "callee: Can I ask something?",
    "bot: Go ahead.",
  ]);
  await call.hangUp();
});
