import assert from "node:assert/strict";
import { cpuNumbers } from "../helpers/process_stats.ts";

Deno.test("a taskset CPU list gives its CPU numbers, ranges and single CPUs alike", () => {
  assert.deepEqual(cpuNumbers("0-3,6"), [0, 1, 2, 3, 6]);
  assert.deepEqual(cpuNumbers("1"), [1]);
});
