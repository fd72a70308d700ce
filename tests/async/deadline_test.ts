import assert from "node:assert/strict";
import {
  abortable,
  deadline,
  DeadlineError,
  delay,
  IdleTimeout,
  settledWithin,
} from "../../src/async/deadline.ts";
import { waitFor } from "../helpers/wait_for.ts";

Deno.test("deadline resolves with the promise's value when it settles in time", async () => {
  assert.equal(await deadline(Promise.resolve(7), 1000), 7);
});

Deno.test("deadline rejects with DeadlineError naming the wait when time runs out", async () => {
  const never = new Promise<void>(() => {});
  await assert.rejects(deadline(never, 5, { what: "mark echo" }), (error) => {
    assert.ok(error instanceof DeadlineError);
    assert.match(error.message, /mark echo did not happen within 5 ms/);
    return true;
  });
});

Deno.test("deadline rejects with the signal's reason when aborted, and clears its timer", async () => {
  const controller = new AbortController();
  const waiting = deadline(new Promise<void>(() => {}), 60_000, { signal: controller.signal });
  controller.abort(new Error("hung up"));
  await assert.rejects(waiting, /hung up/);
});

Deno.test("deadline on an already aborted signal rejects at once", async () => {
  await assert.rejects(deadline(Promise.resolve(1), 1000, { signal: AbortSignal.abort("x") }));
});

Deno.test("settledWithin tells in time from too late, and never rejects", async () => {
  assert.equal(await settledWithin(Promise.reject(new Error("closed badly")), 1000), true);
  assert.equal(await settledWithin(new Promise(() => {}), 5), false);
});

Deno.test("abortable and delay stop when their signal aborts", async () => {
  const controller = new AbortController();
  const a = abortable(new Promise(() => {}), controller.signal);
  const d = delay(60_000, controller.signal);
  controller.abort(new Error("barge-in"));
  await assert.rejects(a, /barge-in/);
  await assert.rejects(d, /barge-in/);
  await delay(1);
});

Deno.test("IdleTimeout fires once when nothing restarts it", async () => {
  let fired = 0;
  const idle = new IdleTimeout(5, () => fired++);
  idle.restart();
  assert.equal(idle.armed, true);
  await waitFor(() => fired === 1, "the idle timeout to fire");
  assert.equal(idle.armed, false);
});

Deno.test("IdleTimeout counts from the last restart, not the first", async () => {
  let clock = 0;
  let reads = 0;
  let fired = 0;
  const idle = new IdleTimeout(5, () => fired++, () => (reads++, clock));
  idle.restart(); // due at 5
  clock = 3;
  idle.restart(); // due at 8
  await waitFor(() => reads === 3, "the timer to come due and read the clock");
  assert.equal(fired, 0, "3 ms after the last restart is not yet idle");
  assert.equal(idle.armed, true, "it waits out the rest");
  clock = 8;
  await waitFor(() => fired === 1, "the idle timeout to fire");
});

Deno.test("IdleTimeout stopped never fires and holds no timer", () => {
  let fired = 0;
  const idle = new IdleTimeout(5, () => fired++);
  idle.restart();
  idle.stop();
  assert.equal(idle.armed, false);
  assert.equal(fired, 0);
  // Deno's sanitizer fails this test if a timer were left behind.
});

Deno.test("IdleTimeout restarted with the caller's time counts from it", async () => {
  let clock = 6;
  let reads = 0;
  let fired = 0;
  const idle = new IdleTimeout(5, () => fired++, () => (reads++, clock));
  idle.restart(3); // due at 8; the clock is not read
  assert.equal(reads, 0);
  await waitFor(() => reads === 1, "the timer to come due and read the clock");
  assert.equal(fired, 0, "at 6, 3 ms after the given time, it is not yet idle");
  clock = 8;
  await waitFor(() => fired === 1, "the idle timeout to fire");
});
