/**
 * `POST /start`: places an outbound call whose `/answer` URL carries the signed custom data.
 *
 * The checks run as middleware in order of cost, so a refused request never gets its body read:
 * draining, bearer token, configuration, then the body size.
 *
 * @module
 */
import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import type { AppDeps } from "../app.ts";
import {
  type AnalysisSpec,
  MAX_ANALYSIS_BYTES,
  parseAnalysisSpec,
} from "../analysis/analysis_spec.ts";
import { type Config, missingFor } from "../config.ts";
import { ApiError } from "../http/api_error.ts";
import { publicBaseUrl } from "../http/public_url.ts";
import { requireApiToken } from "../http/require_api_token.ts";
import { encodeBodyParam } from "../telnyx/body_param.ts";
import { TelnyxRequestError } from "../telnyx/calls.ts";
import { CALLBACK_PATHS } from "./callbacks.ts";
import { targetPolicyFor, webhookUrlProblem } from "../webhooks/target_policy.ts";

/** Longest `webhook_url`. */
const MAX_WEBHOOK_URL_LENGTH = 2048;

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
  /** Post-call analysis; checked for OpenAI strict structured outputs. */
  analysis: z.unknown().optional().transform((value, ctx): AnalysisSpec | undefined => {
    if (value === undefined || value === null) return undefined;
    const parsed = parseAnalysisSpec(value);
    if ("spec" in parsed) return parsed.spec;
    ctx.addIssue({ code: "custom", message: parsed.problem });
    return z.NEVER;
  }),
  /** This call's own webhook target; its address is checked against the config below. */
  webhook_url: z.unknown().optional().transform((value, ctx) => {
    if (value === undefined || value === null || value === "") return undefined;
    if (typeof value === "string" && value.length <= MAX_WEBHOOK_URL_LENGTH) return value.trim();
    ctx.addIssue({
      code: "custom",
      message: `webhook_url must be a string of at most ${MAX_WEBHOOK_URL_LENGTH} characters, ` +
        'e.g. "https://example.com/hooks/calls"',
    });
    return z.NEVER;
  }),
});

type StartRequest = z.infer<typeof StartRequestSchema>;

/**
 * Headroom over MAX_BODY_BYTES for the rest of the request (phone number, webhook_url, analysis,
 * whitespace).
 */
const REQUEST_OVERHEAD_BYTES = 1024 + MAX_WEBHOOK_URL_LENGTH + MAX_ANALYSIS_BYTES;

