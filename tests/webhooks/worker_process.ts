/**
 * One webhook worker in its own process, for the test of several instances sharing one KV file:
 * `deno run … worker_process.ts <kv path>` delivers until nothing is pending, prints its
 * attempt counts as JSON, and exits.
 *
 * @module
 */
import { delay } from "../../src/async/deadline.ts";
import { Webhooks } from "../../src/webhooks/webhooks.ts";
import { TEST_WEBHOOK_SECRET } from "./webhook_harness.ts";

const [path] = Deno.args;
const kv = await Deno.openKv(path);
const webhooks = new Webhooks({
  kv,
  secret: TEST_WEBHOOK_SECRET,
  policy: { local: true, allowPrivate: false },
  pollMs: 10,
  concurrency: 4,
});
const stopping = new AbortController();
const running = webhooks.run(stopping.signal);
const giveUpAt = performance.now() + 20_000;
while ((await webhooks.pendingCount()) > 0 && performance.now() < giveUpAt) await delay(20);
stopping.abort();
await running;
kv.close();
console.log(JSON.stringify(webhooks.stats));
