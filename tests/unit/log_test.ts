import assert from "node:assert/strict";
import { Logger, type LoggerOptions, type LogLevel, maskPhoneNumbers } from "../../src/log.ts";

interface Captured {
  line: string;
  level: LogLevel;
}

/** A logger whose lines are collected instead of printed. */
function capture(options: Partial<LoggerOptions> = {}): { logger: Logger; lines: Captured[] } {
  const lines: Captured[] = [];
  const logger = new Logger({
    level: "debug",
    format: "json",
    ...options,
    sink: (line, level) => lines.push({ line, level }),
  });
  return { logger, lines };
}

function parsed(lines: Captured[]): Record<string, unknown>[] {
  return lines.map(({ line }) => JSON.parse(line));
}

const API_KEY = "KEY0123456789abcdef";
const TOKEN = "tok_ABCDEFGH";

Deno.test("json format", async (t) => {
  await t.step("one parseable line with time, level, msg and the fields", () => {
    const { logger, lines } = capture();
    logger.info("call started", { call: "c-1", attempt: 2, ok: true, nested: { a: [1, 2] } });
    assert.equal(lines.length, 1);
    assert.doesNotMatch(lines[0].line, /\n/);
    assert.equal(lines[0].level, "info");
    const [entry] = parsed(lines);
    assert.equal(entry.level, "info");
    assert.equal(entry.msg, "call started");
    assert.equal(typeof entry.time, "string");
    assert.equal(new Date(entry.time as string).toISOString(), entry.time);
    assert.equal(entry.call, "c-1");
    assert.equal(entry.attempt, 2);
    assert.equal(entry.ok, true);
    assert.deepEqual(entry.nested, { a: [1, 2] });
  });

  await t.step("each level method writes its level", () => {
    const { logger, lines } = capture();
    logger.debug("d");
    logger.info("i");
    logger.warn("w");
    logger.error("e");
    assert.deepEqual(lines.map((l) => l.level), ["debug", "info", "warn", "error"]);
    assert.deepEqual(parsed(lines).map((e) => [e.level, e.msg]), [
      ["debug", "d"],
      ["info", "i"],
      ["warn", "w"],
      ["error", "e"],
    ]);
  });

  await t.step("messages with quotes and newlines stay one valid line", () => {
    const { logger, lines } = capture();
    logger.warn('he said "hi"\nthen left', { note: "a\tb" });
    assert.doesNotMatch(lines[0].line, /\n/);
    const [entry] = parsed(lines);
    assert.equal(entry.msg, 'he said "hi"\nthen left');
    assert.equal(entry.note, "a\tb");
  });

  await t.step({
    name: "fields cannot overwrite time, level or msg",
    fn: () => {
      const { logger, lines } = capture();
      logger.error("real message", { level: "debug", msg: "fake", time: "yesterday" });
      const [entry] = parsed(lines);
      assert.equal(entry.level, "error");
      assert.equal(entry.msg, "real message");
      assert.notEqual(entry.time, "yesterday");
    },
  });

  await t.step("Error values are serialised with name and message", () => {
    const { logger, lines } = capture();
    logger.error("failed", { error: new TypeError("boom"), nested: { cause: new Error("deep") } });
    const [entry] = parsed(lines);
    assert.deepEqual(entry.error, { name: "TypeError", message: "boom" });
    assert.deepEqual(entry.nested, { cause: { name: "Error", message: "deep" } });
  });
});

Deno.test("child loggers", async (t) => {
  await t.step("child fields are merged into every line", () => {
    const { logger, lines } = capture();
    const call = logger.child({ call: "c-42" });
    const turn = call.child({ turn: 3 });
    call.info("a");
    turn.info("b", { extra: "x" });
    logger.info("c");
    const [a, b, c] = parsed(lines);
    assert.equal(a.call, "c-42");
    assert.equal(a.turn, undefined);
    assert.equal(b.call, "c-42");
    assert.equal(b.turn, 3);
    assert.equal(b.extra, "x");
    assert.equal(c.call, undefined, "the parent is not changed");
  });

  await t.step("per-line fields override context fields", () => {
    const { logger, lines } = capture();
    logger.child({ call: "c-1", state: "ringing" }).info("x", { state: "answered" });
    const [entry] = parsed(lines);
    assert.equal(entry.call, "c-1");
    assert.equal(entry.state, "answered");
  });

  await t.step("children keep the level and secrets of the parent", () => {
    const { logger, lines } = capture({ level: "warn", secrets: [API_KEY] });
    const child = logger.child({ call: "c-1" });
    child.info("dropped");
    child.warn(`key ${API_KEY}`);
    assert.equal(lines.length, 1);
    assert.ok(!lines[0].line.includes(API_KEY));
    assert.equal(child.enabled("info"), false);
  });
});

