import assert from "node:assert/strict";
import {
  allMissing,
  type Config,
  ConfigError,
  EnvSchema,
  loadConfig,
  missingFor,
} from "../../src/config.ts";

/** Runs `loadConfig` expecting a ConfigError and returns it, failing otherwise. */
function configErrorFor(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error;
  }
  assert.fail(`expected ConfigError for ${JSON.stringify(env)}`);
}

const TELNYX_VARS = [
  "TELNYX_API_KEY",
  "TELNYX_ACCOUNT_SID",
  "TELNYX_APPLICATION_SID",
  "TELNYX_PHONE_NUMBER",
] as const;

Deno.test("loadConfig defaults", async (t) => {
  await t.step("an empty environment gives every documented default", () => {
    const config = loadConfig({});
    assert.equal(config.PORT, 7860);
    assert.equal(config.HOST, "0.0.0.0");
    assert.equal(config.ENV, "local");
    assert.equal(config.LOG_LEVEL, "info");
    assert.equal(config.LOG_FORMAT, undefined);
    assert.equal(config.TELNYX_TIMEOUT_MS, 10_000);
    assert.equal(config.PIPECAT_REGION, "us-west");
    assert.equal(config.SIGNED_URL_TTL_SECONDS, 300);
    assert.equal(config.STREAM_URL_TTL_SECONDS, 30);
    assert.equal(config.MEDIA_START_TIMEOUT_MS, 10_000);
    assert.equal(config.MAX_PENDING_MEDIA_SOCKETS, 256);
    assert.equal(config.MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT, 32);
    assert.equal(config.MAX_BODY_BYTES, 4096);
    assert.equal(config.CORS_ORIGINS, "*");
    assert.equal(config.SHUTDOWN_GRACE_SECONDS, 10);
    for (const name of [...TELNYX_VARS, "API_TOKEN", "PUBLIC_BASE_URL", "TELNYX_BASE_URL"]) {
      assert.equal(config[name as keyof Config], undefined, name);
    }
  });

  await t.step("empty and blank strings mean unset", () => {
    const config = loadConfig({
      PORT: "",
      ENV: "  ",
      LOG_LEVEL: "",
      LOG_FORMAT: "",
      TELNYX_API_KEY: "",
      TELNYX_BASE_URL: " ",
      PUBLIC_BASE_URL: "",
      MAX_BODY_BYTES: "",
      API_TOKEN: "   ",
    });
    assert.equal(config.PORT, 7860);
    assert.equal(config.ENV, "local");
    assert.equal(config.LOG_LEVEL, "info");
    assert.equal(config.LOG_FORMAT, undefined);
    assert.equal(config.TELNYX_API_KEY, undefined);
    assert.equal(config.TELNYX_BASE_URL, undefined);
    assert.equal(config.PUBLIC_BASE_URL, undefined);
    assert.equal(config.MAX_BODY_BYTES, 4096);
    assert.equal(config.API_TOKEN, undefined);
  });

  await t.step("explicit values are parsed and trimmed", () => {
    const config = loadConfig({
      PORT: " 8080 ",
      MAX_BODY_BYTES: "65536",
      TELNYX_API_KEY: "  KEY123  ",
      LOG_FORMAT: "json",
      PIPECAT_REGION: "EU-Central",
    });
    assert.equal(config.PORT, 8080);
    assert.equal(config.MAX_BODY_BYTES, 65_536);
    assert.equal(config.TELNYX_API_KEY, "KEY123");
    assert.equal(config.LOG_FORMAT, "json");
    assert.equal(config.PIPECAT_REGION, "eu-central");
  });

  await t.step("ENV is case-insensitive", () => {
    assert.equal(loadConfig({ ENV: "LOCAL" }).ENV, "local");
    assert.equal(loadConfig({ ENV: " Production ", API_TOKEN: "t0ken-value" }).ENV, "production");
  });

  await t.step("trailing slashes are stripped from URLs", () => {
    const config = loadConfig({
      TELNYX_BASE_URL: "http://127.0.0.1:9000/",
      PUBLIC_BASE_URL: "https://abc.ngrok.app/prefix//",
      OPENAI_BASE_URL: "https://api.example.com/v1/",
      DEEPGRAM_BASE_URL: "wss://dg.example.com/",
    });
    assert.equal(config.TELNYX_BASE_URL, "http://127.0.0.1:9000");
    assert.equal(config.PUBLIC_BASE_URL, "https://abc.ngrok.app/prefix");
    assert.equal(config.OPENAI_BASE_URL, "https://api.example.com/v1");
    assert.equal(config.DEEPGRAM_BASE_URL, "wss://dg.example.com");
  });
});

