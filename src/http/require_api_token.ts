/**
 * The `API_TOKEN` check every route that places, reads or ends calls runs first.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import type { Config } from "../config.ts";
import { hasBearerToken } from "../security/bearer_token.ts";
import { ApiError } from "./api_error.ts";

/** Refuses a request without `Authorization: Bearer <API_TOKEN>` (when a token is set) with 401. */
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