/** The `/start` route. */
export function startRoute(
  deps: Pick<AppDeps, "config" | "logger" | "calls" | "signer" | "isDraining" | "events">,
): Hono {
  const { config, logger } = deps;
  // The JSON of custom data is at most about as long as its base64, plus the phone number.
  const requestLimit = config.MAX_BODY_BYTES * 2 + REQUEST_OVERHEAD_BYTES;

  const refuseWhileDraining: MiddlewareHandler = async (_c, next) => {
    if (deps.isDraining()) {
      throw new ApiError(503, "shutting_down", "The server is shutting down; try again shortly.");
    }
    await next();
  };

  const requireToken = requireApiToken(config);

  const requireConfigured: MiddlewareHandler = async (_c, next) => {
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
    await next();
  };

  const limitBody = bodyLimit({
    maxSize: requestLimit,
    onError: () => {
      throw new ApiError(
        413,
        "request_too_large",
        `Request body is over ${requestLimit} bytes. Custom data is limited to MAX_BODY_BYTES ` +
          "once encoded; send less, e.g. an id the bot can look up.",
        { limit: requestLimit },
      );
    },
  });

  return new Hono().post(
    "/start",
    refuseWhileDraining,
    requireToken,
    requireConfigured,
    limitBody,
    async (c) => {
      const calls = deps.calls!;
      const signer = deps.signer!;
      const request = parseStartRequest(await c.req.text(), config);
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
          "Cannot tell which URL Telnyx should call back: the Host header is missing or " +
            "invalid. Set PUBLIC_BASE_URL (e.g. https://abc.ngrok.app).",
        );
      }
      // The call id is not known until Telnyx answers this request, so this URL is bound to
      // the custom data only; /answer binds the Stream URL to the call.
      const answerUrl = await signer.signUrl(`${base}/answer`, {
        purpose: "answer",
        body: bodyParam,
      });

      const to = request.phone_number;
      // The logger masks the number, as it does every number it writes.
      const log = logger.child({ to });
      log.info("placing call");
      if (logger.enabled("debug")) log.debug("custom data", { body: request.body });
      let placed;
      try {
        // Not tied to the client's connection: once Telnyx has the request, the phone may ring
        // whether or not the client is still there to hear the answer.
        placed = await calls.placeCall(to, answerUrl, {
          status: await signer.signUrl(`${base}${CALLBACK_PATHS.status}`, {
            purpose: "status",
            body: "",
          }),
          amd: config.AMD === "on"
            ? await signer.signUrl(`${base}${CALLBACK_PATHS.amd}`, { purpose: "amd", body: "" })
            : undefined,
        });
      } catch (error) {
        if (!(error instanceof TelnyxRequestError)) throw error;
        log.warn(error.kind === "refused" ? "telnyx refused the call" : "telnyx not reached", {
          status: error.status,
          error: error.message,
        });
        if (error.kind === "timeout") {
          throw new ApiError(
            504,
            "telnyx_timeout",
            `Telnyx did not answer within ${config.TELNYX_TIMEOUT_MS} ms (TELNYX_TIMEOUT_MS). ` +
              "The call may or may not have been placed; check the Telnyx portal before retrying.",
          );
        }
        if (error.kind === "unreachable") {
          // What the connection failed with is in the log line above.
          throw new ApiError(
            502,
            "telnyx_unreachable",
            "Could not reach Telnyx. Check this server's network access to Telnyx (and " +
              "TELNYX_BASE_URL, if set). Should the connection have failed after the request " +
              "went out, the call may have been placed: check the Telnyx portal before retrying.",
          );
        }
        throw new ApiError(502, "telnyx_error", error.message, { telnyx_status: error.status });
      }
      log.info("call placed", { call: placed.callControlId, telnyx_status: placed.status });
      if (placed.callControlId) {
        deps.events.record(placed.callControlId, {
          type: "placed",
          at: Date.now(),
          to,
          from: config.TELNYX_PHONE_NUMBER!,
          body: request.body,
          analysis: request.analysis,
          webhookUrl: request.webhook_url,
          remoteConversation: config.ENV === "production",
        });
      }
      return c.json({
        call_control_id: placed.callControlId ?? "unknown",
        status: "call_initiated",
        phone_number: to,
      });
    },
  );
}

/**
 * Parses and validates the `/start` JSON. `analysis` comes back as the call's effective spec
 * (the request's, else `ANALYSIS_SCHEMA`); `webhook_url` is checked against the target policy.
 */
function parseStartRequest(text: string, config: Config): StartRequest {
  let json: unknown;
  try {
    json = JSON.parse(text);
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
  const request = parsed.data;
  if (request.webhook_url !== undefined) {
    if (!config.WEBHOOK_SECRET) {
      throw new ApiError(
        503,
        "not_configured",
        "webhook_url needs WEBHOOK_SECRET: webhooks are only sent signed. Set WEBHOOK_SECRET " +
          "in the environment (see env.example), or leave webhook_url out.",
        { missing: ["WEBHOOK_SECRET"] },
      );
    }
    const problem = webhookUrlProblem(request.webhook_url, targetPolicyFor(config));
    if (problem) {
      const message = `webhook_url: ${problem}`;
      throw new ApiError(400, "invalid_request", message, {
        issues: [{ field: "webhook_url", message }],
      });
    }
  }
  if (request.analysis === undefined && config.ANALYSIS_SCHEMA !== undefined) {
    request.analysis = {
      schema: config.ANALYSIS_SCHEMA,
      ...(config.ANALYSIS_INSTRUCTIONS ? { instructions: config.ANALYSIS_INSTRUCTIONS } : {}),
    };
  }
  return request;
}
