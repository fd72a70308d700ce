import assert from "node:assert/strict";
import {
  DTMF_MAX_DIGITS,
  DTMF_PAUSE_MS,
  DtmfAggregator,
  type DtmfInput,
} from "../../src/session/dtmf_aggregator.ts";
import { ManualClock } from "../helpers/manual_clock.ts";

function setup() {
  const clock = new ManualClock();
  const inputs: DtmfInput[] = [];
  const aggregator = new DtmfAggregator({
    clock,
    onInput: (input) => inputs.push(input),
    onError: (error) => assert.fail(`unexpected error: ${error}`),
  });
  return { clock, inputs, aggregator };
}

Deno.test("dtmf: a pause ends the input", async () => {
  const { clock, inputs, aggregator } = setup();
  aggregator.push("1");
  await clock.advance(DTMF_PAUSE_MS - 1);
  aggregator.push("2");
  await clock.advance(DTMF_PAUSE_MS - 1);
  assert.deepEqual(inputs, [], "each press restarts the pause");
  await clock.advance(1);
  assert.deepEqual(inputs, [{ digits: "12", dropped: 0 }]);
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("dtmf: # ends the input at once and is part of it", () => {
  const { clock, inputs, aggregator } = setup();
  for (const key of "42#") aggregator.push(key);
  assert.deepEqual(inputs, [{ digits: "42#", dropped: 0 }]);
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("dtmf: an input keeps at most maxDigits keys and counts the rest", async () => {
  const { clock, inputs, aggregator } = setup();
  for (let i = 0; i < 150; i++) aggregator.push(String(i % 10));
  assert.equal(aggregator.pending.length, DTMF_MAX_DIGITS);
  await clock.advance(DTMF_PAUSE_MS);
  assert.equal(inputs.length, 1);
  assert.equal(inputs[0].digits.length, DTMF_MAX_DIGITS);
  assert.equal(inputs[0].dropped, 150 - DTMF_MAX_DIGITS);
});

Deno.test("dtmf: a flood of # makes at most one input per pause", async () => {
  const { clock, inputs, aggregator } = setup();
  for (let second = 0; second < 10; second++) {
    for (let i = 0; i < 50; i++) {
      aggregator.push(i % 2 ? "#" : "1");
      await clock.advance(20);
    }
  }
  // 10 s of presses: the first # ends an input, then one per pause at most.
  assert.ok(inputs.length <= 1 + 10_000 / DTMF_PAUSE_MS, `${inputs.length} inputs`);
  aggregator.close();
});

Deno.test("dtmf: anything but a keypad key is ignored", () => {
  const { aggregator } = setup();
  assert.equal(aggregator.push("E"), false);
  assert.equal(aggregator.push("12"), false);
  assert.equal(aggregator.push("x".repeat(65536)), false);
  assert.equal(aggregator.pending, "");
});

Deno.test("dtmf: close drops the input in progress and its timer", async () => {
  const { clock, inputs, aggregator } = setup();
  aggregator.push("7");
  aggregator.close();
  assert.equal(clock.pendingTimers, 0);
  await clock.advance(DTMF_PAUSE_MS);
  assert.equal(aggregator.push("8"), false);
  assert.deepEqual(inputs, []);
});
