/** SIGINT and SIGTERM: the server drains once and exits once, however many signals come. */
import assert from "node:assert/strict";
import { exitAfterStopping } from "../../src/http/graceful_exit.ts";

Deno.test("a second signal while draining neither drains again nor exits twice", async () => {
  const drained = Promise.withResolvers<void>();
  let stops = 0;
  const exits: number[] = [];
  const onSignal = exitAfterStopping(
    () => {
      stops++;
      return drained.promise;
    },
    (error) => assert.fail(`the drain did not fail: ${error}`),
    (code) => exits.push(code),
  );

  onSignal();
  onSignal();
  assert.equal(stops, 1);
  assert.deepEqual(exits, [], "no exit before the drain is over");
  drained.resolve();
  await drained.promise;
  onSignal();
  assert.deepEqual(exits, [0]);
  assert.equal(stops, 1);
});

Deno.test("a drain that fails is reported and still ends the process, with 1", async () => {
  const failure = new Error("drain failed");
  const failed = Promise.withResolvers<void>();
  const reported: unknown[] = [];
  const exits: number[] = [];
  const onSignal = exitAfterStopping(
    () => failed.promise,
    (error) => reported.push(error),
    (code) => exits.push(code),
  );

  onSignal();
  failed.reject(failure);
  await failed.promise.catch(() => {});
  assert.deepEqual(reported, [failure]);
  assert.deepEqual(exits, [1]);
});
