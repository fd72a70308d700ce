/**
 * Assembles the service from its configuration and runs it: builds the dependencies, serves
 * HTTP, and drains calls on shutdown.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import { createApp } from "./app.ts";
import { allMissing, type Config } from "./config.ts";
import { Logger, type LogSink } from "./log.ts";
import { UrlSigner } from "./security/url_signature.ts";
import { type CallEventSink, discardCallEvents } from "./records/call_events.ts";
import { WebhookVerifier } from "./security/webhook_signature.ts";
import { CallRegistry } from "./session/call_registry.ts";
import type { CallSession } from "./session/call_session.ts";
import { TelnyxCalls } from "./telnyx/calls.ts";
import { createVad, preloadVad } from "./audio/vad.ts";
import { createChatStreamer } from "./services/llm.ts";
import { type LiveTranscriber, openLiveTranscriber, type TranscriptEvent } from "./services/stt.ts";
import { CartesiaSpeaker } from "./services/tts.ts";
import { VoiceAgent } from "./session/voice_agent.ts";
import { limitRequests } from "./http/connection_limits.ts";
import { serveResiliently } from "./http/resilient_listener.ts";
import { settledWithin } from "./async/deadline.ts";
import { CallRecorder } from "./records/call_recorder.ts";
import { CallStore, type RecordsKv } from "./records/call_store.ts";
import { openRecordsKv } from "./records/open_kv.ts";
import { createAnalysisLlm } from "./analysis/analyze_call.ts";
import { reportCallOutcomes } from "./outcomes/call_outcomes.ts";
import { webhooksFromConfig } from "./webhooks/webhooks.ts";

/** Longest shutdown waits for webhooks being stored and analyses running. */
const OUTCOMES_IDLE_MS = 5_000;
/** Longest shutdown waits for call records still being written. */
const RECORDS_FLUSH_MS = 5000;

/** The service's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** A running server. */
export interface RunningServer {
  /** Base URL it listens on, e.g. `http://127.0.0.1:7860`. */
  url: string;
  registry: CallRegistry;
  /** Call records; undefined when the KV store could not be opened. */
  records: CallRecorder | undefined;
  /**
   * Stops placing calls, lets live calls run for SHUTDOWN_GRACE_SECONDS, hangs up the rest,
   * then closes the listener. Idempotent.
   */
  shutdown(): Promise<void>;
  /** Resolves when the server has fully stopped. */
  finished: Promise<void>;
}

/** Options for {@link startServer}. */
export interface StartServerOptions {
  logger?: Logger;
  onSession?: (session: CallSession) => void;
  /**
   * KV for call records instead of opening KV_PATH; the caller keeps ownership (it is not
   * closed at shutdown).
   */
  kv?: RecordsKv;
  /** Also receives every call event (tests watch them here); records get them regardless. */
  events?: CallEventSink;
}

/** Per-call changes to the configured agent (the browser playground tries prompts out). */
export interface AgentOverrides {
  systemPrompt?: string;
  greeting?: string;
  firstSpeaker?: "callee" | "bot";
  /** Sees every transcript event the agent gets, e.g. to show interim words. */
  onTranscript?: (event: TranscriptEvent) => void;
}

/**
 * Starts a voice agent on each new call (local mode with the AI keys set). Any failure to start
 * ends that call, never the process.
 */
