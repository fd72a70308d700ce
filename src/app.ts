/**
 * The HTTP app: shared middleware (CORS, the JSON error shape) around one small module per
 * route in `src/routes/`.
 *
 * @module
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { Config } from "./config.ts";
import { ApiError } from "./http/api_error.ts";
import type { Logger } from "./log.ts";
import type { UrlSigner } from "./security/url_signature.ts";
import type { WebhookVerifier } from "./security/webhook_signature.ts";
import type { CallRegistry } from "./session/call_registry.ts";
import type { CallSession } from "./session/call_session.ts";
import type { TelnyxCalls } from "./telnyx/calls.ts";
import type { CallEventSink } from "./records/call_events.ts";
import { answerRoute } from "./routes/answer.ts";
import { callbacksRoute } from "./routes/callbacks.ts";
import { healthRoute } from "./routes/health.ts";
import { mediaRoute } from "./routes/media.ts";
import { startRoute } from "./routes/start.ts";
import { callsRoute } from "./routes/calls.ts";
import { webhooksRoute } from "./routes/webhooks.ts";
import { consoleRoute } from "./console/console_route.ts";
import { playgroundRoute } from "./playground/playground_route.ts";
import { pagesRoute } from "./pages/pages.ts";
import type { Webhooks } from "./webhooks/webhooks.ts";
import type { CallRecorder } from "./records/call_recorder.ts";
import type { ClusterMember } from "./cluster/control.ts";

/** Everything the routes depend on; built by `createServer` or by tests. */
export interface AppDeps {
  config: Config;
  logger: Logger;
  registry: CallRegistry;
  version: string;
  /** Undefined when neither BODY_SIGNING_SECRET nor TELNYX_API_KEY is set. */
  signer: UrlSigner | undefined;
  /** Set when TELNYX_PUBLIC_KEY is configured. */
  webhookVerifier: WebhookVerifier | undefined;
  /** Undefined when a Telnyx variable needed to place calls is missing. */
  calls: TelnyxCalls | undefined;
  /** True once shutdown has begun: no new calls are placed. */
  isDraining: () => boolean;
  /** Where facts about calls go (`discardCallEvents` when records are off). */
  events: CallEventSink;
  /** Each new session is passed here (the conversation attaches to it). */
  onSession?: (session: CallSession) => void;
  /** Call records (the `/calls` API); undefined when the store did not open. */
  records?: CallRecorder;
  /** Parts of a record kept elsewhere, merged into `GET /calls/:id`. */
  callExtras?: {
    webhookDeliveries(callId: string): Promise<unknown[]>;
    /** Erases what else is kept of a call (its webhook events) when its record is deleted. */
    forget(callId: string): Promise<unknown>;
  };
  /** Webhook deliveries; undefined when WEBHOOK_SECRET is unset. */
  webhooks?: Webhooks;
  /** Set in a server process started by the supervisor (`WORKERS` above 1). */
  cluster?: ClusterMember;
}

/** Builds the Hono app. */
export function createApp(deps: AppDeps): Hono {
  const { config, logger } = deps;
  const app = new Hono();

  const origins = config.CORS_ORIGINS.split(",").map((o) => o.trim()).filter(Boolean);
  app.use(
    "*",
    cors({
      origin: origins.includes("*") ? "*" : origins,
      allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
      allowHeaders: ["Content-Type", "Authorization"],
    }),
  );

  app.onError((error, c) => {
    if (error instanceof ApiError) {
      return c.json(error.toJSON(), error.status, error.headers);
    }
    logger.error("unhandled error", { error, path: c.req.path });
    return c.json({
      error: { code: "internal_error", message: "Something went wrong on our side; see logs." },
    }, 500);
  });
  app.notFound((c) =>
    c.json({
      error: {
        code: "not_found",
        message: `No route ${c.req.method} ${c.req.path}. Routes: POST /start, POST /answer, ` +
          "POST /callbacks/status, POST /callbacks/amd, GET /ws (WebSocket), GET /health, " +
          "GET /calls, GET|DELETE /calls/:id, POST /calls/:id/hangup, " +
          "POST /calls/:id/webhooks/resend, GET /console, GET /playground.",
      },
    }, 404)
  );

  return app
    .route("/", healthRoute(deps))
    .route("/", startRoute(deps))
    .route("/", answerRoute(deps))
    .route("/", callbacksRoute(deps))
    .route("/", mediaRoute(deps))
    .route("/", callsRoute(deps))
    .route("/", webhooksRoute({ config: deps.config, webhooks: deps.webhooks }))
    .route("/", consoleRoute(deps))
    .route("/", playgroundRoute(deps))
    .route("/", pagesRoute());
}
