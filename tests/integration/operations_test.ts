/** `/health`, CORS and the start-up log line, as an operator meets them. */
import assert from "node:assert/strict";
import { startHarness } from "../helpers/harness.ts";

Deno.test("GET /health reports status, active calls and version", async () => {
  await using h = await startHarness();
  const res = await fetch(`${h.server.url}/health`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {
    status: "ok",
    active_calls: 0,
    pending_media_sockets: 0,
    version: "0.1.0",
    env: "local",
  });
});

Deno.test("CORS allows every origin by default, as the original", async () => {
  await using h = await startHarness();
  const res = await fetch(`${h.server.url}/start`, {
    method: "OPTIONS",
    headers: {
      origin: "https://dashboard.example",
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,authorization",
    },
  });
  await res.body?.cancel();
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.match(res.headers.get("access-control-allow-headers") ?? "", /authorization/i);
});

Deno.test("CORS_ORIGINS restricts origins", async (t) => {
  await using h = await startHarness({ CORS_ORIGINS: "https://a.example, https://b.example" });
  const origin = async (value: string) => {
    const res = await fetch(`${h.server.url}/health`, { headers: { origin: value } });
    await res.body?.cancel();
    return res.headers.get("access-control-allow-origin");
  };
  await t.step("a listed origin is echoed", async () => {
    assert.equal(await origin("https://b.example"), "https://b.example");
  });
  await t.step("another origin is not allowed", async () => {
    assert.equal(await origin("https://evil.example"), null);
  });
});

Deno.test("start-up logs one line naming what is missing, and warns without API_TOKEN", async () => {
  await using h = await startHarness({ TELNYX_API_KEY: "", OPENAI_API_KEY: "" });
  const missing = h.logs.filter((l) => l.includes("not configured"));
  assert.equal(missing.length, 1);
  assert.match(missing[0], /TELNYX_API_KEY/);
  assert.ok(h.logs.some((l) => l.includes("API_TOKEN is not set")));
});
