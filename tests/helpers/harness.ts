/**
 * Starts the real server on an ephemeral loopback port against the fake Telnyx API, with logs
 * captured, for integration tests.
 *
 * @module
 */
import { type Config, loadConfig } from "../../src/config.ts";
import { loggerFor, type RunningServer, startServer } from "../../src/server.ts";
import { voiceAgentStarter } from "../../src/session/voice_agent_starter.ts";
import type { VoiceAgent } from "../../src/session/voice_agent.ts";
import type { CallSession } from "../../src/session/call_session.ts";
import { FakeTelnyxApi } from "../fakes/telnyx_api.ts";
import type { RecordsKv } from "../../src/records/call_store.ts";
import { RecordingSink } from "./recording_sink.ts";
export { waitFor } from "./wait_for.ts";

export const TEST_API_KEY = "KEYtest_0123456789abcdef";
export const TEST_ACCOUNT = "acct-test-1";
export const TEST_APP = "app-test-1";
export const TEST_FROM = "+15550001111";

/** A running server plus its fakes. */
export interface Harness {
  server: RunningServer;
  telnyx: FakeTelnyxApi;
  config: Config;
  /** Sessions in creation order. */
  sessions: CallSession[];
  /** Voice agents in creation order (only with `withAgent`). */
  agents: VoiceAgent[];
  /** Captured log lines. */
  logs: string[];
  /** Call events the server recorded. */
  events: RecordingSink;
  /** POSTs `/start`. */
  start(payload: unknown, init?: { headers?: Record<string, string> }): Promise<Response>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a harness; `env` overrides the defaults (use "" to unset a variable). */
export async function startHarness(
  env: Record<string, string> = {},
  options: { withAgent?: boolean; kv?: RecordsKv } = {},
): Promise<Harness> {
  const telnyx = FakeTelnyxApi.start({ apiKey: TEST_API_KEY, accountSid: TEST_ACCOUNT });
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "debug",
    LOG_FORMAT: "json",
    TELNYX_API_KEY: TEST_API_KEY,
    TELNYX_ACCOUNT_SID: TEST_ACCOUNT,
    TELNYX_APPLICATION_SID: TEST_APP,
    TELNYX_PHONE_NUMBER: TEST_FROM,
    TELNYX_BASE_URL: telnyx.baseURL,
    TELNYX_TIMEOUT_MS: "1500",
    OPENAI_API_KEY: "sk-test-openai-key-000",
    DEEPGRAM_API_KEY: "dg-test-key-0000000",
    CARTESIA_API_KEY: "sk_car_test_key_0000",
    SHUTDOWN_GRACE_SECONDS: "1",
    KV_PATH: ":memory:",
    ...env,
  });
  const logs: string[] = [];
  const sessions: CallSession[] = [];
  const agents: VoiceAgent[] = [];
  const events = new RecordingSink();
  // The call-setup tests run sessions without an agent; the conversation tests attach the real one.
  const startAgent = options.withAgent
    ? voiceAgentStarter(config, (agent) => agents.push(agent))
    : undefined;
  const server = await startServer(config, {
    kv: options.kv,
    logger: loggerFor(config, (line) => logs.push(line)),
    events,
    onSession: (s) => {
      sessions.push(s);
      startAgent?.(s);
    },
  });
  const close = async () => {
    await server.shutdown();
    await telnyx.close();
  };
  return {
    server,
    telnyx,
    config,
    sessions,
    agents,
    logs,
    events,
    start: (payload, init) =>
      fetch(`${server.url}/start`, {
        method: "POST",
        headers: { "content-type": "application/json", ...init?.headers },
        body: typeof payload === "string" ? payload : JSON.stringify(payload),
      }),
    close,
    [Symbol.asyncDispose]: close,
  };
}
