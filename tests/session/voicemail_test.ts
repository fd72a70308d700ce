/**
 * Answering machines: what the voice agent does with Telnyx's detection results, on fakes of its
 * vendors, a model of Telnyx's playback and a virtual clock (tests/helpers/agent_harness.ts).
 * Results reach the agent through the session's mailbox, as the AMD callback route delivers them.
 */
import assert from "node:assert/strict";
import type { AnsweredBy } from "../../src/records/call_events.ts";
import { DEFAULT_GREETING } from "../../src/session/conversation.ts";
import { type AgentCall, type AgentCallOptions, startAgentCall } from "../helpers/agent_harness.ts";
import { settle } from "../helpers/manual_clock.ts";

const MESSAGE_TEMPLATE = "Hi {{name}}, this is Acme. Please call us back.";
const MESSAGE = "Hi Ada, this is Acme. Please call us back.";
const MACHINE_GREETING = "Hi, you've reached Ada. Please leave a message after the tone.";

/** ms the fake TTS needs to play `text` (40 bytes per character at 8 bytes per ms). */
function playMs(text: string): number {
  return (text.length * 40) / 8;
}

async function detected(call: AgentCall, answeredBy: AnsweredBy): Promise<void> {
  call.session.deliver({ type: "answered_by", answeredBy });
  await settle();
}

function mediaFrames(call: AgentCall): number {
  return call.wire.sequence().filter((e) => e === "m").length;
}

/** A call whose bot greets first and is heard for `playedMs` before detection reports. */
async function greetingPlaying(
  options: AgentCallOptions = {},
  playedMs = 150,
): Promise<AgentCall> {
  const call = startAgentCall({
    firstSpeaker: "bot",
    voicemailMessage: MESSAGE_TEMPLATE,
    ...options,
  });
  call.agent.start();
  await call.run(playedMs);
  return call;
}

Deno.test("machine_start while the greeting plays: the bot stops and keeps what was heard", async () => {
  const call = await greetingPlaying();
  await detected(call, "machine_start");
  assert.equal(call.wire.sequence().at(-1), "clear", "queued greeting audio is dropped");
  const transcript = call.transcript();
  assert.equal(transcript.length, 1);
  assert.match(transcript[0], /^bot \(interrupted\): Hello!/);
  assert.ok(!transcript[0].includes("demo"), `only what was heard: ${transcript[0]}`);
  assert.equal(call.hangups.length, 0, "it waits for the machine's beep");
  await call.hangUp();
});

Deno.test("after machine_start the bot answers nothing the machine says", async () => {
  const call = await greetingPlaying();
  await detected(call, "machine_start");
  await call.say(MACHINE_GREETING);
  await call.run(2000);
  assert.equal(call.llm.requests.length, 0);
  assert.equal(call.transcript().at(-1), `callee: ${MACHINE_GREETING}`);
  await call.hangUp();
});

Deno.test("the callee speaks first and the machine's greeting is never greeted back", async () => {
  const call = startAgentCall({ voicemailMessage: MESSAGE_TEMPLATE });
  call.agent.start();
  await detected(call, "machine_start");
  await call.say(MACHINE_GREETING);
  await call.run(2000);
  assert.equal(mediaFrames(call), 0);
  assert.equal(call.llm.requests.length, 0);
  await call.hangUp();
});

Deno.test("the message is synthesised at detection and played after the beep, then one hang-up", async () => {
  const call = await greetingPlaying();
  await detected(call, "machine_start");
  assert.equal(call.speaker.spoken.at(-1), MESSAGE, "synthesised while the machine talks");
  const framesAtDetection = mediaFrames(call);
  await call.say(MACHINE_GREETING);
  await call.run(3000);
  assert.equal(mediaFrames(call), framesAtDetection, "nothing plays before the beep");

  await detected(call, "machine_end_beep");
  await call.run(playMs(MESSAGE) + 200);
  assert.ok(mediaFrames(call) - framesAtDetection >= Math.floor(playMs(MESSAGE) / 20));
  assert.deepEqual(call.hangups, ["v3:call-1"]);
  await call.session.ended;
  assert.equal(call.session.endReason, "voicemail_left");
  assert.equal(call.transcript().at(-1), `bot: ${MESSAGE}`, "the whole message was heard");
  assert.equal(call.speaker.spoken.filter((s) => s === MESSAGE).length, 1);
});

