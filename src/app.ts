/**
 * HTTP routes: `/start` places a call, `/answer` tells Telnyx to stream it to `/ws`, `/ws` hands
 * the media socket to a CallSession, `/health` reports on the process.
 *
 * @module
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { z } from "zod";
import { type Config, missingFor, PIPECAT_REGIONS } from "./config.ts";
import { ApiError } from "./http/api_error.ts";
import { publicBaseUrl, webSocketOrigin } from "./http/public_url.ts";
import type { Logger } from "./log.ts";
import { hasBearerToken } from "./security/bearer_token.ts";
import type { UrlSigner } from "./security/url_signature.ts";
import type { WebhookVerifier } from "./security/webhook_signature.ts";
import type { CallRegistry } from "./session/call_registry.ts";
import type { CallSession, HangupCall } from "./session/call_session.ts";
import { serveMediaSocket } from "./session/media_socket.ts";
import { BodyParamError, decodeBodyParam, encodeBodyParam } from "./telnyx/body_param.ts";
import { type TelnyxCalls, TelnyxRequestError } from "./telnyx/calls.ts";
import { buildHangupTeXml, buildStreamTeXml } from "./telnyx/texml.ts";

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
  /** Each new session is passed here (the conversation attaches to it). */
  onSession?: (session: CallSession) => void;
}

/** E.164: `+`, then 2–15 digits, the first not 0. */
const E164 = /^\+[1-9]\d{1,14}$/;

const StartRequestSchema = z.object({
  phone_number: z.unknown().optional().transform((value, ctx) => {
    if (typeof value === "string" && E164.test(value.trim())) return value.trim();
    ctx.addIssue({
      code: "custom",
      message: value === undefined
        ? 'phone_number is required: the number to call in E.164 format, e.g. "+15551234567"'
        : typeof value === "number"
        ? 'phone_number must be a JSON string, not a number: write "+15551234567" in quotes ' +
          "(a number loses the leading + and any leading zeros)"
        : 'phone_number must be in E.164 format: "+" then 2 to 15 digits, no spaces, e.g. ' +
          '"+15551234567"',
    });
    return z.NEVER;
  }),
  body: z.unknown().optional().transform((value, ctx) => {
    if (value === undefined) return {};
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      return value as Record<string, unknown>;
    }
    const kind = value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
    ctx.addIssue({
      code: "custom",
      message: `body must be a JSON object with your custom data, not ${kind}; ` +
        'e.g. "body": {"name": "Zoë"}, or leave it out',
    });
    return z.NEVER;
  }),
});

/** Largest `/answer` request body read (Telnyx's form fields are far smaller). */
const ANSWER_MAX_BYTES = 64 * 1024;

/** Headroom over MAX_BODY_BYTES for the rest of the request (phone number, whitespace). */
const REQUEST_OVERHEAD_BYTES = 1024;

