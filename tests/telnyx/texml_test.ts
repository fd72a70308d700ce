import assert from "node:assert/strict";
import { DOMParser } from "@xmldom/xmldom";
import { buildHangupTeXml, buildStreamTeXml, escapeXmlAttribute } from "../../src/telnyx/texml.ts";

/** XML 1.0 `Char`; xmldom does not police it, so the tests do. */
const ONLY_XML_CHARS = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;

/**
 * Parses `xml` strictly: any xmldom error or warning fails the test, except its heuristic warning
 * about U+FFFD, which is a legal XML character that the random inputs include on purpose.
 */
function parseXml(xml: string) {
  assert.match(xml, ONLY_XML_CHARS, "document holds characters XML 1.0 forbids");
  const problems: string[] = [];
  const doc = new DOMParser({
    onError: (level, message) => {
      if (level === "warning" && /replacement character/.test(message)) return;
      problems.push(`${level}: ${message}`);
    },
  }).parseFromString(xml, "text/xml");
  assert.deepEqual(problems, [], `parser complained about ${JSON.stringify(xml)}`);
  const root = doc.documentElement;
  assert.ok(root, "no root element");
  return root;
}

/** The single `<Stream>` element of a stream TeXML document. */
function streamElementOf(xml: string) {
  const root = parseXml(xml);
  assert.equal(root.tagName, "Response");
  const streams = root.getElementsByTagName("Stream");
  assert.equal(streams.length, 1);
  return streams[0];
}

/** Mulberry32: tiny seeded PRNG so the property test is reproducible. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random string of valid XML characters biased towards the ones that need escaping. */
function randomXmlSafeString(random: () => number): string {
  const pools = [
    `&<>"'\t\n\r =;?/#%`,
    "abcXYZ019-_.~",
    "Zoë日本語ß",
    "😀🎉𝄞",
    "\u0085\u2028\u2029\u00a0\ufeff\ufffd",
  ];
  const length = Math.floor(random() * 40);
  let text = "";
  for (let i = 0; i < length; i++) {
    const pool = [...pools[Math.floor(random() * pools.length)]];
    text += pool[Math.floor(random() * pool.length)];
  }
  return text;
}

Deno.test("buildStreamTeXml", async (t) => {
  await t.step("produces the documented layout with defaults", () => {
    assert.equal(
      buildStreamTeXml({ streamUrl: "wss://app.example/media?s=abc" }),
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
        "<Response>\n" +
        "  <Connect>\n" +
        '    <Stream url="wss://app.example/media?s=abc" bidirectionalMode="rtp" ' +
        'bidirectionalCodec="PCMU" bidirectionalSamplingRate="8000"/>\n' +
        "  </Connect>\n" +
        '  <Pause length="40"/>\n' +
        "</Response>\n",
    );
  });

  await t.step("parses with the codec, mode, rate and pause as attributes", () => {
    const xml = buildStreamTeXml({
      streamUrl: "wss://x.example/m",
      pauseSeconds: 5,
      bidirectionalCodec: "PCMA",
    });
    const stream = streamElementOf(xml);
    assert.equal(stream.getAttribute("bidirectionalMode"), "rtp");
    assert.equal(stream.getAttribute("bidirectionalCodec"), "PCMA");
    assert.equal(stream.getAttribute("bidirectionalSamplingRate"), "8000");
    assert.equal(stream.parentNode?.nodeName, "Connect");
    const pause = parseXml(xml).getElementsByTagName("Pause")[0];
    assert.equal(pause.getAttribute("length"), "5");
  });

  await t.step("round-trips tricky URLs exactly through a real XML parser", () => {
    const urls = [
      "wss://app.example/media?s=tok&call=1&x=%26",
      "wss://app.example/m?q=a&amp;b",
      `wss://app.example/m?body=${"& < > \" '"}`,
      "wss://app.example/m?name=Zoë&city=日本&mood=😀",
      "wss://app.example/m?t=a\tb\nc\rd\r\ne",
      "wss://app.example/m?already=&lt;escaped&gt;&#38;",
      "wss://[::1]:8443/media?s=a%20b#frag",
      "",
      "   leading and trailing spaces   ",
      "]]> ?> <!-- --> <![CDATA[",
    ];
    for (const url of urls) {
      const xml = buildStreamTeXml({ streamUrl: url });
      assert.equal(streamElementOf(xml).getAttribute("url"), url, JSON.stringify(url));
    }
  });

  await t.step("round-trips 500 seeded random strings exactly", () => {
    const random = seededRandom(0x5eed);
    for (let i = 0; i < 500; i++) {
      const url = randomXmlSafeString(random);
      const xml = buildStreamTeXml({ streamUrl: url });
      assert.equal(streamElementOf(xml).getAttribute("url"), url, JSON.stringify(url));
    }
  });

  await t.step("rejects a URL XML cannot carry instead of emitting broken XML", () => {
    assert.throws(() => buildStreamTeXml({ streamUrl: "wss://a/\u0000" }), TypeError);
  });

  await t.step("rejects pause lengths that are not non-negative integers", () => {
    for (const pauseSeconds of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(
        () => buildStreamTeXml({ streamUrl: "wss://a/", pauseSeconds }),
        RangeError,
        String(pauseSeconds),
      );
    }
    const pause = parseXml(buildStreamTeXml({ streamUrl: "wss://a/", pauseSeconds: 0 }))
      .getElementsByTagName("Pause")[0];
    assert.equal(pause.getAttribute("length"), "0");
  });

  await t.step("rejects a codec outside the G.711 pair even from untyped callers", () => {
    const opts = { streamUrl: "wss://a/", bidirectionalCodec: "OPUS" } as unknown as Parameters<
      typeof buildStreamTeXml
    >[0];
    assert.throws(() => buildStreamTeXml(opts), TypeError);
  });
});

