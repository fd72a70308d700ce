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
import { voiceAgentStarter } from "./session/voice_agent_starter.ts";
import type { CallSession } from "./session/call_session.ts";
import { TelnyxCalls } from "./telnyx/calls.ts";
import { preloadVad } from "./audio/vad.ts";
import { limitRequests } from "./http/connection_limits.ts";
import { serveResiliently } from "./http/resilient_listener.ts";
import { settledWithin } from "./async/deadline.ts";
import { CallRecorder } from "./records/call_recorder.ts";
import { CallStore, type RecordsKv } from "./records/call_store.ts";
import { openRecordsKv } from "./records/open_kv.ts";
import { createAnalysisLlm } from "./analysis/analyze_call.ts";
import { reportCallOutcomes } from "./outcomes/call_outcomes.ts";
import { webhooksFromConfig } from "./webhooks/webhooks.ts";
import { type ClusterMember, workerReport } from "./cluster/control.ts";

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
  /**
   * Set when this is one of the supervisor's server processes: it shares the port with the
   * others and reports its counts to the supervisor.
   */
  cluster?: ClusterMember;
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
    cluster: options.cluster,
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

  let server;
  try {
    server = await serveResiliently({
      port: config.PORT,
      hostname: config.HOST,
      handler: limitRequests((request, info) => app.fetch(request, info), config, logger),
      logger,
      descriptorReserve: config.DESCRIPTOR_RESERVE,
      // Closing a failed listener's connections also closes its media sockets: only with no call.
      canRetire: () => registry.active === 0,
      reusePort: options.cluster !== undefined,
    });
  } catch (error) {
    // Not serving (the port is taken, say, by another copy sharing this KV): release the store.
    outcomesStop.abort();
    closeKv?.();
    throw error;
  }
  // Only a server that listens delivers webhooks: a copy that failed to start would claim due
  // deliveries and die holding their leases.
  const webhookWorker = webhooks?.run(outcomesStop.signal);
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `http://${host === "0.0.0.0" ? "localhost" : host}:${addr.port}`;
  // Under a supervisor, it says "listening" once every server process does.
  logger.info(options.cluster ? "server process listening" : "listening", {
    url,
    env: config.ENV,
    version: VERSION,
  });
  if (options.cluster) {
    // A detection result another process received for a call this one may hold, or will.
    options.cluster.onAnsweredBy = (callControlId, answeredBy) => {
      registry.deliverAnsweredBy(callControlId, answeredBy);
    };
  }
  const reporting = new AbortController();
  const reported = options.cluster?.reportEvery(
    () => workerReport(options.cluster!.worker, registry, draining),
    reporting.signal,
    logger,
  );

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
      reporting.abort();
      await reported;
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
      // `deno task start`/`dev` may write only under ./data: the usual cause of a refusal here.
      const hint = error instanceof Deno.errors.NotCapable
        ? `; KV_PATH=${config.KV_PATH} is outside what this process may write: put it under ` +
          "./data (what `deno task start` and `dev` allow) or grant --allow-write for it"
        : "; check KV_PATH";
      logger.error(`call records are off: the KV store did not open${hint}`, { error });
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
