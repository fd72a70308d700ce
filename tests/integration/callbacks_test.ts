/**
 * Telnyx's call-progress and answering-machine callbacks, end to end: `/start` hands Telnyx
 * signed callback URLs, the fake Telnyx posts form-encoded, Ed25519-signed callbacks to them,
 * and the server turns genuine ones into call events and refuses forged ones.
 */
import assert from "node:assert/strict";
import { ANSWERED_BY } from "../../src/records/call_events.ts";
import { TelnyxWebhookSigner } from "../fakes/telnyx_api.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { placeAndAnswer, startLiveCall } from "../helpers/call_driver.ts";
import { type Harness, startHarness, waitFor } from "../helpers/harness.ts";

/** A harness whose Telnyx signs its callbacks, with the server checking that signature. */
async function signedHarness(env: Record<string, string> = {}): Promise<Harness> {
  const signer = await TelnyxWebhookSigner.create();
  const h = await startHarness({ TELNYX_PUBLIC_KEY: signer.publicKeyBase64, ...env });
  h.telnyx.callbackSigner = signer;
  return h;
}

/** Places a call through `/start`; returns its id. */
async function placeCall(h: Harness): Promise<string> {
  const res = await h.start({ phone_number: "+15551234567", body: { name: "Zoë" } });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).call_control_id;
}

function statuses(h: Harness, callId: string): [string, number][] {
  return h.events.of(callId, "progress").map((e) => [e.status, e.sequence]);
}

Deno.test("/start hands Telnyx a status callback URL signed for that purpose", async () => {
  await using h = await startHarness();
  const callId = await placeCall(h);
  const url = new URL(h.telnyx.callbackUrls(callId).status!);
  assert.equal(url.pathname, "/callbacks/status");
  assert.ok(url.searchParams.get("exp") && url.searchParams.get("sig"));
  assert.equal(h.telnyx.callbackUrls(callId).amd, undefined, "AMD is off by default");
});

Deno.test("with AMD=on, /start asks for async detection reported to a signed AMD callback", async () => {
  await using h = await startHarness({ AMD: "on" });
  const callId = await placeCall(h);
  const fields = h.telnyx.createRequests[0].body as Record<string, unknown>;
  assert.equal(fields.MachineDetection, "DetectMessageEnd");
  assert.equal(fields.AsyncAmd, true);
  assert.equal(fields.AsyncAmdStatusCallbackMethod, "POST");
  assert.equal(new URL(h.telnyx.callbackUrls(callId).amd!).pathname, "/callbacks/amd");
});

