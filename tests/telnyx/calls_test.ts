/**
 * TelnyxCalls against the fake Telnyx REST API: hang-ups are bounded whatever Telnyx does, and
 * Telnyx's error text never carries a whole phone number.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_HANGUP_ATTEMPTS,
  DEFAULT_HANGUP_TIMEOUT_MS,
  TelnyxCalls,
  type TelnyxCallsOptions,
  TelnyxRequestError,
} from "../../src/telnyx/calls.ts";
import { FakeTelnyxApi } from "../fakes/telnyx_api.ts";

const API_KEY = "KEYcalls_test_0123456789";
const ACCOUNT = "acct-calls-test";
const CALL = "v3:call-under-test";
/** Per-attempt timeout in these tests: small, so a Telnyx that never answers costs little. */
const TEST_HANGUP_TIMEOUT_MS = 150;

function fakeTelnyx(): FakeTelnyxApi {
  return FakeTelnyxApi.start({ apiKey: API_KEY, accountSid: ACCOUNT });
}

function callsOn(
  fake: Pick<FakeTelnyxApi, "baseURL">,
  options: Partial<TelnyxCallsOptions> = {},
): TelnyxCalls {
  return new TelnyxCalls({
    apiKey: API_KEY,
    accountSid: ACCOUNT,
    applicationSid: "app-calls-test",
    fromNumber: "+15550001111",
    baseURL: fake.baseURL,
    timeoutMs: 5_000,
    hangupTimeoutMs: TEST_HANGUP_TIMEOUT_MS,
    ...options,
  });
}

/** Runs `hangup` and returns how it ended and how long it took. */
async function timedHangup(calls: TelnyxCalls) {
  const startedAt = performance.now();
  try {
    const outcome = await calls.hangup(CALL);
    return { outcome, error: undefined, ms: performance.now() - startedAt };
  } catch (error) {
    return { outcome: undefined, error, ms: performance.now() - startedAt };
  }
}

const SERVICE_UNAVAILABLE = {
  kind: "error",
  status: 503,
  code: "90000",
  title: "Service unavailable",
} as const;

Deno.test("a hang-up against a Telnyx that never answers gives up within its bound", async () => {
  await using fake = fakeTelnyx();
  fake.hangupBehaviours.push({ kind: "hang" }, { kind: "hang" }, { kind: "hang" });
  const calls = callsOn(fake);
  const { error, ms } = await timedHangup(calls);
  assert.ok(error instanceof TelnyxRequestError, String(error));
  assert.equal(error.kind, "timeout");
  assert.equal(fake.hangupRequests(CALL).length, DEFAULT_HANGUP_ATTEMPTS);
  assert.ok(ms >= DEFAULT_HANGUP_ATTEMPTS * TEST_HANGUP_TIMEOUT_MS, `${ms} ms`);
  // Slack for a loaded machine; without a bound this would wait for the fake to close.
  assert.ok(ms < calls.hangupBoundMs + 1_000, `${ms} ms, bound ${calls.hangupBoundMs} ms`);
});

Deno.test("by default one hang-up is bounded by 5 s", () => {
  // Nothing is sent: the bound follows from the options alone.
  const fake = { baseURL: "http://127.0.0.1:9/v2" };
  const calls = callsOn(fake, { hangupTimeoutMs: undefined, timeoutMs: 10_000 });
  assert.ok(calls.hangupBoundMs <= 5_000, `${calls.hangupBoundMs} ms`);
  assert.ok(calls.hangupBoundMs >= DEFAULT_HANGUP_ATTEMPTS * DEFAULT_HANGUP_TIMEOUT_MS);
  const quicker = callsOn(fake, { hangupTimeoutMs: undefined, timeoutMs: 500 });
  assert.equal(quicker.hangupBoundMs < calls.hangupBoundMs, true, "TELNYX_TIMEOUT_MS caps it");
});

