import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { webhookEventId, Webhooks } from "../../src/webhooks/webhooks.ts";
import { startWebhookReceiver } from "../fakes/webhook_receiver.ts";
import { loadReadmeVerifier } from "../helpers/readme_webhook_verifier.ts";
import {
  startWebhooks,
  tempKvFile,
  TEST_WEBHOOK_SECRET,
  waitForDeliveries,
} from "./webhook_harness.ts";

const CALL = "v3:test-call-1";

Deno.test("a webhook that fails twice (500, dropped connection) is retried until accepted, signed as the README verifies", async () => {
  await using receiver = startWebhookReceiver([500, "drop"]);
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  const verify = await loadReadmeVerifier();

  await hooks.webhooks.emit(CALL, "call.ended", { end_reason: "bot_ended" });
  await deadline(receiver.waitFor(3), 5_000, { what: "three attempts" });

  const id = webhookEventId(CALL, "call.ended");
  for (const hit of receiver.received) {
    assert.equal(hit.headers.get("webhook-id"), id);
    assert.equal(
      await verify(TEST_WEBHOOK_SECRET, hit.headers.get("webhook-signature"), hit.body),
      true,
    );
    const event = JSON.parse(hit.body);
    assert.equal(event.id, id);
    assert.equal(event.type, "call.ended");
    assert.equal(event.call_id, CALL);
    assert.deepEqual(event.data, { end_reason: "bot_ended" });
  }
  const views = await waitForDeliveries(
    hooks.webhooks,
    CALL,
    (v) => v[0]?.state === "delivered",
    "the delivery to succeed",
  );
  assert.equal(views.length, 1);
  const attempts = views[0].attempts;
  assert.equal(attempts.length, 3);
  assert.equal(attempts[0].status_code, 500);
  assert.match(attempts[0].error ?? "", /HTTP 500/);
  assert.ok(attempts[1].error, "the dropped connection is a failed attempt");
  assert.equal(attempts[2].status_code, 200);
  assert.equal(attempts[2].error, undefined);
});

Deno.test("the README verifier refuses a changed body, a wrong secret and a stale timestamp", async () => {
  await using receiver = startWebhookReceiver();
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  const verify = await loadReadmeVerifier();
  await hooks.webhooks.emit(CALL, "call.initiated", { to: "+15551234567" });
  await deadline(receiver.waitFor(1), 5_000);
  const { body, headers } = receiver.received[0];
  const header = headers.get("webhook-signature");
  assert.equal(await verify(TEST_WEBHOOK_SECRET, header, body), true);
  assert.equal(await verify(TEST_WEBHOOK_SECRET, header, body.replace("155", "156")), false);
  assert.equal(await verify("another-secret", header, body), false);
  const stale = header!.replace(/t=\d+/, `t=${Math.floor(Date.now() / 1000) - 301}`);
  assert.equal(await verify(TEST_WEBHOOK_SECRET, stale, body), false);
  assert.equal(await verify(TEST_WEBHOOK_SECRET, null, body), false);
});

Deno.test("a delivery interrupted by a restart resumes from the same KV file", async () => {
  await using file = await tempKvFile("webhooks_restart_");
  const path = file.path;
  await using receiver = startWebhookReceiver([503]);
  // The first server gets a 503 and schedules its retry far out, then stops.
  const first = await startWebhooks({
    path,
    defaultUrl: receiver.url,
    retry: { baseDelayMs: 300, maxDelayMs: 300 },
    random: () => 1,
  });
  await first.webhooks.emit(CALL, "call.ended", { end_reason: "callee_hung_up" });
  await waitForDeliveries(
    first.webhooks,
    CALL,
    (v) => v[0]?.attempts.length === 1,
    "the first attempt",
  );
  await first.stop();
  assert.equal(receiver.received.length, 1);

  await using second = await startWebhooks({ path, defaultUrl: receiver.url });
  const views = await waitForDeliveries(
    second.webhooks,
    CALL,
    (v) => v[0]?.state === "delivered",
    "the delivery after the restart",
  );
  assert.equal(receiver.received.length, 2);
  assert.equal(receiver.received[1].body, receiver.received[0].body);
  assert.deepEqual(views[0].attempts.map((a) => a.status_code), [503, 200]);
});

Deno.test("410 Gone stops the retries", async () => {
  await using receiver = startWebhookReceiver([410]);
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  await hooks.webhooks.emit(CALL, "call.answered", {});
  const views = await waitForDeliveries(
    hooks.webhooks,
    CALL,
    (v) => v[0]?.state === "gone",
    "the delivery to stop",
  );
  assert.equal(views[0].attempts.length, 1);
  assert.equal(await hooks.webhooks.pendingCount(), 0);
  assert.equal(receiver.received.length, 1);
});

