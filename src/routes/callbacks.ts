/**
 * `POST /callbacks/status` and `POST /callbacks/amd`: Telnyx's form-encoded reports on a call we
 * placed, its progress (initiated, ringing, in-progress, completed, or why it never was
 * answered) and the answering-machine detection result.
 *
 * Each is verified like `/answer`: the URL signature of its own purpose (so an `/answer` or `/ws`
 * URL cannot stand in), plus Telnyx's Ed25519 signature over the raw body when
 * `TELNYX_PUBLIC_KEY` is set. A forged request gets a 4xx JSON error and changes nothing. A
 * genuine one becomes call events and a quick 200 however often it repeats: Telnyx retries
 * anything else, and the record applies repeats idempotently by `sequence`.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppDeps } from "../app.ts";
import { ApiError } from "../http/api_error.ts";
import type { SignaturePurpose } from "../security/url_signature.ts";
import {
  CallbackFormError,
  parseAmdCallback,
  parseProgressCallback,
  unansweredEndReason,
} from "../telnyx/callbacks.ts";

/** Largest callback body read (Telnyx's form fields are far smaller). */
const CALLBACK_MAX_BYTES = 64 * 1024;

/** Paths of the callback routes, for `/start` to sign. */
export const CALLBACK_PATHS = {
  status: "/callbacks/status",
  amd: "/callbacks/amd",
} as const satisfies Record<Extract<SignaturePurpose, "status" | "amd">, string>;

type CallbackDeps = Pick<
  AppDeps,
  "logger" | "signer" | "webhookVerifier" | "events" | "registry" | "cluster"
>;

/** The callback routes. */
export function callbacksRoute(deps: CallbackDeps): Hono {
  const { logger } = deps;

  /**
   * The raw body of a request that is genuinely ours and Telnyx's, or a thrown 4xx/503. Nothing
   * from the request is logged before it is verified: it could come from anyone.
   */
  const verified = async (c: Context, purpose: "status" | "amd"): Promise<string> => {
    const request = c.req.raw;
    const rawBody = await c.req.text();
    if (deps.webhookVerifier) {
      const check = await deps.webhookVerifier.verify(rawBody, request.headers);
      if (!check.ok) {
        logger.warn("refusing a Telnyx callback", { purpose, reason: check.reason });
        throw new ApiError(
          403,
          "invalid_webhook_signature",
          `The Telnyx Ed25519 signature is missing or wrong (${check.reason}). Callbacks are ` +
            "accepted from Telnyx only, signed with the key in TELNYX_PUBLIC_KEY.",
        );
      }
    }
    if (!deps.signer) {
      throw new ApiError(
        503,
        "not_configured",
        "Cannot verify callback URLs: set BODY_SIGNING_SECRET or TELNYX_API_KEY.",
        { missing: ["BODY_SIGNING_SECRET"] },
      );
    }
    const check = await deps.signer.verifyUrl(new URL(request.url), purpose);
    if (!check.ok) {
      logger.warn("refusing a Telnyx callback", {
        purpose,
        reason: `url signature ${check.reason}`,
      });
      throw new ApiError(
        403,
        "invalid_url_signature",
        `The callback URL's signature is ${check.reason}. Callback URLs are signed by /start ` +
          "for each call (exp and sig query parameters) and cannot be made up or edited.",
      );
    }
    return rawBody;
  };

  const limit = bodyLimit({
    maxSize: CALLBACK_MAX_BYTES,
    onError: () => {
      throw new ApiError(
        413,
        "request_too_large",
        `Callback body is over ${CALLBACK_MAX_BYTES} bytes; Telnyx callbacks are far smaller.`,
      );
    },
  });

  const postOnly = (path: string) => () => {
    throw new ApiError(
      405,
      "method_not_allowed",
      `${path} takes Telnyx's callbacks by POST only (calls are placed with the callback ` +
        "method POST).",
      {},
      { Allow: "POST" },
    );
  };

  return new Hono()
    .get(CALLBACK_PATHS.status, postOnly(CALLBACK_PATHS.status))
    .get(CALLBACK_PATHS.amd, postOnly(CALLBACK_PATHS.amd))
    .post(CALLBACK_PATHS.status, limit, async (c) => {
      const progress = readForm(await verified(c, "status"), parseProgressCallback);
      const log = logger.child({ call: progress.callSid });
      if (!progress.status) {
        // A status this service does not know yet: acknowledged so Telnyx does not retry it.
        log.warn("ignoring an unknown call status", { status: progress.rawStatus });
        return c.json({ received: true, ignored: "unknown CallStatus" });
      }
      const at = Date.now();
      log.info("call progress", {
        status: progress.status,
        sequence: progress.sequence,
        hangup_cause: progress.hangupCause,
      });
      deps.events.record(progress.callSid, {
        type: "progress",
        at,
        status: progress.status,
        sequence: progress.sequence,
        durationSeconds: progress.durationSeconds,
        hangupCause: progress.hangupCause,
        hangupSource: progress.hangupSource,
      });
      // No media socket ever comes for a call nobody answered: this is its end.
      const reason = unansweredEndReason(progress.status);
      if (reason) deps.events.record(progress.callSid, { type: "ended", at, reason });
      return c.json({ received: true });
    })
    .post(CALLBACK_PATHS.amd, limit, async (c) => {
      const amd = readForm(await verified(c, "amd"), parseAmdCallback);
      const log = logger.child({ call: amd.callSid });
      if (amd.rawAnsweredBy !== undefined) {
        log.warn("unknown AnsweredBy; treated as unknown", { answered_by: amd.rawAnsweredBy });
      }
      const session = deps.registry.byCall(amd.callSid);
      log.info("answering machine detection", {
        answered_by: amd.answeredBy,
        live_here: session !== undefined,
      });
      deps.events.record(amd.callSid, {
        type: "answered_by",
        at: Date.now(),
        answeredBy: amd.answeredBy,
      });
      // A result ahead of the stream waits in the registry for its session; the stream may
      // also be on another server process (WORKERS), which takes it from there.
      if (!deps.registry.deliverAnsweredBy(amd.callSid, amd.answeredBy)) {
        void deps.cluster?.shareAnsweredBy(amd.callSid, amd.answeredBy, log);
      }
      return c.json({ received: true });
    });
}

function readForm<T>(rawBody: string, parse: (raw: string) => T): T {
  try {
    return parse(rawBody);
  } catch (error) {
    if (error instanceof CallbackFormError) {
      throw new ApiError(400, "invalid_callback", error.message);
    }
    throw error;
  }
}
