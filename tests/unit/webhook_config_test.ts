import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { webhooksFromConfig } from "../../src/webhooks/webhooks.ts";
import { APPOINTMENT_SCHEMA } from "../helpers/analysis_fixtures.ts";

const SECRET = "0123456789abcdef0123";

function problemsFor(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error.message;
  }
  assert.fail(`expected ConfigError for ${JSON.stringify(env)}`);
}

Deno.test("webhook and analysis variables default to off", () => {
  const config = loadConfig({});
  assert.equal(config.WEBHOOK_URL, undefined);
  assert.equal(config.WEBHOOK_SECRET, undefined);
  assert.equal(config.WEBHOOK_ALLOW_PRIVATE, false);
  assert.equal(config.ANALYSIS_SCHEMA, undefined);
});

Deno.test("WEBHOOK_URL, WEBHOOK_SECRET and ANALYSIS_SCHEMA are parsed", () => {
  const config = loadConfig({
    WEBHOOK_URL: "https://hooks.example.com/calls/",
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_ALLOW_PRIVATE: "TRUE",
    ANALYSIS_SCHEMA: JSON.stringify(APPOINTMENT_SCHEMA),
    ANALYSIS_INSTRUCTIONS: "Be brief.",
  });
  assert.equal(config.WEBHOOK_URL, "https://hooks.example.com/calls/");
  assert.equal(config.WEBHOOK_ALLOW_PRIVATE, true);
  assert.deepEqual(config.ANALYSIS_SCHEMA, APPOINTMENT_SCHEMA);
  assert.equal(config.ANALYSIS_INSTRUCTIONS, "Be brief.");
});

Deno.test("WEBHOOK_URL without WEBHOOK_SECRET stops start-up, naming the secret", () => {
  assert.match(
    problemsFor({ WEBHOOK_URL: "https://hooks.example.com/x" }),
    /WEBHOOK_URL is set but WEBHOOK_SECRET is not.*openssl rand/,
  );
});

Deno.test("a WEBHOOK_URL to a metadata or http address stops start-up", () => {
  assert.match(
    problemsFor({ WEBHOOK_URL: "https://169.254.169.254/", WEBHOOK_SECRET: SECRET }),
    /WEBHOOK_URL=.*metadata.*WEBHOOK_ALLOW_PRIVATE=true/,
  );
  assert.match(
    problemsFor({ WEBHOOK_URL: "http://hooks.example.com/", WEBHOOK_SECRET: SECRET }),
    /WEBHOOK_URL=.*must use https/,
  );
  assert.match(problemsFor({ WEBHOOK_SECRET: "short" }), /WEBHOOK_SECRET: must be at least 16/);
  assert.match(
    problemsFor({ WEBHOOK_ALLOW_PRIVATE: "yes" }),
    /WEBHOOK_ALLOW_PRIVATE.*true or false/,
  );
});

Deno.test("an ANALYSIS_SCHEMA that is not JSON or not strict-mode stops start-up, saying why", () => {
  assert.match(
    problemsFor({ ANALYSIS_SCHEMA: "{type: object}" }),
    /ANALYSIS_SCHEMA=.*not valid JSON/,
  );
  assert.match(problemsFor({ ANALYSIS_SCHEMA: "[1]" }), /ANALYSIS_SCHEMA=.*must be a JSON object/);
  assert.match(
    problemsFor({
      ANALYSIS_SCHEMA: '{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}',
    }),
    /ANALYSIS_SCHEMA: schema must set "additionalProperties": false/,
  );
});

Deno.test("webhooksFromConfig: off without WEBHOOK_SECRET; WEBHOOK_URL joins every call's target", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    assert.equal(webhooksFromConfig(loadConfig({}), { kv }), undefined);
    const webhooks = webhooksFromConfig(
      loadConfig({ WEBHOOK_SECRET: SECRET, WEBHOOK_URL: "https://a.example/x" }),
      { kv },
    );
    assert.deepEqual(webhooks?.targetsFor("https://b.example/y"), [
      "https://a.example/x",
      "https://b.example/y",
    ]);
    assert.deepEqual(webhooks?.targetsFor("https://a.example/x"), ["https://a.example/x"]);
    assert.deepEqual(webhooks?.targetsFor(), ["https://a.example/x"]);
  } finally {
    kv.close();
  }
});
