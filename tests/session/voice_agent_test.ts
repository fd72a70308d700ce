/**
 * The voice agent on fakes of its vendors, a model of Telnyx's playback and a virtual clock
 * (tests/helpers/agent_harness.ts): what it commits to the conversation, how every wait ends,
 * what it leaves behind.
 */
import assert from "node:assert/strict";
import { DEFAULT_GREETING } from "../../src/session/conversation.ts";
import {
  CANNED,
  GOODBYE_LIMIT_MS,
  PLAYOUT_MARGIN_MS,
  SPECULATIVE_CONFIRM_MS,
} from "../../src/session/voice_agent.ts";
import { WORDLESS_TURN_MS } from "../../src/session/turn_detector.ts";
import { SILENCE_KEPT_FOR_REPLAY_MS } from "../../src/session/stt_feed.ts";
import { greeted, playMs, startAgentCall } from "../helpers/agent_harness.ts";
import { settle } from "../helpers/manual_clock.ts";
import { ALAW_8K } from "../../src/transport/call_transport.ts";
import { decodeALaw } from "../../src/audio/g711.ts";

const A_LAW_SILENCE = 0xd5;

Deno.test("a reply superseded by a newer turn while audible is committed as heard", async () => {
  const first = "Our offer has three parts. ";
  const second = "The first part is a discount on every order you place this year.";
  const call = startAgentCall({ replies: [first + second, "It's Acme calling."] });
  await greeted(call);

  await call.say("What is this about?");
  // The first phrase has played and been echoed; the second is halfway through.
  await call.run(playMs(first) + playMs(second) / 2);
  await call.say("Sorry, who is calling?");
  await call.run(20);

  const transcript = call.transcript();
  assert.equal(transcript.length, 5);
  assert.equal(transcript[2], "callee: What is this about?");
  assert.match(transcript[3], /^bot \(interrupted\): Our offer has three parts\. The first/);
  assert.ok(!transcript[3].includes("this year"), `only what was heard: ${transcript[3]}`);
  assert.equal(transcript[4], "callee: Sorry, who is calling?");
  const context = call.llm.outline(1);
  assert.deepEqual(context.map((line) => line.split(":")[0]), [
    "user",
    "assistant",
    "user",
    "assistant",
    "user",
  ]);
  assert.equal(context.at(-1), "user: Sorry, who is calling?", "the two turns stay apart");
  await call.hangUp();
});

Deno.test("a reply cut off by the hang-up keeps what the callee heard", async () => {
  const call = startAgentCall({ replies: ["Let me explain. It will only take a minute or two."] });
  await greeted(call);
  await call.say("Go on.");
  await call.run(playMs("Let me explain. ") + 60);
  await call.hangUp();
  assert.match(call.transcript().at(-1)!, /^bot \(interrupted\): Let me explain\./);
});

Deno.test("goodbye with no mark echo: the call is hung up after its play time plus a margin", async () => {
  const call = startAgentCall({ firstSpeaker: "bot", maxCallSeconds: 5, withholdEchoes: true });
  call.agent.start();
  await call.run(5000);
  assert.equal(call.speaker.spoken.at(-1), CANNED.timeLimit, "the time limit was reached");
  const bound = playMs(CANNED.timeLimit) + PLAYOUT_MARGIN_MS;
  await call.run(bound - 100);
  assert.equal(call.hangups.length, 0, "the goodbye had time to play");
  await call.run(200);
  assert.deepEqual(call.hangups, ["v3:call-1"]);
  await call.session.ended;
  assert.equal(call.session.endReason, "bot_hung_up");
  assert.ok(call.logs.some((l) => l.includes("no mark echo for the end of the bot's audio")));
});

Deno.test("MAX_CALL_SECONDS is a hard cap: a goodbye that never plays still ends the call", async () => {
  const call = startAgentCall({ firstSpeaker: "bot", maxCallSeconds: 5 });
  call.agent.start();
  await call.run(1000);
  call.speaker.silent = true; // the TTS stops answering after the greeting
  await call.run(4000 + GOODBYE_LIMIT_MS - 100);
  assert.equal(call.hangups.length, 0);
  await call.run(200);
  assert.deepEqual(call.hangups, ["v3:call-1"]);
  await call.session.ended;
  assert.ok(call.logs.some((l) => l.includes("goodbye did not play out in time")));
});

Deno.test("Flux: a cancelled speculative answer lets go of its speech stream", async () => {
  const call = startAgentCall({ sttEngine: "flux", replies: ["Nice to meet you."] });
  await greeted(call);

  call.stt.emit({ type: "eager_end_of_turn", text: "Yes it is" });
  await call.run(20);
  assert.equal(call.llm.requests.length, 1, "the speculative answer started");
  assert.equal(call.speaker.open, 1, "its speech waits for the end of turn");
  call.stt.emit({ type: "turn_resumed" });
  await call.run(20);
  assert.equal(call.speaker.open, 0, "the cancelled answer released its speech stream");
  assert.deepEqual(call.transcript(), ["callee: Hello?", `bot: ${DEFAULT_GREETING}`]);
  await call.hangUp();
});

