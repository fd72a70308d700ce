/**
 * The test certificate for `127.0.0.1`, for fakes that speak TLS as their vendor does. Clients
 * trust it with `--cert tests/fakes/tls/ca.pem` (`tests/fakes/tls/make_certs.sh` makes both).
 *
 * Deno's `fetch` offers HTTP/2 over TLS (ALPN) and `Deno.serve` accepts it, as a vendor's HTTPS
 * front usually does: a fake served in plain HTTP/1.1 is read differently (one body chunk per
 * event-loop turn).
 *
 * @module
 */

const TLS_DIR = new URL("./tls/", import.meta.url);

let pair: { cert: string; key: string } | undefined;

/** The certificate and key in PEM, as `Deno.serve` and `Deno.listenTls` take them. */
export function loopbackTls(): { cert: string; key: string } {
  pair ??= {
    cert: Deno.readTextFileSync(new URL("cert.pem", TLS_DIR)),
    key: Deno.readTextFileSync(new URL("key.pem", TLS_DIR)),
  };
  return pair;
}
