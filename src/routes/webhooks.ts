/**
 * `POST /calls/:id/webhooks/resend`: delivers every stored event of a call again (same event
 * ids, so a receiver that already has them can tell). Bearer-token protected like `/start`.
 *
 * @module
 */
import { Hono, type MiddlewareHandler } from "hono";
import type { Config } from "../config.ts";
import { ApiError } from "../http/api_error.ts";
import { hasBearerToken } from "../security/bearer_token.ts";
import type { Webhooks } from "../webhooks/webhooks.ts";

/** The `API_TOKEN` check of `/start`, for the other routes that act on calls. */
export function requireApiToken(config: Pick<Config, "API_TOKEN">): MiddlewareHandler {
  return async (c, next) => {
    if (config.API_TOKEN && !hasBearerToken(c.req.header("authorization"), config.API_TOKEN)) {
      throw new ApiError(
        401,
        "unauthorized",
        "Missing or wrong API token: send the header `Authorization: Bearer <API_TOKEN>`.",
        {},
        { "WWW-Authenticate": 'Bearer realm="telnyx-outbound"' },
      );
    }
    await next();
  };
}

/** The resend route; `webhooks` is undefined when `WEBHOOK_SECRET` is not set. */
export function webhooksRoute(
  deps: { config: Pick<Config, "API_TOKEN">; webhooks: Webhooks | undefined },
): Hono {
  return new Hono().post(
    "/calls/:id/webhooks/resend",
    requireApiToken(deps.config),
    async (c) => {
      if (!deps.webhooks) {
        throw new ApiError(
          503,
          "not_configured",
          "Webhooks are off: set WEBHOOK_SECRET (and WEBHOOK_URL, or webhook_url in /start).",
          { missing: ["WEBHOOK_SECRET"] },
        );
      }
      const callId = c.req.param("id");
      const resent = await deps.webhooks.resend(callId);
      if (resent === 0) {
        throw new ApiError(
          404,
          "not_found",
          `No webhook events are stored for call ${JSON.stringify(callId)}: the id is unknown, ` +
            "the call had no webhook target, or its events have expired.",
        );
      }
      return c.json({ call_id: callId, deliveries: resent }, 202);
    },
  );
}