Deno.test("Flux: a speculative answer never confirmed is dropped after a bound", async () => {
  const call = startAgentCall({ sttEngine: "flux" });
  await greeted(call);
  call.stt.emit({ type: "eager_end_of_turn", text: "Yes it is" });
  await call.run(SPECULATIVE_CONFIRM_MS + 40);
  assert.equal(call.speaker.open, 0);
  assert.ok(call.logs.some((l) => l.includes("speculative answer never confirmed")));
  await call.hangUp();
});

Deno.test("Flux: a confirmed speculative answer carries its turn's voice-to-voice latency", async () => {
  const call = startAgentCall({ sttEngine: "flux", replies: ["Nice to meet you."] });
  await greeted(call);

  await call.hear({ type: "speech_start", atMs: 1000, onsetMs: 880 });
  await call.run(600);
  await call.hear({ type: "speech_end", atMs: 1900, offsetMs: 1500 });
  call.stt.emit({ type: "eager_end_of_turn", text: "Yes it is" });
  await call.run(100);
  call.stt.emit({ type: "end_of_turn", text: "Yes it is" });
  await settle();
  await call.run(playMs("Nice to meet you.") + 200);

  assert.equal(call.llm.requests.length, 1, "confirmed, not asked again");
  assert.equal(call.transcript().at(-1), "bot: Nice to meet you.");
  const turn = call.agent.metrics.turns.at(-1)!;
  assert.equal(turn.trigger, "callee");
  assert.ok(turn.voiceToVoiceMs !== undefined, "voice-to-voice measured");
  // The callee stopped 400 ms before the VAD said so; the answer's first frame went out 100 ms
  // after the eager end of turn, when it was confirmed.
  assert.equal(turn.voiceToVoiceMs, 500);
  await call.hangUp();
});

Deno.test("a finished reply leaves no abort listener on the call's signal", async () => {
  const call = startAgentCall({ replies: ["One.", "Two.", "Three."] });
  await greeted(call);
  for (const question of ["First?", "Second?", "Third?"]) {
    await call.say(question);
    await call.run(500);
  }
  assert.equal(call.transcript().length, 8);
  assert.equal(call.signalListeners, 0);
  await call.hangUp();
});

Deno.test("an agent started after its call ended arms nothing and plays nothing", async () => {
  const call = startAgentCall({ firstSpeaker: "bot", idleTimeoutSeconds: 5 });
  await call.hangUp(); // the callee hung up while the agent was starting
  call.agent.start();
  await settle();
  assert.equal(call.clock.pendingTimers, 0, "no idle or call-limit timer");
  assert.equal(call.transcribersOpened, 0);
  assert.deepEqual(call.speaker.spoken, [], "no greeting synthesised");
  assert.ok(call.speaker.closed && call.vad.closed, "released at once");
  await call.run(10_000);
  assert.equal(call.wire.frames.length, 0);
  assert.ok(!call.logs.some((l) => l.includes("callee idle")));
});

Deno.test("a burst of 150 key presses is one LLM request with a bounded input", async () => {
  const call = startAgentCall({ firstSpeaker: "bot", replies: ["Thank you."] });
  call.agent.start();
  await call.run(playMs(DEFAULT_GREETING) + 200);
  for (let i = 0; i < 150; i++) call.session.deliver({ type: "dtmf", digit: String(i % 10) });
  await call.run(2100);
  assert.equal(call.llm.requests.length, 1);
  const keys = "012345678901234567890123";
  assert.equal(call.llm.outline(0).at(-1), `user: The callee pressed ${[...keys].join(" ")}.`);
  assert.equal(call.session.stats.dtmfPresses, 150);
  assert.ok(call.logs.some((l) => l.includes('"msg":"dtmf input"') && l.includes('"dropped":126')));
  await call.hangUp();
});

Deno.test("key presses with # in a burst make at most two LLM requests", async () => {
  const call = startAgentCall({ firstSpeaker: "bot" });
  call.agent.start();
  await call.run(playMs(DEFAULT_GREETING) + 200);
  for (let i = 0; i < 150; i++) call.session.deliver({ type: "dtmf", digit: i % 2 ? "#" : "1" });
  await call.run(2100);
  assert.equal(call.llm.requests.length, 2);
  await call.hangUp();
});

