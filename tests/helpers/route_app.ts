/**
 * One route module on its own, for `app.request(...)` tests: an app that answers an ApiError as
 * the service does (its JSON body and status), and the connection info Deno.serve gives Hono.
 *
 * @module
 */
import { Hono } from "hono";
import { ApiError } from "../../src/http/api_error.ts";

/** An app serving `route`, with the service's JSON answer to an ApiError. */
export function routeApp(route: Hono): Hono {
  const app = new Hono();
  app.onError((error, c) =>
    error instanceof ApiError ? c.json(error.toJSON(), error.status) : c.text(String(error), 500)
  );
  return app.route("/", route);
}

/** Deno.serve's handler info for a client at `hostname`, as Hono sees it in `c.env`. */
export const from = (hostname: string) => ({
  remoteAddr: { transport: "tcp", hostname, port: 40000 },
});