export function voiceAgentStarter(
  config: Config,
  onAgent?: (agent: VoiceAgent) => void,
  overrides: AgentOverrides = {},
): ((session: CallSession) => void) | undefined {
  const { OPENAI_API_KEY, DEEPGRAM_API_KEY, CARTESIA_API_KEY } = config;
  if (config.ENV === "production" || !OPENAI_API_KEY || !DEEPGRAM_API_KEY || !CARTESIA_API_KEY) {
    return undefined;
  }
  // One HTTP client for all calls: the LLM is stateless per request.
  const llm = createChatStreamer({
    apiKey: OPENAI_API_KEY,
    baseURL: config.OPENAI_BASE_URL,
    model: config.OPENAI_MODEL,
    timeoutMs: config.LLM_TIMEOUT_MS,
  });
  return (session) => {
    const log = session.log;
    const start = async () => {
      const vad = await createVad();
      const agent = new VoiceAgent(session, {
        llm,
        speaker: new CartesiaSpeaker({
          apiKey: CARTESIA_API_KEY,
          baseURL: config.CARTESIA_BASE_URL,
          model: config.CARTESIA_MODEL,
          voiceId: config.CARTESIA_VOICE_ID,
          audioFormat: session.outputFormat,
          log: (level, msg, fields) => log[level](`tts: ${msg}`, fields),
        }),
        openTranscriber: (signal) =>
          observed(
            openLiveTranscriber({
              apiKey: DEEPGRAM_API_KEY,
              baseUrl: config.DEEPGRAM_BASE_URL,
              engine: config.STT_ENGINE,
              audioFormat: session.inputFormat,
              model: config.DEEPGRAM_MODEL,
              eagerEotThreshold: config.FLUX_EAGER_EOT_THRESHOLD,
              signal,
              log: (level, msg, fields) => log[level](`stt: ${msg}`, fields),
            }),
            overrides.onTranscript,
          ),
        vad,
        sttEngine: config.STT_ENGINE,
        systemPrompt: overrides.systemPrompt ?? config.SYSTEM_PROMPT,
        greeting: overrides.greeting ?? config.GREETING,
        firstSpeaker: overrides.firstSpeaker ?? config.FIRST_SPEAKER,
        maxCallSeconds: config.MAX_CALL_SECONDS,
        idleTimeoutSeconds: config.IDLE_TIMEOUT_SECONDS,
        voicemailMessage: config.VOICEMAIL_MESSAGE,
        voicemailWaitSeconds: config.VOICEMAIL_WAIT_SECONDS,
      });
      onAgent?.(agent);
      agent.start();
    };
    start().catch((error) => {
      log.error("voice agent failed to start; ending the call", { error });
      void session.hangUp("error");
    });
  };
}

/** `stt` whose events also go to `observe`, when given. */
function observed(
  stt: LiveTranscriber,
  observe: ((event: TranscriptEvent) => void) | undefined,
): LiveTranscriber {
  if (!observe) return stt;
  return {
    sendAudio: (audio) => stt.sendAudio(audio),
    finalize: () => stt.finalize(),
    close: () => stt.close(),
    get audioSeconds() {
      return stt.audioSeconds;
    },
    async *[Symbol.asyncIterator]() {
      for await (const event of stt) {
        observe(event);
        yield event;
      }
    },
  };
}

/** The logger the configuration asks for, with every secret redacted. */
export function loggerFor(config: Config, sink?: LogSink): Logger {
  return new Logger({
    sink,
    level: config.LOG_LEVEL,
    format: config.LOG_FORMAT ?? (config.ENV === "production" ? "json" : "pretty"),
    secrets: [
      config.TELNYX_API_KEY,
      config.OPENAI_API_KEY,
      config.DEEPGRAM_API_KEY,
      config.CARTESIA_API_KEY,
      config.API_TOKEN,
      config.BODY_SIGNING_SECRET,
    ],
  });
}

