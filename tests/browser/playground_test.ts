/**
 * The playground in headless Chromium: a spoken WAV file is the microphone, the server runs the
 * real voice agent over the browser transport against the vendor fakes (the fake STT decides
 * what the callee said), and the page plays the bot and stops when talked over.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { CallerTimeline } from "../helpers/caller_timeline.ts";
import { startVoiceHarness } from "../helpers/voice_harness.ts";
import { launchChromium } from "./browser.ts";
import { microphoneFile, playgroundScript } from "./microphone_wav.ts";

/** Hang guard for what the page shows; the callee's audio sets the pace. */
const SHOWN_WITHIN_MS = 30_000;

/** A greeting long enough to be talked over. */
const LONG_GREETING = "Hello Zoë! Thank you for taking my call today. I would like to tell you " +
  "about a few changes to your premium account, starting with our new mobile app, then our " +
  "support line, which is now open on weekends, and finally our loyalty programme.";

/** What the page's player and socket have seen (`globalThis.playgroundState`). */
interface PlayerState {
  audioChunks: number;
  clears: number;
  marksPlayed: number;
  framesSent: number;
  interims: number;
  stoppedSources: number;
  playing: number;
}

/** The page's counters, as its script keeps them. */
interface PageCounters extends Omit<PlayerState, "playing"> {
  playing(): number;
}

/** Waits until the page's counter `name` is above zero. */
async function counted(page: Page, name: "audioChunks" | "clears"): Promise<void> {
  await page.waitForFunction(
    (key) => (globalThis as unknown as { playgroundState: PageCounters }).playgroundState[key] > 0,
    name,
    { timeout: SHOWN_WITHIN_MS },
  );
}

function playerState(page: Page): Promise<PlayerState> {
  // A function (not a string) so the page's CSP, which forbids eval, still lets it run.
  return page.evaluate(() => {
    const s = (globalThis as unknown as { playgroundState: PageCounters }).playgroundState;
    return {
      audioChunks: s.audioChunks,
      clears: s.clears,
      marksPlayed: s.marksPlayed,
      framesSent: s.framesSent,
      interims: s.interims,
      stoppedSources: s.stoppedSources,
      playing: s.playing(),
    };
  });
}

Deno.test({
  name: "playground: the microphone is transcribed, the bot is heard, talking over it stops it",
  async fn() {
    // The bot greets at once (about 3 s of audio from the fake TTS); 1 s in, the callee cuts in.
    const caller = new CallerTimeline()
      .pause(1000)
      .say("barge_in", "Wait, stop, I have a question.")
      .pause(5000);
    await using microphone = await microphoneFile(caller);
    await using v = await startVoiceHarness({
      caller,
      deepgramScript: playgroundScript(caller),
      replies: [{ kind: "text", text: "Of course, what is your question?" }],
    });
    await using browser = await launchChromium({ microphoneWav: microphone.path });
    const page = await browser.newPage();
    await page.goto(`${v.h.server.url}/playground`);
    await page.fill("#greeting", LONG_GREETING);
    await page.click("#start");

    // The greeting plays on the page, and the page reports what it played.
    await counted(page, "audioChunks");
    // The callee talks over it: the server clears, the page drops what it had queued.
    await counted(page, "clears");
    const atClear = await playerState(page);
    assert.ok(atClear.stoppedSources > 0, "the clear stopped bot audio that was playing");
    await page.waitForSelector('li.turn.user:has-text("Wait, stop, I have a question.")', {
      timeout: SHOWN_WITHIN_MS,
    });
    const greeting = page.locator("li.turn.assistant").first();
    await greeting.locator(".badge").waitFor({ timeout: SHOWN_WITHIN_MS });
    const heard = (await greeting.locator(".text").textContent())!.replace(/\s*you cut in$/, "");
    assert.ok(heard.length > 0 && heard.length < LONG_GREETING.length, `heard: ${heard}`);
    assert.ok(LONG_GREETING.startsWith(heard), "the page's reports say how far it played");

    // And the answer to the callee is played too.
    await page.waitForSelector(
      'li.turn.assistant:has-text("Of course, what is your question?")',
      { timeout: SHOWN_WITHIN_MS },
    );
    assert.ok(
      await page.locator('li.turn.assistant .bar[data-latency="voiceToVoiceMs"]').count() > 0,
      "the reply's latency drawn as bars",
    );
    const state = await playerState(page);
    assert.ok(state.framesSent > 0 && state.marksPlayed > 0, JSON.stringify(state));
    assert.ok(state.interims > 0, "interim words were shown before the final turn");
    assert.deepEqual(
      v.deepgram.connections[0].params.encoding,
      "linear16",
      "Deepgram is told the browser's format",
    );
    assert.equal(v.deepgram.connections[0].params.sample_rate, "16000");
    await page.click("#stop");
  },
});