Deno.test("loadConfig rejects values it cannot run with", async (t) => {
  await t.step("ENV=prod names ENV and lists the accepted values", () => {
    const error = configErrorFor({ ENV: "prod" });
    assert.equal(error.name, "ConfigError");
    assert.equal(error.problems.length, 1);
    assert.match(error.problems[0], /^ENV="prod": /);
    assert.match(error.message, /ENV/);
    assert.match(error.message, /local, production/);
  });

  const badValues: [string, string, RegExp][] = [
    ["PORT", "abc", /integer between 0 and 65535/],
    ["PORT", "70000", /integer between 0 and 65535/],
    ["PORT", "-1", /integer between 0 and 65535/],
    ["PORT", "1.5", /integer between 0 and 65535/],
    ["MAX_BODY_BYTES", "8", /integer between 16 and 65536/],
    ["TELNYX_BASE_URL", "not a url", /http\(s\) URL/],
    ["TELNYX_BASE_URL", "ftp://files.example.com", /http\(s\) URL/],
    ["PUBLIC_BASE_URL", "abc.ngrok.app", /http\(s\) URL/],
    ["PUBLIC_BASE_URL", "javascript:alert(1)", /http\(s\) URL/],
    ["PUBLIC_BASE_URL", "https://", /http\(s\) URL/],
    ["DEEPGRAM_BASE_URL", "ftp://x.example.com", /http\(s\) or ws\(s\) URL/],
    ["LOG_LEVEL", "verbose", /debug, info, warn, error/],
    ["LOG_FORMAT", "xml", /json, pretty/],
    ["PIPECAT_REGION", "mars", /us-west/],
    // Shorter than ringing (up to 120 s) would refuse calls answered late.
    ["SIGNED_URL_TTL_SECONDS", "60", /integer between 150 and 86400/],
    ["STREAM_URL_TTL_SECONDS", "1", /integer between 5 and 600/],
    ["STREAM_URL_TTL_SECONDS", "3600", /integer between 5 and 600/],
    ["MEDIA_START_TIMEOUT_MS", "0", /integer between 100 and 60000/],
    ["MAX_PENDING_MEDIA_SOCKETS", "0", /integer between 1 and 100000/],
  ];
  for (const [name, value, accepted] of badValues) {
    await t.step(`${name}=${value} is named with what it accepts`, () => {
      const error = configErrorFor({ [name]: value });
      assert.equal(error.problems.length, 1, error.message);
      assert.ok(
        error.problems[0].startsWith(`${name}=${JSON.stringify(value)}: `),
        error.problems[0],
      );
      assert.match(error.problems[0], accepted);
      assert.ok(error.message.includes(error.problems[0]));
    });
  }

  await t.step("several problems are reported together", () => {
    const error = configErrorFor({
      ENV: "prod",
      PORT: "abc",
      LOG_LEVEL: "verbose",
      TELNYX_BASE_URL: "nope",
    });
    const named = error.problems.map((p) => p.slice(0, p.indexOf("="))).sort();
    assert.deepEqual(named, ["ENV", "LOG_LEVEL", "PORT", "TELNYX_BASE_URL"]);
    for (const problem of error.problems) assert.ok(error.message.includes(problem));
  });

  await t.step("a per-client socket cap above the overall cap is refused, naming both", () => {
    const error = configErrorFor({
      MAX_PENDING_MEDIA_SOCKETS: "10",
      MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT: "20",
    });
    assert.equal(error.problems.length, 1);
    assert.match(error.problems[0], /^MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT=20: /);
    assert.match(error.problems[0], /must not exceed MAX_PENDING_MEDIA_SOCKETS \(10\)/);
  });

  await t.step("production without API_TOKEN is refused, naming API_TOKEN", () => {
    const error = configErrorFor({ ENV: "production" });
    assert.equal(error.problems.length, 1);
    assert.match(error.message, /API_TOKEN/);
    assert.match(error.message, /ENV=production/);
    // Blank counts as unset here too.
    assert.match(configErrorFor({ ENV: "production", API_TOKEN: "  " }).message, /API_TOKEN/);
  });

  await t.step("production with API_TOKEN loads", () => {
    const config = loadConfig({ ENV: "production", API_TOKEN: "a-long-random-token" });
    assert.equal(config.ENV, "production");
    assert.equal(config.API_TOKEN, "a-long-random-token");
  });
});

