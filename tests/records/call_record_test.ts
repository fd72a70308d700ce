import assert from "node:assert/strict";
import { applyEvent, copyStoredCall, newStoredCall } from "../../src/records/call_record.ts";
import { placed } from "../helpers/records.ts";

Deno.test("applying events to a copy of a header leaves the original as it was", () => {
  const original = newStoredCall("call-1", 1000);
  applyEvent(original, placed(1000));
  const snapshot = structuredClone(original);
  const copy = copyStoredCall(original);
  applyEvent(copy, { type: "streaming", at: 2000 });
  applyEvent(copy, { type: "dtmf", at: 2500, digits: "12" });
  applyEvent(copy, { type: "tool_call", at: 2600, name: "lookup", arguments: "{}" });
  applyEvent(copy, { type: "error", at: 2700, source: "tts", message: "boom" });
  applyEvent(copy, { type: "turn", at: 2800, role: "user", text: "hi", offsetMs: 800 });
  applyEvent(copy, {
    type: "usage",
    at: 2900,
    llmPromptTokens: 1,
    llmCompletionTokens: 1,
    ttsCharacters: 1,
    sttSeconds: 1,
  });
  applyEvent(copy, { type: "ended", at: 3000, reason: "bot_ended" });
  assert.deepEqual(original, snapshot);
  assert.equal(copy.status, "ended");
  assert.equal(copy.dtmf.length, 1);
});
