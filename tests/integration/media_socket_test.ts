/**
 * What a media socket may do with a Stream URL: open one call, once, promptly. Each test is an
 * attack that worked before the URL was bound to its call: it must neither take over nor hang
 * up a call it was not minted for, nor hold a connection without starting a call.
 */
import assert from "node:assert/strict";
import { deadline, delay } from "../../src/async/deadline.ts";
import { UrlSigner } from "../../src/security/url_signature.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import {
  endLiveCall,
  placeAndAnswer,
  startLiveCall,
  unresponsiveSocket,
  upgradeRequest,
} from "../helpers/call_driver.ts";
import { type Harness, startHarness, waitFor } from "../helpers/harness.ts";

/** Hang guard for a close the server must send; not a timing assertion. */
const CLOSE_WITHIN_MS = 5_000;

async function health(
  h: Harness,
): Promise<{ active_calls: number; pending_media_sockets: number }> {
  return await (await fetch(`${h.server.url}/health`)).json();
}

function closedBy(client: TelnyxMediaClient): Promise<CloseEvent> {
  return deadline(client.closed, CLOSE_WITHIN_MS, { what: "the server closing the socket" });
}

/**
 * Places `held + 1` calls and opens a socket that never sends `start` on the first `held` of
 * their Stream URLs; returns those sockets and the unused call.
 */
async function holdPendingSockets(h: Harness, held: number) {
  const calls = [];
  for (let i = 0; i <= held; i++) calls.push(await placeAndAnswer(h));
  const sockets = [];
  for (const call of calls.slice(0, held)) {
    sockets.push(await TelnyxMediaClient.connect(call.streamUrl));
  }
  return { sockets, unused: calls[held] };
}

/** Sends the upgrade of `streamUrl`, expects it refused with `status`, and returns its error. */
async function refusedUpgrade(
  streamUrl: string,
  status: number,
): Promise<{ code: string; message: string; limit: number }> {
  const res = await upgradeRequest(streamUrl);
  const json = await res.json();
  assert.equal(res.status, status);
  return json.error;
}

