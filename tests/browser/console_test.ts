/**
 * The call console in headless Chromium, against a server whose calls run the real voice agent
 * on the vendor fakes: the page follows a live call as it happens and can hang it up.
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { CallerTimeline } from "../helpers/caller_timeline.ts";
import { startBargeInHarness, startVoiceHarness } from "../helpers/voice_harness.ts";
import { launchChromium } from "./browser.ts";

/** Hang guards for what the page shows; the call itself sets the pace. */
const SHOWN_WITHIN_MS = 30_000;
const CALL_END_WITHIN_MS = 10_000;

Deno.test({
  name: "console shows a live call with its turns, the barge-in and latency bars, then its end",
  async fn() {
    await using v = await startBargeInHarness();
    await using browser = await launchChromium();
    const page = await browser.newPage();
    const { client, session, callSid } = await v.call();
    await page.goto(`${v.h.server.url}/console`);

    await page.waitForSelector(`#live-calls li[data-call="${callSid}"] .badge.live`, {
      timeout: SHOWN_WITHIN_MS,
    });
    await page.waitForSelector("#detail .badge.barge", { timeout: SHOWN_WITHIN_MS });
    const turns = await page.$$eval(
      "#detail li.turn",
      (items) =>
        items.map((li) => [li.getAttribute("data-role"), li.querySelector(".text")!.textContent]),
    );
    assert.deepEqual(turns.slice(0, 3).map(([role]) => role), ["user", "assistant", "user"]);
    assert.equal(turns[2][1], "Yes, this is Zoë. What is this about?");
    assert.ok(
      turns.some(([role, text]) => role === "assistant" && text!.endsWith("barged in")),
      "the cut reply is marked",
    );
    assert.ok(
      await page.locator('#detail .bar[data-latency="voiceToVoiceMs"]').count() > 0,
      "voice-to-voice latency drawn",
    );
    assert.equal(
      await page.$eval(
        '#detail .bar[data-latency="voiceToVoiceMs"]',
        (bar) => bar.ownerDocument.defaultView!.getComputedStyle(bar).backgroundColor,
      ),
      "rgb(39, 174, 96)",
      "the shared stylesheet (/pages/pages.css) applies under the page's CSP",
    );
    assert.ok(await page.locator("#hangup").isVisible(), "a live call can be hung up");
    assert.doesNotMatch(await page.locator("#detail").innerText(), /\b(null|undefined)\b/);

    client.stop();
    await deadline(session.ended, CALL_END_WITHIN_MS, { what: "the call to end" });
    await page.waitForSelector('[data-field="End reason"]:text-is("callee_hung_up")', {
      timeout: SHOWN_WITHIN_MS,
    });
    assert.equal(await page.locator(`#live-calls li[data-call="${callSid}"]`).count(), 0);
    assert.equal(await page.locator("#hangup").count(), 0);
  },
});

Deno.test({
  name: "console's hang-up button ends a live call, which is then listed with api_hangup",
  async fn() {
    const caller = CallerTimeline.answeredWithHello(20_000);
    await using v = await startVoiceHarness({ caller });
    await using browser = await launchChromium();
    const page = await browser.newPage();
    const { session, callSid } = await v.call();
    await page.goto(`${v.h.server.url}/console`);

    await page.click("#hangup", { timeout: SHOWN_WITHIN_MS });
    await deadline(session.ended, CALL_END_WITHIN_MS, { what: "the hung-up call to end" });
    await page.waitForSelector(`#recent-calls li[data-call="${callSid}"]`, {
      timeout: SHOWN_WITHIN_MS,
    });
    await page.waitForSelector('[data-field="End reason"]:text-is("api_hangup")', {
      timeout: SHOWN_WITHIN_MS,
    });
    assert.equal(v.h.telnyx.hangupRequests(callSid).length, 1);
  },
});
