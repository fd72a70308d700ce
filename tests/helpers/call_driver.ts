/**
 * Drives the Telnyx side of call set-up in tests: reads our TeXML and answers calls as Telnyx
 * would.
 *
 * @module
 */
import assert from "node:assert/strict";
import { DOMParser } from "@xmldom/xmldom";
import { deadline } from "../../src/async/deadline.ts";
import type { CallSession } from "../../src/session/call_session.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { type Harness, waitFor } from "./harness.ts";

/** Custom data with every character that could break a URL, base64 or XML. */
export const CUSTOM_DATA = {
  name: "Zoë",
  account: { tier: "premium" },
  note: "a & b < c > d \" ' +/=",
};

/** Parses TeXML and returns the `<Stream>` attributes and the pause length. */
export function readTeXml(text: string): { stream: Record<string, string>; pause?: string } {
  const doc = new DOMParser({ onError: (level, msg) => assert.fail(`${level}: ${msg}`) })
    .parseFromString(text, "text/xml");
  const stream = doc.getElementsByTagName("Stream")[0];
  assert.ok(stream, `no <Stream> in ${text}`);
  const attrs: Record<string, string> = {};
  for (let i = 0; i < stream.attributes.length; i++) {
    const a = stream.attributes.item(i)!;
    attrs[a.name] = a.value;
  }
  assert.equal(stream.parentNode?.nodeName, "Connect");
  const pause = doc.getElementsByTagName("Pause")[0]?.getAttribute("length") ?? undefined;
  return { stream: attrs, pause };
}

/**
 * Places a call through `/start` and answers it as Telnyx would; returns the Stream URL, bound
 * to `callSid`, which is the call_control_id the media client must send in `start`.
 */
export async function placeAndAnswer(
  h: Pick<Harness, "start" | "telnyx">,
  body: Record<string, unknown> | undefined = CUSTOM_DATA,
): Promise<{ callSid: string; streamUrl: string; answerUrl: string }> {
  const res = await h.start({ phone_number: "+15551234567", ...(body ? { body } : {}) });
  assert.equal(res.status, 200, await res.clone().text());
  const json = await res.json();
  const created = h.telnyx.createRequests.at(-1)!;
  const answerUrl = (created.body as { Url: string }).Url;
  const answer = await h.telnyx.answerCall(json.call_control_id);
  assert.equal(answer.status, 200);
  const { stream } = readTeXml(answer.text);
  return { callSid: json.call_control_id, streamUrl: stream.url, answerUrl };
}

/** A call placed, answered and streaming: its media client has sent `start`. */
export async function startLiveCall(
  h: Harness,
  body?: Record<string, unknown>,
): Promise<{ callSid: string; client: TelnyxMediaClient; session: CallSession }> {
  const { callSid, streamUrl } = await placeAndAnswer(h, body);
  const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
  const index = h.sessions.length;
  client.start();
  await waitFor(() => h.sessions.length > index, "session");
  return { callSid, client, session: h.sessions[index] };
}

/** Hang guard for a live call's end; not a timing assertion. */
const CALL_END_WITHIN_MS = 5_000;

/**
 * Ends a live call as Telnyx does when the callee hangs up (`stop`); resolves with the close the
 * server sent once the session has ended.
 */
export async function endLiveCall(
  call: { client: TelnyxMediaClient; session: CallSession },
): Promise<CloseEvent> {
  call.client.stop();
  await deadline(call.session.ended, CALL_END_WITHIN_MS, { what: "the call session to end" });
  return await deadline(call.client.closed, CALL_END_WITHIN_MS, {
    what: "the media socket to close",
  });
}

/**
 * A WebSocket upgrade request sent with fetch, for upgrades the server refuses with an HTTP
 * status (a WebSocket client only sees that the upgrade failed, not why).
 */
export function upgradeRequest(wsUrl: string): Promise<Response> {
  return fetch(wsUrl.replace(/^ws/, "http"), {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
}

/**
 * Opens a WebSocket over raw TCP that reads nothing and never answers a close frame, like a
 * peer that holds the connection however the server closes it. Close the returned connection.
 */
export async function unresponsiveSocket(wsUrl: string): Promise<Deno.TcpConn> {
  const url = new URL(wsUrl);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  await conn.write(new TextEncoder().encode(
    `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  ));
  return conn;
}
