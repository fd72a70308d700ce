/**
 * Whole simulated calls (real SDKs against the fakes, real KV) produce complete call records:
 * the transcript as heard, the precise end reason, tool calls, usage; and a KV that fails
 * mid-call costs the call nothing.
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import type { CallRecordView } from "../../src/records/call_record.ts";
import { CANNED } from "../../src/session/voice_agent.ts";
import { CallerTimeline } from "../helpers/caller_timeline.ts";
import { waitFor } from "../helpers/harness.ts";
import { FlakyKv } from "../helpers/records.ts";
import {
  LONG_ANSWER,
  startBargeInHarness,
  startGoodbyeHarness,
  startVoiceHarness,
  type VoiceHarness,
} from "../helpers/voice_harness.ts";

const GREETING = "Hello! This is an automated call from our Telnyx chatbot demo.";
const FLUSH_WITHIN_MS = 5000;
/** Hang guard for the records catching up: a retry may be waiting out its longest backoff. */
const CATCH_UP_WITHIN_MS = 15_000;

async function recordOf(v: VoiceHarness, callSid: string): Promise<CallRecordView> {
  await deadline(v.h.server.records!.flush(), CATCH_UP_WITHIN_MS, { what: "records flush" });
  const res = await fetch(`${v.h.server.url}/calls/${callSid}`);
  assert.equal(res.status, 200);
  return await res.json();
}

type PlacedCall = Awaited<ReturnType<VoiceHarness["call"]>>;

/** The callee hangs up; returns the call's record once stored. */
async function hangUpAndRecord(v: VoiceHarness, call: PlacedCall): Promise<CallRecordView> {
  call.client.stop();
  await deadline(call.session.ended, FLUSH_WITHIN_MS, { what: "the call to end" });
  return await recordOf(v, call.callSid);
}

Deno.test({
  name: "record of a call the bot ends: transcript as heard, end_call, usage, timeline",
  async fn() {
    await using v = await startGoodbyeHarness();
    const { session, callSid } = await v.call({ name: "Zoë" });
    await deadline(session.ended, 20_000, { what: "the call to end" });
    const record = await recordOf(v, callSid);

    assert.equal(record.status, "ended");
    assert.equal(record.end_reason, "bot_ended");
    assert.deepEqual(record.custom_data, { name: "Zoë" });
    assert.equal(record.to, "+15551234567");
    assert.deepEqual(
      record.transcript!.map((t) => [t.role, t.text, t.interrupted]),
      [
        ["user", "Hello?", false],
        ["assistant", GREETING, false],
        ["user", "Thank you, goodbye.", false],
        ["assistant", "Thank you for your time, Zoë. Goodbye!", false],
      ],
    );
    const offsets = record.transcript!.map((t) => t.offset_ms);
    assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), "offsets in call order");
    assert.ok(offsets[0] > 0);
    assert.ok(record.transcript![3].latency?.voiceToVoiceMs !== undefined, "reply latency kept");
    assert.deepEqual(record.tool_calls.map((t) => [t.name, t.arguments]), [
      ["end_call", '{"reason":"callee said goodbye"}'],
    ]);
    assert.ok(record.usage && record.usage.tts_characters > 0 && record.usage.stt_seconds > 0);
    for (const moment of ["initiated", "answered", "streaming", "ended"] as const) {
      assert.ok(record.timeline[moment], `timeline has ${moment}`);
    }
    assert.ok(record.duration_seconds !== null && record.duration_seconds > 3);
  },
});

Deno.test({
  name: "record of a barge-in: the cut reply is stored as heard and marked interrupted",
  async fn() {
    await using v = await startBargeInHarness();
    const call = await v.call();
    const { agent } = call;
    await waitFor(
      () => agent.conversation.transcript().length >= 6,
      "answer after barge-in",
      20000,
    );
    const record = await hangUpAndRecord(v, call);

    const cut = record.transcript![3];
    assert.equal(cut.role, "assistant");
    assert.equal(cut.interrupted, true);
    assert.ok(cut.text.length > 0 && cut.text.length < LONG_ANSWER.length, cut.text);
    assert.ok(LONG_ANSWER.startsWith(cut.text));
    assert.equal(record.transcript![4].text, "Wait, stop, I have a question.");
    assert.deepEqual(
      record.transcript!.map((t) => [t.role, t.text]),
      agent.conversation.transcript().map((t) => [t.role === "bot" ? "assistant" : "user", t.text]),
      "the record says what the conversation heard",
    );
    assert.equal(record.end_reason, "callee_hung_up");
  },
});

