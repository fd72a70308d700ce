import assert from "node:assert/strict";
import { hasBearerToken, timingSafeEqual } from "../../src/security/bearer_token.ts";

Deno.test("timingSafeEqual", async (t) => {
  const table: [string, string, boolean][] = [
    ["", "", true],
    ["a", "a", true],
    ["secret-token", "secret-token", true],
    ["a", "b", false],
    ["", "a", false],
    ["a", "", false],
    ["abc", "abcd", false], // prefix
    ["abcd", "abc", false],
    ["xabc", "abc", false], // suffix
    ["a", "a\0", false], // trailing NUL must not compare equal to "nothing"
    ["\0", "", false],
    ["token", "Token", false],
    ["Zoë", "Zoë", true],
    ["日本🎉", "日本🎉", true],
    ["é", "e\u0301", false], // NFC vs NFD: different bytes
    ["日本", "日木", false],
    ["🎉", "🎊", false],
    ["ab", "ba", false],
  ];
  for (const [a, b, expected] of table) {
    await t.step(`${JSON.stringify(a)} vs ${JSON.stringify(b)} → ${expected}`, () => {
      assert.equal(timingSafeEqual(a, b), expected);
      assert.equal(timingSafeEqual(b, a), expected, "symmetric");
    });
  }

  await t.step("long strings differing only in the last byte", () => {
    const base = "k".repeat(4096);
    assert.equal(timingSafeEqual(base + "a", base + "a"), true);
    assert.equal(timingSafeEqual(base + "a", base + "b"), false);
  });
});

Deno.test("hasBearerToken", async (t) => {
  const token = "s3cr3t-T0KEN";
  const table: [string | undefined | null, boolean][] = [
    [`Bearer ${token}`, true],
    [`bearer ${token}`, true],
    [`BEARER ${token}`, true],
    [`Bearer   ${token}`, true], // several spaces after the scheme
    [`Bearer ${token}  `, true], // trailing whitespace
    [undefined, false],
    [null, false],
    ["", false],
    ["Bearer", false],
    ["Bearer ", false],
    [token, false], // no scheme
    [`Basic ${btoa(`user:${token}`)}`, false],
    [`Basic ${token}`, false],
    [`Token ${token}`, false],
    [`Bearer${token}`, false], // no separator
    [`Bearer ${token.slice(0, -1)}`, false], // prefix of the token
    [`Bearer ${token.slice(1)}`, false], // suffix of the token
    [`Bearer ${token}x`, false], // token plus extra
    [`Bearer x${token}`, false],
    [`Bearer ${token} ${token}`, false], // two values
    [`Bearer ${token.toLowerCase()}`, false], // the token itself is case-sensitive
    [`XBearer ${token}`, false],
  ];
  for (const [header, expected] of table) {
    await t.step(`${JSON.stringify(header)} → ${expected}`, () => {
      assert.equal(hasBearerToken(header, token), expected);
    });
  }

  await t.step("unicode tokens", () => {
    assert.equal(hasBearerToken("Bearer Zoë日本", "Zoë日本"), true);
    assert.equal(hasBearerToken("Bearer Zoe日本", "Zoë日本"), false);
  });
});