Deno.test("machine noise while the message plays does not interrupt it", async () => {
  const call = await greetingPlaying();
  await detected(call, "machine_start");
  await detected(call, "machine_end_other");
  await call.run(playMs(MESSAGE) / 2);
  const clears = call.wire.sequence().filter((e) => e === "clear").length;
  await call.hear({ type: "speech_start", atMs: 1000, onsetMs: 900 });
  await call.run(playMs(MESSAGE) / 2 + 200);
  assert.equal(call.wire.sequence().filter((e) => e === "clear").length, clears);
  await call.session.ended;
  assert.equal(call.session.endReason, "voicemail_left");
  assert.equal(call.transcript().at(-1), `bot: ${MESSAGE}`);
});

Deno.test("a repeated end-of-greeting result leaves the message once", async () => {
  const call = await greetingPlaying();
  await detected(call, "machine_start");
  await detected(call, "machine_end_beep");
  await detected(call, "machine_end_silence");
  await call.run(playMs(MESSAGE) + 200);
  await call.session.ended;
  assert.deepEqual(call.hangups, ["v3:call-1"]);
  assert.equal(call.transcript().filter((line) => line.includes(MESSAGE)).length, 1);
});

Deno.test("an end of greeting without machine_start first still stops the bot and leaves the message", async () => {
  const call = await greetingPlaying();
  await detected(call, "machine_end_silence");
  await call.run(playMs(MESSAGE) + 200);
  await call.session.ended;
  assert.equal(call.session.endReason, "voicemail_left");
  assert.match(call.transcript()[0], /^bot \(interrupted\): Hello!/);
  assert.equal(call.transcript().at(-1), `bot: ${MESSAGE}`);
});

Deno.test("no end of the machine's greeting: the message is left after the wait", async () => {
  const call = await greetingPlaying({ voicemailWaitSeconds: 5 });
  await detected(call, "machine_start");
  const framesAtDetection = mediaFrames(call);
  await call.run(4900);
  assert.equal(mediaFrames(call), framesAtDetection, "still waiting for the beep");
  await call.run(200 + playMs(MESSAGE) + 200);
  await call.session.ended;
  assert.equal(call.session.endReason, "voicemail_left");
  assert.equal(call.transcript().at(-1), `bot: ${MESSAGE}`);
});

Deno.test("no voicemail message set: a machine is hung up on at once", async () => {
  const call = await greetingPlaying({ voicemailMessage: undefined });
  await detected(call, "machine_start");
  await call.session.ended;
  assert.deepEqual(call.hangups, ["v3:call-1"]);
  assert.equal(call.session.endReason, "voicemail_skipped");
  assert.match(call.transcript()[0], /^bot \(interrupted\)/);
});

Deno.test("a fax is hung up on at once", async () => {
  const call = await greetingPlaying();
  await detected(call, "fax");
  await call.session.ended;
  assert.deepEqual(call.hangups, ["v3:call-1"]);
  assert.equal(call.session.endReason, "fax");
  assert.ok(!call.speaker.spoken.includes(MESSAGE), "no message for a fax");
});

for (const answeredBy of ["human", "unknown", "not_sure"] as const) {
  Deno.test(`answered by ${answeredBy}: the conversation carries on`, async () => {
    const call = startAgentCall({ voicemailMessage: MESSAGE_TEMPLATE, replies: ["It's Acme."] });
    call.agent.start();
    await call.say("Hello?");
    await detected(call, answeredBy);
    await call.run(playMs(DEFAULT_GREETING) + 200);
    await call.say("Who is this?");
    await call.run(playMs("It's Acme.") + 200);
    assert.deepEqual(call.transcript(), [
      "callee: Hello?",
      `bot: ${DEFAULT_GREETING}`,
      "callee: Who is this?",
      "bot: It's Acme.",
    ]);
    assert.equal(call.hangups.length, 0);
    assert.ok(!call.speaker.spoken.includes(MESSAGE));
    await call.hangUp();
  });
}
