/**
 * Headless Chromium for the browser tests: Debian's `chromium` driven by `playwright-core`
 * (Playwright's own browser downloads are not used). A browser that does not start fails the
 * test: a skipped browser test would pass for a page nobody ever loaded.
 *
 * @module
 */
import { type Browser, chromium, type LaunchOptions } from "playwright-core";

/** The Chromium binary: `CHROMIUM_PATH`, else Debian's. */
const CHROMIUM_PATH = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

/** Flags that keep Chromium quiet on a machine with no network and no display, run as root. */
const QUIET_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Options of {@link launchChromium}. */
export interface ChromiumOptions {
  /**
   * A WAV file the page's microphone plays once (then silence); the permission prompt is
   * answered yes.
   */
  microphoneWav?: string;
}

/** Starts headless Chromium; close it with `await using`. */
export async function launchChromium(
  options: ChromiumOptions = {},
): Promise<Browser & AsyncDisposable> {
  try {
    await Deno.stat(CHROMIUM_PATH);
  } catch {
    throw new Error(
      `No Chromium at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set ` +
        "CHROMIUM_PATH. The browser tests need a real browser and are not skipped.",
    );
  }
  const args = [...QUIET_FLAGS];
  if (options.microphoneWav) {
    args.push(
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${options.microphoneWav}%noloop`,
      "--autoplay-policy=no-user-gesture-required",
    );
  }
  const launch: LaunchOptions = { executablePath: CHROMIUM_PATH, args, timeout: 30_000 };
  const browser = await chromium.launch(launch);
  return Object.assign(browser, {
    async [Symbol.asyncDispose]() {
      await browser.close();
    },
  });
}
