/**
 * `deno task demo` keeps telling the whole call: its scripted callee is heard, cuts the bot off,
 * and the bot ends the call, all printed as it happens.
 */
import assert from "node:assert/strict";
import { runDemo } from "../../demo/demo.ts";

Deno.test("demo call prints each turn with its latency, the barge-in and the end", async () => {
  const { lines, record } = await runDemo({ print: () => {} });
  const said = (who: string) =>
    lines.flatMap((l) => l.split("\n")[0].match(new RegExp(` s   ${who}: (.*)$`))?.slice(1) ?? []);
  assert.deepEqual(said("callee"), [
    "Hello?",
    "Yes, this is Zoë. What is this about?",
    "Wait, stop, I have a question.",
    "Thank you, goodbye.",
  ]);
  assert.equal(said("bot   ").length, 4);
  assert.equal(lines.filter((l) => l.includes("[barge-in: the callee cut in here]")).length, 1);
  assert.ok(lines.some((l) => l.includes("voice to voice")), "latency printed");
  assert.ok(lines.some((l) => l.endsWith("call ended: bot_ended")));
  assert.equal(record.end_reason, "bot_ended");
  assert.equal(record.transcript?.length, 8);
});
