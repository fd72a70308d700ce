/**
 * The `/calls` API against the real server, real KV and the fake Telnyx.
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { endLiveCall, placeAndAnswer, startLiveCall } from "../helpers/call_driver.ts";
import { type Harness, startHarness } from "../helpers/harness.ts";
import { allKeys, placed } from "../helpers/records.ts";

const TOKEN = "calls-api-token-0123456789";
const AUTH = { authorization: `Bearer ${TOKEN}` };
const FLUSH_WITHIN_MS = 5000;

function api(h: Harness, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${h.server.url}${path}`, {
    ...init,
    headers: { ...AUTH, "content-type": "application/json", ...init.headers },
  });
}

/** The harness with `/start` sending the token, for the call drivers. */
function authorised(h: Harness): Harness {
  return {
    ...h,
    start: (payload, init) => h.start(payload, { headers: { ...AUTH, ...init?.headers } }),
  };
}

async function flushed(h: Harness): Promise<void> {
  await deadline(h.server.records!.flush(), FLUSH_WITHIN_MS, { what: "records flush" });
}

Deno.test("every /calls route answers 401 without the token", async () => {
  await using h = await startHarness({ API_TOKEN: TOKEN });
  for (
    const [method, path] of [
      ["GET", "/calls"],
      ["GET", "/calls/abc"],
      ["DELETE", "/calls/abc"],
      ["POST", "/calls/abc/hangup"],
    ]
  ) {
    const res = await fetch(`${h.server.url}${path}`, { method });
    assert.equal(res.status, 401, `${method} ${path}`);
    assert.match(res.headers.get("www-authenticate") ?? "", /Bearer/);
    assert.equal((await res.json()).error.code, "unauthorized");
  }
});

Deno.test("an unknown call id is a 404 JSON error on every route", async () => {
  await using h = await startHarness({ API_TOKEN: TOKEN });
  for (
    const [method, path] of [["GET", "/calls/nope"], ["DELETE", "/calls/nope"], [
      "POST",
      "/calls/nope/hangup",
    ]]
  ) {
    const res = await api(h, path, { method });
    assert.equal(res.status, 404, `${method} ${path}`);
    const body = await res.json();
    assert.equal(body.error.code, "call_not_found");
    assert.match(body.error.message, /nope/);
  }
});

Deno.test("bad filters are a 400 naming the parameter", async () => {
  await using h = await startHarness({ API_TOKEN: TOKEN });
  const cases: [string, string][] = [
    ["status=bogus", "status"],
    ["limit=0", "limit"],
    ["limit=101", "limit"],
    ["limit=ten", "limit"],
    ["since=yesterday", "since"],
    ["until=2026-13-45", "until"],
    ["since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"],
    ["cursor=not-a-cursor", "cursor"],
    ["cursor=AQ.W10", "cursor"],
    ["colour=red", "colour"],
  ];
  for (const [query, parameter] of cases) {
    const res = await api(h, `/calls?${query}`);
    assert.equal(res.status, 400, query);
    const body = await res.json();
    assert.equal(body.error.code, "invalid_query", query);
    assert.equal(body.error.issues[0].parameter, parameter, query);
    assert.match(body.error.message, new RegExp(parameter), query);
  }
});

Deno.test("GET /calls pages newest first across pages, filtered by status and time", async () => {
  await using h = await startHarness({ API_TOKEN: TOKEN });
  const t0 = Date.parse("2026-03-01T10:00:00Z");
  for (let i = 0; i < 12; i++) {
    h.server.records!.record(`call-${i}`, placed(t0 + i * 1000));
    if (i < 4) {
      h.server.records!.record(`call-${i}`, { type: "ended", at: t0 + i * 1000, reason: "busy" });
    }
  }
  await flushed(h);

  const ids: string[] = [];
  let next: string | null = null;
  let pages = 0;
  do {
    const query: string = `limit=5${next ? `&cursor=${encodeURIComponent(next)}` : ""}`;
    const res = await api(h, `/calls?${query}`);
    assert.equal(res.status, 200);
    const page = await res.json();
    ids.push(...page.calls.map((c: { id: string }) => c.id));
    next = page.next_cursor;
    pages++;
  } while (next && pages < 10);
  assert.deepEqual(ids, Array.from({ length: 12 }, (_, i) => `call-${11 - i}`));
  assert.equal(pages, 3);

  const ended = await (await api(h, "/calls?status=ended")).json();
  assert.deepEqual(ended.calls.map((c: { id: string }) => c.id), [
    "call-3",
    "call-2",
    "call-1",
    "call-0",
  ]);
  const since = new Date(t0 + 10_000).toISOString();
  const recent = await (await api(h, `/calls?since=${since}&until=${t0 + 11_000}`)).json();
  assert.deepEqual(recent.calls.map((c: { id: string }) => c.id), ["call-11", "call-10"]);
});

