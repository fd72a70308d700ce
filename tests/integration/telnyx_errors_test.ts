/** What Telnyx says when it refuses a call reaches the client and the logs without the number. */
import assert from "node:assert/strict";
import { startHarness } from "../helpers/harness.ts";

Deno.test("a refusal quoting the dialled number is masked in the 502 and in the logs", async () => {
  await using h = await startHarness();
  h.telnyx.createBehaviours.push({
    kind: "error",
    status: 422,
    code: "10016",
    title: "Invalid destination",
    detail: "The destination +15551234567 is not a valid phone number.",
  });
  const res = await h.start({ phone_number: "+15551234567" });
  const json = await res.json();
  assert.equal(res.status, 502);
  assert.equal(json.error.code, "telnyx_error");
  assert.match(json.error.message, /The destination \+155…67 is not a valid phone number/);
  assert.ok(!JSON.stringify(json).includes("1234567"), JSON.stringify(json));
  const refusal = h.logs.find((l) => l.includes("telnyx refused the call"));
  assert.ok(refusal?.includes("+155…67"), refusal);
  assert.ok(h.logs.every((l) => !l.includes("+15551234567")));
});
