/**
 * Every route against bad input, wrong credentials and a failing Telnyx: each gets its
 * documented JSON status, nothing crashes, and a healthy call in parallel carries on.
 */
import assert from "node:assert/strict";
import { UrlSigner } from "../../src/security/url_signature.ts";
import { encodeBodyParam } from "../../src/telnyx/body_param.ts";
import { fetchAnswer, TelnyxWebhookSigner } from "../fakes/telnyx_api.ts";
import { FRAME_BYTES, TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { startHarness, waitFor } from "../helpers/harness.ts";
import { placeAndAnswer, readTeXml } from "../helpers/call_driver.ts";

async function expectError(res: Response, status: number, code: string, pattern?: RegExp) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const json = JSON.parse(text);
  assert.equal(json.error.code, code, text);
  assert.equal(typeof json.error.message, "string");
  if (pattern) assert.match(json.error.message, pattern);
  return json;
}

const LIFETIMES = { answer: 300, ws: 30 };

const isHangup = (xml: string) => /<Hangup\/>/.test(xml) && !/<Stream/.test(xml);

Deno.test("/start refuses client mistakes with 400/413, never 500", async (t) => {
  await using h = await startHarness({ MAX_BODY_BYTES: "256" });
  const cases: [string, unknown, number, string, RegExp][] = [
    ["invalid JSON", "{not json", 400, "invalid_json", /not valid JSON/],
    ["empty body", "", 400, "invalid_json", /JSON/],
    ["a JSON array", "[1,2]", 400, "invalid_request", /JSON object/],
    ["missing phone_number", { body: {} }, 400, "invalid_request", /phone_number is required/],
    ["phone_number as a number", { phone_number: 15551234567 }, 400, "invalid_request", /string/],
    ["phone_number without +", { phone_number: "15551234567" }, 400, "invalid_request", /E\.164/],
    [
      "phone_number too long",
      { phone_number: "+1234567890123456" },
      400,
      "invalid_request",
      /E\.164/,
    ],
    [
      "phone_number with letters",
      { phone_number: "+1555CALLNOW" },
      400,
      "invalid_request",
      /E\.164/,
    ],
    ["body as array", { phone_number: "+15551234567", body: [1] }, 400, "invalid_request", /array/],
    [
      "body as string",
      { phone_number: "+15551234567", body: "x" },
      400,
      "invalid_request",
      /string/,
    ],
    ["body as null", { phone_number: "+15551234567", body: null }, 400, "invalid_request", /null/],
    [
      "body over MAX_BODY_BYTES once encoded",
      { phone_number: "+15551234567", body: { text: "x".repeat(300) } },
      413,
      "body_too_large",
      /limit is 256 bytes/,
    ],
    [
      "a huge request",
      JSON.stringify({ phone_number: "+15551234567", body: { text: "x".repeat(200_000) } }),
      413,
      "request_too_large",
      /over \d+ bytes/,
    ],
  ];
  for (const [name, payload, status, code, pattern] of cases) {
    await t.step(name, async () => {
      await expectError(await h.start(payload), status, code, pattern);
    });
  }
  await t.step("none of them reached Telnyx", () => {
    assert.equal(h.telnyx.createRequests.length, 0);
  });
  await t.step("unknown routes are JSON 404s", async () => {
    await expectError(await fetch(`${h.server.url}/nope`), 404, "not_found", /POST \/start/);
  });
});

Deno.test("/start needs the API token when one is set", async (t) => {
  await using h = await startHarness({ API_TOKEN: "s3cret-token-value-123" });
  const ok = { phone_number: "+15551234567" };
  await t.step("no header → 401", async () => {
    const res = await h.start(ok);
    await expectError(res, 401, "unauthorized", /Authorization: Bearer/);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
  });
  for (const header of ["Bearer wrong", "Bearer s3cret-token-value-12", "Basic s3cret", ""]) {
    await t.step(`"${header}" → 401`, async () => {
      await expectError(
        await h.start(ok, { headers: { authorization: header } }),
        401,
        "unauthorized",
      );
    });
  }
  await t.step("the right token places the call", async () => {
    const res = await h.start(ok, { headers: { authorization: "Bearer s3cret-token-value-123" } });
    assert.equal(res.status, 200);
    assert.equal(h.telnyx.createRequests.length, 1);
  });
  await t.step("the token never reaches the logs", () => {
    assert.ok(h.logs.every((l) => !l.includes("s3cret-token-value-123")));
  });
});