Deno.test({
  name: "record of a callee hang-up says callee_hung_up",
  async fn() {
    const caller = new CallerTimeline().pause(3000);
    await using v = await startVoiceHarness({ caller, env: { FIRST_SPEAKER: "bot" } });
    const call = await v.call();
    await waitFor(() => call.client.framesOf("media").length > 2, "greeting playing", 5000);
    const record = await hangUpAndRecord(v, call);
    assert.equal(record.end_reason, "callee_hung_up");
    assert.equal(record.status, "ended");
  },
});

Deno.test({
  name: "record of a call that reached MAX_CALL_SECONDS says max_duration",
  async fn() {
    const caller = new CallerTimeline().pause(500);
    await using v = await startVoiceHarness({
      caller,
      env: { FIRST_SPEAKER: "bot", MAX_CALL_SECONDS: "5", IDLE_TIMEOUT_SECONDS: "60" },
    });
    const { session, callSid } = await v.call();
    await deadline(session.ended, 20_000, { what: "the call to end" });
    const record = await recordOf(v, callSid);
    assert.equal(record.end_reason, "max_duration");
    assert.equal(record.transcript!.at(-1)?.text, CANNED.timeLimit);
  },
});

Deno.test({
  name: "KV failing mid-call: the call's audio is unaffected and the record catches up",
  async fn() {
    const kv = new FlakyKv(await Deno.openKv(":memory:"));
    try {
      const caller = CallerTimeline.answeredWithHello(2500)
        .say("yes_zoe", "Yes, this is Zoë. What is this about?")
        .pause(5000);
      await using v = await startVoiceHarness({
        caller,
        kv,
        replies: [{ kind: "text", text: "I'm calling about your Acme account, Zoë." }],
      });
      const { client, session, agent, callSid } = await v.call();
      await deadline(v.h.server.records!.flush(), FLUSH_WITHIN_MS, { what: "first flush" });
      kv.failing = true;
      await waitFor(() => agent.conversation.transcript().length >= 4, "the answer heard", 20000);
      await waitFor(() => kv.failedCommits >= 2, "commits failing", FLUSH_WITHIN_MS);

      const contexts = [...v.cartesia.contexts.keys()];
      const synthesised = contexts.reduce((n, id) => n + v.cartesia.audioOf(id).length, 0);
      assert.ok(client.playedBytes >= synthesised, "every byte synthesised was played");
      assert.equal(agent.metrics.underruns, 0, "no gap in the bot's audio");
      client.stop();
      await deadline(session.ended, FLUSH_WITHIN_MS, { what: "the call to end" });
      assert.equal((await v.h.server.records!.store.header(callSid))?.status, "streaming");

      kv.failing = false;
      const record = await recordOf(v, callSid);
      assert.equal(record.status, "ended");
      assert.equal(record.end_reason, "callee_hung_up");
      assert.deepEqual(record.transcript!.map((t) => t.text), [
        "Hello?",
        GREETING,
        "Yes, this is Zoë. What is this about?",
        "I'm calling about your Acme account, Zoë.",
      ]);
      assert.ok(v.h.logs.some((l) => l.includes("storing call events failed; retrying")));
    } finally {
      kv.kv.close();
    }
  },
});

Deno.test({
  name: "record of key presses: the aggregated input is on the record",
  async fn() {
    const caller = new CallerTimeline().pause(4000);
    await using v = await startVoiceHarness({
      caller,
      env: { FIRST_SPEAKER: "bot" },
      replies: [{ kind: "text", text: "You pressed one two, thank you." }],
    });
    const call = await v.call();
    const { client, agent } = call;
    await waitFor(() => agent.conversation.transcript().length === 1, "greeting", 8000);
    client.dtmf("1");
    client.dtmf("2");
    await v.openai.waitForRequests(1);
    const record = await hangUpAndRecord(v, call);
    assert.deepEqual(record.dtmf.map((d) => d.digits), ["12"]);
  },
});
