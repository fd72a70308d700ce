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

Deno.test("phrase chunker with startEarly", async (t) => {
  await t.step("releases the first clause at once, then phrases as usual", () => {
    const chunker = new PhraseChunker({ startEarly: true });
    assert.deepEqual(chunker.push("Sure"), []);
    assert.deepEqual(chunker.push(","), [{ start: "Sure," }], "a clause mark after a word");
    assert.deepEqual(chunker.push(" happy to help. Anything"), [" happy to help. "]);
    assert.deepEqual(chunker.push(", else?"), [], "only the first phrase starts early");
    assert.equal(chunker.flush(), "Anything, else?");
  });

  await t.step("without a clause mark, the first few words start it", () => {
    const chunker = new PhraseChunker({ startEarly: true, leadWords: 3 });
    assert.deepEqual(chunker.push("Your account tier"), []);
    assert.deepEqual(chunker.push(" is premium"), [{ start: "Your account tier " }]);
    assert.equal(chunker.flush(), "is premium");
  });

  await t.step(
    "the rest of the first phrase follows clause by clause or a few words at a time",
    () => {
      const chunker = new PhraseChunker({ startEarly: true });
      assert.deepEqual(chunker.push("Well,"), [{ start: "Well," }]);
      assert.deepEqual(chunker.push(" there is quite"), [], "fewer than four whole words");
      assert.deepEqual(chunker.push(" a lot"), [{ start: " there is quite a " }]);
      assert.deepEqual(chunker.push(" to say, about"), [{ start: "lot to say, " }]);
      assert.deepEqual(chunker.push(" that. First"), ["about that. "], "the phrase ends");
      assert.deepEqual(
        chunker.push(" of all, your account"),
        [],
        "later phrases wait for their end",
      );
    },
  );

  await t.step("a first phrase without a mark still ends once past maxChars", () => {
    const chunker = new PhraseChunker({ startEarly: true, maxChars: 40 });
    const words = "one two three four five six seven eight nine ten eleven twelve thirteen";
    const pieces = words.split(" ").flatMap((word) => chunker.push(`${word} `));
    assert.deepEqual(pieces, [
      { start: "one two three four " },
      { start: "five six seven eight " },
      "nine ",
    ], "pieces, then the phrase ends at the first space past 40 characters");
    assert.equal(chunker.flush(), "ten eleven twelve thirteen ");
  });

  await t.step("a whole first sentence goes as a phrase, not as a start", () => {
    const chunker = new PhraseChunker({ startEarly: true });
    assert.deepEqual(chunker.push("Yes. Of"), ["Yes. "]);
    assert.deepEqual(chunker.push(" course"), []);
  });

  await t.step("numbers and abbreviations do not end a start", () => {
    const chunker = new PhraseChunker({ startEarly: true, leadWords: 8 });
    assert.deepEqual(chunker.push("It is 1,000"), []);
    assert.deepEqual(chunker.push(" e.g."), []);
  });
});