Deno.test("/start reports Telnyx failures as 502/504 JSON", async (t) => {
  await using h = await startHarness({ TELNYX_TIMEOUT_MS: "300" });
  const ok = { phone_number: "+15551234567" };
  const refusals = [
    { status: 401, code: "10009", title: "Authentication failed" },
    { status: 422, code: "10016", title: "Invalid phone number" },
    { status: 500, code: "10007", title: "Unexpected error" },
  ];
  for (const refusal of refusals) {
    await t.step(`Telnyx ${refusal.status} → 502 with Telnyx's words`, async () => {
      const before = h.telnyx.createRequests.length;
      h.telnyx.createBehaviours.push({ kind: "error", ...refusal });
      const json = await expectError(
        await h.start(ok),
        502,
        "telnyx_error",
        new RegExp(refusal.title),
      );
      assert.equal(json.error.telnyx_status, refusal.status);
      // No retry: a retried create without an idempotency key could ring the callee twice.
      assert.equal(h.telnyx.createRequests.length, before + 1);
    });
  }
  await t.step("Telnyx silent → 504", async () => {
    const before = h.telnyx.createRequests.length;
    h.telnyx.createBehaviours.push({ kind: "hang" });
    await expectError(await h.start(ok), 504, "telnyx_timeout", /TELNYX_TIMEOUT_MS/);
    assert.equal(h.telnyx.createRequests.length, before + 1);
  });
  await t.step("Telnyx unreachable → 502", async () => {
    await using h2 = await startHarness({ TELNYX_BASE_URL: "http://127.0.0.1:9/v2" });
    await expectError(
      await h2.start(ok),
      502,
      "telnyx_unreachable",
      /reach Telnyx.*TELNYX_BASE_URL/,
    );
  });
});

Deno.test("missing configuration answers 503 naming the variables", async (t) => {
  await t.step("Telnyx variables", async () => {
    await using h = await startHarness({ TELNYX_ACCOUNT_SID: "", TELNYX_PHONE_NUMBER: "" });
    const json = await expectError(
      await h.start({ phone_number: "+15551234567" }),
      503,
      "not_configured",
      /TELNYX_ACCOUNT_SID, TELNYX_PHONE_NUMBER/,
    );
    assert.deepEqual(json.error.missing, ["TELNYX_ACCOUNT_SID", "TELNYX_PHONE_NUMBER"]);
    assert.ok(h.logs.some((l) => l.includes("not configured") && l.includes("TELNYX_ACCOUNT_SID")));
  });
  await t.step("local mode needs the AI keys: no phone rings that nobody can talk on", async () => {
    await using h = await startHarness({ OPENAI_API_KEY: "", CARTESIA_API_KEY: "" });
    const json = await expectError(
      await h.start({ phone_number: "+15551234567" }),
      503,
      "not_configured",
      /OPENAI_API_KEY, CARTESIA_API_KEY/,
    );
    assert.deepEqual(json.error.missing, ["OPENAI_API_KEY", "CARTESIA_API_KEY"]);
    assert.equal(h.telnyx.createRequests.length, 0);
  });
  await t.step("production needs AGENT_NAME and ORGANIZATION_NAME", async () => {
    await using h = await startHarness({ ENV: "production", API_TOKEN: "prod-token-123456" });
    await expectError(
      await h.start({ phone_number: "+15551234567" }, {
        headers: { authorization: "Bearer prod-token-123456" },
      }),
      503,
      "not_configured",
      /AGENT_NAME, ORGANIZATION_NAME/,
    );
  });
});

