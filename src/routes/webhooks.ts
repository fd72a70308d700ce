/**
 * `POST /calls/:id/webhooks/resend`: delivers every stored event of a call again (same event
 * ids, so a receiver that already has them can tell). Bearer-token protected like `/start`.
 *
 * @module
 */
import { Hono } from "hono";
import type { Config } from "../config.ts";
import { ApiError } from "../http/api_error.ts";
import { requireApiToken } from "../http/require_api_token.ts";
import type { Webhooks } from "../webhooks/webhooks.ts";

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
