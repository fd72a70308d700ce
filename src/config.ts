/**
 * Every environment variable the service reads, parsed once by one zod schema.
 *
 * Missing secrets never stop the server: the feature that needs them answers 503 naming the
 * variable (see {@link missingFor}). Values that are present but wrong (`ENV=prod`, `PORT=abc`)
 * stop start-up, because running with a silently different setting is worse than not running.
 *
 * @module
 */
import { z } from "zod";
import { strictSchemaProblem } from "./analysis/analysis_spec.ts";
import { targetPolicyFor, webhookUrlProblem } from "./webhooks/target_policy.ts";

/** Empty strings in `.env` files mean "not set". */
const optionalString = z.preprocess(
  (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
  z.string().trim().optional(),
);

const optionalUrl = z.preprocess(
  (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
  z.url({ protocol: /^https?$/, error: "must be an http(s) URL, e.g. https://example.com" })
    .transform((u) => u.replace(/\/+$/, ""))
    .optional(),
);

function integer(defaultValue: number, min: number, max: number) {
  return z.preprocess(
    (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
    z.coerce.number({ error: `must be an integer between ${min} and ${max}` })
      .int({ error: `must be an integer between ${min} and ${max}` })
      .min(min, { error: `must be an integer between ${min} and ${max}` })
      .max(max, { error: `must be an integer between ${min} and ${max}` })
      .default(defaultValue),
  );
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T, defaultValue: T[number]) {
  return z.preprocess(
    (v) => (typeof v === "string" ? (v.trim() === "" ? undefined : v.trim().toLowerCase()) : v),
    z.enum(values, { error: `must be one of: ${values.join(", ")}` }).default(defaultValue),
  );
}

function flag(defaultValue: boolean) {
  return z.preprocess(
    (v) => (typeof v === "string" ? (v.trim() === "" ? undefined : v.trim().toLowerCase()) : v),
    z.enum(["true", "false", "1", "0"], { error: "must be true or false" })
      .default(defaultValue ? "true" : "false")
      .transform((v) => v === "true" || v === "1"),
  );
}

/** A JSON object in a variable (e.g. `ANALYSIS_SCHEMA='{"type":"object",…}'`). */
const optionalJsonObject = z.preprocess(
  (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
  z.string().optional().transform((text, ctx) => {
    if (text === undefined) return undefined;
    try {
      const value = JSON.parse(text);
      if (value !== null && typeof value === "object" && !Array.isArray(value)) {
        return value as Record<string, unknown>;
      }
    } catch (error) {
      ctx.addIssue({ code: "custom", message: `is not valid JSON (${(error as Error).message})` });
      return z.NEVER;
    }
    ctx.addIssue({ code: "custom", message: "must be a JSON object" });
    return z.NEVER;
  }),
);

/** Pipecat Cloud regions and their media-stream hosts (the original example's list). */
export const PIPECAT_REGIONS = {
  "us-west": "api.pipecat.daily.co",
  "us-east": "us-east.api.pipecat.daily.co",
  "eu-central": "eu-central.api.pipecat.daily.co",
  "ap-south": "ap-south.api.pipecat.daily.co",
} as const;

const regionNames = Object.keys(PIPECAT_REGIONS) as [keyof typeof PIPECAT_REGIONS];

const WORKERS_ERROR = { error: "must be auto or an integer between 1 and 256" };

/** The environment schema; the README's configuration table mirrors it. */
export const EnvSchema = z.object({
  PORT: integer(7860, 0, 65535),
  HOST: optionalString.default("0.0.0.0"),
  ENV: oneOf(["local", "production"], "local"),
  LOG_LEVEL: oneOf(["debug", "info", "warn", "error"], "info"),
  LOG_FORMAT: z.preprocess(
    (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
    z.enum(["json", "pretty"], { error: "must be one of: json, pretty" }).optional(),
  ),

  TELNYX_API_KEY: optionalString,
  TELNYX_ACCOUNT_SID: optionalString,
  TELNYX_APPLICATION_SID: optionalString,
  TELNYX_PHONE_NUMBER: optionalString,
  TELNYX_PUBLIC_KEY: optionalString,
  TELNYX_BASE_URL: optionalUrl,
  TELNYX_TIMEOUT_MS: integer(10_000, 100, 120_000),

  OPENAI_API_KEY: optionalString,
  OPENAI_BASE_URL: optionalUrl,
  DEEPGRAM_API_KEY: optionalString,
  DEEPGRAM_BASE_URL: z.preprocess(
    (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
    z.url({ protocol: /^(https?|wss?)$/, error: "must be an http(s) or ws(s) URL" })
      .transform((u) => u.replace(/\/+$/, ""))
      .optional(),
  ),
  CARTESIA_API_KEY: optionalString,
  CARTESIA_BASE_URL: optionalUrl,

  SYSTEM_PROMPT: optionalString,
  GREETING: optionalString,
  FIRST_SPEAKER: oneOf(["callee", "bot"], "callee"),
  OPENAI_MODEL: optionalString.default("gpt-4.1-mini"),
  LLM_TIMEOUT_MS: integer(10_000, 500, 120_000),
  STT_ENGINE: oneOf(["nova", "flux"], "nova"),
  DEEPGRAM_MODEL: optionalString,
  FLUX_EAGER_EOT_THRESHOLD: z.preprocess(
    (v) => (typeof v === "string" && v.trim() === "" ? undefined : v),
    z.coerce.number({ error: "must be a number between 0.3 and 0.9" })
      .min(0.3, { error: "must be a number between 0.3 and 0.9" })
      .max(0.9, { error: "must be a number between 0.3 and 0.9" })
      .optional(),
  ),
  CARTESIA_MODEL: optionalString.default("sonic-3"),
  CARTESIA_VOICE_ID: optionalString.default("71a7ad14-091c-4e8e-a314-022ece01c121"),
  MAX_CALL_SECONDS: integer(600, 5, 14_400),
  IDLE_TIMEOUT_SECONDS: integer(15, 3, 600),
  /** Answering-machine detection beside the conversation (Telnyx async AMD). */
  AMD: oneOf(["off", "on"], "off"),
  /** Left on an answering machine after its beep; `{{path}}` placeholders from the custom data. */
  VOICEMAIL_MESSAGE: optionalString,
  /** Longest wait for the beep after a machine was detected before the message is left anyway. */
  VOICEMAIL_WAIT_SECONDS: integer(30, 1, 300),

  AGENT_NAME: optionalString,
  ORGANIZATION_NAME: optionalString,
  PIPECAT_REGION: oneOf(regionNames, "us-west"),

  PUBLIC_BASE_URL: optionalUrl,
  API_TOKEN: optionalString,
  BODY_SIGNING_SECRET: optionalString,
  // Ringing lasts at most 120 s, and the /answer URL is minted before the call is placed.
  SIGNED_URL_TTL_SECONDS: integer(300, 150, 86_400),
  // Telnyx opens the Stream URL a moment after /answer returned it.
  STREAM_URL_TTL_SECONDS: integer(30, 5, 600),
  MEDIA_START_TIMEOUT_MS: integer(10_000, 100, 60_000),
  // A refused media socket whose peer ignores our close frame frees its pending slot then.
  MEDIA_CLOSE_TIMEOUT_MS: integer(5_000, 100, 60_000),
  // Telnyx streams audio all through a call: this long without a frame, the stream is dead.
  MEDIA_IDLE_TIMEOUT_MS: integer(60_000, 100, 600_000),
  MAX_PENDING_MEDIA_SOCKETS: integer(256, 1, 100_000),
  MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT: integer(32, 1, 100_000),
  MAX_BODY_BYTES: integer(4096, 16, 65_536),
  CORS_ORIGINS: optionalString.default("*"),
  SHUTDOWN_GRACE_SECONDS: integer(10, 0, 3600),
  /** Requests being handled at once, all clients together (then 503). */
  MAX_REQUESTS_IN_FLIGHT: integer(256, 1, 100_000),
  /** Requests being handled at once from one client address (then 429). */
  MAX_REQUESTS_IN_FLIGHT_PER_CLIENT: integer(32, 1, 100_000),
  /** Time for a request body to arrive in full, from the moment its headers did (then 408). */
  REQUEST_BODY_TIMEOUT_SECONDS: integer(10, 1, 600),
  /**
   * Descriptors held back while listening and handed to live calls when the listener runs out
   * (EMFILE); 0 disables the reserve.
   */
  DESCRIPTOR_RESERVE: integer(64, 0, 100_000),
  /**
   * Server processes sharing the port: `auto` (one per core where processes can be started,
   * one on Deno Deploy) or a count; 1 runs a single process with no supervisor.
   */
  WORKERS: z.preprocess(
    (v) => (typeof v === "string" ? (v.trim() === "" ? undefined : v.trim().toLowerCase()) : v),
    z.union([
      z.literal("auto"),
      z.coerce.number().int(WORKERS_ERROR).min(1, WORKERS_ERROR).max(256, WORKERS_ERROR),
    ], WORKERS_ERROR).default("auto"),
  ),

  /**
   * Where call records are kept: unset → ./data/calls.sqlite3 (the attached KV on Deno Deploy),
   * `:memory:`, a file path, or an http(s) URL of a denokv server (KV Connect).
   */
  KV_PATH: optionalString,
  /** Days a call record is kept (every key expires then). */
  CALL_RETENTION_DAYS: integer(30, 1, 3650),

  /** Receives every call's webhook events (besides a call's own `webhook_url`). */
  WEBHOOK_URL: optionalString,
  /** HMAC key of the `Webhook-Signature` header; webhooks are never sent unsigned. */
  WEBHOOK_SECRET: optionalString,
  /** Lets webhooks go to private, loopback, link-local and metadata addresses. */
  WEBHOOK_ALLOW_PRIVATE: flag(false),
  /** Default post-call analysis schema (strict structured-output JSON Schema). */
  ANALYSIS_SCHEMA: optionalJsonObject,
  ANALYSIS_INSTRUCTIONS: optionalString,
});

/** The parsed configuration. */
export type Config = z.infer<typeof EnvSchema>;

/** Thrown when a variable is set to a value the service cannot run with. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/**
 * Parses the environment. Throws {@link ConfigError} naming every bad variable and what it
 * accepts; never throws for a variable that is merely missing.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const result = EnvSchema.safeParse(env);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const name = String(issue.path[0] ?? "environment");
        const given = env[name];
        return `${name}=${JSON.stringify(given ?? "")}: ${issue.message}`;
      }),
    );
  }
  const config = result.data;
  if (config.MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT > config.MAX_PENDING_MEDIA_SOCKETS) {
    throw new ConfigError([
      `MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT=${config.MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT}: ` +
      `must not exceed MAX_PENDING_MEDIA_SOCKETS (${config.MAX_PENDING_MEDIA_SOCKETS}); ` +
      "lower it or raise MAX_PENDING_MEDIA_SOCKETS.",
    ]);
  }
  const problems: string[] = [];
  if (config.WEBHOOK_SECRET !== undefined && config.WEBHOOK_SECRET.length < 16) {
    problems.push(
      "WEBHOOK_SECRET: must be at least 16 characters; use a long random string " +
        "(e.g. `openssl rand -hex 32`).",
    );
  }
  if (config.WEBHOOK_URL !== undefined) {
    const problem = webhookUrlProblem(config.WEBHOOK_URL, targetPolicyFor(config));
    if (problem) problems.push(`WEBHOOK_URL=${JSON.stringify(config.WEBHOOK_URL)}: ${problem}`);
    if (config.WEBHOOK_SECRET === undefined) {
      problems.push(
        "WEBHOOK_URL is set but WEBHOOK_SECRET is not: webhooks are only sent signed. Set " +
          "WEBHOOK_SECRET to a long random string (e.g. `openssl rand -hex 32`).",
      );
    }
  }
  if (config.ANALYSIS_SCHEMA !== undefined) {
    const problem = strictSchemaProblem(config.ANALYSIS_SCHEMA);
    if (problem) problems.push(`ANALYSIS_SCHEMA: ${problem}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  if (config.ENV === "production" && !config.API_TOKEN) {
    // A public production endpoint without a token lets anyone dial any number on the account.
    throw new ConfigError([
      "API_TOKEN is required when ENV=production: without it anyone who finds the URL can place " +
      "calls on your Telnyx account. Set API_TOKEN to a long random string " +
      "(e.g. `openssl rand -hex 32`).",
    ]);
  }
  return config;
}

/** The features that depend on optional variables. */
export type Feature = "start_call" | "production_stream" | "voice_agent";

const REQUIRED: Record<Feature, readonly (keyof Config)[]> = {
  start_call: [
    "TELNYX_API_KEY",
    "TELNYX_ACCOUNT_SID",
    "TELNYX_APPLICATION_SID",
    "TELNYX_PHONE_NUMBER",
  ],
  production_stream: ["AGENT_NAME", "ORGANIZATION_NAME"],
  voice_agent: ["OPENAI_API_KEY", "DEEPGRAM_API_KEY", "CARTESIA_API_KEY"],
};

/** Names of the variables a feature needs that are not set (empty when it can run). */
export function missingFor(config: Config, feature: Feature): string[] {
  if (feature === "production_stream" && config.ENV !== "production") return [];
  // In production the Pipecat Cloud agent talks to the callee, with its own keys.
  if (feature === "voice_agent" && config.ENV === "production") return [];
  return REQUIRED[feature].filter((name) => config[name] === undefined);
}

/** Every variable some feature needs but that is unset, for the start-up log line. */
export function allMissing(config: Config): string[] {
  const names = new Set<string>();
  for (const feature of Object.keys(REQUIRED) as Feature[]) {
    for (const name of missingFor(config, feature)) names.add(name);
  }
  return [...names];
}