Deno.test("/answer hangs up on URLs we did not sign", async (t) => {
  await using h = await startHarness({ BODY_SIGNING_SECRET: "answer-test-secret" });
  const { answerUrl } = await placeAndAnswer(h);
  const url = new URL(answerUrl);

  await t.step("no signature", async () => {
    const res = await fetchAnswer(`${url.origin}/answer?body=${url.searchParams.get("body")}`);
    assert.ok(isHangup(res.text), res.text);
    readTeXmlIsWellFormed(res.text);
    assert.ok(h.logs.some((l) => l.includes("url signature missing")));
  });
  await t.step("edited body", async () => {
    const edited = new URL(answerUrl);
    edited.searchParams.set("body", encodeBodyParam({ name: "Mallory" }));
    assert.ok(isHangup((await fetchAnswer(edited.href)).text));
    assert.ok(h.logs.some((l) => l.includes("url signature forged")));
  });
  await t.step("expired", async () => {
    const signer = await UrlSigner.create("answer-test-secret", { lifetimes: LIFETIMES });
    const body = url.searchParams.get("body")!;
    const { exp, sig } = await signer.sign({ purpose: "answer", body }, Date.now() - 3_600_000);
    const old = `${url.origin}/answer?body=${encodeURIComponent(body)}&exp=${exp}&sig=${sig}`;
    assert.ok(isHangup((await fetchAnswer(old)).text));
    assert.ok(h.logs.some((l) => l.includes("url signature expired")));
  });
  await t.step("a stream signature is not an answer signature", async () => {
    const signer = await UrlSigner.create("answer-test-secret", { lifetimes: LIFETIMES });
    const { exp, sig } = await signer.sign({ purpose: "ws", body: "" });
    assert.ok(isHangup((await fetchAnswer(`${url.origin}/answer?exp=${exp}&sig=${sig}`)).text));
  });
  await t.step("an oversized body is refused before it is buffered", async () => {
    const res = await fetch(answerUrl, { method: "POST", body: "x".repeat(200_000) });
    assert.ok(isHangup(await res.text()));
    assert.ok(h.logs.some((l) => l.includes("request body over 65536 bytes")));
  });
  await t.step("GET is refused with 405 naming POST, and mints no Stream URL", async () => {
    const res = await fetch(answerUrl);
    const json = await expectError(res, 405, "method_not_allowed", /POST/);
    assert.equal(res.headers.get("allow"), "POST");
    assert.doesNotMatch(JSON.stringify(json), /ws:\/\//);
  });
  await t.step("a signed request without a CallSid is hung up", async () => {
    const res = await fetch(answerUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "From=%2B15550000000",
    });
    assert.ok(isHangup(await res.text()));
    assert.ok(h.logs.some((l) => l.includes("no valid CallSid")));
  });
  await t.step("fields of a refused request are not logged", async () => {
    await fetchAnswer(`${url.origin}/answer`, { callSid: "v3:unverified-marker", from: "+1999" });
    assert.ok(h.logs.some((l) => l.includes("url signature missing")));
    assert.ok(h.logs.every((l) => !l.includes("unverified-marker")));
  });
});

function readTeXmlIsWellFormed(text: string) {
  assert.match(text, /^<\?xml version="1.0" encoding="UTF-8"\?>/);
}

Deno.test("/answer verifies Telnyx's Ed25519 signature when TELNYX_PUBLIC_KEY is set", async (t) => {
  const telnyxSigner = await TelnyxWebhookSigner.create();
  const otherSigner = await TelnyxWebhookSigner.create();
  await using h = await startHarness({ TELNYX_PUBLIC_KEY: telnyxSigner.publicKeyBase64 });
  await h.start({ phone_number: "+15551234567", body: { a: 1 } });
  const answerUrl = (h.telnyx.createRequests[0].body as { Url: string }).Url;

  await t.step("signed by Telnyx → stream", async () => {
    const res = await fetchAnswer(answerUrl, { callSid: "v3:x", signer: telnyxSigner });
    assert.ok(readTeXml(res.text).stream.url);
  });
  await t.step("unsigned → hang up", async () => {
    const res = await fetchAnswer(answerUrl, { callSid: "v3:x" });
    assert.ok(isHangup(res.text));
    assert.ok(h.logs.some((l) => l.includes("telnyx webhook signature")));
  });
  await t.step("signed by someone else → hang up", async () => {
    const res = await fetchAnswer(answerUrl, { callSid: "v3:x", signer: otherSigner });
    assert.ok(isHangup(res.text));
  });
});

Deno.test("production mode streams to Pipecat Cloud exactly as the original", async (t) => {
  const body = { name: "Zoë", tier: "premium" };
  for (
    const [region, host] of [
      ["", "api.pipecat.daily.co"],
      ["eu-central", "eu-central.api.pipecat.daily.co"],
    ]
  ) {
    await t.step(region || "default region", async () => {
      await using h = await startHarness({
        ENV: "production",
        API_TOKEN: "prod-token-123456",
        AGENT_NAME: "telnyx-chatbot-dial-out",
        ORGANIZATION_NAME: "acme",
        PIPECAT_REGION: region,
      });
      const res = await h.start({ phone_number: "+15551234567", body }, {
        headers: { authorization: "Bearer prod-token-123456" },
      });
      assert.equal(res.status, 200);
      const answerUrl = (h.telnyx.createRequests[0].body as { Url: string }).Url;
      const { stream } = readTeXml((await fetchAnswer(answerUrl)).text);
      assert.equal(
        stream.url,
        `wss://${host}/ws/telnyx?serviceHost=telnyx-chatbot-dial-out.acme&body=` +
          encodeURIComponent(encodeBodyParam(body)),
      );
      assert.equal(stream.bidirectionalMode, "rtp");
      assert.ok(h.logs.every((l) => !l.includes('"level":"info"') || !l.includes("Zoë")));
    });
  }
});

