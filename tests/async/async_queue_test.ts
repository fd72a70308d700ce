import assert from "node:assert/strict";
import { AsyncQueue } from "../../src/async/async_queue.ts";

Deno.test("AsyncQueue", async (t) => {
  await t.step("items pushed before and while iterating arrive in order", async () => {
    const ch = new AsyncQueue<number>();
    ch.push(1);
    const got: number[] = [];
    const reading = (async () => {
      for await (const n of ch) got.push(n);
    })();
    ch.push(2);
    await Promise.resolve();
    ch.push(3);
    ch.close();
    ch.push(4);
    await reading;
    assert.deepEqual(got, [1, 2, 3]);
  });
  await t.step("fail ends iteration with the error after queued items", async () => {
    const ch = new AsyncQueue<string>();
    ch.push("a");
    ch.fail(new Error("boom"));
    const got: string[] = [];
    await assert.rejects(async () => {
      for await (const s of ch) got.push(s);
    }, /boom/);
    assert.deepEqual(got, ["a"]);
    assert.equal(ch.closed, true);
  });
});

Deno.test("AsyncQueue fail wakes a consumer already waiting", async () => {
  const queue = new AsyncQueue<string>();
  const reading = queue.next();
  queue.fail(new Error("socket gone"));
  await assert.rejects(reading, /socket gone/);
  assert.deepEqual(await queue.next(), { value: undefined, done: true });
});

Deno.test("AsyncQueue at its limit refuses droppable items and keeps the others", async () => {
  const queue = new AsyncQueue<string>({ limit: 2, droppable: (item) => item.startsWith("~") });
  assert.equal(queue.push("~a"), true);
  assert.equal(queue.push("~b"), true);
  assert.equal(queue.push("~c"), false);
  assert.equal(queue.push("final"), true);
  assert.equal(queue.size, 3);
  queue.close();
  assert.equal(queue.push("late"), false);
  const got: string[] = [];
  for await (const item of queue) got.push(item);
  assert.deepEqual(got, ["~a", "~b", "final"]);
});

Deno.test("AsyncQueue: a consumer leaving early discards the rest and runs onReturn once", async () => {
  let returns = 0;
  const queue = new AsyncQueue<number>({ onReturn: () => returns++ });
  queue.push(1);
  queue.push(2);
  for await (const n of queue) {
    assert.equal(n, 1);
    break;
  }
  assert.equal(returns, 1);
  assert.equal(queue.closed, true);
  assert.equal(queue.size, 0);
  assert.equal(queue.push(3), false);
  await queue.return();
  assert.equal(returns, 1);
});

Deno.test("AsyncQueue: a consumer finishing normally does not run onReturn", async () => {
  let returns = 0;
  const queue = new AsyncQueue<number>({ onReturn: () => returns++ });
  queue.push(1);
  queue.close();
  for await (const _ of queue) { /* drain */ }
  assert.equal(returns, 0);
});
