/**
 * Admission control in front of the routes: caps on requests being handled at once (per client
 * and overall) and a deadline for a request body to arrive, so one client cannot hold the
 * server's descriptors with slow or endless requests. Refusals are immediate, name the limit,
 * and ask the client to close the connection (Deno itself keeps an idle connection open, so a
 * client that ignores the request still holds its descriptor until it leaves).
 *
 * @module
 */
import { deadline, DeadlineError } from "../async/deadline.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { ApiError } from "./api_error.ts";

/** The admission limits, from the environment (see `src/config.ts`). */
export type ConnectionLimits = Pick<
  Config,
  | "MAX_REQUESTS_IN_FLIGHT"
  | "MAX_REQUESTS_IN_FLIGHT_PER_CLIENT"
  | "REQUEST_BODY_TIMEOUT_SECONDS"
  | "DESCRIPTOR_RESERVE"
>;

/** The handler shape of `Deno.serve`. */
export type ServeHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** Seconds a refused client is asked to wait before retrying. */
const RETRY_AFTER_SECONDS = 1;

/** Wraps `handler` with the in-flight caps and the request body deadline. */
export function limitRequests(
  handler: ServeHandler,
  limits: ConnectionLimits,
  logger: Logger,
): ServeHandler {
  let inFlight = 0;
  const perClient = new Map<string, number>();
  // One warning per burst rather than one per refused request: a flood would flood the logs too.
  let refusedSinceWarning = 0;
  let warnedAt = -Infinity;
  const noteRefusal = (code: string, client: string) => {
    refusedSinceWarning++;
    const now = performance.now();
    if (now - warnedAt < 10_000) return;
    logger.warn("refusing requests over the admission limits", {
      code,
      client,
      refused: refusedSinceWarning,
      in_flight: inFlight,
    });
    warnedAt = now;
    refusedSinceWarning = 0;
  };

  return async (request, info) => {
    const client = info.remoteAddr.hostname;
    const fromClient = perClient.get(client) ?? 0;
    if (fromClient >= limits.MAX_REQUESTS_IN_FLIGHT_PER_CLIENT) {
      noteRefusal("too_many_requests", client);
      return refusal(
        429,
        "too_many_requests",
        `This client already has ${fromClient} requests in progress; the limit is ` +
          `${limits.MAX_REQUESTS_IN_FLIGHT_PER_CLIENT} (MAX_REQUESTS_IN_FLIGHT_PER_CLIENT). ` +
          "Wait for them to finish, then retry.",
        limits.MAX_REQUESTS_IN_FLIGHT_PER_CLIENT,
      );
    }
    if (inFlight >= limits.MAX_REQUESTS_IN_FLIGHT) {
      noteRefusal("server_busy", client);
      return refusal(
        503,
        "server_busy",
        `The server is handling ${inFlight} requests, its limit (MAX_REQUESTS_IN_FLIGHT=` +
          `${limits.MAX_REQUESTS_IN_FLIGHT}). Retry shortly.`,
        limits.MAX_REQUESTS_IN_FLIGHT,
      );
    }
    inFlight++;
    perClient.set(client, fromClient + 1);
    try {
      return await handler(withBodyDeadline(request, limits.REQUEST_BODY_TIMEOUT_SECONDS), info);
    } finally {
      inFlight--;
      const left = (perClient.get(client) ?? 1) - 1;
      if (left === 0) perClient.delete(client);
      else perClient.set(client, left);
    }
  };
}

function refusal(status: 429 | 503, code: string, message: string, limit: number): Response {
  return Response.json({ error: { code, message, limit } }, {
    status,
    // A well-behaved client closes on `connection: close` and frees its descriptor at once.
    headers: { "retry-after": String(RETRY_AFTER_SECONDS), connection: "close" },
  });
}

/**
 * The same request, whose body errors with a 408 {@link ApiError} unless it has arrived in full
 * within `seconds`. WebSocket upgrades and bodiless requests pass through untouched (an upgrade
 * needs the original request object). The copy carries no abort signal.
 */
export function withBodyDeadline(request: Request, seconds: number): Request {
  if (!request.body) return request;
  const ms = seconds * 1000;
  const ends = performance.now() + ms;
  const reader = request.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await deadline(reader.read(), ends - performance.now(), {
          what: "request body",
        });
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        if (!(error instanceof DeadlineError)) throw error;
        await reader.cancel(error).catch(() => {});
        controller.error(
          new ApiError(
            408,
            "request_timeout",
            `The request body did not arrive within ${seconds} s ` +
              "(REQUEST_BODY_TIMEOUT_SECONDS). Send the whole body at once.",
            { limit_seconds: seconds },
            { connection: "close" },
          ),
        );
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  // Not `new Request(request, …)`: that copies `request.signal`, whose legacy semantics (it also
  // aborts after a successful response) Deno warns about on first use. No route reads it.
  return new Request(request.url, { method: request.method, headers: request.headers, body });
}