/** Builds the Hono app. */
export function createApp(deps: AppDeps): Hono {
  const { config, logger } = deps;
  const app = new Hono();

  const origins = config.CORS_ORIGINS.split(",").map((o) => o.trim()).filter(Boolean);
  app.use(
    "*",
    cors({
      origin: origins.includes("*") ? "*" : origins,
      allowMethods: ["GET", "POST", "OPTIONS"],
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
        message: `No route ${c.req.method} ${c.req.path}. Routes: POST /start, ` +
          "POST|GET /answer, GET /ws (WebSocket), GET /health.",
      },
    }, 404)
  );

  app.get("/health", (c) =>
    c.json({
      status: deps.isDraining() ? "draining" : "ok",
      active_calls: deps.registry.active,
      version: deps.version,
      env: config.ENV,
    }));

  app.post("/start", async (c) => {
    if (deps.isDraining()) {
      throw new ApiError(503, "shutting_down", "The server is shutting down; try again shortly.");
    }
    if (config.API_TOKEN && !hasBearerToken(c.req.header("authorization"), config.API_TOKEN)) {
      throw new ApiError(
        401,
        "unauthorized",
        "Missing or wrong API token: send the header `Authorization: Bearer <API_TOKEN>`.",
        {},
        { "WWW-Authenticate": 'Bearer realm="telnyx-outbound"' },
      );
    }
    const missing = [
      ...missingFor(config, "start_call"),
      ...missingFor(config, "production_stream"),
      // A phone that rings with nobody able to talk is worse than a refused request.
      ...missingFor(config, "voice_agent"),
    ];
    if (missing.length > 0 || !deps.calls || !deps.signer) {
      throw new ApiError(
        503,
        "not_configured",
        `Cannot place calls: set ${missing.join(", ")} in the environment (see env.example).`,
        { missing },
      );
    }

    const request = await readStartRequest(c.req.raw, config.MAX_BODY_BYTES);
    const bodyParam = Object.keys(request.body).length > 0 ? encodeBodyParam(request.body) : "";
    if (bodyParam.length > config.MAX_BODY_BYTES) {
      throw new ApiError(
        413,
        "body_too_large",
        `body is ${bodyParam.length} bytes once base64-encoded; the limit is ` +
          `${config.MAX_BODY_BYTES} bytes (MAX_BODY_BYTES). Send less custom data, e.g. an id ` +
          "the bot can look up.",
        { limit: config.MAX_BODY_BYTES, size: bodyParam.length },
      );
    }
    const base = publicBaseUrl(config.PUBLIC_BASE_URL, {
      host: c.req.header("host"),
      forwardedProto: c.req.header("x-forwarded-proto"),
    });
    if (!base) {
      throw new ApiError(
        400,
        "unknown_public_url",
        "Cannot tell which URL Telnyx should call back: the Host header is missing or invalid. " +
          "Set PUBLIC_BASE_URL (e.g. https://abc.ngrok.app).",
      );
    }
    const answerUrl = await signedUrl(`${base}/answer`, bodyParam, "answer", deps.signer);

    const to = request.phone_number;
    const log = logger.child({ to: maskNumber(to) });
    log.info("placing call");
    if (logger.enabled("debug")) log.debug("custom data", { body: request.body });
    let placed;
    try {
      // Not tied to the client's connection: once Telnyx has the request, the phone may ring
      // whether or not the client is still there to hear the answer.
      placed = await deps.calls.placeCall(to, answerUrl);
    } catch (error) {
      if (!(error instanceof TelnyxRequestError)) throw error;
      log.warn("telnyx refused the call", { status: error.status, error: error.message });
      if (error.kind === "timeout") {
        throw new ApiError(
          504,
          "telnyx_timeout",
          `Telnyx did not answer within ${config.TELNYX_TIMEOUT_MS} ms (TELNYX_TIMEOUT_MS). ` +
            "The call may or may not have been placed; check the Telnyx portal before retrying.",
        );
      }
      throw new ApiError(502, "telnyx_error", error.message, { telnyx_status: error.status });
    }
    log.info("call placed", { call: placed.callControlId, telnyx_status: placed.status });
    return c.json({
      call_control_id: placed.callControlId ?? "unknown",
      status: "call_initiated",
      phone_number: to,
    });
  });

  const answer = async (c: { req: { raw: Request } }) => {
    const request = c.req.raw;
    const url = new URL(request.url);
    // Telnyx's form is a few hundred bytes; nobody gets to make us buffer more before checks.
    let rawBody = "";
    if (request.method === "POST") {
      try {
        rawBody = new TextDecoder().decode(await readLimited(request, ANSWER_MAX_BYTES));
      } catch {
        logger.warn("refusing /answer: request body too large");
        return xml(buildHangupTeXml());
      }
    }
    const form = new URLSearchParams(
      request.method === "POST" ? rawBody : url.search,
    );
    const log = logger.child({ call: form.get("CallSid") ?? undefined });
    const hangup = (reason: string) => {
      log.warn("refusing /answer: hanging up", { reason });
      return xml(buildHangupTeXml());
    };

    if (deps.webhookVerifier) {
      const check = await deps.webhookVerifier.verify(rawBody, request.headers);
      if (!check.ok) return hangup(`telnyx webhook signature: ${check.reason}`);
    }
    if (!deps.signer) {
      return hangup("cannot verify the URL: set BODY_SIGNING_SECRET or TELNYX_API_KEY");
    }
    const bodyParam = url.searchParams.get("body") ?? "";
    const check = await deps.signer.verify(
      "answer",
      bodyParam,
      url.searchParams.get("exp") ?? undefined,
      url.searchParams.get("sig") ?? undefined,
    );
    if (!check.ok) return hangup(`url signature ${check.reason}`);

    let streamUrl: string;
    if (config.ENV === "production") {
      const missing = missingFor(config, "production_stream");
      if (missing.length > 0) return hangup(`ENV=production needs ${missing.join(", ")}`);
      // Exactly the original example's URL, so a Pipecat Cloud agent reads the same parameters.
      const params = new URLSearchParams({
        serviceHost: `${config.AGENT_NAME}.${config.ORGANIZATION_NAME}`,
      });
      if (bodyParam) params.set("body", bodyParam);
      streamUrl = `wss://${PIPECAT_REGIONS[config.PIPECAT_REGION]}/ws/telnyx?${params}`;
    } else {
      const base = publicBaseUrl(config.PUBLIC_BASE_URL, {
        host: request.headers.get("host"),
        forwardedProto: request.headers.get("x-forwarded-proto"),
      });
      if (!base) return hangup("cannot tell the public URL: set PUBLIC_BASE_URL");
      streamUrl = await signedUrl(`${webSocketOrigin(base)}/ws`, bodyParam, "ws", deps.signer);
    }
    log.info("answering with media stream", {
      stream_host: new URL(streamUrl).host,
      from: form.get("From") ? maskNumber(form.get("From")!) : undefined,
    });
    return xml(buildStreamTeXml({ streamUrl }));
  };
  app.post("/answer", answer);
  app.get("/answer", answer);

  app.get("/ws", async (c) => {
    const request = c.req.raw;
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      throw new ApiError(
        426,
        "upgrade_required",
        "/ws is the Telnyx media WebSocket; connect with a WebSocket client.",
        {},
        { Upgrade: "websocket" },
      );
    }
    const url = new URL(request.url);
    const bodyParam = url.searchParams.get("body") ?? "";
    const refusal = await checkSocketUrl(deps.signer, url, bodyParam);
    const { socket, response } = Deno.upgradeWebSocket(request);
    if (refusal) {
      logger.warn("refusing media socket", { reason: refusal });
      // 1008 "policy violation": the peer learns why, and Telnyx logs it on its side.
      socket.addEventListener("open", () => socket.close(1008, refusal), { once: true });
      return response;
    }
    serveMediaSocket(socket, {
      body: bodyParam ? decodeBodyParam(bodyParam) : {},
      logger,
      registry: deps.registry,
      hangupCall: hangupVia(deps.calls),
      onSession: deps.onSession,
    });
    return response;
  });

  return app;
}