/** Starts serving `config`. */
export async function startServer(
  config: Config,
  options: StartServerOptions = {},
): Promise<RunningServer> {
  const logger = options.logger ?? loggerFor(config);
  const registry = new CallRegistry();
  const { records, kv, closeKv } = await openRecords(config, logger, options.kv);
  // Outcomes leave after KV commits: webhooks (when WEBHOOK_SECRET is set) and the analysis.
  const outcomesStop = new AbortController();
  // A test may hand in a KV wrapper that fails on purpose; webhooks need the real store.
  const webhooks = kv instanceof Deno.Kv ? webhooksFromConfig(config, { kv, logger }) : undefined;
  const outcomes = records
    ? reportCallOutcomes({
      records,
      webhooks,
      analysisLlm: config.OPENAI_API_KEY
        ? createAnalysisLlm({
          apiKey: config.OPENAI_API_KEY,
          baseURL: config.OPENAI_BASE_URL,
          model: config.OPENAI_MODEL,
        })
        : undefined,
      logger,
      signal: outcomesStop.signal,
    })
    : undefined;
  const webhookWorker = webhooks?.run(outcomesStop.signal);

  const secret = config.BODY_SIGNING_SECRET ?? config.TELNYX_API_KEY;
  const signer = secret
    ? await UrlSigner.create(secret, {
      lifetimes: { answer: config.SIGNED_URL_TTL_SECONDS, ws: config.STREAM_URL_TTL_SECONDS },
      derive: !config.BODY_SIGNING_SECRET,
    })
    : undefined;
  const calls = config.TELNYX_API_KEY && config.TELNYX_ACCOUNT_SID &&
      config.TELNYX_APPLICATION_SID && config.TELNYX_PHONE_NUMBER
    ? new TelnyxCalls({
      apiKey: config.TELNYX_API_KEY,
      accountSid: config.TELNYX_ACCOUNT_SID,
      applicationSid: config.TELNYX_APPLICATION_SID,
      fromNumber: config.TELNYX_PHONE_NUMBER,
      baseURL: config.TELNYX_BASE_URL,
      timeoutMs: config.TELNYX_TIMEOUT_MS,
    })
    : undefined;
  const webhookVerifier = config.TELNYX_PUBLIC_KEY
    ? new WebhookVerifier(config.TELNYX_PUBLIC_KEY)
    : undefined;

  const onSession = options.onSession ?? voiceAgentStarter(config);
  if (onSession !== undefined && options.onSession === undefined) {
    // The VAD's wasm module once per process, before the first call rather than during it.
    await preloadVad().catch((error) => {
      logger.warn("voice activity detector not loaded; the first call will retry", { error });
    });
  }
  let draining = false;
  const app = createApp({
    config,
    logger,
    registry,
    version: VERSION,
    signer,
    webhookVerifier,
    calls,
    isDraining: () => draining,
    onSession,
    events: allOf(records, options.events),
    records,
    webhooks,
    callExtras: webhooks && {
      webhookDeliveries: (callId) => webhooks.deliveriesFor(callId),
      forget: (callId) => webhooks.forget(callId),
    },
  });

  const missing = allMissing(config);
  if (missing.length > 0) {
    logger.warn(`not configured: ${missing.join(", ")} (the features needing them answer 503)`);
  }
  if (!config.API_TOKEN) {
    logger.warn("API_TOKEN is not set: anyone who can reach /start can place calls");
  }

  const server = await serveResiliently({
    port: config.PORT,
    hostname: config.HOST,
    handler: limitRequests((request, info) => app.fetch(request, info), config, logger),
    logger,
    descriptorReserve: config.DESCRIPTOR_RESERVE,
    // Closing a failed listener's connections also closes its media sockets: only with no call.
    canRetire: () => registry.active === 0,
  });
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `http://${host === "0.0.0.0" ? "localhost" : host}:${addr.port}`;
  logger.info("listening", { url, env: config.ENV, version: VERSION });

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      draining = true;
      logger.info("shutting down", {
        active_calls: registry.active,
        grace_seconds: config.SHUTDOWN_GRACE_SECONDS,
      });
      const result = await registry.drain(config.SHUTDOWN_GRACE_SECONDS * 1000);
      await server.shutdown();
      if (records) {
        if (!(await settledWithin(records.flush(), RECORDS_FLUSH_MS))) {
          logger.warn("call records still unwritten at shutdown", { events: records.pending });
        }
        // The last calls' call.ended goes into KV before the store closes; an analysis still
        // running then is stopped and recorded as failed.
        if (outcomes && !(await outcomes.idle(OUTCOMES_IDLE_MS))) {
          logger.warn("post-call work still running at shutdown; stopping it");
        }
        outcomes?.stop();
        outcomesStop.abort();
        await settledWithin(webhookWorker ?? Promise.resolve(), OUTCOMES_IDLE_MS);
        await records.close();
      }
      closeKv?.();
      logger.info("shut down", {
        finished_calls: result.finished,
        hung_up_calls: result.hungUp,
        unconfirmed_hangups: result.unconfirmed,
        pending_sockets_closed: result.pendingClosed,
      });
    })();

  return { url, registry, records, shutdown, finished: server.finished };
}

/**
 * Opens the call-record store. A store that does not open costs the records, never the calls:
 * the server runs on and `/calls` answers 503.
 */
async function openRecords(
  config: Config,
  logger: Logger,
  given: RecordsKv | undefined,
): Promise<
  {
    records: CallRecorder | undefined;
    kv: RecordsKv | undefined;
    closeKv: (() => void) | undefined;
  }
> {
  let kv: RecordsKv;
  let closeKv: (() => void) | undefined;
  if (given) kv = given;
  else {
    try {
      const opened = await openRecordsKv(config.KV_PATH);
      kv = opened;
      closeKv = () => opened.close();
    } catch (error) {
      logger.error("call records are off: the KV store did not open; check KV_PATH", { error });
      return { records: undefined, kv: undefined, closeKv: undefined };
    }
  }
  const store = new CallStore(kv, { retentionDays: config.CALL_RETENTION_DAYS });
  return { records: new CallRecorder(store, { logger }), kv, closeKv };
}

/** One sink that passes each event to every given sink. */
function allOf(...sinks: (CallEventSink | undefined)[]): CallEventSink {
  const present = sinks.filter((sink): sink is CallEventSink => sink !== undefined);
  if (present.length === 0) return discardCallEvents;
  if (present.length === 1) return present[0];
  return { record: (callId, event) => present.forEach((sink) => sink.record(callId, event)) };
}