Deno.test("a start naming another live call is refused and hangs up nothing", async () => {
  await using h = await startHarness();
  const victim = await startLiveCall(h);
  // One valid Stream URL of the attacker's own, used with the victim's call_control_id.
  const own = await placeAndAnswer(h);
  const attacker = await TelnyxMediaClient.connect(own.streamUrl, {
    callControlId: victim.callSid,
  });
  attacker.start();

  const close = await closedBy(attacker);
  assert.equal(close.code, 1008);
  assert.match(close.reason, /does not match the stream URL's call/);
  assert.equal(victim.session.state, "active");
  assert.deepEqual(h.sessions, [victim.session]);
  assert.equal((await health(h)).active_calls, 1);
  assert.equal(h.telnyx.hangupRequests().length, 0, "neither the victim nor the URL's call");
  assert.ok(h.logs.some((l) => l.includes("start frame names another call")));

  await endLiveCall(victim);
});

Deno.test("a second socket on the same Stream URL is closed with 1008", async () => {
  await using h = await startHarness();
  const call = await placeAndAnswer(h);
  const first = await TelnyxMediaClient.connect(call.streamUrl, { callControlId: call.callSid });
  const second = await TelnyxMediaClient.connect(call.streamUrl, { callControlId: call.callSid });

  const close = await closedBy(second);
  assert.equal(close.code, 1008);
  assert.match(close.reason, /already used/);

  first.start();
  first.stop();
  await first.closed;
  assert.equal(h.sessions.length, 1, "the first socket still became the call");
});

Deno.test("a Stream URL for call A used with the start of call B is closed with 1008", async () => {
  await using h = await startHarness();
  const a = await placeAndAnswer(h);
  const client = await TelnyxMediaClient.connect(a.streamUrl, { callControlId: "v3:call-b" });
  client.start();

  const close = await closedBy(client);
  assert.equal(close.code, 1008);
  assert.equal(h.sessions.length, 0);
  assert.equal(h.telnyx.hangupRequests().length, 0);
});

Deno.test("a second stream for a live call never replaces it in the registry", async () => {
  const secret = "registry-test-secret";
  await using h = await startHarness({ BODY_SIGNING_SECRET: secret });
  const victim = await startLiveCall(h);
  // A second genuine URL for the same call (as a re-fetched /answer mints a second later).
  const signer = await UrlSigner.create(secret, { lifetimes: { answer: 300, ws: 30 } });
  const streamUrl = await signer.signUrl(
    `${h.server.url.replace(/^http/, "ws")}/ws`,
    { purpose: "ws", body: "", call: victim.callSid },
    Date.now() + 1_000,
  );
  const duplicate = await TelnyxMediaClient.connect(streamUrl, { callControlId: victim.callSid });
  duplicate.start();

  const close = await closedBy(duplicate);
  assert.equal(close.code, 1008);
  assert.match(close.reason, /already has a live media stream/);
  assert.equal((await health(h)).active_calls, 1);
  assert.deepEqual(h.server.registry.sessions(), [victim.session]);
  assert.equal(h.telnyx.hangupRequests().length, 0);

  await endLiveCall(victim);
});

Deno.test("a socket that sends no start in time is counted, then closed with 1008", async () => {
  await using h = await startHarness({ MEDIA_START_TIMEOUT_MS: "150" });
  const call = await placeAndAnswer(h);
  const silent = await TelnyxMediaClient.connect(call.streamUrl);
  assert.equal((await health(h)).pending_media_sockets, 1);

  const close = await closedBy(silent);
  assert.equal(close.code, 1008);
  assert.match(close.reason, /no start frame within 150 ms/);
  // The slot is freed when the server sees the close complete, just after the client does.
  await waitFor(() => h.server.registry.pending === 0, "the pending slot to be freed");
  assert.equal((await health(h)).pending_media_sockets, 0);
  assert.equal(h.sessions.length, 0);
  assert.equal(h.telnyx.hangupRequests().length, 0);
});

Deno.test("a socket that started its call is not closed by the start timeout", async () => {
  await using h = await startHarness({ MEDIA_START_TIMEOUT_MS: "100" });
  const call = await startLiveCall(h);
  assert.equal((await health(h)).pending_media_sockets, 0);
  // Three times the timeout: a timer left running would have closed the socket by now.
  await delay(300);
  assert.equal(call.session.state, "active");
  await endLiveCall(call);
});

Deno.test("a started call whose socket goes silent is ended and hung up", async () => {
  await using h = await startHarness({ MEDIA_IDLE_TIMEOUT_MS: "150" });
  const call = await startLiveCall(h); // the client sends nothing after start
  await deadline(call.session.ended, 5_000, { what: "the silent call to end" });
  assert.equal(call.session.endReason, "socket_closed");
  await waitFor(() => h.telnyx.hangupRequests(call.callSid).length === 1, "the hang-up");
  assert.ok(h.logs.some((l) => l.includes("no frame from Telnyx for too long")));
  const close = await deadline(call.client.closed, 5_000, { what: "the socket to close" });
  assert.equal(close.code, 1011);
});

Deno.test("a call whose socket keeps sending is not ended by the silence bound", async () => {
  await using h = await startHarness({ MEDIA_IDLE_TIMEOUT_MS: "150" });
  const call = await startLiveCall(h);
  // Frames every 50 ms for three times the bound.
  for (let i = 0; i < 9; i++) {
    call.client.media(new Uint8Array(160).fill(0xff));
    await delay(50);
  }
  assert.equal(call.session.state, "active");
  await endLiveCall(call);
});

Deno.test("pending sockets are capped per client (429)", async () => {
  await using h = await startHarness({
    MAX_PENDING_MEDIA_SOCKETS: "3",
    MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT: "2",
  });
  const { sockets, unused } = await holdPendingSockets(h, 2);

  const error = await refusedUpgrade(unused.streamUrl, 429);
  assert.equal(error.code, "too_many_pending_sockets_from_client");
  assert.match(error.message, /MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT/);
  assert.equal(error.limit, 2);
  await Promise.all(sockets.map((c) => c.close()));
});

Deno.test("pending sockets are capped overall (503)", async () => {
  await using h = await startHarness({
    MAX_PENDING_MEDIA_SOCKETS: "2",
    MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT: "2",
  });
  const { sockets, unused } = await holdPendingSockets(h, 2);

  const error = await refusedUpgrade(unused.streamUrl, 503);
  assert.equal(error.code, "too_many_pending_sockets");
  assert.match(error.message, /MAX_PENDING_MEDIA_SOCKETS/);
  await Promise.all(sockets.map((c) => c.close()));
});

Deno.test("an upgrade refused by a cap does not use up its Stream URL", async () => {
  await using h = await startHarness({ MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT: "2" });
  const { sockets, unused } = await holdPendingSockets(h, 2);
  await refusedUpgrade(unused.streamUrl, 429);

  // Once a slot frees, the refused URL opens its call.
  await sockets[0].close();
  await waitFor(() => h.server.registry.pending === 1, "the closed socket's slot to be freed");
  const client = await TelnyxMediaClient.connect(unused.streamUrl, {
    callControlId: unused.callSid,
  });
  client.start();
  client.stop();
  await closedBy(client);
  assert.equal(h.sessions.length, 1);
  await sockets[1].close();
});

Deno.test("a refused socket whose peer ignores the close is capped until its close bound", async () => {
  await using h = await startHarness({
    MAX_PENDING_MEDIA_SOCKETS: "4",
    MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT: "1",
    MEDIA_CLOSE_TIMEOUT_MS: "300",
  });
  const { streamUrl, callSid } = await placeAndAnswer(h);
  const forged = new URL(streamUrl);
  forged.searchParams.set("call", "v3:someone-else");
  const held = await unresponsiveSocket(forged.href);
  try {
    await waitFor(() => h.server.registry.pending === 1, "the refused socket to be counted");
    const error = await refusedUpgrade(streamUrl, 429);
    assert.equal(error.code, "too_many_pending_sockets_from_client");
    // The peer never answers our close frame; after the bound its slot is free for real calls.
    await waitFor(() => h.server.registry.pending === 0, "the slot to be freed by the bound");
    assert.ok(h.logs.some((l) => l.includes("peer ignored our close frame")));
    const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
    client.start();
    await waitFor(() => h.sessions.length === 1, "the real call to start");
    client.stop();
    await closedBy(client);
  } finally {
    held.close();
  }
});