Deno.test("level filtering", async (t) => {
  const levels: LogLevel[] = ["debug", "info", "warn", "error"];
  for (const [index, min] of levels.entries()) {
    await t.step(`level ${min}`, () => {
      const { logger, lines } = capture({ level: min });
      for (const level of levels) logger[level](level);
      const written = levels.slice(index);
      assert.deepEqual(lines.map((l) => l.level), written);
      for (const level of levels) {
        assert.equal(logger.enabled(level), written.includes(level), `enabled(${level})`);
      }
    });
  }
});

Deno.test("secret redaction", async (t) => {
  await t.step("secrets are redacted everywhere in a json line", () => {
    const { logger, lines } = capture({ secrets: [API_KEY, TOKEN, undefined] });
    logger.child({ auth: `Bearer ${TOKEN}` }).error(`request with ${API_KEY} failed`, {
      url: `https://api.example.com/?key=${API_KEY}`,
      nested: { deeper: { list: [TOKEN, `x${API_KEY}x`] } },
      error: new Error(`401 for key ${API_KEY}`),
    });
    const { line } = lines[0];
    assert.ok(!line.includes(API_KEY), line);
    assert.ok(!line.includes(TOKEN), line);
    const [entry] = parsed(lines);
    assert.equal(entry.msg, "request with [redacted] failed");
    assert.equal(entry.auth, "Bearer [redacted]");
    assert.equal(entry.url, "https://api.example.com/?key=[redacted]");
    assert.deepEqual(entry.nested, { deeper: { list: ["[redacted]", "x[redacted]x"] } });
    assert.deepEqual(entry.error, { name: "Error", message: "401 for key [redacted]" });
  });

  await t.step("secrets are redacted in pretty lines", () => {
    const { logger, lines } = capture({ format: "pretty", secrets: [API_KEY] });
    logger.info(`using ${API_KEY}`, {
      key: API_KEY,
      nested: { key: API_KEY },
      error: new Error(`bad ${API_KEY}`),
    });
    assert.ok(!lines[0].line.includes(API_KEY), lines[0].line);
    assert.match(lines[0].line, /using \[redacted\]/);
  });

  await t.step("secrets shorter than 8 characters are not redacted", () => {
    const { logger, lines } = capture({ secrets: ["abc", "1234567", "", "12345678"] });
    logger.info("abc 1234567 12345678");
    assert.equal(parsed(lines)[0].msg, "abc 1234567 [redacted]");
  });

  await t.step({
    name: "a secret that contains another secret is fully redacted",
    fn: () => {
      // Sharing a prefix is plausible (a token derived from a key); neither part may leak.
      const shorter = "shared-prefix-01";
      const longer = `${shorter}-and-a-private-tail`;
      for (const secrets of [[shorter, longer], [longer, shorter]]) {
        const { logger, lines } = capture({ secrets });
        logger.info(`value ${longer}`);
        assert.ok(!lines[0].line.includes("private-tail"), lines[0].line);
        assert.ok(!lines[0].line.includes(shorter), lines[0].line);
      }
    },
  });

  await t.step({
    name: "secrets containing JSON-escaped characters are redacted",
    fn: () => {
      const secret = 'pa"ss\\word-1234';
      for (const format of ["json", "pretty"] as const) {
        const { logger, lines } = capture({ format, secrets: [secret] });
        logger.info(`msg ${secret}`, { nested: { value: secret } });
        const line = lines[0].line;
        assert.ok(!line.includes(secret), line);
        assert.ok(!line.includes(JSON.stringify(secret).slice(1, -1)), line);
        assert.ok(!line.includes("word-1234"), line);
      }
    },
  });
});

Deno.test("pretty format", async (t) => {
  await t.step("one readable line with level, message and key=value fields", () => {
    const { logger, lines } = capture({ format: "pretty" });
    logger.child({ call: "c-1" }).warn("slow reply", { ms: 1200, who: { id: 1 } });
    assert.equal(lines.length, 1);
    const { line, level } = lines[0];
    assert.equal(level, "warn");
    assert.doesNotMatch(line, /\n/);
    assert.match(
      line,
      /^\d{2}:\d{2}:\d{2}\.\d{3} WARN {2}slow reply call=c-1 ms=1200 who=\{"id":1\}$/,
    );
  });

  await t.step("Error values show their message", () => {
    const { logger, lines } = capture({ format: "pretty" });
    logger.error("failed", { error: new Error("boom") });
    assert.match(lines[0].line, /error=\{"name":"Error","message":"boom"\}/);
  });
});