Deno.test("a key press stops the bot at once; the keys are sent as one input", async () => {
  const call = startAgentCall({ firstSpeaker: "bot", replies: ["Your balance is ten dollars."] });
  call.agent.start();
  await call.run(100);
  call.session.deliver({ type: "dtmf", digit: "4" });
  call.session.deliver({ type: "dtmf", digit: "2" });
  call.session.deliver({ type: "dtmf", digit: "#" });
  assert.equal(call.agent.metrics.bargeIns, 1);
  assert.equal(call.wire.frames.at(-1)?.event, "clear");
  await call.run(20);
  assert.equal(call.llm.requests.length, 1, "# ends the input without waiting");
  assert.equal(call.llm.outline(0).at(-1), "user: The callee pressed 4 2 #.");
  await call.hangUp();
});

Deno.test("with no mark echo at all, an idle call still ends", async () => {
  const call = startAgentCall({ firstSpeaker: "bot", idleTimeoutSeconds: 5, withholdEchoes: true });
  call.agent.start();
  const lines = [DEFAULT_GREETING, CANNED.stillThere, CANNED.idleGoodbye];
  const bound = lines.reduce((ms, line) => ms + playMs(line) + PLAYOUT_MARGIN_MS, 0);
  await call.run(bound + 2 * 5000 + 200);
  assert.deepEqual(call.speaker.spoken, lines);
  assert.deepEqual(call.hangups, ["v3:call-1"]);
  await call.session.ended;
});

Deno.test("a failure nobody awaited is logged with its call and ends only that call", async () => {
  const call = startAgentCall();
  await greeted(call);
  call.speaker.speak = () => {
    throw new Error("bug in the speaker");
  };
  await call.say("Are you there?");
  await call.session.ended;
  assert.equal(call.session.endReason, "error");
  const line = call.logs.find((l) => l.includes("voice agent task failed"));
  assert.ok(line?.includes('"call":"v3:call-1"'), line);
  assert.ok(line?.includes("bug in the speaker"));
});

Deno.test("speech from before the agent started is heard first, not as talking over the bot", async () => {
  const call = startAgentCall({ firstSpeaker: "bot" });
  call.session.deliver({ type: "media", payload: new Uint8Array(160).fill(0xff) });
  call.vad.queue({ type: "speech_start", atMs: 20, onsetMs: 0 });
  call.agent.start();
  assert.equal(call.stt.audioBytes, 0, "held for its chunk, but heard by the VAD");
  assert.equal(call.vad.speaking, true);
  call.vad.queue({ type: "speech_end", atMs: 40, offsetMs: 20 });
  call.session.deliver({ type: "media", payload: new Uint8Array(160).fill(0xff) });
  await call.run(playMs(DEFAULT_GREETING) + 200);
  assert.equal(call.agent.metrics.bargeIns, 0);
  assert.deepEqual(call.transcript(), [`bot: ${DEFAULT_GREETING}`]);
  await call.hangUp();
});

/** A started call whose callee is talking (the VAD hears them), as the STT tests want it. */
function calleeTalking() {
  const call = startAgentCall({ firstSpeaker: "callee" });
  call.agent.start();
  call.vad.speaking = true;
  return call;
}

/** A started call whose greeting plays while the callee listens in silence. */
async function calleeListening() {
  const call = startAgentCall({ firstSpeaker: "bot" });
  call.agent.start();
  await call.run(100);
  return call;
}

/** A started call whose callee spoke and stopped; the VAD said so 400 ms after their voice. */
async function calleeJustStopped() {
  const call = startAgentCall({ firstSpeaker: "callee" });
  call.agent.start();
  await call.hear({ type: "speech_start", atMs: 120, onsetMs: 0 });
  await call.hear({ type: "speech_end", atMs: 900, offsetMs: 500 });
  return call;
}

Deno.test("STT gets 40 ms chunks while the callee talks, and every frame at once while they pause", async () => {
  const call = calleeTalking();
  call.frames(1);
  assert.equal(call.stt.audioBytes, 0, "the frame waits for its chunk");
  call.frames(1);
  assert.equal(call.stt.lastChunkBytes, 320);
  call.vad.pausing = true;
  call.frames(1);
  assert.equal(call.stt.audioBytes, 480, "sent without waiting");
  assert.equal(call.stt.lastChunkBytes, 160);
  await call.hangUp();
});

Deno.test("STT gets 200 ms chunks while the callee is silent and no turn of theirs is underway", async () => {
  const call = await calleeListening();
  const sent = call.stt.audioBytes;
  call.frames(9);
  assert.equal(call.stt.audioBytes, sent, "held for its chunk");
  call.frames(1);
  assert.equal(call.stt.audioBytes - sent, 1600);
  assert.equal(call.stt.lastChunkBytes, 1600);
  await call.hangUp();
});

