/**
 * A whole call as Telnyx drives it: `/start` → the real npm:telnyx client against the fake REST
 * API → `/answer` fetched as Telnyx would → the Stream URL opened → media frames → hang-up.
 */
import assert from "node:assert/strict";
import { decodeBodyParam } from "../../src/telnyx/body_param.ts";
import { FRAME_BYTES, TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { CUSTOM_DATA, placeAndAnswer, readTeXml } from "../helpers/call_driver.ts";
import {
  startHarness,
  TEST_ACCOUNT,
  TEST_API_KEY,
  TEST_APP,
  TEST_FROM,
  waitFor,
} from "../helpers/harness.ts";

Deno.test("a call from /start to hang-up", async (t) => {
  await using h = await startHarness();

  const res = await h.start({ phone_number: "+15551234567", body: CUSTOM_DATA });
  const json = await res.json();

  await t.step("/start answers like the original", () => {
    assert.equal(res.status, 200);
    assert.deepEqual(json, {
      call_control_id: "v3:fake-call-1",
      status: "call_initiated",
      phone_number: "+15551234567",
    });
  });

  const created = h.telnyx.createRequests[0];
  const fields = created.body as Record<string, string>;
  await t.step("npm:telnyx sent the TeXML create-call request", () => {
    assert.equal(h.telnyx.createRequests.length, 1);
    assert.equal(created.method, "POST");
    assert.equal(created.path, `/v2/texml/Accounts/${TEST_ACCOUNT}/Calls`);
    assert.equal(created.headers.authorization, `Bearer ${TEST_API_KEY}`);
    assert.match(created.headers["content-type"], /application\/json/);
    assert.equal(created.headers["x-stainless-retry-count"], "0");
    assert.deepEqual(Object.keys(fields).sort(), [
      "ApplicationSid",
      "From",
      "StatusCallback",
      "StatusCallbackEvent",
      "StatusCallbackMethod",
      "To",
      "Url",
      "UrlMethod",
    ]);
    assert.equal(fields.ApplicationSid, TEST_APP);
    assert.equal(new URL(fields.StatusCallback).pathname, "/callbacks/status");
    assert.equal(fields.StatusCallbackMethod, "POST");
    assert.equal(fields.StatusCallbackEvent, "initiated ringing answered completed");
    assert.equal(fields.To, "+15551234567");
    assert.equal(fields.From, TEST_FROM);
    assert.equal(fields.UrlMethod, "POST");
  });

  await t.step("the Url carries the body exactly as the Python example encodes it", () => {
    const url = new URL(fields.Url);
    assert.equal(url.origin, h.server.url.replace("localhost", "127.0.0.1"));
    assert.equal(url.pathname, "/answer");
    // Python: quote(b64encode(json.dumps(body).encode()), safe="") — standard base64, all of
    // `+/=` percent-encoded. Our JSON has no spaces after separators, which decodes the same.
    const raw = /[?&]body=([^&]*)/.exec(fields.Url)![1];
    assert.doesNotMatch(raw, /[+/=]/);
    assert.deepEqual(decodeBodyParam(decodeURIComponent(raw)), CUSTOM_DATA);
    assert.ok(url.searchParams.get("sig"));
    assert.ok(url.searchParams.get("exp"));
  });

  const answer = await h.telnyx.answerCall(json.call_control_id);
  const { stream, pause } = readTeXml(answer.text);
  await t.step("/answer returns TeXML that streams the call to /ws", () => {
    assert.equal(answer.status, 200);
    assert.match(answer.contentType ?? "", /^application\/xml/);
    assert.equal(stream.bidirectionalMode, "rtp");
    assert.equal(pause, "40");
    const wsUrl = new URL(stream.url);
    assert.equal(wsUrl.protocol, "ws:");
    assert.equal(wsUrl.pathname, "/ws");
    assert.deepEqual(decodeBodyParam(wsUrl.searchParams.get("body")!), CUSTOM_DATA);
    assert.equal(wsUrl.searchParams.get("call"), json.call_control_id, "bound to the CallSid");
    const lifetime = Number(wsUrl.searchParams.get("exp")) - Date.now() / 1000;
    assert.ok(lifetime > 0 && lifetime <= h.config.STREAM_URL_TTL_SECONDS, String(lifetime));
  });

  const client = await TelnyxMediaClient.connect(stream.url, {
    callControlId: json.call_control_id,
  });
  client.start();
  await waitFor(() => h.sessions.length === 1, "session");
  const session = h.sessions[0];

  await t.step("the session holds the decoded body and the call's identity", () => {
    assert.deepEqual(session.info.body, CUSTOM_DATA);
    assert.equal(session.info.callControlId, json.call_control_id);
    assert.equal(session.info.streamId, client.streamId);
    assert.deepEqual(session.inputFormat, { encoding: "mulaw", sampleRate: 8000 });
    assert.deepEqual(session.outputFormat, { encoding: "mulaw", sampleRate: 8000 });
    assert.equal(session.state, "active");
  });

  await t.step("media and DTMF reach the session in order", async () => {
    const health = await (await fetch(`${h.server.url}/health`)).json();
    assert.equal(health.active_calls, 1);
    const frame = new Uint8Array(FRAME_BYTES).fill(0xff);
    for (let i = 0; i < 50; i++) client.media(frame);
    client.dtmf("1");
    client.dtmf("#");
    await waitFor(() => session.stats.dtmfPresses === 2, "dtmf");
    assert.equal(session.stats.mediaFrames, 50);
    assert.equal(session.stats.mediaBytes, 50 * FRAME_BYTES);
  });

  await t.step("stop ends the session and hang-up is confirmed once, 90018 included", async () => {
    // The callee hung up, so Telnyx already considers the call over.
    h.telnyx.endedCalls.add(json.call_control_id);
    client.stop();
    await session.ended;
    const close = await client.closed;
    assert.equal(close.code, 1000);
    assert.equal(session.state, "ended");
    assert.equal(session.endReason, "callee_hung_up");
    assert.ok(session.signal.aborted);
    assert.equal(h.telnyx.hangupRequests(json.call_control_id).length, 1);
    assert.ok(h.logs.some((l) => l.includes("already_ended")));
    assert.equal(h.server.registry.active, 0);
  });

  await t.step("logs carry the call id and never the API key", () => {
    assert.ok(h.logs.some((l) => l.includes(json.call_control_id)));
    assert.ok(h.logs.every((l) => !l.includes(TEST_API_KEY)));
  });
});

Deno.test("hang-up is sent once however often it is asked for", async (t) => {
  await using h = await startHarness();
  const { callSid, streamUrl } = await placeAndAnswer(h);
  const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
  client.start();
  await waitFor(() => h.sessions.length === 1, "session");
  const session = h.sessions[0];

  await t.step("concurrent and repeated hang-ups make one request", async () => {
    await Promise.all([session.hangUp(), session.hangUp(), session.hangUp("shutdown")]);
    await session.hangUp();
    assert.equal(h.telnyx.hangupRequests(callSid).length, 1);
    assert.equal(session.endReason, "bot_hung_up");
    assert.equal((await client.closed).code, 1000);
  });

  await t.step("the fake now answers 90018, which a second session treats as success", async () => {
    const second = await placeAndAnswer(h);
    h.telnyx.endedCalls.add(second.callSid);
    const c2 = await TelnyxMediaClient.connect(second.streamUrl, { callControlId: second.callSid });
    c2.start();
    await waitFor(() => h.sessions.length === 2, "second session");
    await h.sessions[1].hangUp();
    assert.equal(h.telnyx.hangupRequests(second.callSid).length, 1);
    assert.equal(h.sessions[1].state, "ended");
    await c2.closed;
  });
});

Deno.test("a media socket that drops without stop hangs the call up", async () => {
  await using h = await startHarness();
  const { callSid, streamUrl } = await placeAndAnswer(h);
  const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
  client.start();
  await waitFor(() => h.sessions.length === 1, "session");
  await client.close(4000, "network trouble");
  await h.sessions[0].ended;
  assert.equal(h.sessions[0].endReason, "socket_closed");
  assert.equal(h.telnyx.hangupRequests(callSid).length, 1);
});

Deno.test("a call without custom data still works", async () => {
  await using h = await startHarness();
  const res = await h.start({ phone_number: "+442071838750" });
  assert.equal(res.status, 200);
  const url = (h.telnyx.createRequests[0].body as { Url: string }).Url;
  assert.ok(!url.includes("body="), "like the original, no body parameter when there is none");
  const lifetime = Number(new URL(url).searchParams.get("exp")) - Date.now() / 1000;
  assert.ok(lifetime > 120 && lifetime <= h.config.SIGNED_URL_TTL_SECONDS, "covers ringing");
  const answer = await h.telnyx.answerCall("v3:fake-call-1");
  const { stream } = readTeXml(answer.text);
  const client = await TelnyxMediaClient.connect(stream.url, { callControlId: "v3:fake-call-1" });
  client.start();
  await waitFor(() => h.sessions.length === 1, "session");
  assert.deepEqual(h.sessions[0].info.body, {});
  client.stop();
  await h.sessions[0].ended;
  await client.closed;
});