Deno.test("progress callbacks become progress events carrying their sequence", async () => {
  await using h = await signedHarness();
  const callId = await placeCall(h);
  for (const status of ["initiated", "ringing", "in-progress"]) {
    const res = await h.telnyx.sendStatus(callId, status);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
  const completed = await h.telnyx.sendStatus(callId, "completed", {
    durationSeconds: 42,
    hangupCause: "normal_clearing",
    hangupSource: "callee",
  });
  assert.equal(completed.status, 200);
  assert.deepEqual(statuses(h, callId), [
    ["initiated", 1],
    ["ringing", 2],
    ["in-progress", 3],
    ["completed", 4],
  ]);
  const last = h.events.of(callId, "progress").at(-1)!;
  assert.equal(last.durationSeconds, 42);
  assert.equal(last.hangupCause, "normal_clearing");
  assert.equal(last.hangupSource, "callee");
  assert.equal(h.events.of(callId, "ended").length, 0, "an answered call ends through its session");
});

Deno.test("repeated and out-of-order callbacks are all acknowledged and passed on with their sequence", async () => {
  await using h = await signedHarness();
  const callId = await placeCall(h);
  const sent: [string, number][] = [["ringing", 2], ["initiated", 1], ["ringing", 2], [
    "in-progress",
    3,
  ], [
    "in-progress",
    3,
  ]];
  for (const [status, sequence] of sent) {
    const res = await h.telnyx.sendStatus(callId, status, { sequence });
    assert.equal(res.status, 200, "Telnyx retries anything but 200");
  }
  assert.deepEqual(statuses(h, callId), sent);
});

for (
  const [status, reason] of [
    ["no-answer", "no_answer"],
    ["busy", "busy"],
    ["failed", "failed"],
    ["canceled", "canceled"],
  ] as const
) {
  Deno.test(`a ${status} call ends with reason ${reason} and no media socket`, async () => {
    await using h = await signedHarness();
    const callId = await placeCall(h);
    await h.telnyx.sendStatus(callId, "initiated");
    await h.telnyx.sendStatus(callId, "ringing");
    const res = await h.telnyx.sendStatus(callId, status, { durationSeconds: 0 });
    assert.equal(res.status, 200);
    assert.deepEqual(h.events.of(callId, "ended").map((e) => e.reason), [reason]);
    assert.equal(h.events.of(callId, "progress").at(-1)!.status, status);
    assert.equal(h.sessions.length, 0);
  });
}

Deno.test("an unknown CallStatus is acknowledged and recorded as nothing", async () => {
  await using h = await signedHarness();
  const callId = await placeCall(h);
  const res = await h.telnyx.sendStatus(callId, "queued");
  assert.equal(res.status, 200);
  assert.deepEqual(fromCallbacks(h), []);
  assert.ok(h.logs.some((l) => l.includes("unknown call status")));
});

Deno.test("an AMD callback is recorded with every documented spelling, unknown ones as unknown", async () => {
  await using h = await signedHarness({ AMD: "on" });
  const callId = await placeCall(h);
  const sent = [...ANSWERED_BY, "robot"];
  for (const answeredBy of sent) {
    const res = await h.telnyx.sendAmd(callId, answeredBy);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
  assert.deepEqual(
    h.events.of(callId, "answered_by").map((e) => e.answeredBy),
    [...sent.slice(0, -1), "unknown"],
  );
  assert.ok(h.logs.some((l) => l.includes("unknown AnsweredBy") && l.includes("robot")));
});

Deno.test("an AMD result reaches the live call in this process through its session", async () => {
  await using h = await startHarness({ AMD: "on" });
  const call = await startLiveCall(h, { name: "Zoë" });
  const delivered: string[] = [];
  call.session.attach({
    onAudio() {},
    onDtmf() {},
    onMark() {},
    onAnsweredBy: (answeredBy) => delivered.push(answeredBy),
    close: () => Promise.resolve(),
  });
  assert.equal((await h.telnyx.sendAmd(call.callSid, "machine_start")).status, 200);
  await waitFor(() => delivered.length === 1, "the AMD result at the agent");
  assert.deepEqual(delivered, ["machine_start"]);
  call.client.stop();
  await call.session.ended;
});

/** Each way a forged callback can look; all are refused and record nothing. */
const FORGERIES: {
  name: string;
  send: (h: Harness, callId: string) => Promise<{ status: number; body: unknown }>;
}[] = [
  {
    name: "an edited URL signature",
    send: (h, callId) => {
      const url = new URL(h.telnyx.callbackUrls(callId).status!);
      url.searchParams.set("sig", "A".repeat(43));
      return h.telnyx.sendStatus(callId, "no-answer", { url: url.href });
    },
  },
  {
    name: "no URL signature",
    send: (h, callId) => {
      const url = new URL(h.telnyx.callbackUrls(callId).status!);
      url.search = "";
      return h.telnyx.sendStatus(callId, "no-answer", { url: url.href });
    },
  },
  {
    name: "an /answer URL's signature",
    send: (h, callId) => {
      const answer = new URL((h.telnyx.createRequests[0].body as { Url: string }).Url);
      const url = new URL(h.telnyx.callbackUrls(callId).status!);
      url.search = answer.search;
      return h.telnyx.sendStatus(callId, "no-answer", { url: url.href });
    },
  },
  {
    name: "the status URL's signature on the AMD route",
    send: (h, callId) => {
      const url = new URL(h.telnyx.callbackUrls(callId).status!);
      url.pathname = "/callbacks/amd";
      return h.telnyx.sendAmd(callId, "fax", { url: url.href });
    },
  },
  {
    name: "an Ed25519 signature by another key",
    send: async (h, callId) => {
      h.telnyx.callbackSigner = await TelnyxWebhookSigner.create();
      return h.telnyx.sendStatus(callId, "no-answer");
    },
  },
  {
    name: "no Ed25519 signature",
    send: (h, callId) => {
      h.telnyx.callbackSigner = undefined;
      return h.telnyx.sendStatus(callId, "no-answer");
    },
  },
];

for (const forgery of FORGERIES) {
  Deno.test(`a callback with ${forgery.name} is refused with 403 and changes nothing`, async () => {
    await using h = await signedHarness({ AMD: "on" });
    const callId = await placeCall(h);
    const res = await forgery.send(h, callId);
    assert.equal(res.status, 403, JSON.stringify(res.body));
    const error = (res.body as { error: { code: string; message: string } }).error;
    assert.match(error.code, /^invalid_(url|webhook)_signature$/);
    assert.deepEqual(fromCallbacks(h), []);
  });
}

Deno.test("without TELNYX_PUBLIC_KEY the URL signature alone admits a callback", async () => {
  await using h = await startHarness();
  const callId = await placeCall(h);
  assert.equal((await h.telnyx.sendStatus(callId, "busy")).status, 200);
  assert.deepEqual(h.events.of(callId, "ended").map((e) => e.reason), ["busy"]);
});

Deno.test("a verified callback without a CallSid is a 400 naming the field", async () => {
  await using h = await startHarness();
  const callId = await placeCall(h);
  const res = await fetch(h.telnyx.callbackUrls(callId).status!, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "CallStatus=busy&SequenceNumber=3",
  });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /CallSid/);
  assert.deepEqual(fromCallbacks(h), []);
});

Deno.test("callback routes answer GET with 405", async () => {
  await using h = await startHarness();
  for (const path of ["/callbacks/status", "/callbacks/amd"]) {
    const res = await fetch(`${h.server.url}${path}`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "POST");
    await res.body?.cancel();
  }
});

/** Events other than the `placed` one `/start` records: what the callbacks made. */
function fromCallbacks(h: Harness) {
  return h.events.recorded.filter((r) => r.event.type !== "placed");
}

Deno.test("an AMD result that arrives before the stream reaches the call once it starts", async () => {
  await using h = await startHarness({ AMD: "on" });
  const { callSid, streamUrl } = await placeAndAnswer(h, { name: "Zoë" });
  assert.equal((await h.telnyx.sendAmd(callSid, "machine_start")).status, 200);

  const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
  client.start();
  await waitFor(() => h.sessions.length === 1, "the session");
  const delivered: string[] = [];
  // The agent attaches after the result was handed to the session, as a real one may.
  h.sessions[0].attach({
    onAudio() {},
    onDtmf() {},
    onMark() {},
    onAnsweredBy: (answeredBy) => delivered.push(answeredBy),
    close: () => Promise.resolve(),
  });
  await waitFor(() => delivered.length === 1, "the early AMD result at the agent");
  assert.deepEqual(delivered, ["machine_start"]);
  client.stop();
  await h.sessions[0].ended;
});
