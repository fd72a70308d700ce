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
