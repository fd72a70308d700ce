/**
 * What the browser pages (`/console`, `/playground`) share: their response headers, the lazy
 * loading of the files they ship with, their common stylesheet at `/pages/pages.css` and the
 * script module their scripts import, `/pages/pages.js`.
 *
 * @module
 */
import { Hono } from "hono";

/** Headers of the pages and their files: nothing loads from anywhere but this service. */
export const PAGE_HEADERS = {
  "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; " +
    "img-src 'self' data:; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

/** {@link PAGE_HEADERS} for a page's script. */
export const SCRIPT_HEADERS = { ...PAGE_HEADERS, "Content-Type": "text/javascript; charset=utf-8" };

/** {@link PAGE_HEADERS} for a stylesheet. */
const STYLE_HEADERS = { ...PAGE_HEADERS, "Content-Type": "text/css; charset=utf-8" };

/** The named files, read once on first use (they ship with the service). */
export function pageFiles<K extends string>(
  files: Record<K, URL>,
): () => Promise<Record<K, string>> {
  let loaded: Promise<Record<K, string>> | undefined;
  return () =>
    loaded ??= Promise.all(
      Object.entries<URL>(files).map(async ([name, url]) =>
        [name, await Deno.readTextFile(url)] as const
      ),
    ).then((entries) => Object.fromEntries(entries) as Record<K, string>);
}

const loadShared = pageFiles({
  css: new URL("./pages.css", import.meta.url),
  js: new URL("./pages.js", import.meta.url),
});

/** The stylesheet both pages link to and the module both pages' scripts import. */
export function pagesRoute(): Hono {
  return new Hono()
    .get("/pages/pages.css", async (c) => c.body((await loadShared()).css, 200, STYLE_HEADERS))
    .get("/pages/pages.js", async (c) => c.body((await loadShared()).js, 200, SCRIPT_HEADERS));
}
