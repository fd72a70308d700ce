/**
 * The playground's server side without a browser: what the page's messages mean, who may open
 * its socket, and the 16 kHz microphone audio the VAD hears at 8 kHz.
 */
import assert from "node:assert/strict";
import type { Hono } from "hono";
import { type Config, loadConfig } from "../../src/config.ts";
import { Logger } from "../../src/log.ts";
import {
  BROWSER_INPUT,
  browserTransportEvent,
  StartMessageSchema,
} from "../../src/playground/browser_transport.ts";
import { playgroundRoute } from "../../src/playground/playground_route.ts";
import { discardCallEvents } from "../../src/records/call_events.ts";
import { CallRegistry } from "../../src/session/call_registry.ts";
import { pcmDecoderFor } from "../../src/transport/call_transport.ts";
import { deadline } from "../../src/async/deadline.ts";
import { startHarness } from "../helpers/harness.ts";
import { from, routeApp } from "../helpers/route_app.ts";

const logger = new Logger({ sink: () => {}, format: "json", level: "error" });
const UPGRADE = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
};

function appFor(env: Record<string, string>): Hono {
  const config: Config = loadConfig({
    OPENAI_API_KEY: "sk-test",
    DEEPGRAM_API_KEY: "dg-test",
    CARTESIA_API_KEY: "sk_car_test",
    ...env,
  });
  return routeApp(
    playgroundRoute({
      config,
      logger,
      registry: new CallRegistry(),
      events: discardCallEvents,
      isDraining: () => false,
    }),
  );
}

Deno.test("page messages: played is a mark, stop ends the call, anything else is named", () => {
  assert.deepEqual(browserTransportEvent('{"type":"played","name":"m1"}'), {
    ok: true,
    event: { type: "mark", name: "m1" },
  });
  assert.deepEqual(browserTransportEvent('{"type":"stop"}'), { ok: true, event: { type: "stop" } });
  assert.equal(browserTransportEvent("not json").ok, false);
  assert.equal(browserTransportEvent('{"type":"media"}').ok, false);
});

Deno.test("start message: custom data must be an object; first speaker defaults to the bot", () => {
  const parsed = StartMessageSchema.parse({ type: "start", custom_data: { name: "Zoë" } });
  assert.equal(parsed.first_speaker, "bot");
  assert.equal(StartMessageSchema.safeParse({ type: "start", custom_data: [1] }).success, false);
  assert.equal(StartMessageSchema.safeParse({ type: "start", extra: 1 }).success, false);
});

Deno.test("playground socket from elsewhere with no API_TOKEN is refused before the upgrade", async () => {
  const res = await appFor({}).request("/playground/ws", { headers: UPGRADE }, from("10.0.0.8"));
  assert.equal(res.status, 403);
  assert.equal((await res.json()).error.code, "loopback_only");
});

Deno.test("playground socket without the AI keys answers 503 naming them", async () => {
  const res = await appFor({ DEEPGRAM_API_KEY: "", CARTESIA_API_KEY: "" }).request(
    "/playground/ws",
    { headers: UPGRADE },
    from("127.0.0.1"),
  );
  assert.equal(res.status, 503);
  const body = await res.json();
  assert.equal(body.error.code, "not_configured");
  assert.deepEqual(body.error.missing.sort(), ["CARTESIA_API_KEY", "DEEPGRAM_API_KEY"]);
});

Deno.test("playground socket path without an upgrade answers 426", async () => {
  const res = await appFor({}).request("/playground/ws", {}, from("127.0.0.1"));
  assert.equal(res.status, 426);
  await res.body?.cancel();
});

Deno.test("the playground page loads only its own scripts", async () => {
  const app = appFor({});
  const page = await app.request("/playground", {}, from("10.0.0.8"));
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /<script type="module" src="\/playground\/playground.js"><\/script>/);
  assert.match(html, /<link rel="stylesheet" href="\/pages\/pages.css">/);
  assert.doesNotMatch(html, /https?:\/\//, "no CDN");
  const worklet = await app.request("/playground/capture_worklet.js", {}, from("10.0.0.8"));
  assert.match(await worklet.text(), /registerProcessor\("capture"/);
});

Deno.test("16 kHz microphone audio reaches the 8 kHz VAD as the mean of each sample pair", () => {
  const wide = new Int16Array([100, 300, -1000, -3000, 32767, 32767]);
  const narrow = pcmDecoderFor(BROWSER_INPUT)(new Uint8Array(wide.buffer));
  assert.deepEqual([...narrow], [200, -2000, 32767]);
});

Deno.test("a bad start message is answered with the problem, then the socket closes", async () => {
  await using h = await startHarness();
  const socket = new WebSocket(`${h.server.url.replace(/^http/, "ws")}/playground/ws`);
  const messages: string[] = [];
  const closed = Promise.withResolvers<CloseEvent>();
  socket.onmessage = (event) => messages.push(event.data);
  socket.onclose = (event) => closed.resolve(event);
  socket.onopen = () => socket.send(JSON.stringify({ type: "start", custom_data: "Zoë" }));
  const close = await deadline(closed.promise, 5000, { what: "the socket to close" });
  assert.equal(close.code, 1008);
  const error = JSON.parse(messages[0]);
  assert.equal(error.type, "error");
  assert.equal(error.code, "bad_start");
  assert.match(error.message, /custom_data/);
  assert.equal(h.server.registry.active, 0, "no call was started");
});
