/**
 * `POST /answer`: Telnyx's TeXML instruction fetch when the callee answers. A verified request
 * gets TeXML that streams the call to a Stream URL bound to that call; anything else gets a
 * hang-up.
 *
 * @module
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import type { AppDeps } from "../app.ts";
import { missingFor, PIPECAT_REGIONS } from "../config.ts";
import { ApiError } from "../http/api_error.ts";
import { publicBaseUrl, webSocketOrigin } from "../http/public_url.ts";
import { buildHangupTeXml, buildStreamTeXml } from "../telnyx/texml.ts";

/** Largest `/answer` request body read (Telnyx's form fields are far smaller). */
const ANSWER_MAX_BYTES = 64 * 1024;

/**
 * The form fields used from Telnyx's callback. CallSid is the call's call_control_id; it is
 * signed into the Stream URL, so printable ASCII of a sane length is all it may be.
 */
const AnswerFormSchema = z.object({
  CallSid: z.string().regex(/^[\x21-\x7e]{1,256}$/).optional().catch(undefined),
  From: z.string().max(64).optional().catch(undefined),
});

/** The `/answer` route. */
export function answerRoute(
  deps: Pick<AppDeps, "config" | "logger" | "signer" | "webhookVerifier">,
): Hono {
  const { config, logger } = deps;
  // Nothing from the request is logged before it is verified: it could come from anyone.
  const hangup = (reason: string) => {
    logger.warn("refusing /answer: hanging up", { reason });
    return xml(buildHangupTeXml());
  };

  return new Hono()
    .get("/answer", () => {
      // The calls we place set UrlMethod=POST; a GET is not Telnyx, and must not mint URLs.
      throw new ApiError(
        405,
        "method_not_allowed",
        "/answer is Telnyx's TeXML instruction fetch and accepts POST only (calls are placed " +
          "with UrlMethod=POST).",
        {},
        { Allow: "POST" },
      );
    })
    .post(
      "/answer",
      bodyLimit({
        maxSize: ANSWER_MAX_BYTES,
        onError: () => hangup(`request body over ${ANSWER_MAX_BYTES} bytes`),
      }),
      async (c) => {
        const request = c.req.raw;
        const rawBody = await c.req.text();
        const url = new URL(request.url);

        if (deps.webhookVerifier) {
          const check = await deps.webhookVerifier.verify(rawBody, request.headers);
          if (!check.ok) return hangup(`telnyx webhook signature: ${check.reason}`);
        }
        if (!deps.signer) {
          return hangup("cannot verify the URL: set BODY_SIGNING_SECRET or TELNYX_API_KEY");
        }
        const check = await deps.signer.verifyUrl(url, "answer");
        if (!check.ok) return hangup(`url signature ${check.reason}`);
        const bodyParam = check.fields.body;

        const form = AnswerFormSchema.parse(Object.fromEntries(new URLSearchParams(rawBody)));
        const callSid = form.CallSid;
        const log = logger.child({ call: callSid });

        let streamUrl: string;
        if (config.ENV === "production") {
          const missing = missingFor(config, "production_stream");
          if (missing.length > 0) return hangup(`ENV=production needs ${missing.join(", ")}`);
          // The URL Pipecat Cloud's Telnyx endpoint expects: its agent reads the same `body`.
          const params = new URLSearchParams({
            serviceHost: `${config.AGENT_NAME}.${config.ORGANIZATION_NAME}`,
          });
          if (bodyParam) params.set("body", bodyParam);
          streamUrl = `wss://${PIPECAT_REGIONS[config.PIPECAT_REGION]}/ws/telnyx?${params}`;
        } else {
          if (!callSid) return hangup("no valid CallSid in the request");
          const base = publicBaseUrl(config.PUBLIC_BASE_URL, {
            host: request.headers.get("host"),
            forwardedProto: request.headers.get("x-forwarded-proto"),
          });
          if (!base) return hangup("cannot tell the public URL: set PUBLIC_BASE_URL");
          // Bound to this call: the socket it opens can only ever become this call.
          streamUrl = await deps.signer.signUrl(`${webSocketOrigin(base)}/ws`, {
            purpose: "ws",
            body: bodyParam,
            call: callSid,
          });
        }
        log.info("answering with media stream", {
          stream_host: new URL(streamUrl).host,
          from: form.From, // masked by the logger
        });
        return xml(buildStreamTeXml({ streamUrl }));
      },
    );
}

function xml(text: string): Response {
  return new Response(text, { headers: { "content-type": "application/xml; charset=utf-8" } });
}
