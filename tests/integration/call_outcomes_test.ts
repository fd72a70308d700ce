/**
 * A whole simulated call with records, webhooks and analysis on: the caller's system receives
 * signed `call.initiated`, `call.answered`, `call.ended` (the whole record) and `call.analyzed`,
 * and the record holds the analysis and the deliveries.
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { startWebhookReceiver } from "../fakes/webhook_receiver.ts";
import { APPOINTMENT_SCHEMA } from "../helpers/analysis_fixtures.ts";
import { CallerTimeline } from "../helpers/caller_timeline.ts";
import { delay } from "../../src/async/deadline.ts";
import { loadReadmeVerifier } from "../helpers/readme_webhook_verifier.ts";
import { startHarness } from "../helpers/harness.ts";
import { startVoiceHarness } from "../helpers/voice_harness.ts";

const SECRET = "whsec_test_0123456789abcdef";
const ANALYSIS = { confirmed: true, new_time: null, topics: ["time"] };

Deno.test("a call's outcome reaches the caller's system: four signed events and the analysis", async () => {
  await using receiver = startWebhookReceiver();
  const caller = CallerTimeline.answeredWithHello(2500)
    .say("goodbye", "Thank you, goodbye.")
    .pause(6000);
  await using v = await startVoiceHarness({
    caller,
    env: {
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_URL: receiver.url,
      ANALYSIS_SCHEMA: JSON.stringify(APPOINTMENT_SCHEMA),
      ANALYSIS_INSTRUCTIONS: "Did they confirm the appointment?",
    },
    replies: [{
      kind: "tool_call",
      name: "end_call",
      text: "See you on Monday. Goodbye!",
      arguments: "{}",
    }],
    // The post-call analysis is the one request that is not streamed.
    whenQueueEmpty: (body) =>
      body.stream === true
        ? { kind: "text", text: "Sure." }
        : { kind: "json", value: { summary: "The callee confirmed Monday.", result: ANALYSIS } },
  });
  const { session, callSid: callId } = await v.call({ name: "Zoë" });
  await deadline(session.ended, 20_000, { what: "the call to end" });
  await deadline(receiver.waitFor(4), 15_000, { what: "four webhook events" });

  const verify = await loadReadmeVerifier();
  const events = [];
  for (const hook of receiver.received) {
    assert.ok(await verify(SECRET, hook.headers.get("webhook-signature"), hook.body));
    events.push(JSON.parse(hook.body));
  }
  assert.deepEqual(events.map((e) => e.type), [
    "call.initiated",
    "call.answered",
    "call.ended",
    "call.analyzed",
  ]);
  assert.ok(events.every((e) => e.call_id === callId));
  const ended = events[2].data;
  assert.equal(ended.end_reason, "bot_ended");
  assert.equal(ended.transcript.at(-1).text, "See you on Monday. Goodbye!");
  assert.deepEqual(events[3].data.analysis, {
    status: "ok",
    result: ANALYSIS,
    summary: "The callee confirmed Monday.",
  });

  const analysisRequest = v.openai.requests.find((r) => r.body.stream !== true)!;
  assert.match(JSON.stringify(analysisRequest.body), /See you on Monday/);
  const record = await recordOnceDelivered(`${v.h.server.url}/calls/${callId}`, 4);
  assert.equal(record.analysis?.status, "ok");
  assert.equal(record.webhook_deliveries.length, 4);
});

interface RecordWithOutcome {
  analysis?: { status: string };
  webhook_deliveries: unknown[];
}

/** Polls `GET /calls/:id` until `count` deliveries show on it (bounded). */
async function recordOnceDelivered(url: string, count: number): Promise<RecordWithOutcome> {
  const giveUpAt = performance.now() + 5000;
  for (;;) {
    const record: RecordWithOutcome = await (await fetch(url)).json();
    if (record.webhook_deliveries.length >= count || performance.now() > giveUpAt) return record;
    await delay(20);
  }
}

Deno.test("a call nobody answers still reaches the caller's system: initiated, then ended no_answer", async () => {
  await using receiver = startWebhookReceiver();
  await using h = await startHarness({ WEBHOOK_SECRET: SECRET, WEBHOOK_URL: receiver.url });
  const res = await h.start({ phone_number: "+15551234567", body: { name: "Zoë" } });
  assert.equal(res.status, 200);
  const { call_control_id: callId } = await res.json();
  await h.telnyx.sendStatus(callId, "initiated");
  await h.telnyx.sendStatus(callId, "ringing");
  await h.telnyx.sendStatus(callId, "no-answer", { durationSeconds: 0 });
  await deadline(receiver.waitFor(2), 10_000, { what: "two webhook events" });

  const events = receiver.received.map((hook) => JSON.parse(hook.body));
  assert.deepEqual(events.map((e) => e.type), ["call.initiated", "call.ended"]);
  assert.equal(events[1].data.end_reason, "no_answer");
  assert.equal(events[1].data.status, "ended");
  assert.equal(h.sessions.length, 0, "no media socket was ever opened");
});
