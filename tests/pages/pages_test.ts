/** The browser pages' shared stylesheet and script module, as the service serves them. */
import assert from "node:assert/strict";
import { PAGE_HEADERS, pagesRoute } from "../../src/pages/pages.ts";
import { from, routeApp } from "../helpers/route_app.ts";

const SHARED_ASSETS = [
  { path: "/pages/pages.css", type: "text/css; charset=utf-8", body: /\.bar\.voiceToVoiceMs \{/ },
  {
    path: "/pages/pages.js",
    type: "text/javascript; charset=utf-8",
    body: /^export function el\(/m,
  },
];

for (const asset of SHARED_ASSETS) {
  Deno.test(`${asset.path} is served as ${asset.type} with the pages' headers`, async () => {
    const res = await routeApp(pagesRoute()).request(asset.path, {}, from("10.0.0.8"));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), asset.type);
    assert.equal(
      res.headers.get("content-security-policy"),
      PAGE_HEADERS["Content-Security-Policy"],
    );
    assert.match(await res.text(), asset.body);
  });
}