Deno.test("/ws refuses sockets whose URL we did not sign, with close code 1008", async (t) => {
  await using h = await startHarness();
  const { streamUrl } = await placeAndAnswer(h);
  const url = new URL(streamUrl);

  const closeCode = async (href: string) => {
    const client = await TelnyxMediaClient.connect(href);
    const event = await client.closed;
    return event;
  };
  await t.step("missing signature", async () => {
    const e = await closeCode(
      `${url.origin}/ws?body=${encodeURIComponent(url.searchParams.get("body")!)}`,
    );
    assert.equal(e.code, 1008);
    assert.match(e.reason, /missing/);
  });
  await t.step("forged body", async () => {
    const forged = new URL(streamUrl);
    forged.searchParams.set("body", encodeBodyParam({ name: "Mallory" }));
    const e = await closeCode(forged.href);
    assert.equal(e.code, 1008);
    assert.match(e.reason, /forged/);
  });
  await t.step("expired", async () => {
    const expired = new URL(streamUrl);
    expired.searchParams.set("exp", "1000");
    const e = await closeCode(expired.href);
    assert.equal(e.code, 1008);
  });
  await t.step("plain HTTP GET → 426 JSON", async () => {
    await expectError(await fetch(streamUrl.replace(/^ws/, "http")), 426, "upgrade_required");
  });
  await t.step("no session was created", () => assert.equal(h.sessions.length, 0));
});

Deno.test("garbage frames are dropped and a healthy call in parallel is unaffected", async () => {
  await using h = await startHarness();
  const healthy = await placeAndAnswer(h);
  const victim = await placeAndAnswer(h);
  const good = await TelnyxMediaClient.connect(healthy.streamUrl, {
    callControlId: healthy.callSid,
  });
  const bad = await TelnyxMediaClient.connect(victim.streamUrl, { callControlId: victim.callSid });
  good.start();
  await waitFor(() => h.sessions.length === 1, "healthy session");

  // Before start: binary, junk, unknown events, media.
  bad.sendRaw(new Uint8Array([1, 2, 3]));
  bad.sendRaw("{not json");
  bad.sendRaw("null");
  bad.sendRaw(JSON.stringify({ event: "teleport" }));
  bad.sendRaw(JSON.stringify({ event: "start" }));
  bad.media(new Uint8Array(FRAME_BYTES));
  bad.start("G729-not-really");
  const badClose = await bad.closed;
  assert.equal(badClose.code, 1003, "an unsupported encoding is refused");

  const frame = new Uint8Array(FRAME_BYTES).fill(0x7f);
  for (let i = 0; i < 24; i++) good.media(frame);
  // JSON may escape "/" as "\/": such a payload is decoded after a full parse, not dropped.
  const slashes = new Uint8Array(FRAME_BYTES).fill(0xff).toBase64(); // "////…"
  good.sendRaw(`{"event":"media","media":{"payload":"${slashes.replaceAll("/", "\\/")}"}}`);
  good.sendRaw(JSON.stringify({ event: "media", media: { payload: "!!!" } }));
  good.sendRaw("x".repeat(2_000_000));
  for (let i = 0; i < 25; i++) good.media(frame);
  const session = h.sessions[0];
  await waitFor(() => session.stats.mediaFrames === 50, "healthy audio");
  assert.equal(session.state, "active");
  assert.ok(h.logs.some((l) => l.includes("malformed frame ignored")));
  assert.ok(h.logs.some((l) => l.includes("binary frame ignored")));
  assert.ok(h.logs.some((l) => l.includes("before start ignored")));
  good.stop();
  await session.ended;
  await good.closed;
  assert.equal(h.telnyx.hangupRequests(victim.callSid).length, 1, "refused call hung up");
});
