/**
 * The console's routes without a browser: who may read them, and the event stream that tells
 * the page which call changed.
 */
import assert from "node:assert/strict";
import type { Hono } from "hono";
import { deadline } from "../../src/async/deadline.ts";
import { consoleRoute } from "../../src/console/console_route.ts";
import { isLoopbackAddress } from "../../src/console/page_access.ts";
import { Logger } from "../../src/log.ts";
import { CallRecorder } from "../../src/records/call_recorder.ts";
import { CallStore } from "../../src/records/call_store.ts";
import { CallRegistry } from "../../src/session/call_registry.ts";
import { placed } from "../helpers/records.ts";
import { from, routeApp } from "../helpers/route_app.ts";

const TOKEN = "console-test-token";
const READ_WITHIN_MS = 5000;
/** The event stream's check for shutdown, short so the drain test is quick. */
const TICK_MS = 10;
const logger = new Logger({ sink: () => {}, format: "json", level: "error" });

function appFor(
  options: { token?: string; records?: CallRecorder; draining?: () => boolean } = {},
): Hono {
  return routeApp(
    consoleRoute({
      config: { API_TOKEN: options.token } as never,
      logger,
      registry: new CallRegistry(),
      records: options.records,
      isDraining: options.draining ?? (() => false),
    }, { tickMs: TICK_MS }),
  );
}

Deno.test("loopback addresses: 127.0.0.0/8, ::1 and their IPv4-mapped forms only", () => {
  for (const address of ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopbackAddress(address), address);
  }
  for (const address of ["10.0.0.1", "::ffff:10.0.0.1", "128.0.0.1", "unknown", "127.example"]) {
    assert.ok(!isLoopbackAddress(address), address);
  }
});

Deno.test("console API is open from loopback without a token, even when one is set", async () => {
  const res = await appFor({ token: TOKEN }).request("/console/api/calls", {}, from("127.0.0.1"));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { live: [], recent: [], records: false });
});

Deno.test("console API from elsewhere needs the token in the Authorization header", async () => {
  const app = appFor({ token: TOKEN });
  const without = await app.request("/console/api/calls", {}, from("10.1.2.3"));
  assert.equal(without.status, 401);
  assert.equal((await without.json()).error.code, "unauthorized");
  const withToken = await app.request("/console/api/calls", {
    headers: { authorization: `Bearer ${TOKEN}` },
  }, from("10.1.2.3"));
  assert.equal(withToken.status, 200);
  await withToken.body?.cancel();
});

Deno.test("a proxied request from loopback counts as from elsewhere", async () => {
  const res = await appFor({ token: TOKEN }).request("/console/api/calls", {
    headers: { "x-forwarded-for": "203.0.113.9" },
  }, from("127.0.0.1"));
  assert.equal(res.status, 401);
  await res.body?.cancel();
});

Deno.test("another web site's request to loopback needs the token (cross-site request)", async () => {
  const app = appFor({ token: TOKEN });
  const res = await app.request("http://127.0.0.1:7860/console/api/calls", {
    headers: { origin: "https://example.com" },
  }, from("127.0.0.1"));
  assert.equal(res.status, 401);
  await res.body?.cancel();
  const sameSite = await app.request("http://127.0.0.1:7860/console/api/calls", {
    headers: { origin: "http://127.0.0.1:7860" },
  }, from("127.0.0.1"));
  assert.equal(sameSite.status, 200);
  await sameSite.body?.cancel();
});

Deno.test("a name that resolves to loopback but is not loopback needs the token (DNS rebinding)", async () => {
  const res = await appFor({ token: TOKEN }).request(
    "http://rebind.example.com:7860/console/api/calls",
    {},
    from("127.0.0.1"),
  );
  assert.equal(res.status, 401);
  await res.body?.cancel();
});

Deno.test("console API from elsewhere with no API_TOKEN configured is refused with 403", async () => {
  const res = await appFor().request("/console/api/calls", {}, from("10.1.2.3"));
  assert.equal(res.status, 403);
  assert.equal((await res.json()).error.code, "loopback_only");
});

Deno.test("the console page itself carries no data and loads nothing from elsewhere", async () => {
  const app = appFor({ token: TOKEN });
  const page = await app.request("/console", {}, from("10.1.2.3"));
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-security-policy")!, /default-src 'self'/);
  const html = await page.text();
  assert.match(html, /<script type="module" src="\/console\/console.js"><\/script>/);
  assert.match(html, /<link rel="stylesheet" href="\/pages\/pages.css">/);
  assert.doesNotMatch(html, /https?:\/\//, "no CDN");
  const script = await app.request("/console/console.js", {}, from("10.1.2.3"));
  assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.doesNotMatch(await script.text(), /[?&]token=/, "the token never goes in a URL");
});

Deno.test("event stream: a hello, then one `call` event per committed call event", async () => {
  const kv = await Deno.openKv(":memory:");
  const recorder = new CallRecorder(new CallStore(kv, { retentionDays: 30 }), { logger });
  try {
    const res = await appFor({ records: recorder }).request(
      "/console/api/events",
      {},
      from("127.0.0.1"),
    );
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const readUntil = async (pattern: RegExp) => {
      while (!pattern.test(text)) {
        const { value, done } = await deadline(reader.read(), READ_WITHIN_MS, {
          what: `event stream to match ${pattern}`,
        });
        if (done) break;
        text += value;
      }
    };
    await readUntil(/event: hello/);
    recorder.record("call-1", placed(Date.now()));
    await readUntil(/event: call\ndata: .*\n\n/);
    assert.match(text, /event: call\ndata: {"kind":"call","id":"call-1","event":"placed"}/);
    await reader.cancel();
  } finally {
    await recorder.close();
    kv.close();
  }
});

Deno.test("event stream ends by itself once the server drains", async () => {
  let draining = false;
  const res = await appFor({ draining: () => draining }).request(
    "/console/api/events",
    {},
    from("127.0.0.1"),
  );
  const reader = res.body!.getReader();
  await deadline(reader.read(), READ_WITHIN_MS, { what: "the hello event" });
  draining = true;
  for (;;) {
    const { done } = await deadline(reader.read(), READ_WITHIN_MS, {
      what: "the stream to end while draining",
    });
    if (done) break;
  }
});
