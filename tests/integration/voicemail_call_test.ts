/**
 * Answering machines in whole simulated calls: the real server and voice agent, the real SDKs
 * against the fakes, callee audio streamed in real time, and the fake Telnyx posting its
 * answering-machine results to the signed AMD callback as Telnyx does.
 *
 * Waits are bounded guards against hangs, never timing assertions.
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import type { CartesiaFake } from "../fakes/cartesia.ts";
import type { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { CallerTimeline } from "../helpers/caller_timeline.ts";
import { waitFor } from "../helpers/harness.ts";
import { startVoiceHarness } from "../helpers/voice_harness.ts";

const VOICEMAIL_ENV = {
  AMD: "on",
  VOICEMAIL_MESSAGE: "Hi {{name}}, this is Acme. Please call us back.",
};
const MESSAGE = "Hi Zoë, this is Acme. Please call us back.";
/** Hang guard for a call's end; not a timing assertion. */
const CALL_END_WITHIN_MS = 15_000;

/** Transcripts Cartesia was asked to speak, one string per context, in order. */
function spoken(cartesia: CartesiaFake): string[] {
  return [...cartesia.contexts.values()].map((c) => c.pieces.map((p) => p.transcript).join(""));
}

/** When each media message the server sent arrived, as `performance.now()`. */
function mediaArrivals(client: TelnyxMediaClient): number[] {
  return client.received.flatMap((frame, i) =>
    frame.event === "media" ? [client.receivedAt[i]] : []
  );
}

Deno.test({
  name: "voicemail: the message plays after the machine's beep, then one hang-up (voicemail_left)",
  async fn() {
    const silenceMs = 4000;
    const caller = new CallerTimeline()
      .pause(300)
      .say("yes_zoe", "Hi, this is Zoë. Leave a message after the tone.")
      .tone(500)
      .pause(silenceMs);
    await using v = await startVoiceHarness({ caller, env: VOICEMAIL_ENV });
    const { client, session, callSid } = await v.call({ name: "Zoë" });

    // Telnyx recognises the machine while its greeting plays.
    assert.equal((await v.h.telnyx.sendAmd(callSid, "machine_start")).status, 200);
    const beepOverMs = caller.durationMs - silenceMs;
    await waitFor(() => client.inboundBytes / 8 >= beepOverMs, "the beep", 10_000);
    assert.deepEqual(mediaArrivals(client), [], "the bot said nothing over the machine");
    const beepReportedAt = performance.now();
    assert.equal((await v.h.telnyx.sendAmd(callSid, "machine_end_beep")).status, 200);

    await deadline(session.ended, CALL_END_WITHIN_MS, { what: "the call to end" });
    const arrivals = mediaArrivals(client);
    assert.ok(arrivals.length > 0, "the message played");
    assert.ok(arrivals.every((at) => at >= beepReportedAt), "nothing played before the beep");
    assert.ok(spoken(v.cartesia).includes(MESSAGE), spoken(v.cartesia).join(" | "));
    assert.equal(session.endReason, "voicemail_left");
    assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
    assert.equal(v.openai.requests.length, 0, "nothing the machine said was answered");
    assert.deepEqual(
      v.h.events.of(callSid, "answered_by").map((e) => e.answeredBy),
      ["machine_start", "machine_end_beep"],
    );
    const errors = v.h.logs.filter((line) => JSON.parse(line).level === "error");
    assert.deepEqual(errors, []);
  },
});

Deno.test({
  name: "fax: the call is hung up at once (fax)",
  async fn() {
    const caller = new CallerTimeline().pause(300).tone(3000, 1100);
    await using v = await startVoiceHarness({ caller, env: VOICEMAIL_ENV });
    const { session, callSid } = await v.call({ name: "Zoë" });
    assert.equal((await v.h.telnyx.sendAmd(callSid, "fax")).status, 200);
    await deadline(session.ended, CALL_END_WITHIN_MS, { what: "the call to end" });
    assert.equal(session.endReason, "fax");
    assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
    assert.ok(!spoken(v.cartesia).includes(MESSAGE));
  },
});

Deno.test({
  name: "human: the conversation carries on as without detection",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(4000);
    await using v = await startVoiceHarness({ caller, env: VOICEMAIL_ENV });
    const { client, session, agent, callSid } = await v.call({ name: "Zoë" });
    assert.equal((await v.h.telnyx.sendAmd(callSid, "human")).status, 200);
    await waitFor(() => agent.conversation.transcript().length >= 2, "greeting heard", 8000);
    assert.equal(agent.conversation.transcript()[1].role, "bot");
    assert.equal(session.state, "active");
    assert.equal(v.h.telnyx.hangupRequests(callSid).length, 0);
    client.stop();
    await deadline(session.ended, CALL_END_WITHIN_MS, { what: "the call to end" });
    assert.equal(session.endReason, "callee_hung_up");
  },
});