Deno.test("resend delivers every event of the call again with the same event ids", async () => {
  await using receiver = startWebhookReceiver();
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  await hooks.webhooks.emit(CALL, "call.initiated", { n: 1 });
  await hooks.webhooks.emit(CALL, "call.ended", { n: 2 });
  await deadline(receiver.waitFor(2), 5_000, { what: "first deliveries" });

  assert.equal(await hooks.webhooks.resend(CALL), 2);
  await deadline(receiver.waitFor(4), 5_000, { what: "resent deliveries" });
  const ids = (from: number) =>
    receiver.received.slice(from, from + 2).map((r) => r.headers.get("webhook-id")).sort();
  assert.deepEqual(ids(2), ids(0));
  const views = await waitForDeliveries(
    hooks.webhooks,
    CALL,
    (v) => v.length === 4 && v.every((d) => d.state === "delivered"),
    "four delivered",
  );
  assert.equal(views.length, 4);
  assert.equal(await hooks.webhooks.resend("v3:unknown-call"), 0);
});

Deno.test("an event emitted twice is stored and delivered once", async () => {
  await using receiver = startWebhookReceiver();
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  await hooks.webhooks.emit(CALL, "call.ended", { first: true });
  await hooks.webhooks.emit(CALL, "call.ended", { first: false });
  await waitForDeliveries(hooks.webhooks, CALL, (v) => v[0]?.state === "delivered", "delivery");
  assert.equal((await hooks.webhooks.deliveriesFor(CALL)).length, 1);
  assert.deepEqual(JSON.parse(receiver.received[0].body).data, { first: true });
});

Deno.test("a body larger than one KV value (a long call record) is delivered intact", async () => {
  await using receiver = startWebhookReceiver();
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  const turns = Array.from({ length: 150 }, (_, i) => ({
    role: i % 2 ? "assistant" : "user",
    text: `turn ${i} ` + "é words ".repeat(200),
  }));
  await hooks.webhooks.emit(CALL, "call.ended", { transcript: turns });
  await deadline(receiver.waitFor(1), 5_000);
  assert.ok(receiver.received[0].body.length > 200_000);
  assert.deepEqual(JSON.parse(receiver.received[0].body).data.transcript, turns);
});

Deno.test("a call's own webhook_url and WEBHOOK_URL each get the event", async () => {
  await using central = startWebhookReceiver();
  await using own = startWebhookReceiver();
  await using hooks = await startWebhooks({ defaultUrl: central.url });
  await hooks.webhooks.emit(CALL, "call.ended", {}, { webhookUrl: own.url });
  await deadline(Promise.all([central.waitFor(1), own.waitFor(1)]), 5_000);
  assert.equal(
    central.received[0].headers.get("webhook-id"),
    own.received[0].headers.get("webhook-id"),
  );
});

Deno.test("forget erases a call's events and deliveries", async () => {
  await using receiver = startWebhookReceiver();
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  await hooks.webhooks.emit(CALL, "call.ended", { name: "Zoë" });
  await waitForDeliveries(hooks.webhooks, CALL, (v) => v[0]?.state === "delivered", "delivery");
  await hooks.webhooks.forget(CALL);
  assert.deepEqual(await hooks.webhooks.deliveriesFor(CALL), []);
  assert.equal(await hooks.webhooks.resend(CALL), 0);
});

Deno.test("a claim whose lease ran out (its worker stuck or dead) is taken over by another worker", async () => {
  await using receiver = startWebhookReceiver(["hang"]);
  // Both workers share one store; the first holds its claim for 150 ms only.
  await using stuck = await startWebhooks({
    defaultUrl: receiver.url,
    leaseMs: 150,
    timeoutMs: 10_000,
  });
  await stuck.webhooks.emit(CALL, "call.ended", {});
  await deadline(receiver.waitFor(1), 5_000, { what: "the stuck attempt" });

  const other = new Webhooks({
    kv: stuck.kv,
    secret: TEST_WEBHOOK_SECRET,
    policy: { local: true, allowPrivate: false },
    pollMs: 20,
  });
  const stopOther = new AbortController();
  const running = other.run(stopOther.signal);
  try {
    await deadline(receiver.waitFor(2), 5_000, { what: "the take-over" });
    const views = await waitForDeliveries(
      other,
      CALL,
      (v) => v[0]?.state === "delivered",
      "delivered by the other worker",
    );
    assert.equal(other.stats.delivered, 1);
    assert.equal(views[0].attempts.at(-1)?.status_code, 200);
  } finally {
    stopOther.abort();
    await running;
  }
});

Deno.test("stopping a worker mid-attempt hands the delivery back at once, not after its lease", async () => {
  await using file = await tempKvFile("webhooks_stop_");
  const path = file.path;
  await using receiver = startWebhookReceiver(["hang"]);
  const first = await startWebhooks({ path, defaultUrl: receiver.url, leaseMs: 60_000 });
  await first.webhooks.emit(CALL, "call.ended", {});
  await deadline(receiver.waitFor(1), 5_000, { what: "the hanging attempt" });
  await first.stop();

  await using second = await startWebhooks({ path, defaultUrl: receiver.url });
  const views = await waitForDeliveries(
    second.webhooks,
    CALL,
    (v) => v[0]?.state === "delivered",
    "delivery after the restart, well before the 60 s lease",
  );
  assert.equal(views[0].attempts.length, 1, "the interrupted attempt does not count");
});