Deno.test("a hang-up that timed out once is retried and succeeds", async () => {
  await using fake = fakeTelnyx();
  fake.hangupBehaviours.push({ kind: "hang" });
  const { outcome } = await timedHangup(callsOn(fake));
  assert.equal(outcome, "hung_up");
  assert.equal(fake.hangupRequests(CALL).length, 2);
});

Deno.test("a hang-up that failed with a 5xx is retried once", async () => {
  await using fake = fakeTelnyx();
  fake.hangupBehaviours.push(SERVICE_UNAVAILABLE);
  const { outcome } = await timedHangup(callsOn(fake));
  assert.equal(outcome, "hung_up");
  assert.equal(fake.hangupRequests(CALL).length, 2);
});

Deno.test("a hang-up that keeps failing makes no more than its attempts", async () => {
  await using fake = fakeTelnyx();
  fake.hangupBehaviours.push(SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE);
  const { error } = await timedHangup(callsOn(fake, { hangupAttempts: 3 }));
  assert.ok(error instanceof TelnyxRequestError);
  assert.equal(error.status, 503);
  assert.equal(fake.hangupRequests(CALL).length, 3);
});

Deno.test("a hang-up Telnyx refuses (4xx) is not retried", async () => {
  await using fake = fakeTelnyx();
  fake.hangupBehaviours.push({ kind: "error", status: 404, code: "10005", title: "Not found" });
  const { error } = await timedHangup(callsOn(fake));
  assert.ok(error instanceof TelnyxRequestError);
  assert.equal(error.kind, "refused");
  assert.equal(error.status, 404);
  assert.equal(fake.hangupRequests(CALL).length, 1);
});

Deno.test("a hang-up of a call that already ended resolves already_ended", async () => {
  await using fake = fakeTelnyx();
  fake.endedCalls.add(CALL);
  const { outcome } = await timedHangup(callsOn(fake));
  assert.equal(outcome, "already_ended");
  assert.equal(fake.hangupRequests(CALL).length, 1);
});

Deno.test("Telnyx's error text quoting the dialled number is masked", async () => {
  await using fake = fakeTelnyx();
  fake.createBehaviours.push({
    kind: "error",
    status: 422,
    code: "10016",
    title: "Invalid destination",
    detail: "The number +15551234567 cannot be dialled from +15550001111.",
  });
  const error = await callsOn(fake).placeCall("+15551234567", "https://example.test/answer")
    .then(() => undefined, (error) => error);
  assert.ok(error instanceof TelnyxRequestError, String(error));
  assert.equal(
    error.message,
    "Telnyx 422: [10016] Invalid destination The number +155…67 cannot be dialled from +155…11.",
  );
});

Deno.test("a call placed with callbacks asks for progress and async answering-machine detection", async () => {
  await using fake = fakeTelnyx();
  await callsOn(fake).placeCall("+15551234567", "https://example.test/answer", {
    status: "https://example.test/callbacks/status?exp=1&sig=s",
    amd: "https://example.test/callbacks/amd?exp=1&sig=a",
  });
  const fields = fake.createRequests[0].body as Record<string, unknown>;
  assert.equal(fields.StatusCallback, "https://example.test/callbacks/status?exp=1&sig=s");
  assert.equal(fields.StatusCallbackMethod, "POST");
  assert.equal(fields.StatusCallbackEvent, "initiated ringing answered completed");
  assert.equal(fields.MachineDetection, "DetectMessageEnd");
  assert.equal(fields.AsyncAmd, true);
  assert.equal(fields.AsyncAmdStatusCallback, "https://example.test/callbacks/amd?exp=1&sig=a");
  assert.equal(fields.AsyncAmdStatusCallbackMethod, "POST");
});

Deno.test("a call placed without an AMD callback does not ask for detection", async () => {
  await using fake = fakeTelnyx();
  await callsOn(fake).placeCall("+15551234567", "https://example.test/answer", {
    status: "https://example.test/callbacks/status?exp=1&sig=s",
  });
  const fields = fake.createRequests[0].body as Record<string, unknown>;
  for (const name of ["MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback"]) {
    assert.equal(fields[name], undefined, name);
  }
});
