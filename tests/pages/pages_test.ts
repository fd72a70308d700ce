/** The browser pages' shared stylesheet and script module, as the service serves them. */
import assert from "node:assert/strict";
import { PAGE_HEADERS, pagesRoute } from "../../src/pages/pages.ts";
import { from, routeApp } from "../helpers/route_app.ts";

Deno.test("the pages' shared stylesheet is served as CSS with the pages' headers", async () => {
  const res = await routeApp(pagesRoute()).request("/pages/pages.css", {}, from("10.0.0.8"));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/css; charset=utf-8");
  assert.equal(
    res.headers.get("content-security-policy"),
    PAGE_HEADERS["Content-Security-Policy"],
  );
  assert.match(await res.text(), /\.bar\.voiceToVoiceMs \{/);
});

Deno.test("the pages' shared script module is served as JavaScript with the pages' headers", async () => {
  const res = await routeApp(pagesRoute()).request("/pages/pages.js", {}, from("10.0.0.8"));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(
    res.headers.get("content-security-policy"),
    PAGE_HEADERS["Content-Security-Policy"],
  );
  assert.match(await res.text(), /^export function el\(/m);
});
