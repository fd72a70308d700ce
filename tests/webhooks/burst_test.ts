import assert from "node:assert/strict";
import { deadline, delay } from "../../src/async/deadline.ts";
import { startWebhookReceiver } from "../fakes/webhook_receiver.ts";
import { startWebhooks, tempKvFile, waitForDeliveries } from "./webhook_harness.ts";

/** A receiver that takes `holdMs` over each answer and counts the requests open at once. */
function slowReceiver(holdMs: number) {
  let open = 0;
  const stats = { received: 0, mostOpen: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    await req.arrayBuffer();
    open++;
    stats.mostOpen = Math.max(stats.mostOpen, open);
    await delay(holdMs);
    open--;
    stats.received++;
    return new Response("ok");
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hooks`,
    stats,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("a burst of events (many calls ending at once) is sent with bounded concurrency", async () => {
  await using receiver = slowReceiver(30);
  await using hooks = await startWebhooks({ defaultUrl: receiver.url, concurrency: 3 });
  const calls = Array.from({ length: 12 }, (_, i) => `v3:burst-${i}`);
  await Promise.all(calls.map((call) => hooks.webhooks.emit(call, "call.ended", {})));
  for (const call of calls) {
    await waitForDeliveries(hooks.webhooks, call, (v) => v[0]?.state === "delivered", call);
  }
  assert.equal(receiver.stats.received, 12);
  assert.ok(receiver.stats.mostOpen <= 3, `${receiver.stats.mostOpen} requests open at once`);
  assert.ok(receiver.stats.mostOpen > 1, "the attempts ran side by side");
  assert.equal(hooks.webhooks.stats.attempts, 12);
});

Deno.test("events still waiting for a slot when the worker stops are handed back, not held for their lease", async () => {
  await using file = await tempKvFile("webhooks_burst_");
  const path = file.path;
  await using receiver = startWebhookReceiver(["hang"]);
  const first = await startWebhooks({
    path,
    defaultUrl: receiver.url,
    concurrency: 1,
    leaseMs: 60_000,
  });
  await first.webhooks.emit("v3:a", "call.ended", {});
  await first.webhooks.emit("v3:b", "call.ended", {});
  await deadline(receiver.waitFor(1), 5_000, { what: "the first, hanging attempt" });
  await first.stop();

  await using second = await startWebhooks({ path, defaultUrl: receiver.url });
  for (const call of ["v3:a", "v3:b"]) {
    const views = await waitForDeliveries(
      second.webhooks,
      call,
      (v) => v[0]?.state === "delivered",
      `${call} delivered after the restart, well before the 60 s lease`,
    );
    assert.equal(views[0].attempts.length, 1);
  }
});
