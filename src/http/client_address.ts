/**
 * Who is on the other end of a request, for per-client limits.
 *
 * @module
 */

/**
 * The peer's IP address from the handler info Deno.serve passes as Hono's `c.env`, or
 * "unknown" (e.g. `app.request()` in tests, or a Unix socket). Behind a proxy this is the proxy.
 */
export function clientAddress(env: unknown): string {
  const addr = (env as { remoteAddr?: Deno.Addr } | undefined)?.remoteAddr;
  return addr && "hostname" in addr ? addr.hostname : "unknown";
}