/** Why a media socket URL is refused, or undefined when it is genuine. */
async function checkSocketUrl(
  signer: UrlSigner | undefined,
  url: URL,
  bodyParam: string,
): Promise<string | undefined> {
  if (!signer) return "server cannot verify signatures (no BODY_SIGNING_SECRET/TELNYX_API_KEY)";
  const check = await signer.verify(
    "ws",
    bodyParam,
    url.searchParams.get("exp") ?? undefined,
    url.searchParams.get("sig") ?? undefined,
  );
  if (!check.ok) return `signature ${check.reason}`;
  if (!bodyParam) return undefined;
  try {
    decodeBodyParam(bodyParam);
    return undefined;
  } catch (error) {
    return error instanceof BodyParamError ? error.message : "body undecodable";
  }
}

function hangupVia(calls: TelnyxCalls | undefined): HangupCall {
  return (callControlId) => {
    if (!calls) return Promise.reject(new Error("TELNYX_API_KEY is not set; cannot hang up"));
    return calls.hangup(callControlId);
  };
}

async function signedUrl(
  base: string,
  bodyParam: string,
  purpose: "answer" | "ws",
  signer: UrlSigner,
): Promise<string> {
  const { exp, sig } = await signer.sign(purpose, bodyParam);
  // Same encoding as the original (`quote(b64, safe="")`), then our signature.
  const body = bodyParam ? `body=${encodeURIComponent(bodyParam)}&` : "";
  return `${base}?${body}exp=${exp}&sig=${sig}`;
}

function xml(text: string): Response {
  return new Response(text, { headers: { "content-type": "application/xml; charset=utf-8" } });
}

/** Keeps enough of a phone number to tell calls apart in logs without logging it whole. */
function maskNumber(number: string): string {
  return number.length > 6 ? `${number.slice(0, 4)}…${number.slice(-2)}` : "…";
}

/** Reads and validates the `/start` JSON, refusing oversize requests before parsing them. */
async function readStartRequest(
  request: Request,
  maxBodyBytes: number,
): Promise<z.infer<typeof StartRequestSchema>> {
  const limit = maxBodyBytes * 2 + REQUEST_OVERHEAD_BYTES;
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw tooLarge(limit);
  const bytes = await readLimited(request, limit);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new ApiError(
      400,
      "invalid_json",
      `Request body is not valid JSON (${(error as Error).message}). Send ` +
        '{"phone_number": "+15551234567", "body": {…}} with Content-Type: application/json.',
    );
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new ApiError(
      400,
      "invalid_request",
      'Request body must be a JSON object: {"phone_number": "+15551234567", "body": {…}}.',
    );
  }
  const parsed = StartRequestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({
      field: i.path.join(".") || "(root)",
      message: i.message,
    }));
    throw new ApiError(400, "invalid_request", issues.map((i) => i.message).join("; "), {
      issues,
    });
  }
  return parsed.data;
}

function tooLarge(limit: number): ApiError {
  return new ApiError(
    413,
    "request_too_large",
    `Request body is over ${limit} bytes. Custom data is limited to MAX_BODY_BYTES once ` +
      "encoded; send less, e.g. an id the bot can look up.",
    { limit },
  );
}

/** Reads at most `limit` bytes, so a client cannot make us buffer an endless upload. */
async function readLimited(request: Request, limit: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of request.body) {
    total += chunk.length;
    if (total > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}
