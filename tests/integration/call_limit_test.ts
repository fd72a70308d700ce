/**
 * `MAX_ACTIVE_CALLS`: past the calls a machine carries every call's audio breaks up, so `/start`
 * refuses new calls once the server holds that many, and takes them again as calls end.
 */
import assert from "node:assert/strict";
import { endLiveCall, startLiveCall } from "../helpers/call_driver.ts";
import { startHarness } from "../helpers/harness.ts";

const NEW_CALL = { phone_number: "+15557654321" };

Deno.test("at its call limit the server refuses /start with 503 at_capacity naming the limit", async () => {
  await using h = await startHarness({ MAX_ACTIVE_CALLS: "1" });
  const call = await startLiveCall(h);
  const res = await h.start(NEW_CALL);
  const json = await res.json();
  assert.equal(res.status, 503);
  assert.equal(json.error.code, "at_capacity");
  assert.equal(json.error.active_calls, 1);
  assert.equal(json.error.limit, 1);
  assert.match(json.error.message, /MAX_ACTIVE_CALLS=1/);
  assert.equal(res.headers.get("retry-after"), "30");
  await endLiveCall(call);
});

Deno.test("a call refused at the limit is never sent to Telnyx", async () => {
  await using h = await startHarness({ MAX_ACTIVE_CALLS: "1" });
  const call = await startLiveCall(h);
  await (await h.start(NEW_CALL)).body?.cancel();
  assert.equal(h.telnyx.createRequests.length, 1);
  await endLiveCall(call);
});

Deno.test("a refusal at the limit is logged with the count and the limit", async () => {
  await using h = await startHarness({ MAX_ACTIVE_CALLS: "1" });
  const call = await startLiveCall(h);
  await (await h.start(NEW_CALL)).body?.cancel();
  const line = h.logs.map((l) => JSON.parse(l)).find((l) =>
    l.msg === "call refused: the server is at its call limit"
  );
  assert.equal(line?.level, "warn");
  assert.equal(line?.active_calls, 1);
  assert.equal(line?.limit, 1);
  await endLiveCall(call);
});

Deno.test("once a call ends, /start places calls again", async () => {
  await using h = await startHarness({ MAX_ACTIVE_CALLS: "1" });
  await endLiveCall(await startLiveCall(h));
  const res = await h.start(NEW_CALL);
  assert.equal(res.status, 200, await res.text());
});

Deno.test("below the limit /start places calls", async () => {
  await using h = await startHarness({ MAX_ACTIVE_CALLS: "2" });
  const call = await startLiveCall(h);
  const res = await h.start(NEW_CALL);
  assert.equal(res.status, 200, await res.text());
  await endLiveCall(call);
});
