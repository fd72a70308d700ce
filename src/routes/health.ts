/**
 * `GET /health`: whether the process takes calls, and how many it holds.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppDeps } from "../app.ts";

/** The `/health` route. */
export function healthRoute(
  deps: Pick<AppDeps, "config" | "registry" | "version" | "isDraining">,
): Hono {
  return new Hono().get("/health", (c) =>
    c.json({
      status: deps.isDraining() ? "draining" : "ok",
      active_calls: deps.registry.active,
      // Media sockets that have not sent `start` yet: a high figure means a slow or abusive peer.
      pending_media_sockets: deps.registry.pending,
      version: deps.version,
      env: deps.config.ENV,
    }));
}
