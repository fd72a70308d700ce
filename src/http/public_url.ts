/**
 * The public base URL Telnyx must use to reach this server.
 *
 * @module
 */

const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i;
const VALID_HOST = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/i;

/** True for hosts that can only be reached from this machine (served over plain http/ws). */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOST.test(host);
}

/**
 * `PUBLIC_BASE_URL` when configured, else derived from the request: the `Host` header, with
 * `X-Forwarded-Proto` (set by ngrok and most proxies) or else `http` for loopback hosts and
 * `https` for everything else. Undefined when the Host header is missing or malformed, so a
 * forged header can never inject a path or query into the URL given to Telnyx.
 */
export function publicBaseUrl(
  configured: string | undefined,
  headers: { host?: string | null; forwardedProto?: string | null },
): string | undefined {
  if (configured) return configured;
  const host = headers.host?.trim();
  if (!host || !VALID_HOST.test(host)) return undefined;
  const forwarded = headers.forwardedProto?.split(",")[0]?.trim().toLowerCase();
  const proto = forwarded === "http" || forwarded === "https"
    ? forwarded
    : isLoopbackHost(host)
    ? "http"
    : "https";
  return `${proto}://${host}`;
}

/** The WebSocket origin matching an http(s) base URL (`https` → `wss`, `http` → `ws`). */
export function webSocketOrigin(baseUrl: string): string {
  const url = new URL(baseUrl);
  const scheme = url.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
}
