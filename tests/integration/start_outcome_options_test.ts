import assert from "node:assert/strict";
import { APPOINTMENT_SCHEMA } from "../helpers/analysis_fixtures.ts";
import { startHarness } from "../helpers/harness.ts";

const SECRET = "whsec-0123456789abcdef";
const PHONE = "+15551234567";

async function expectError(res: Response, status: number, code: string, pattern: RegExp) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  const json = JSON.parse(text);
  assert.equal(json.error.code, code, text);
  assert.match(json.error.message, pattern);
  return json;
}

Deno.test("/start refuses webhook_url targets that would probe the server's network", async (t) => {
  await using h = await startHarness({ WEBHOOK_SECRET: SECRET, ENV: "local" });
  const cases: [string, string, RegExp][] = [
    [
      "cloud metadata",
      "https://169.254.169.254/latest/meta-data/",
      /metadata.*WEBHOOK_ALLOW_PRIVATE=true/,
    ],
    ["AWS metadata over IPv6", "https://[fd00:ec2::254]/", /metadata/],
    ["a private address", "https://10.0.0.8/hooks", /private/],
    ["metadata written in hex", "https://0xa9.0xfe.0xa9.0xfe/", /169\.254\.169\.254.*metadata/],
    ["plain http to a public host", "http://hooks.example.com/x", /must use https/],
    ["not a URL", "hooks.example.com", /not a URL/],
  ];
  for (const [name, url, pattern] of cases) {
    await t.step(name, async () => {
      const json = await expectError(
        await h.start({ phone_number: PHONE, webhook_url: url }),
        400,
        "invalid_request",
        pattern,
      );
      assert.equal(json.error.issues[0].field, "webhook_url");
    });
  }
  await t.step("none of them placed a call", () => {
    assert.equal(h.telnyx.createRequests.length, 0);
  });
});

Deno.test("/start with webhook_url but no WEBHOOK_SECRET answers 503 naming the variable", async () => {
  await using h = await startHarness();
  const json = await expectError(
    await h.start({ phone_number: PHONE, webhook_url: "https://hooks.example.com/x" }),
    503,
    "not_configured",
    /WEBHOOK_SECRET/,
  );
  assert.deepEqual(json.error.missing, ["WEBHOOK_SECRET"]);
  assert.equal(h.telnyx.createRequests.length, 0);
});

Deno.test("/start refuses an analysis schema strict structured outputs cannot use, saying why", async () => {
  await using h = await startHarness();
  const loose = { type: "object", properties: { ok: { type: "boolean" } } };
  const json = await expectError(
    await h.start({ phone_number: PHONE, analysis: { schema: loose } }),
    400,
    "invalid_request",
    /analysis\.schema\.required must list every property.*missing: ok/,
  );
  assert.equal(json.error.issues[0].field, "analysis");
  await expectError(
    await h.start({ phone_number: PHONE, analysis: { schema: APPOINTMENT_SCHEMA, prompt: "x" } }),
    400,
    "invalid_request",
    /unknown fields prompt/,
  );
  assert.equal(h.telnyx.createRequests.length, 0);
});

Deno.test("/start accepts a public https webhook_url and a 12 KiB analysis request", async () => {
  await using h = await startHarness({ WEBHOOK_SECRET: SECRET });
  const res = await h.start({
    phone_number: PHONE,
    webhook_url: "https://hooks.example.com/calls?tenant=7",
    analysis: {
      schema: { ...APPOINTMENT_SCHEMA, description: "d".repeat(12 * 1024) },
      instructions: "Did the callee confirm?",
    },
  });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal((await res.json()).status, "call_initiated");
  assert.equal(h.telnyx.createRequests.length, 1);
});