Deno.test("buildHangupTeXml parses to <Response><Hangup/></Response>", () => {
  const xml = buildHangupTeXml();
  assert.ok(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>'));
  assert.ok(xml.includes("<Response><Hangup/></Response>"));
  const root = parseXml(xml);
  assert.equal(root.tagName, "Response");
  const children = Array.from(root.childNodes).filter((node) => node.nodeType === 1);
  assert.deepEqual(children.map((node) => node.nodeName), ["Hangup"]);
});

Deno.test("escapeXmlAttribute", async (t) => {
  await t.step("escapes the five specials and the line-end/tab characters", () => {
    assert.equal(
      escapeXmlAttribute(`a&b<c>d"e'f\tg\nh\ri\u0085j\u2028k\u2029l`),
      "a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i&#133;j&#8232;k&#8233;l",
    );
  });

  await t.step("leaves other text, including non-ASCII and astral characters, untouched", () => {
    for (
      const value of ["", "plain", "Zoë", "日本", "😀🎉", "\u00a0\u1680\u3000\ufeff\ufffd", "a b"]
    ) {
      assert.equal(escapeXmlAttribute(value), value);
    }
  });

  await t.step("escaped output is a valid attribute in both quote styles", () => {
    const value = `"quoted" and 'single' & <tag>\t\n\r\u0085\u2028\u2029`;
    for (const quote of [`"`, `'`]) {
      const root = parseXml(`<a v=${quote}${escapeXmlAttribute(value)}${quote}/>`);
      assert.equal(root.getAttribute("v"), value);
    }
  });

  await t.step("throws TypeError for characters XML 1.0 forbids", () => {
    const forbidden = [
      "\u0000",
      "\u0001",
      "\u0008",
      "\u000B",
      "\u000C",
      "\u000E",
      "\u001F",
      "\uFFFE",
      "\uFFFF",
      "\uD800", // lone high surrogate
      "\uDC00", // lone low surrogate
      "\uDE00\uD83D", // surrogates in the wrong order
    ];
    for (const char of forbidden) {
      assert.throws(
        () => escapeXmlAttribute(`wss://a/?x=${char}y`),
        (error: unknown) =>
          error instanceof TypeError && /U\+[0-9A-F]{4} at index 11/.test(error.message),
        JSON.stringify(char),
      );
    }
  });

  await t.step("keeps the rejected value out of the error message", () => {
    const secret = "session-token-123";
    assert.throws(
      () => escapeXmlAttribute(`wss://a/?s=${secret}\u0007`),
      (error: unknown) => error instanceof TypeError && !error.message.includes(secret),
    );
  });
});
