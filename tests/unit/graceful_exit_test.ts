/** SIGINT and SIGTERM: the server drains once and exits 0 once, however many signals come. */
import assert from "node:assert/strict";
import { exitAfterStopping } from "../../src/http/graceful_exit.ts";

Deno.test("a second signal while draining neither drains again nor exits twice", async () => {
  const drained = Promise.withResolvers<void>();
  let stops = 0;
  const exits: number[] = [];
  const onSignal = exitAfterStopping(() => {
    stops++;
    return drained.promise;
  }, (code) => exits.push(code));

  onSignal();
  onSignal();
  assert.equal(stops, 1);
  assert.deepEqual(exits, [], "no exit before the drain is over");
  drained.resolve();
  await drained.promise;
  await Promise.resolve();
  onSignal();
  assert.deepEqual(exits, [0]);
  assert.equal(stops, 1);
});