Deno.test("a call placed through /start has a record from the first moment", async () => {
  await using h = await startHarness({ API_TOKEN: TOKEN });
  const res = await h.start({ phone_number: "+15551234567", body: { name: "Zoë" } }, {
    headers: AUTH,
  });
  const { call_control_id: id } = await res.json();
  await flushed(h);
  const record = await (await api(h, `/calls/${id}`)).json();
  assert.equal(record.id, id);
  assert.equal(record.status, "initiated");
  assert.equal(record.to, "+15551234567");
  assert.equal(record.from, "+15550001111");
  assert.deepEqual(record.custom_data, { name: "Zoë" });
  assert.ok(record.timeline.initiated);
  assert.deepEqual(record.transcript, []);
  assert.equal(record.transcript_location, "local");
});

Deno.test("DELETE /calls/:id erases the record, its transcript and custom data", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    await using h = await startHarness({ API_TOKEN: TOKEN }, { kv });
    const call = await startLiveCall(authorised(h), { name: "Zoë", secret: "4242" });
    for (let i = 0; i < 5; i++) {
      call.session.record({
        type: "turn",
        at: Date.now(),
        role: "user",
        text: `t${i}`,
        offsetMs: i,
      });
    }
    await endLiveCall(call);
    await flushed(h);
    assert.ok((await allKeys(kv)).some((k) => k.includes("call_turns")));

    const res = await api(h, `/calls/${call.callSid}`, { method: "DELETE" });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { id: call.callSid, deleted: true });
    const left = await allKeys(kv);
    assert.deepEqual(left.filter((k) => k.includes(call.callSid)), []);
    assert.equal((await api(h, `/calls/${call.callSid}`)).status, 404);
  } finally {
    kv.close();
  }
});

Deno.test("POST /calls/:id/hangup ends a live call through Telnyx and records api_hangup", async () => {
  await using h = await startHarness({ API_TOKEN: TOKEN });
  const call = await startLiveCall(authorised(h));
  const res = await api(h, `/calls/${call.callSid}/hangup`, { method: "POST" });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { id: call.callSid, status: "hung_up" });
  assert.equal(h.telnyx.hangupRequests(call.callSid).length, 1);
  await deadline(call.session.ended, FLUSH_WITHIN_MS, { what: "session end" });
  await flushed(h);
  const record = await (await api(h, `/calls/${call.callSid}`)).json();
  assert.equal(record.status, "ended");
  assert.equal(record.end_reason, "api_hangup");

  const again = await api(h, `/calls/${call.callSid}/hangup`, { method: "POST" });
  assert.equal(again.status, 409);
  assert.equal((await again.json()).error.code, "call_ended");
});

Deno.test("POST /calls/:id/hangup reaches a call this instance holds no stream for", async () => {
  await using h = await startHarness({ API_TOKEN: TOKEN });
  // Placed and answered, its media stream on another instance (or not yet open).
  const { callSid } = await placeAndAnswer(authorised(h));
  await flushed(h);
  const res = await api(h, `/calls/${callSid}/hangup`, { method: "POST" });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { id: callSid, status: "hung_up" });
  assert.equal(h.telnyx.hangupRequests(callSid).length, 1);
  await flushed(h);
  const record = await (await api(h, `/calls/${callSid}`)).json();
  assert.equal(record.end_reason, "api_hangup");
});

Deno.test("records survive a server restart on the same KV file", async () => {
  const dir = await Deno.makeTempDir();
  const env = { API_TOKEN: TOKEN, KV_PATH: `${dir}/calls.sqlite3` };
  try {
    let callSid: string;
    {
      await using h = await startHarness(env);
      const call = await startLiveCall(authorised(h), { name: "Zoë" });
      callSid = call.callSid;
      await endLiveCall(call);
    } // shutdown flushes the records and closes KV
    await using h = await startHarness(env);
    const res = await api(h, `/calls/${callSid}`);
    assert.equal(res.status, 200);
    const record = await res.json();
    assert.equal(record.end_reason, "callee_hung_up");
    assert.deepEqual(record.custom_data, { name: "Zoë" });
    const list = await (await api(h, "/calls")).json();
    assert.deepEqual(list.calls.map((c: { id: string }) => c.id), [callSid]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
