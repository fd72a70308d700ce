import assert from "node:assert/strict";
import { CallMetrics, MAX_KEPT_TURNS, percentile } from "../../src/session/call_metrics.ts";

Deno.test("percentile is nearest-rank", () => {
  assert.equal(percentile([], 50), undefined);
  assert.equal(percentile([5], 95), 5);
  const values = Array.from({ length: 20 }, (_, i) => i + 1);
  assert.equal(percentile(values, 50), 10);
  assert.equal(percentile(values, 95), 19);
  assert.equal(percentile(values, 100), 20);
});

Deno.test("CallMetrics rounds turns and summarises a call", () => {
  const m = new CallMetrics();
  m.record({ turn: 1, trigger: "greeting", voiceToVoiceMs: 12.345, overheadMs: 0.44 });
  m.record({
    turn: 2,
    trigger: "callee",
    voiceToVoiceMs: 700.06,
    overheadMs: 1.26,
    llmTtftMs: 300,
  });
  m.usage.llmPromptTokens = 120;
  m.bargeIns = 1;
  assert.equal(m.turns[0].voiceToVoiceMs, 12.35);
  const summary = m.summary();
  assert.equal(summary.turns, 2);
  assert.equal(summary.barge_ins, 1);
  assert.equal(summary.voice_to_voice_ms_max, 700.06);
  assert.equal(summary.overhead_ms_max, 1.26);
  assert.equal(summary.llm_prompt_tokens, 120);
});

Deno.test("CallMetrics keeps the most recent turns and counts them all", () => {
  const metrics = new CallMetrics();
  for (let i = 1; i <= MAX_KEPT_TURNS + 50; i++) metrics.record({ turn: i, trigger: "callee" });
  assert.equal(metrics.turns.length, MAX_KEPT_TURNS);
  assert.equal(metrics.turns[0].turn, 51);
  assert.equal(metrics.summary().turns, MAX_KEPT_TURNS + 50);
});
