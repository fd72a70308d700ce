/**
 * Who may use the browser pages (`/console`, `/playground`) and their APIs: anyone on this
 * machine, and anyone else only with the API token in the `Authorization` header. The token is
 * never taken from a URL, where proxies and access logs would keep it.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import type { Config } from "../config.ts";
import { ApiError } from "../http/api_error.ts";
import { clientAddress } from "../http/client_address.ts";
import { isLoopbackHost } from "../http/public_url.ts";
import { hasBearerToken } from "../security/bearer_token.ts";

/** Headers a reverse proxy adds: a request carrying one did not start on this machine. */
const FORWARDING_HEADERS = ["forwarded", "x-forwarded-for", "x-real-ip"];

/** True for 127.0.0.0/8 and ::1, also written as IPv4-mapped IPv6. */
export function isLoopbackAddress(address: string): boolean {
  const host = address.replace(/^::ffff:/i, "");
  return host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * True when the request comes straight from this machine, through no proxy, and from a page of
 * this service. A loopback address alone is not enough: any web site the developer has open can
 * make the browser send requests (and open WebSockets) to localhost, and a DNS-rebound name can
 * even read the answers. So the `Host` must name loopback and an `Origin`, when the browser sends
 * one, must be this same host.
 */
export function fromLoopback(c: Context): boolean {
  const forwarded = FORWARDING_HEADERS.some((name) => c.req.header(name) !== undefined);
  if (forwarded || !isLoopbackAddress(clientAddress(c.env))) return false;
  // The request URL's host is the `Host` header as the server received it.
  const url = new URL(c.req.url);
  if (!isLoopbackHost(url.host)) return false;
  const origin = c.req.header("origin");
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === url.host;
  } catch {
    return false;
  }
}

/** The refusal of a page request from elsewhere when no API_TOKEN is configured. */
export function loopbackOnly(): ApiError {
  return new ApiError(
    403,
    "loopback_only",
    "This page is open only from the machine the service runs on: set API_TOKEN to use " +
      "it from elsewhere, then enter the token on the page.",
  );
}

/**
 * Lets a request through when it comes straight from loopback, or carries
 * `Authorization: Bearer <API_TOKEN>`; otherwise 401 (or 403 when no token is configured, since
 * then nothing but loopback can ever be let in).
 */
export function requireLoopbackOrToken(config: Pick<Config, "API_TOKEN">): MiddlewareHandler {
  return async (c, next) => {
    if (!fromLoopback(c)) {
      if (!config.API_TOKEN) throw loopbackOnly();
      if (!hasBearerToken(c.req.header("authorization"), config.API_TOKEN)) {
        throw new ApiError(
          401,
          "unauthorized",
          "Missing or wrong API token: enter API_TOKEN on the page (it is sent as the header " +
            "`Authorization: Bearer <API_TOKEN>`, never in the URL).",
          {},
          { "WWW-Authenticate": 'Bearer realm="telnyx-outbound"' },
        );
      }
    }
    await next();
  };
}
