/**
 * Whole simulated calls, from `/start` to hang-up, through all four real SDKs against loopback
 * fakes: the callee's audio is real speech (espeak-ng clips) streamed in real time, the fake STT
 * recognises it on the same timeline, and the fake Telnyx plays the bot's audio at 8000 bytes/s.
 *
 * Waits are bounded guards against hangs, never timing assertions.
 */
import assert from "node:assert/strict";
import { CANNED } from "../../src/session/voice_agent.ts";
import { CallerTimeline } from "../helpers/caller_timeline.ts";
import { waitFor } from "../helpers/harness.ts";
import {
  LONG_ANSWER,
  startBargeInHarness,
  startGoodbyeHarness,
  startVoiceHarness,
} from "../helpers/voice_harness.ts";
import type { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import type { CartesiaFake } from "../fakes/cartesia.ts";

const GREETING = "Hello! This is an automated call from our Telnyx chatbot demo.";

/** 20 ms frames of bot audio received (a media message may hold several). */
function mediaFrames(client: TelnyxMediaClient): number {
  const bytes = client.framesOf("media").reduce(
    (n, frame) => n + Uint8Array.fromBase64(frame.media.payload).length,
    0,
  );
  return Math.floor(bytes / 160);
}

/** Transcripts Cartesia was asked to speak, one string per context, in order. */
function spoken(cartesia: CartesiaFake): string[] {
  return [...cartesia.contexts.values()].map((c) => c.pieces.map((p) => p.transcript).join(""));
}

function systemPromptOf(body: Record<string, unknown>): string {
  const messages = body.messages as { role: string; content: string }[];
  assert.equal(messages[0].role, "system");
  return messages[0].content;
}

Deno.test({
  name: "callee speaks first: the greeting plays the moment their hello ends, with no LLM call",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(4000);
    await using v = await startVoiceHarness({ caller });
    const { client, session, agent } = await v.call();

    await waitFor(() => mediaFrames(client) > 0, "greeting audio", 8000);
    const helloEnd = caller.speech[0].endMs;
    assert.ok(client.inboundBytes / 8 >= helloEnd, "nothing was played before the callee spoke");
    assert.equal(v.openai.requests.length, 0, "no LLM round-trip stands before the greeting");
    assert.deepEqual(spoken(v.cartesia)[0], GREETING);
    await waitFor(() => agent.conversation.transcript().length >= 2, "greeting in context", 8000);
    assert.deepEqual(agent.conversation.transcript().slice(0, 2), [
      { role: "callee", text: "Hello?" },
      { role: "bot", text: GREETING },
    ]);
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "bot speaks first: the greeting plays as soon as the stream starts",
  async fn() {
    const caller = new CallerTimeline().pause(3000);
    await using v = await startVoiceHarness({ caller, env: { FIRST_SPEAKER: "bot" } });
    const { client, session, agent } = await v.call({ name: "Zoë" });
    await waitFor(() => mediaFrames(client) > 0, "greeting audio", 5000);
    assert.equal(v.openai.requests.length, 0);
    await waitFor(() => client.framesOf("mark").length > 0, "mark after the greeting", 5000);
    await waitFor(() => agent.conversation.transcript().length === 1, "greeting heard", 8000);
    assert.deepEqual(agent.conversation.transcript(), [{ role: "bot", text: GREETING }]);
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "a multi-turn conversation whose LLM requests carry the custom data",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(2500)
      .say("yes_zoe", "Yes, this is Zoë. What is this about?")
      .pause(3500)
      .say("account_tier", "Can you tell me my account tier?")
      .pause(4000);
    await using v = await startVoiceHarness({
      caller,
      env: { GREETING: "Hello {{name}}! This is an automated call from Acme." },
      replies: [
        { kind: "text", text: "I'm calling about your Acme account, Zoë." },
        { kind: "text", text: "Your account tier is premium." },
      ],
    });
    const { client, session, agent } = await v.call({ name: "Zoë", account: { tier: "premium" } });
    await v.openai.waitForRequests(2);
    await waitFor(() => agent.conversation.transcript().length >= 6, "second answer heard", 10000);

    const [first, second] = v.openai.requests.map((r) => r.body);
    for (const body of [first, second]) {
      const prompt = systemPromptOf(body);
      assert.match(prompt, /<call_data>/);
      assert.match(prompt, /"tier": "premium"/);
      assert.match(prompt, /Zoë/);
      assert.equal(body.stream, true);
      assert.ok((body.tools as { function: { name: string } }[])
        .some((t) => t.function.name === "end_call"));
    }
    assert.deepEqual(agent.conversation.transcript(), [
      { role: "callee", text: "Hello?" },
      { role: "bot", text: "Hello Zoë! This is an automated call from Acme." },
      { role: "callee", text: "Yes, this is Zoë. What is this about?" },
      { role: "bot", text: "I'm calling about your Acme account, Zoë." },
      { role: "callee", text: "Can you tell me my account tier?" },
      { role: "bot", text: "Your account tier is premium." },
    ]);
    const secondMessages = second.messages as { role: string; content: string }[];
    assert.deepEqual(secondMessages.slice(1).map((m) => m.role), [
      "user",
      "assistant",
      "user",
      "assistant",
      "user",
    ]);
    assert.equal(agent.metrics.turns.length, 3);
    assert.ok(agent.metrics.turns.every((t) => t.voiceToVoiceMs !== undefined));
    assert.ok(v.h.logs.some((l) => l.includes('"msg":"turn"') && l.includes("voiceToVoiceMs")));
    client.stop();
    await session.ended;
    assert.ok(v.h.logs.some((l) => l.includes('"msg":"call summary"')));
  },
});

Deno.test({
  name: "barge-in clears Telnyx, cancels the LLM and TTS, and keeps only what was heard",
  async fn() {
    await using v = await startBargeInHarness();
    const { client, session, agent } = await v.call();
    await waitFor(() => client.framesOf("clear").length > 0, "clear", 15000);
    assert.equal(await v.openai.requests[0].outcome, "cancelled", "the LLM stream was aborted");
    await v.openai.waitForRequests(2);
    await waitFor(() => agent.conversation.transcript().length >= 6, "answer after barge-in", 10000)
      .catch((e) => {
        console.log(JSON.stringify(agent.conversation.transcript(), null, 1));
        console.log(v.h.logs.filter((l) => !l.includes("debug")).join("\n"));
        throw e;
      });

    const transcript = agent.conversation.transcript();
    const cut = transcript[3];
    assert.equal(cut.role, "bot");
    assert.equal(cut.interrupted, true);
    assert.ok(cut.text.length < LONG_ANSWER.length, `kept only what was heard: ${cut.text}`);
    assert.ok(LONG_ANSWER.startsWith(cut.text), "a prefix of the answer");
    const answerContext = [...v.cartesia.contexts.values()][1];
    assert.ok(answerContext.cancelled, "the TTS context was cancelled");
    assert.equal(agent.metrics.bargeIns, 1);
    const secondRequest = v.openai.requests[1].body.messages as { role: string; content: string }[];
    const heardByModel = secondRequest.filter((m) => m.role === "assistant").at(-1)!.content;
    assert.ok(
      !heardByModel.includes("loyalty programme"),
      "the unheard part never reaches the LLM",
    );
    assert.equal(transcript[4].text, "Wait, stop, I have a question.");
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "end_call: the goodbye plays to the end, then the bot hangs up",
  async fn() {
    await using v = await startGoodbyeHarness();
    const { client, session, callSid } = await v.call();
    await session.ended;
    assert.equal(session.endReason, "bot_hung_up");
    assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
    const goodbyeBytes = v.cartesia.audioOf([...v.cartesia.contexts.keys()][1]).length;
    const greetingBytes = v.cartesia.audioOf([...v.cartesia.contexts.keys()][0]).length;
    assert.ok(client.playedBytes >= greetingBytes + goodbyeBytes, "the goodbye was heard in full");
    await client.closed;
  },
});

Deno.test({
  name: "callee hang-up mid-answer tears everything down",
  async fn() {
    const caller = new CallerTimeline().pause(3000);
    await using v = await startVoiceHarness({ caller, env: { FIRST_SPEAKER: "bot" } });
    const { client, session } = await v.call();
    await waitFor(() => mediaFrames(client) > 2, "greeting playing", 5000);
    client.stop();
    await session.ended;
    assert.equal(session.endReason, "callee_hung_up");
    await v.deepgram.waitFor(() => v.deepgram.connections.every((c) => c.closed), 5000);
  },
});

Deno.test({
  name: "DTMF reaches the conversation as callee input",
  async fn() {
    const caller = new CallerTimeline().pause(4000);
    await using v = await startVoiceHarness({
      caller,
      env: { FIRST_SPEAKER: "bot" },
      replies: [{ kind: "text", text: "You pressed one, thank you." }],
    });
    const { client, session, agent } = await v.call();
    await waitFor(() => agent.conversation.transcript().length === 1, "greeting", 8000);
    client.dtmf("1");
    await v.openai.waitForRequests(1);
    const messages = v.openai.requests[0].body.messages as { role: string; content: string }[];
    assert.equal(messages.at(-1)!.role, "user");
    assert.match(messages.at(-1)!.content, /pressed 1/);
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "a burst of key presses is one LLM request, with the keys bounded",
  async fn() {
    const caller = new CallerTimeline().pause(6000);
    await using v = await startVoiceHarness({
      caller,
      env: { FIRST_SPEAKER: "bot" },
      replies: [{ kind: "text", text: "Thank you, I have your number." }],
    });
    const { client, session, agent } = await v.call();
    await waitFor(() => agent.conversation.transcript().length === 1, "greeting", 8000);
    for (let i = 0; i < 150; i++) client.dtmf(String(i % 10));
    await waitFor(() => agent.conversation.transcript().length === 3, "answer heard", 10000);
    assert.equal(v.openai.requests.length, 1);
    assert.equal(session.stats.dtmfPresses, 150);
    const messages = v.openai.requests[0].body.messages as { role: string; content: string }[];
    assert.ok(messages.at(-1)!.content.length < 100, messages.at(-1)!.content);
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "an idle callee is asked once if they are there, then the bot says goodbye and hangs up",
  async fn() {
    const caller = new CallerTimeline().pause(500);
    await using v = await startVoiceHarness({
      caller,
      env: { FIRST_SPEAKER: "bot", IDLE_TIMEOUT_SECONDS: "3" },
    });
    const { session, callSid } = await v.call();
    await session.ended;
    assert.deepEqual(spoken(v.cartesia), [GREETING, CANNED.stillThere, CANNED.idleGoodbye]);
    assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
    assert.equal(v.openai.requests.length, 0);
  },
});

Deno.test({
  name: "MAX_CALL_SECONDS ends a call politely",
  async fn() {
    const caller = new CallerTimeline().pause(500);
    await using v = await startVoiceHarness({
      caller,
      env: { FIRST_SPEAKER: "bot", MAX_CALL_SECONDS: "5", IDLE_TIMEOUT_SECONDS: "60" },
    });
    const { session } = await v.call();
    await session.ended;
    assert.equal(spoken(v.cartesia).at(-1), CANNED.timeLimit);
  },
});

Deno.test({
  name: "vendor failures end the call politely and never crash the process",
  async fn(t) {
    const caller = CallerTimeline.answeredWithHello(2500)
      .say("yes_zoe", "Yes, this is Zoë. What is this about?").pause(5000);

    await t.step("LLM fails once: retried, the answer plays", async () => {
      await using v = await startVoiceHarness({
        caller,
        replies: [
          { kind: "http_error", status: 500 },
          { kind: "text", text: "Sorry for the wait, here I am." },
        ],
      });
      const { client, session, agent } = await v.call();
      await waitFor(() => agent.conversation.transcript().length >= 4, "answer", 12000);
      assert.equal(v.openai.requests.length, 2);
      assert.equal(agent.conversation.transcript()[3].text, "Sorry for the wait, here I am.");
      client.stop();
      await session.ended;
    });

    await t.step("LLM fails twice: the bot apologises and hangs up", async () => {
      await using v = await startVoiceHarness({
        caller,
        replies: [{ kind: "http_error", status: 500 }, { kind: "http_error", status: 503 }],
      });
      const { session, callSid } = await v.call();
      await session.ended;
      assert.equal(spoken(v.cartesia).at(-1), CANNED.apology);
      assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
    });

    await t.step("TTS unreachable: the call is hung up", async () => {
      await using v = await startVoiceHarness({ caller, env: { FIRST_SPEAKER: "bot" } });
      v.cartesia.refuseConnections = true;
      const { session, callSid } = await v.call();
      await session.ended;
      assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
      assert.ok(v.h.logs.some((l) => l.includes("text-to-speech unavailable")));
    });

    await t.step("STT unreachable: the bot apologises and hangs up", async () => {
      await using v = await startVoiceHarness({ caller, env: { FIRST_SPEAKER: "bot" } });
      v.deepgram.refuseConnections(Infinity, 503);
      const { session } = await v.call();
      await session.ended;
      assert.equal(spoken(v.cartesia).at(-1), CANNED.apology);
      assert.ok(v.h.logs.some((l) => l.includes("speech-to-text unavailable")));
    });

    await t.step("STT drops mid-call: it reconnects and the conversation goes on", async () => {
      await using v = await startVoiceHarness({
        caller,
        // Before the first words: the fake scripts each connection from its own byte 0, and the
        // adapter resends everything not yet finalised, so the new connection hears it all.
        deepgramDrops: [{ connection: 0, afterBytes: 8 * 200, mode: "error_1011" }],
        replies: [{ kind: "text", text: "Great to hear from you." }],
      });
      const { client, session, agent } = await v.call();
      await waitFor(() => agent.conversation.transcript().length >= 4, "answer", 15000);
      assert.ok(v.deepgram.connections.length >= 2);
      assert.equal(agent.conversation.transcript()[0].text, "Hello?");
      assert.equal(
        agent.conversation.transcript()[2].text,
        "Yes, this is Zoë. What is this about?",
      );
      assert.ok(v.h.logs.some((l) => l.includes("speech-to-text reconnected")));
      client.stop();
      await session.ended;
    });
  },
});

Deno.test({
  name: "Flux: Deepgram's end of turn drives the conversation; an eager end starts the LLM early",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(2500)
      .say("yes_zoe", "Yes, this is Zoë. What is this about?")
      .pause(4000);
    await using v = await startVoiceHarness({
      caller,
      env: { STT_ENGINE: "flux", FLUX_EAGER_EOT_THRESHOLD: "0.5" },
      replies: [{ kind: "text", text: "I'm calling about your account." }],
    });
    const { client, session, agent } = await v.call();
    await waitFor(() => agent.conversation.transcript().length >= 4, "answer", 12000);
    const connection = v.deepgram.connections[0];
    assert.equal(connection.path, "/v2/listen");
    assert.equal(connection.params.eager_eot_threshold, "0.5");
    assert.deepEqual(agent.conversation.transcript().map((e) => e.text), [
      "Hello?",
      GREETING,
      "Yes, this is Zoë. What is this about?",
      "I'm calling about your account.",
    ]);
    assert.equal(v.openai.requests.length, 1, "the eager answer was confirmed, not redone");
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "Flux: a speculative answer is dropped when the callee resumes their turn",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(2500)
      .say("yes_zoe", "Yes, this is Zoë.")
      .say("account_tier", "Can you tell me my account tier?", { continuesTurn: true })
      .pause(4000);
    await using v = await startVoiceHarness({
      caller,
      env: { STT_ENGINE: "flux", FLUX_EAGER_EOT_THRESHOLD: "0.5" },
      whenQueueEmpty: (body) => {
        const messages = body.messages as { content: string }[];
        const last = String(messages.at(-1)?.content ?? "");
        return {
          kind: "text",
          text: last.includes("tier") ? "Your tier is premium." : "Hello Zoë, nice to meet you.",
          deltaDelayMs: 100,
        };
      },
    });
    const { client, session, agent } = await v.call();
    await waitFor(() => agent.conversation.transcript().length >= 4, "answer", 15000);
    const texts = agent.conversation.transcript().map((e) => e.text);
    assert.equal(texts[3], "Your tier is premium.");
    assert.ok(!texts.includes("Hello Zoë, nice to meet you."), "the eager answer was never kept");
    assert.equal(v.openai.requests.length, 2);
    assert.equal(await v.openai.requests[0].outcome, "cancelled");
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "a callee who never says hello is greeted, asked if they are there, then told goodbye",
  async fn() {
    const caller = new CallerTimeline().pause(500);
    await using v = await startVoiceHarness({ caller, env: { IDLE_TIMEOUT_SECONDS: "3" } });
    const { session, callSid } = await v.call();
    await session.ended;
    assert.deepEqual(spoken(v.cartesia), [GREETING, CANNED.stillThere, CANNED.idleGoodbye]);
    assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
  },
});

Deno.test({
  name: "a call's start opens the OpenAI connection that its first answer is sent on",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(1000)
      .say("yes_zoe", "Yes, this is Zoë. What is this about?").pause(3000);
    await using v = await startVoiceHarness({ caller });
    const { client, session } = await v.call();
    await waitFor(() => v.openai.requests.length > 0, "the first answer's request", 15_000);
    assert.deepEqual(v.openai.modelLookups.map((l) => l.model), ["gpt-4.1-mini"]);
    assert.equal(v.openai.requests[0].clientPort, v.openai.modelLookups[0].clientPort);
    client.stop();
    await session.ended;
  },
});

Deno.test({
  name: "an OpenAI key refused at the call's start is logged as a warning before any answer",
  async fn() {
    const caller = new CallerTimeline().pause(2000);
    await using v = await startVoiceHarness({
      caller,
      env: { OPENAI_API_KEY: "sk-wrong-key-0000" },
    });
    const { client, session } = await v.call();
    await waitFor(
      () => v.h.logs.some((line) => line.includes("OpenAI refused the model lookup")),
      "the warning",
      5000,
    );
    assert.equal(v.openai.requests.length, 0, "no answer was asked for yet");
    const warning = JSON.parse(
      v.h.logs.find((l) => l.includes("OpenAI refused the model lookup"))!,
    );
    assert.equal(warning.level, "warn");
    assert.match(JSON.stringify(warning.error), /401|Incorrect API key/);
    client.stop();
    await session.ended;
  },
});
