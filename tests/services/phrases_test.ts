import assert from "node:assert/strict";
import { PhraseChunker } from "../../src/services/phrases.ts";

Deno.test("phrase chunker", async (t) => {
  await t.step("releases sentences as soon as they complete, keeping the space", () => {
    const chunker = new PhraseChunker();
    assert.deepEqual(chunker.push("Hel"), []);
    assert.deepEqual(chunker.push("lo there"), []);
    assert.deepEqual(chunker.push("! How are"), ["Hello there! "]);
    assert.deepEqual(chunker.push(" you? I'm fine."), ["How are you? "]);
    assert.equal(chunker.flush(), "I'm fine.");
    assert.equal(chunker.flush(), "");
  });

  await t.step("keeps decimals and short clauses together", () => {
    const chunker = new PhraseChunker({ minClauseChars: 24 });
    assert.deepEqual(chunker.push("It costs 3.5 dollars, "), []);
    assert.deepEqual(chunker.push("which is cheap, and it ships today."), [
      "It costs 3.5 dollars, which is cheap, ",
    ]);
    assert.equal(chunker.flush(), "and it ships today.");
  });

  await t.step("cuts an endless run-on sentence at a space", () => {
    const chunker = new PhraseChunker({ maxChars: 20 });
    assert.deepEqual(chunker.push("one two three four five six seven"), ["one two three four "]);
    assert.equal(chunker.flush(), "five six seven");
  });

  await t.step("whitespace left at the end is not a phrase", () => {
    const chunker = new PhraseChunker();
    assert.deepEqual(chunker.push("Hi. Bye!  \n"), ["Hi. ", "Bye! "]);
    assert.equal(chunker.flush(), "");
  });
});