Deno.test("maskPhoneNumbers", async (t) => {
  await t.step("keeps the country prefix and the last two digits", () => {
    assert.equal(maskPhoneNumbers("+15551234567"), "+155…67");
    assert.equal(maskPhoneNumbers("+4930123456"), "+493…56");
  });

  await t.step("masks every number inside text, URL-encoded ones too", () => {
    assert.equal(
      maskPhoneNumbers("from +15550001111 to +447700900123, To=%2B15551234567&x=1"),
      "from +155…11 to +447…23, To=%2B155…67&x=1",
    );
  });

  await t.step("masks runs longer than E.164 allows", () => {
    assert.equal(maskPhoneNumbers("+1234567890123456789"), "+123…89");
  });

  await t.step("leaves shorter digit runs, signs and masked numbers alone", () => {
    for (const text of ["+123456", "1e+21", "+05:30", "15551234567", "+155…67", "a+b"]) {
      assert.equal(maskPhoneNumbers(text), text);
    }
  });
});

Deno.test("phone numbers are masked in every line", async (t) => {
  const number = "+15551234567";
  // Telnyx quoting the dialled number in an error, as it does for an invalid destination.
  const telnyxError = `Telnyx 422: [10016] Invalid destination ${number} is not reachable`;

  for (const format of ["json", "pretty"] as const) {
    await t.step(`${format}: message, fields, nested values and errors`, () => {
      const { logger, lines } = capture({ format });
      logger.child({ to: number }).warn(`calling ${number} failed`, {
        detail: telnyxError,
        nested: { list: [number] },
        error: new Error(telnyxError),
      });
      const { line } = lines[0];
      assert.ok(!line.includes("1234567"), line);
      assert.ok(!line.includes("5551234"), line);
      assert.match(line, /\+155…67/);
    });
  }

  await t.step("json lines still parse, with the masked value in place", () => {
    const { logger, lines } = capture();
    logger.info("placing call", { to: number });
    assert.equal(parsed(lines)[0].to, "+155…67");
  });
});

Deno.test("control characters cannot forge a pretty line", async (t) => {
  const forged = "v3:abc\n00:00:00.000 INFO  call placed call=v3:victim";

  await t.step("a newline in a field value stays inside its line, escaped", () => {
    const { logger, lines } = capture({ format: "pretty" });
    logger.warn("answer refused", { call_sid: forged });
    assert.equal(lines.length, 1);
    assert.doesNotMatch(lines[0].line, /\n/);
    assert.ok(
      lines[0].line.endsWith(` call_sid=v3:abc\\n00:00:00.000 INFO  call placed call=v3:victim`),
    );
  });

  await t.step("every line-breaking or terminal control character is escaped", () => {
    const { logger, lines } = capture({ format: "pretty" });
    const nasty = "a\rb\tc\u001b[31md\u0000e\u007ff\u0085g\u2028h\u2029i";
    logger.info(`msg ${nasty}`, { [`key${nasty}`]: nasty, nested: { value: nasty } });
    const { line } = lines[0];
    // deno-lint-ignore no-control-regex -- looking for control characters is the point
    assert.doesNotMatch(line, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
    assert.ok(line.includes("a\\rb\\tc\\u001b[31md\\u0000e\\u007ff\\u0085g\\u2028h\\u2029i"), line);
  });

  await t.step("json lines escape the Unicode line separators and still round-trip", () => {
    const { logger, lines } = capture();
    const value = "a\u2028b\u2029c\nd";
    logger.info("x", { value });
    assert.doesNotMatch(lines[0].line, /[\n\u2028\u2029]/);
    assert.equal(parsed(lines)[0].value, value);
  });

  await t.step("secrets are still redacted when escaped", () => {
    const { logger, lines } = capture({ format: "pretty", secrets: [API_KEY] });
    logger.info("x", { header: `Bearer ${API_KEY}\nnext` });
    assert.ok(!lines[0].line.includes(API_KEY), lines[0].line);
    assert.match(lines[0].line, /header=Bearer \[redacted\]\\nnext$/);
  });
});
