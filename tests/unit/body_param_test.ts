import assert from "node:assert/strict";
import {
  BodyParamError,
  type CustomData,
  decodeBodyParam,
  encodeBodyParam,
} from "../../src/telnyx/body_param.ts";

/**
 * Standard base64 via `Uint8Array.prototype.toBase64` (TC39 base64 proposal, not yet in
 * TypeScript's lib): an encoder independent of the code under test.
 */
function toBase64(bytes: Uint8Array): string {
  return (bytes as Uint8Array & { toBase64(): string }).toBase64();
}

function assertBodyParamError(param: string, message: RegExp): void {
  assert.throws(() => decodeBodyParam(param), (error: unknown) => {
    assert.ok(error instanceof BodyParamError, `expected BodyParamError, got ${error}`);
    assert.equal(error.name, "BodyParamError");
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("body param round trips", async (t) => {
  const cases: [string, CustomData][] = [
    ["empty object", {}],
    ["unicode", { name: "Zoë", city: "日本", mood: "🎉👍🏽", rtl: "שלום" }],
    ["nested objects and arrays", {
      customer: { id: 42, tags: ["a", "b"], address: { zip: "10115", extra: null } },
      flags: [true, false],
      ratio: 0.25,
    }],
    ["strings with base64 and URL metacharacters", { s: "a+b/c=d", q: "?x=1&y=2#z", sp: "a b" }],
    ["a lone surrogate (JSON escapes it, so it survives)", { s: "\uD800x" }],
    ["control characters and quotes", { s: 'line1\nline2\t"quoted"\\' }],
  ];
  for (const [name, data] of cases) {
    await t.step(name, () => {
      assert.deepEqual(decodeBodyParam(encodeBodyParam(data)), data);
    });
  }

  await t.step("inputs whose encoding contains + and / survive", () => {
    for (const s of ["~~~???", "???~~~", "ab~~~???"]) {
      const encoded = encodeBodyParam({ s });
      assert.ok(encoded.includes("+"), encoded);
      assert.ok(encoded.includes("/"), encoded);
      assert.deepEqual(decodeBodyParam(encoded), { s });
    }
  });

  await t.step("64 KB bodies", () => {
    const data = { blob: "x".repeat(64 * 1024), emoji: "🎉".repeat(1024) };
    const encoded = encodeBodyParam(data);
    assert.ok(encoded.length > 64 * 1024 * 4 / 3, String(encoded.length));
    assert.equal(encoded, toBase64(new TextEncoder().encode(JSON.stringify(data))));
    assert.deepEqual(decodeBodyParam(encoded), data);
  });
});

Deno.test("body param wire format matches the Python example", async (t) => {
  await t.step("ASCII: standard base64 of the compact JSON text", () => {
    const encoded = encodeBodyParam({ customer: "Ada", id: 7 });
    assert.equal(encoded, btoa('{"customer":"Ada","id":7}'));
    assert.equal(encoded, "eyJjdXN0b21lciI6IkFkYSIsImlkIjo3fQ==");
  });

  await t.step("padding and the +/ alphabet are kept, not URL-safe", () => {
    const encoded = encodeBodyParam({ s: "~~~???" });
    assert.equal(encoded, btoa('{"s":"~~~???"}'));
    assert.equal(encoded, "eyJzIjoifn5+Pz8/In0=");
    assert.doesNotMatch(encoded, /[-_]/);
  });

  await t.step("unicode: base64 of the UTF-8 bytes", () => {
    const data = { name: "Zoë", city: "日本", mood: "🎉" };
    const expected = toBase64(new TextEncoder().encode(JSON.stringify(data)));
    assert.equal(encodeBodyParam(data), expected);
    // Independent check of the UTF-8 bytes: ë is C3 AB.
    assert.equal(encodeBodyParam({ s: "ë" }), btoa('{"s":"\xC3\xAB"}'));
  });
});

Deno.test("decodeBodyParam tolerates rewritten transports", async (t) => {
  const data = { s: "~~~???", n: "Zoë" };
  const standard = encodeBodyParam(data);

  await t.step("URL-safe alphabet", () => {
    const urlSafe = standard.replaceAll("+", "-").replaceAll("/", "_");
    assert.notEqual(urlSafe, standard);
    assert.deepEqual(decodeBodyParam(urlSafe), data);
  });

  await t.step("missing padding", () => {
    for (const value of [data, { a: 1 }, { ab: 1 }, { abc: 1 }]) {
      const unpadded = encodeBodyParam(value).replace(/=+$/, "");
      assert.deepEqual(decodeBodyParam(unpadded), value);
    }
    assert.ok(standard.endsWith("="), "fixture should need padding");
  });

  await t.step("+ turned into space by form decoding", () => {
    const spaced = standard.replaceAll("+", " ");
    assert.ok(spaced.includes(" "));
    assert.deepEqual(decodeBodyParam(spaced), data);
    // The real path: a raw + in a query string read by URLSearchParams.
    const viaQuery = new URLSearchParams(`body=${standard}`).get("body")!;
    assert.deepEqual(decodeBodyParam(viaQuery), data);
  });

  await t.step("surrounding whitespace", () => {
    assert.deepEqual(decodeBodyParam(`  ${standard}\n`), data);
  });
});

Deno.test("decodeBodyParam rejects what is not base64 of a JSON object", async (t) => {
  await t.step("non-base64", () => {
    assertBodyParamError("!!!!", /not valid base64/);
    assertBodyParamError("abc%def", /not valid base64/);
    assertBodyParamError("a", /not valid base64/);
  });

  await t.step("base64 of non-JSON", () => {
    assertBodyParamError(btoa("hello world"), /not base64 of UTF-8 JSON/);
    assertBodyParamError(btoa('{"a":1'), /not base64 of UTF-8 JSON/);
    assertBodyParamError("", /not base64 of UTF-8 JSON/);
  });

  await t.step("base64 of invalid UTF-8", () => {
    // A JSON object whose string holds a lone 0xFF byte: valid JSON shape, invalid UTF-8.
    const bytes = Uint8Array.from([...new TextEncoder().encode('{"s":"'), 0xff, 0x22, 0x7d]);
    assertBodyParamError(toBase64(bytes), /not base64 of UTF-8 JSON/);
    // Latin-1 "ë" is not UTF-8 either.
    assertBodyParamError(btoa('{"s":"\xEB"}'), /not base64 of UTF-8 JSON/);
  });

  await t.step("JSON that is not an object", () => {
    for (const json of ["[1,2]", "[]", '"text"', "null", "42", "true"]) {
      assertBodyParamError(btoa(json), /not a JSON object/);
    }
  });
});
