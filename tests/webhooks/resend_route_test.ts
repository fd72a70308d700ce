import assert from "node:assert/strict";
import { Hono } from "hono";
import { deadline } from "../../src/async/deadline.ts";
import { ApiError } from "../../src/http/api_error.ts";
import { webhooksRoute } from "../../src/routes/webhooks.ts";
import type { Webhooks } from "../../src/webhooks/webhooks.ts";
import { startWebhookReceiver } from "../fakes/webhook_receiver.ts";
import { startWebhooks } from "./webhook_harness.ts";

const TOKEN = "api-token-0123456789";

function appFor(webhooks: Webhooks | undefined): Hono {
  const app = new Hono();
  app.onError((error, c) =>
    error instanceof ApiError
      ? c.json(error.toJSON(), error.status, error.headers)
      : c.json({ error: String(error) }, 500)
  );
  return app.route("/", webhooksRoute({ config: { API_TOKEN: TOKEN }, webhooks }));
}

const resend = (app: Hono, id: string, token = TOKEN) =>
  app.request(`/calls/${encodeURIComponent(id)}/webhooks/resend`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
  });

Deno.test("POST /calls/:id/webhooks/resend redelivers the call's events", async () => {
  await using receiver = startWebhookReceiver();
  await using hooks = await startWebhooks({ defaultUrl: receiver.url });
  await hooks.webhooks.emit("v3:call-9", "call.ended", { end_reason: "busy" });
  await deadline(receiver.waitFor(1), 5_000);

  const res = await resend(appFor(hooks.webhooks), "v3:call-9");
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { call_id: "v3:call-9", deliveries: 1 });
  await deadline(receiver.waitFor(2), 5_000);
  assert.equal(receiver.received[1].body, receiver.received[0].body);
});

Deno.test("resend needs the API token, knows the call, and says when webhooks are off", async () => {
  await using hooks = await startWebhooks();
  const app = appFor(hooks.webhooks);
  const unauthorized = await resend(app, "v3:call-9", "wrong");
  assert.equal(unauthorized.status, 401);
  assert.equal((await unauthorized.json()).error.code, "unauthorized");
  const unknown = await resend(app, "v3:nobody");
  assert.equal(unknown.status, 404);
  assert.match((await unknown.json()).error.message, /No webhook events are stored/);
  const off = await resend(appFor(undefined), "v3:call-9");
  assert.equal(off.status, 503);
  assert.deepEqual((await off.json()).error.missing, ["WEBHOOK_SECRET"]);
});
