import assert from "node:assert/strict";
import { isLoopbackHost, publicBaseUrl, webSocketOrigin } from "../../src/http/public_url.ts";

Deno.test("publicBaseUrl", async (t) => {
  await t.step("the configured URL wins over any header", () => {
    assert.equal(
      publicBaseUrl("https://configured.example.com", {
        host: "evil.com/path",
        forwardedProto: "http",
      }),
      "https://configured.example.com",
    );
    assert.equal(
      publicBaseUrl("https://configured.example.com", {}),
      "https://configured.example.com",
    );
  });

  const derived: [string, string | null | undefined, string][] = [
    ["localhost:7860", undefined, "http://localhost:7860"],
    ["localhost", undefined, "http://localhost"],
    ["LOCALHOST:7860", undefined, "http://LOCALHOST:7860"],
    ["127.0.0.1", undefined, "http://127.0.0.1"],
    ["127.0.0.1:7860", undefined, "http://127.0.0.1:7860"],
    ["127.1.2.3:80", undefined, "http://127.1.2.3:80"],
    ["[::1]:7860", undefined, "http://[::1]:7860"],
    ["[::1]", undefined, "http://[::1]"],
    ["example.ngrok.app", undefined, "https://example.ngrok.app"],
    ["example.ngrok.app:443", null, "https://example.ngrok.app:443"],
    ["10.0.0.5:7860", undefined, "https://10.0.0.5:7860"],
    ["  example.ngrok.app  ", undefined, "https://example.ngrok.app"],
    // X-Forwarded-Proto is honoured either way, first value of a list.
    ["example.ngrok.app", "http", "http://example.ngrok.app"],
    ["localhost:7860", "https", "https://localhost:7860"],
    ["example.ngrok.app", "HTTPS", "https://example.ngrok.app"],
    ["example.ngrok.app", "http, https", "http://example.ngrok.app"],
    ["localhost:7860", " https ,http", "https://localhost:7860"],
    // Anything else falls back to the host-based guess.
    ["example.ngrok.app", "ws", "https://example.ngrok.app"],
    ["localhost:7860", "ftp", "http://localhost:7860"],
    ["localhost:7860", "", "http://localhost:7860"],
  ];
  for (const [host, forwardedProto, expected] of derived) {
    await t.step(`Host ${JSON.stringify(host)}, proto ${forwardedProto} → ${expected}`, () => {
      assert.equal(publicBaseUrl(undefined, { host, forwardedProto }), expected);
    });
  }

  await t.step("an empty configured value falls back to the headers", () => {
    assert.equal(publicBaseUrl("", { host: "localhost:7860" }), "http://localhost:7860");
  });

  const malicious = [
    "evil.com/path",
    "evil.com/",
    "a b",
    "x?y",
    "x#y",
    "user@evil.com",
    "evil.com\r\nX-Injected: 1",
    "evil.com:80:90",
    "evil.com:123456",
    "[::1",
    "",
    "   ",
  ];
  for (const host of malicious) {
    await t.step(`malicious Host ${JSON.stringify(host)} → undefined`, () => {
      assert.equal(publicBaseUrl(undefined, { host }), undefined);
      assert.equal(publicBaseUrl(undefined, { host, forwardedProto: "https" }), undefined);
    });
  }

  await t.step("missing Host → undefined", () => {
    assert.equal(publicBaseUrl(undefined, {}), undefined);
    assert.equal(publicBaseUrl(undefined, { host: null }), undefined);
  });
});

Deno.test("isLoopbackHost", () => {
  for (const host of ["localhost", "localhost:1", "127.0.0.1", "127.255.0.9:80", "[::1]:7860"]) {
    assert.equal(isLoopbackHost(host), true, host);
  }
  for (const host of ["example.com", "localhost.evil.com", "127.0.0.1.evil.com", "10.0.0.1"]) {
    assert.equal(isLoopbackHost(host), false, host);
  }
});

Deno.test("webSocketOrigin", async (t) => {
  const cases: [string, string][] = [
    ["https://example.ngrok.app", "wss://example.ngrok.app"],
    ["http://localhost:7860", "ws://localhost:7860"],
    ["https://example.ngrok.app/", "wss://example.ngrok.app"],
    ["https://example.com/voice", "wss://example.com/voice"],
    ["https://example.com/voice/bot/", "wss://example.com/voice/bot"],
    ["http://[::1]:7860", "ws://[::1]:7860"],
    ["https://example.com:8443/p", "wss://example.com:8443/p"],
  ];
  for (const [base, expected] of cases) {
    await t.step(`${base} → ${expected}`, () => {
      assert.equal(webSocketOrigin(base), expected);
    });
  }

  await t.step("query and fragment of the base are not carried over", () => {
    assert.equal(webSocketOrigin("https://example.com/p?x=1#y"), "wss://example.com/p");
  });
});