Deno.test("while the callee is silent, STT keeps only the last seconds for a reconnect", async () => {
  const call = await calleeListening();
  call.frames(10);
  assert.deepEqual(call.stt.silenceForgotten, [SILENCE_KEPT_FOR_REPLAY_MS]);
  await call.hangUp();
});

Deno.test("while the callee talks, STT keeps everything since its last final", async () => {
  const call = calleeTalking();
  call.frames(10);
  assert.equal(call.stt.audioBytes, 1600);
  assert.deepEqual(call.stt.silenceForgotten, []);
  await call.hangUp();
});

Deno.test("the callee's speech onset sends the silence held for STT at once", async () => {
  const call = await calleeListening();
  const sent = call.stt.audioBytes;
  call.frames(5);
  assert.equal(call.stt.audioBytes, sent);
  await call.hear({ type: "speech_start", atMs: 120, onsetMs: 0 });
  assert.equal(call.stt.audioBytes - sent, 800, "the held frames, without waiting for more");
  call.frames(1);
  assert.equal(call.stt.audioBytes - sent, 800 + 320, "then chunks as while the callee talks");
  await call.hangUp();
});

Deno.test("STT chunks stay short after the callee's voice stops, until the turn ends", async () => {
  const call = await calleeJustStopped();
  const ended = call.stt.audioBytes;
  call.frames(2);
  assert.equal(call.stt.audioBytes - ended, 320, "the final transcript is awaited");
  await call.say("Hello?");
  const sent = call.stt.audioBytes;
  call.frames(9);
  assert.equal(call.stt.audioBytes, sent, "the turn is over: held for a 200 ms chunk");
  await call.hangUp();
});

Deno.test("a voice that never becomes words stops keeping STT chunks short after a bound", async () => {
  const call = await calleeJustStopped();
  await call.run(WORDLESS_TURN_MS - 400 - 20);
  let sent = call.stt.audioBytes;
  call.frames(2);
  assert.equal(call.stt.audioBytes - sent, 320, "its first transcript may still come");
  await call.run(40);
  sent = call.stt.audioBytes;
  call.frames(9);
  assert.equal(call.stt.audioBytes, sent, "held for a 200 ms chunk");
  await call.hangUp();
});

Deno.test("words STT heard keep its chunks short though the VAD heard nothing", async () => {
  const call = startAgentCall({ firstSpeaker: "callee" });
  call.agent.start();
  call.stt.emit({ type: "interim", text: "I wonder" });
  await call.run(0);
  call.frames(2);
  assert.equal(call.stt.lastChunkBytes, 320);
  await call.hangUp();
});

Deno.test("Flux: a held speculative answer keeps STT chunks short until the end of turn", async () => {
  const call = startAgentCall({ sttEngine: "flux", replies: ["Nice to meet you."] });
  await greeted(call);
  call.stt.emit({ type: "eager_end_of_turn", text: "Yes it is" });
  await call.run(20);
  assert.equal(call.speaker.open, 1, "the speculative answer is held");
  const sent = call.stt.audioBytes;
  call.frames(2);
  assert.equal(call.stt.audioBytes - sent, 320, "Flux's end of turn is awaited");
  await call.hangUp();
});

Deno.test("audio held for STT is sent when the call ends", async () => {
  const call = startAgentCall({ firstSpeaker: "callee" });
  call.agent.start();
  call.frames(3);
  assert.equal(call.stt.audioBytes, 0);
  await call.hangUp();
  assert.equal(call.stt.audioBytes, 480);
});

Deno.test("on an A-law transport the agent decodes, transcribes and pads as A-law", async () => {
  const call = startAgentCall({ firstSpeaker: "bot", audioFormat: ALAW_8K });
  call.agent.start();
  const silence = new Uint8Array(160).fill(A_LAW_SILENCE);
  for (let i = 0; i < 10; i++) call.session.deliver({ type: "media", payload: silence });
  await settle();
  const decoded = decodeALaw(Uint8Array.of(A_LAW_SILENCE))[0];
  assert.ok(call.vad.lastFrame?.every((sample) => sample === decoded), "VAD hears A-law samples");
  assert.equal(call.stt.lastChunkBytes, 1600, "STT gets 200 ms of A-law silence per write");

  call.speaker.bytesPerChar = 41; // the greeting's audio ends mid-frame
  await call.run(playMs(DEFAULT_GREETING) * 2);
  const sent = call.wire.media().flatMap((frame) => [...frame]);
  assert.ok(sent.length > 0);
  // The fake speaker's audio is all 0x55; anything else is padding.
  assert.ok(sent.every((byte) => byte === 0x55 || byte === A_LAW_SILENCE));
  assert.ok(sent.includes(A_LAW_SILENCE), "the last partial frame was padded");
  await call.hangUp();
});
