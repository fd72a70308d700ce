import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { Webhooks } from "../../src/webhooks/webhooks.ts";
import { startWebhookReceiver } from "../fakes/webhook_receiver.ts";
import { tempKvFile, TEST_WEBHOOK_SECRET } from "./webhook_harness.ts";

const WORKER = new URL("./worker_process.ts", import.meta.url).pathname;
const EVENTS = 40;

Deno.test("two worker processes sharing one KV file deliver each event exactly once", async () => {
  await using file = await tempKvFile("webhooks_shared_");
  const path = file.path;
  await using receiver = startWebhookReceiver();
  const kv = await Deno.openKv(path);
  const producer = new Webhooks({
    kv,
    secret: TEST_WEBHOOK_SECRET,
    policy: { local: true, allowPrivate: false },
    defaultUrl: receiver.url,
  });
  for (let i = 0; i < EVENTS / 2; i++) {
    await producer.emit(`v3:call-${i}`, "call.initiated", { i });
    await producer.emit(`v3:call-${i}`, "call.ended", { i });
  }
  kv.close();

  const workers = [0, 1].map(() =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-write=/tmp",
        "--allow-env",
        WORKER,
        path,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output()
  );
  const results = await deadline(Promise.all(workers), 30_000, { what: "both workers" });
  const delivered = results.map((result) => {
    assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
    return JSON.parse(new TextDecoder().decode(result.stdout)).delivered as number;
  });

  const ids = receiver.received.map((r) => r.headers.get("webhook-id"));
  assert.equal(new Set(ids).size, EVENTS, "every event arrived");
  assert.equal(ids.length, EVENTS, "none arrived twice");
  assert.equal(delivered[0] + delivered[1], EVENTS, `split between workers: ${delivered}`);
});
