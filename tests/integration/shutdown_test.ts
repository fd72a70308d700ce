/**
 * SIGTERM on the real entry point (`main.ts` in a child process): new calls are refused, live
 * calls get the grace period, then are hung up, and the process exits 0.
 */
import assert from "node:assert/strict";
import { CartesiaFake } from "../fakes/cartesia.ts";
import { startFakeDeepgram } from "../fakes/deepgram.ts";
import { startFakeOpenAi } from "../fakes/openai.ts";
import { FakeTelnyxApi } from "../fakes/telnyx_api.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { placeAndAnswer } from "../helpers/call_driver.ts";
import { TEST_ACCOUNT, TEST_API_KEY, waitFor } from "../helpers/harness.ts";
import type { Harness } from "../helpers/harness.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CA = new URL("../fakes/tls/ca.pem", import.meta.url).pathname;

Deno.test("SIGTERM drains live calls, hangs them up and exits 0", async (t) => {
  await using telnyx = FakeTelnyxApi.start({ apiKey: TEST_API_KEY, accountSid: TEST_ACCOUNT });
  // The child runs the real voice agent against the same vendor fakes as the in-process tests.
  await using openai = startFakeOpenAi({ apiKey: "sk-test-openai" });
  await using deepgram = startFakeDeepgram({ apiKey: "dg-test" });
  await using cartesia = await CartesiaFake.start({ apiKey: "sk_car_test" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "--cert", CA, MAIN],
    env: {
      OPENAI_API_KEY: "sk-test-openai",
      OPENAI_BASE_URL: openai.baseURL,
      DEEPGRAM_API_KEY: "dg-test",
      DEEPGRAM_BASE_URL: deepgram.url,
      CARTESIA_API_KEY: "sk_car_test",
      CARTESIA_BASE_URL: cartesia.baseURL,
      FIRST_SPEAKER: "bot",
      IDLE_TIMEOUT_SECONDS: "60",
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_FORMAT: "json",
      TELNYX_API_KEY: TEST_API_KEY,
      TELNYX_ACCOUNT_SID: TEST_ACCOUNT,
      TELNYX_APPLICATION_SID: "app",
      TELNYX_PHONE_NUMBER: "+15550001111",
      TELNYX_BASE_URL: telnyx.baseURL,
      SHUTDOWN_GRACE_SECONDS: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const output: string[] = [];
  const listening = Promise.withResolvers<string>();
  const readLines = (async () => {
    const lines = child.stdout.pipeThrough(new TextDecoderStream());
    let buffer = "";
    for await (const chunk of lines) {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        output.push(line);
        const parsed = JSON.parse(line);
        if (parsed.msg === "listening") listening.resolve(parsed.url);
      }
    }
  })();
  const stderr = new Response(child.stderr).text();

  const url = await listening.promise;
  // The same driver the in-process tests use, aimed at the child process.
  const h = {
    telnyx,
    start: (payload: unknown) =>
      fetch(`${url}/start`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(payload),
      }),
  } as unknown as Harness;
  const call = await placeAndAnswer(h, { name: "Zoë" });
  const client = await TelnyxMediaClient.connect(call.streamUrl, { callControlId: call.callSid });
  client.start();
  await waitFor(
    () => output.some((l) => l.includes("call session started")),
    "session start",
  );

  child.kill("SIGTERM");

  await t.step("while draining, /start answers 503 and /health says draining", async () => {
    // The signal is handled asynchronously; poll (bounded) until the server has noticed it.
    let health: { status?: string; active_calls?: number } = {};
    for (let i = 0; i < 200 && health.status !== "draining"; i++) {
      health = await (await fetch(`${url}/health`)).json();
      if (health.status !== "draining") await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(health.status, "draining");
    assert.equal(health.active_calls, 1);
    const res = await h.start({ phone_number: "+15551234567" });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, "shutting_down");
  });

  await t.step("after the grace period the call is hung up and the process exits 0", async () => {
    const status = await child.status;
    await readLines;
    await stderr;
    assert.equal(status.code, 0);
    assert.equal(telnyx.hangupRequests(call.callSid).length, 1);
    assert.equal((await client.closed).code, 1001);
    assert.ok(output.some((l) => l.includes('"hung_up_calls":1')), output.join("\n"));
  });
});
