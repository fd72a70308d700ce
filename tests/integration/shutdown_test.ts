/**
 * SIGTERM on the real entry point (`main.ts` in a child process): new calls are refused, live
 * calls get the grace period, then are hung up, and the process exits 0, even when Telnyx never
 * answers the hang-up.
 */
import assert from "node:assert/strict";
import { deadline, delay } from "../../src/async/deadline.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { placeAndAnswer } from "../helpers/call_driver.ts";
import { spawnServerWithFakes } from "../helpers/child_server.ts";
import { waitFor } from "../helpers/harness.ts";

/**
 * Hang guard for the child's exit: far above grace + the drain's hang-up bound (5 s), far
 * below what Telnyx's own timeout would hold it; not a timing assertion.
 */
const EXIT_WITHIN_MS = 30_000;

/** `main.ts` with the real voice agent against the vendor fakes, and one live call on it. */
async function childWithLiveCall(env: Record<string, string>) {
  const fakes = await spawnServerWithFakes({
    FIRST_SPEAKER: "bot",
    IDLE_TIMEOUT_SECONDS: "60",
    ...env,
  });
  const { server: child, telnyx } = fakes;
  const call = await placeAndAnswer(fakes, { name: "Zoë" });
  const client = await TelnyxMediaClient.connect(call.streamUrl, { callControlId: call.callSid });
  client.start();
  await waitFor(() => child.lines.some((l) => l.msg === "call session started"), "session start");
  return {
    child,
    telnyx,
    h: fakes,
    call,
    client,
    /** Resolves with the child's exit status; fails the test if it does not exit. */
    exited: async () => {
      try {
        return await deadline(child.process.status, EXIT_WITHIN_MS, { what: "the child's exit" });
      } catch (error) {
        child.process.kill("SIGKILL");
        throw error;
      }
    },
    async [Symbol.asyncDispose]() {
      await child[Symbol.asyncDispose]();
      await client.close();
      await fakes[Symbol.asyncDispose]();
    },
  };
}

Deno.test("SIGTERM drains live calls, hangs them up and exits 0", async (t) => {
  await using run = await childWithLiveCall({ SHUTDOWN_GRACE_SECONDS: "1" });
  const { child, h, call, client, telnyx } = run;

  child.process.kill("SIGTERM");

  await t.step("while draining, /start answers 503 and /health says draining", async () => {
    // The signal is handled asynchronously; poll (bounded) until the server has noticed it.
    let health: { status?: string; active_calls?: number } = {};
    for (let i = 0; i < 200 && health.status !== "draining"; i++) {
      health = await (await fetch(`${child.url}/health`)).json();
      if (health.status !== "draining") await delay(10);
    }
    assert.equal(health.status, "draining");
    assert.equal(health.active_calls, 1);
    const res = await h.start({ phone_number: "+15551234567" });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, "shutting_down");
  });

  await t.step("after the grace period the call is hung up and the process exits 0", async () => {
    const status = await run.exited();
    await child.done;
    assert.equal(status.code, 0);
    assert.equal(telnyx.hangupRequests(call.callSid).length, 1);
    assert.equal((await client.closed).code, 1001);
    const shutDown = child.lines.find((l) => l.msg === "shut down");
    assert.equal(shutDown?.hung_up_calls, 1, JSON.stringify(child.lines));
    assert.equal(shutDown?.unconfirmed_hangups, 0);
  });
});

Deno.test("SIGTERM exits after grace and the drain's bound when Telnyx never answers the hang-up", async () => {
  // Telnyx's own timeout alone would hold the hang-up (and the exit) for minutes.
  await using run = await childWithLiveCall({
    SHUTDOWN_GRACE_SECONDS: "0",
    TELNYX_TIMEOUT_MS: "120000",
  });
  const { child, call, telnyx } = run;
  telnyx.hangupBehaviour = "hang";

  child.process.kill("SIGTERM");
  const status = await run.exited();
  await child.done;

  assert.equal(status.code, 0);
  const attempts = telnyx.hangupRequests(call.callSid).length;
  assert.ok(attempts >= 1 && attempts <= 2, `${attempts} hang-up attempts (one retry at most)`);
  const shutDown = child.lines.find((l) => l.msg === "shut down");
  assert.equal(shutDown?.hung_up_calls, 1, JSON.stringify(child.lines));
  // The hang-up gave up at its own bound (and the drain has one too; the unit test of
  // CallRegistry.drain pins it with an injected bound), not when Telnyx answered.
  assert.equal(shutDown?.unconfirmed_hangups, 1);
});
