/**
 * Admission limits in front of the routes: requests in flight are capped per client and overall,
 * and a request body that does not arrive in time is refused with 408.
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { loadConfig } from "../../src/config.ts";
import { type ConnectionLimits, limitRequests } from "../../src/http/connection_limits.ts";
import { Logger } from "../../src/log.ts";
import { startServer } from "../../src/server.ts";
import { waitFor } from "../helpers/harness.ts";

/** The limits a server started with no environment uses. */
const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = loadConfig({});

const quietLogger = (lines: string[] = []) =>
  new Logger({ level: "debug", format: "json", sink: (line) => lines.push(line) });

/** Serves a handler that holds every request until `release()`, behind the limits. */
function serveHeld(limits: Partial<ConnectionLimits>, logs: string[] = []) {
  const held = Promise.withResolvers<void>();
  let arrived = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    limitRequests(
      async () => {
        arrived++;
        await held.promise;
        return new Response("done");
      },
      { ...DEFAULT_CONNECTION_LIMITS, ...limits },
      quietLogger(logs),
    ),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    arrived: () => arrived,
    release: () => held.resolve(),
    async [Symbol.asyncDispose]() {
      held.resolve();
      await server.shutdown();
    },
  };
}

async function expectRefusal(res: Response, status: number, code: string, limit: number) {
  const json = await res.json();
  assert.equal(res.status, status);
  assert.equal(json.error.code, code);
  assert.equal(json.error.limit, limit);
  assert.match(json.error.message, /MAX_REQUESTS_IN_FLIGHT/);
  assert.equal(res.headers.get("retry-after"), "1");
  assert.equal(res.headers.get("connection"), "close");
}

Deno.test("a client over its in-flight limit gets 429 naming the limit, and is served once they finish", async () => {
  await using server = serveHeld({ MAX_REQUESTS_IN_FLIGHT_PER_CLIENT: 2 });
  const held = [fetch(server.url), fetch(server.url)];
  await waitFor(() => server.arrived() === 2, "two requests in flight");
  await expectRefusal(await fetch(server.url), 429, "too_many_requests", 2);
  server.release();
  for (const res of await Promise.all(held)) assert.equal(await res.text(), "done");
  // Its slots are free again once its requests are done.
  const after = await fetch(server.url);
  assert.equal(await after.text(), "done");
});

Deno.test("over the overall in-flight limit the server answers 503 server_busy", async () => {
  await using server = serveHeld({
    MAX_REQUESTS_IN_FLIGHT: 3,
    MAX_REQUESTS_IN_FLIGHT_PER_CLIENT: 10,
  });
  const held = [fetch(server.url), fetch(server.url), fetch(server.url)];
  await waitFor(() => server.arrived() === 3, "three requests in flight");
  await expectRefusal(await fetch(server.url), 503, "server_busy", 3);
  server.release();
  await Promise.all((await Promise.all(held)).map((res) => res.text()));
});

Deno.test("refusals during a burst are logged once, not once per request", async () => {
  const logs: string[] = [];
  await using server = serveHeld({ MAX_REQUESTS_IN_FLIGHT_PER_CLIENT: 1 }, logs);
  const held = fetch(server.url);
  await waitFor(() => server.arrived() === 1, "one request in flight");
  for (let i = 0; i < 5; i++) await (await fetch(server.url)).body?.cancel();
  server.release();
  await (await held).text();
  const warnings = logs.filter((l) => l.includes("refusing requests over the admission limits"));
  assert.equal(warnings.length, 1);
  assert.equal(JSON.parse(warnings[0]).client, "127.0.0.1");
});

Deno.test("a /start body that does not arrive in time is refused with 408", async () => {
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    KV_PATH: ":memory:",
    TELNYX_API_KEY: "KEYtest_0123456789abcdef",
    TELNYX_ACCOUNT_SID: "acct",
    TELNYX_APPLICATION_SID: "app",
    TELNYX_PHONE_NUMBER: "+15550001111",
    OPENAI_API_KEY: "sk-test-openai-key-000",
    DEEPGRAM_API_KEY: "dg-test-key-0000000",
    CARTESIA_API_KEY: "sk_car_test_key_0000",
    REQUEST_BODY_TIMEOUT_SECONDS: "1",
  });
  const server = await startServer(config, { logger: quietLogger() });
  try {
    const { port } = new URL(server.url);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    try {
      await conn.write(new TextEncoder().encode(
        "POST /start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          'Content-Length: 100\r\n\r\n{"phone_number":',
      ));
      const started = performance.now();
      const buffer = new Uint8Array(4096);
      const read = await deadline(conn.read(buffer), 5000, { what: "the 408 response" });
      const text = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
      assert.match(text, /^HTTP\/1\.1 408/);
      assert.match(text, /"code":"request_timeout"/);
      assert.match(text, /REQUEST_BODY_TIMEOUT_SECONDS/);
      assert.ok(performance.now() - started >= 900, "refused before its deadline");
    } finally {
      conn.close();
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("a request whose body arrives in time is served as before", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    limitRequests(
      async (request) => new Response(await request.text()),
      DEFAULT_CONNECTION_LIMITS,
      quietLogger(),
    ),
  );
  try {
    const res = await fetch(`http://127.0.0.1:${server.addr.port}`, {
      method: "POST",
      body: "hello",
    });
    assert.equal(await res.text(), "hello");
  } finally {
    await server.shutdown();
  }
});

Deno.test("the admission limits are read from the environment, with clear errors", () => {
  assert.equal(DEFAULT_CONNECTION_LIMITS.MAX_REQUESTS_IN_FLIGHT, 256);
  assert.equal(DEFAULT_CONNECTION_LIMITS.MAX_REQUESTS_IN_FLIGHT_PER_CLIENT, 32);
  assert.equal(
    loadConfig({ MAX_REQUESTS_IN_FLIGHT_PER_CLIENT: "8" }).MAX_REQUESTS_IN_FLIGHT_PER_CLIENT,
    8,
  );
  assert.throws(
    () => loadConfig({ REQUEST_BODY_TIMEOUT_SECONDS: "soon" }),
    /REQUEST_BODY_TIMEOUT_SECONDS.*must be an integer between 1 and 600/,
  );
});