Deno.test("missing variables never throw and are listed per feature", async (t) => {
  await t.step("start_call lists exactly the unset Telnyx variables", () => {
    assert.deepEqual(missingFor(loadConfig({}), "start_call"), [...TELNYX_VARS]);
    const partial = loadConfig({ TELNYX_API_KEY: "KEY", TELNYX_PHONE_NUMBER: "+15550100" });
    assert.deepEqual(missingFor(partial, "start_call"), [
      "TELNYX_ACCOUNT_SID",
      "TELNYX_APPLICATION_SID",
    ]);
    const complete = loadConfig({
      TELNYX_API_KEY: "KEY",
      TELNYX_ACCOUNT_SID: "AC1",
      TELNYX_APPLICATION_SID: "AP1",
      TELNYX_PHONE_NUMBER: "+15550100",
    });
    assert.deepEqual(missingFor(complete, "start_call"), []);
    // Blank counts as missing.
    assert.deepEqual(
      missingFor(loadConfig({ TELNYX_API_KEY: "" }), "start_call"),
      [...TELNYX_VARS],
    );
  });

  await t.step("production_stream needs its variables only in production", () => {
    assert.deepEqual(missingFor(loadConfig({}), "production_stream"), []);
    const production = loadConfig({ ENV: "production", API_TOKEN: "a-long-random-token" });
    assert.deepEqual(missingFor(production, "production_stream"), [
      "AGENT_NAME",
      "ORGANIZATION_NAME",
    ]);
    const named = loadConfig({
      ENV: "production",
      API_TOKEN: "a-long-random-token",
      AGENT_NAME: "agent",
    });
    assert.deepEqual(missingFor(named, "production_stream"), ["ORGANIZATION_NAME"]);
  });

  await t.step("the voice agent's keys are needed locally, not in production", () => {
    assert.deepEqual(missingFor(loadConfig({ OPENAI_API_KEY: "sk" }), "voice_agent"), [
      "DEEPGRAM_API_KEY",
      "CARTESIA_API_KEY",
    ]);
    const production = loadConfig({ ENV: "production", API_TOKEN: "a-long-random-token" });
    assert.deepEqual(missingFor(production, "voice_agent"), []);
  });

  await t.step("allMissing unions every feature without duplicates", () => {
    assert.deepEqual(allMissing(loadConfig({})), [
      ...TELNYX_VARS,
      "OPENAI_API_KEY",
      "DEEPGRAM_API_KEY",
      "CARTESIA_API_KEY",
    ]);
    const production = loadConfig({
      ENV: "production",
      API_TOKEN: "a-long-random-token",
      TELNYX_API_KEY: "KEY",
    });
    assert.deepEqual(allMissing(production).sort(), [
      "AGENT_NAME",
      "ORGANIZATION_NAME",
      "TELNYX_ACCOUNT_SID",
      "TELNYX_APPLICATION_SID",
      "TELNYX_PHONE_NUMBER",
    ]);
    const everything = loadConfig({
      ENV: "production",
      API_TOKEN: "a-long-random-token",
      TELNYX_API_KEY: "KEY",
      TELNYX_ACCOUNT_SID: "AC1",
      TELNYX_APPLICATION_SID: "AP1",
      TELNYX_PHONE_NUMBER: "+15550100",
      AGENT_NAME: "agent",
      ORGANIZATION_NAME: "org",
    });
    assert.deepEqual(allMissing(everything), []);
  });
});

Deno.test("answering-machine settings: off and no message by default, a 30 s wait", () => {
  const config = loadConfig({});
  assert.equal(config.AMD, "off");
  assert.equal(config.VOICEMAIL_MESSAGE, undefined);
  assert.equal(config.VOICEMAIL_WAIT_SECONDS, 30);
  const set = loadConfig({
    AMD: "ON",
    VOICEMAIL_MESSAGE: "Hi {{name}}",
    VOICEMAIL_WAIT_SECONDS: "5",
  });
  assert.equal(set.AMD, "on");
  assert.equal(set.VOICEMAIL_MESSAGE, "Hi {{name}}");
  assert.equal(set.VOICEMAIL_WAIT_SECONDS, 5);
});

Deno.test("an invalid AMD or voicemail wait stops start-up naming the variable", () => {
  assert.match(configErrorFor({ AMD: "yes" }).message, /AMD="yes": must be one of: off, on/);
  assert.match(
    configErrorFor({ VOICEMAIL_WAIT_SECONDS: "0" }).message,
    /VOICEMAIL_WAIT_SECONDS="0": must be an integer between 1 and 300/,
  );
});

Deno.test("every variable of the schema is in env.example and the README's configuration table", () => {
  const example = Deno.readTextFileSync(new URL("../../env.example", import.meta.url));
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  // A table row names one variable (`| \`PORT\` |`) or several (`| \`A\`, \`B\` |`).
  const documented = new Set(
    [...readme.matchAll(/^\| (`[A-Z][A-Z0-9_]*`(?:, `[A-Z][A-Z0-9_]*`)*) \|/gm)]
      .flatMap((row) => row[1].split(", ").map((name) => name.slice(1, -1))),
  );
  const variables = Object.keys(EnvSchema.shape);
  assert.deepEqual(variables.filter((name) => !new RegExp(`^#? ?${name}=`, "m").test(example)), []);
  assert.deepEqual(variables.filter((name) => !documented.has(name)), []);
});
