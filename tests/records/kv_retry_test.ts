import assert from "node:assert/strict";
import { withKvRetry } from "../../src/records/kv_retry.ts";

Deno.test("a KV operation failing with 'database is locked' is retried until it succeeds", async () => {
  let calls = 0;
  const result = await withKvRetry(() => {
    calls++;
    if (calls < 3) return Promise.reject(new TypeError("database is locked"));
    return Promise.resolve("committed");
  }, { baseDelayMs: 0 });
  assert.equal(result, "committed");
  assert.equal(calls, 3);
});

Deno.test("a KV operation that keeps failing rethrows its last error after the attempts", async () => {
  let calls = 0;
  await assert.rejects(
    withKvRetry(() => {
      calls++;
      return Promise.reject(new TypeError(`database is locked (${calls})`));
    }, { attempts: 4, baseDelayMs: 0 }),
    /database is locked \(4\)/,
  );
  assert.equal(calls, 4);
});

Deno.test("an error retryIf refuses is thrown at once", async () => {
  let calls = 0;
  await assert.rejects(
    withKvRetry(() => {
      calls++;
      return Promise.reject(new TypeError("invalid cursor"));
    }, { baseDelayMs: 0, retryIf: (error) => !/cursor/.test(String(error)) }),
    /invalid cursor/,
  );
  assert.equal(calls, 1);
});
