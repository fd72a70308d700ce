/**
 * The OpenAI adapter driven through the real `openai` SDK against the loopback fake.
 */
import assert from "node:assert/strict";
import {
  type ChatMessage,
  type ChatTool,
  createChatStreamer,
  createLlmWarmer,
  LlmError,
  type LlmEvent,
  type LlmOptions,
} from "../../src/services/llm.ts";
import { delay } from "../../src/async/deadline.ts";
import { type FakeOpenAi, splitIntoDeltas, startFakeOpenAi } from "../fakes/openai.ts";

const MESSAGES: ChatMessage[] = [
  { role: "system", content: "You are a friendly phone agent." },
  { role: "user", content: "Hello?" },
];

const END_CALL: ChatTool = {
  type: "function",
  function: {
    name: "end_call",
    description: "Hang up after saying goodbye.",
    parameters: { type: "object", properties: { reason: { type: "string" } } },
  },
};

/** Runs `body` with a fresh fake, closing it whatever happens. */
async function withFake(body: (fake: FakeOpenAi) => Promise<void>): Promise<void> {
  const fake = startFakeOpenAi();
  try {
    await body(fake);
  } finally {
    await fake.close();
  }
}

function streamerFor(fake: FakeOpenAi, overrides: Partial<LlmOptions> = {}) {
  return createChatStreamer({ apiKey: fake.apiKey, baseURL: fake.baseURL, ...overrides });
}

async function collect(events: AsyncGenerator<LlmEvent>): Promise<LlmEvent[]> {
  const all: LlmEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

function textOf(events: LlmEvent[]): string {
  return events.map((e) => e.type === "text" ? e.text : "").join("");
}

/** Asserts `promise` rejects with an LlmError and returns it for further checks. */
async function llmErrorFrom(promise: Promise<unknown>): Promise<LlmError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof LlmError, `expected LlmError, got ${error}`);
  return error;
}

Deno.test("llm: request shape and streamed text", async (t) => {
  await withFake(async (fake) => {
    const stream = streamerFor(fake, { model: "gpt-test-model" });
    const answer = "Hi! I'm calling about your order, it ships tomorrow.";
    fake.enqueue({
      kind: "text",
      text: answer,
      usage: { prompt_tokens: 42, completion_tokens: 7 },
    });
    const events = await collect(stream({ messages: MESSAGES, tools: [END_CALL] }, neverAborted()));
    const [request] = fake.requests;

    await t.step("sends model, stream options, messages, tools and the bearer key", () => {
      assert.equal(fake.requests.length, 1);
      assert.equal(request.headers.get("authorization"), `Bearer ${fake.apiKey}`);
      assert.deepEqual(request.body, {
        model: "gpt-test-model",
        stream: true,
        stream_options: { include_usage: true },
        messages: MESSAGES,
        tools: [END_CALL],
        tool_choice: "auto",
      });
    });

    await t.step("yields first_token, then every text delta in order, then usage", () => {
      assert.equal(events[0].type, "first_token");
      assert.ok(events[0].type === "first_token" && events[0].ms >= 0);
      const texts = events.filter((e) => e.type === "text").map((e) => e.text);
      assert.ok(texts.length > 5, "text arrives in several deltas");
      assert.deepEqual(texts, splitIntoDeltas(answer));
      assert.equal(textOf(events), answer);
      assert.deepEqual(events.at(-1), {
        type: "usage",
        promptTokens: 42,
        completionTokens: 7,
        totalTokens: 49,
      });
      assert.equal(events.filter((e) => e.type === "first_token").length, 1);
    });

    await t.step("the fake saw the response through to the end", async () => {
      assert.equal(await request.outcome, "completed");
    });
  });
});

Deno.test("llm: defaults the model and omits tools when none are offered", async () => {
  await withFake(async (fake) => {
    fake.enqueue({ kind: "text", text: "Sure." });
    await collect(streamerFor(fake)({ messages: MESSAGES }, neverAborted()));
    const body = fake.requests[0].body;
    assert.equal(body.model, "gpt-4.1-mini");
    assert.equal("tools" in body, false);
    assert.equal("tool_choice" in body, false);
  });
});

Deno.test("llm: tool call is assembled from streamed pieces", async (t) => {
  await withFake(async (fake) => {
    const stream = streamerFor(fake);
    const args = JSON.stringify({ reason: "the callee said goodbye" });

    await t.step("after spoken text", async () => {
      fake.enqueue({ kind: "tool_call", text: "Goodbye, have a nice day!", arguments: args });
      const events = await collect(
        stream({ messages: MESSAGES, tools: [END_CALL] }, neverAborted()),
      );
      assert.equal(textOf(events), "Goodbye, have a nice day!");
      const calls = events.filter((e) => e.type === "tool_call");
      assert.equal(calls.length, 1);
      const [call] = calls;
      assert.ok(call.type === "tool_call");
      assert.equal(call.name, "end_call");
      assert.equal(call.arguments, args);
      assert.match(call.id, /^call_/);
      // The call is complete before the usage chunk that closes the stream.
      assert.equal(events.at(-1)?.type, "usage");
      assert.ok(events.indexOf(call) > events.findLastIndex((e) => e.type === "text"));
    });

    await t.step("on its own (content null)", async () => {
      fake.enqueue({ kind: "tool_call", arguments: args });
      const events = await collect(
        stream({ messages: MESSAGES, tools: [END_CALL] }, neverAborted()),
      );
      assert.equal(textOf(events), "");
      assert.deepEqual(events.map((e) => e.type), ["first_token", "tool_call", "usage"]);
      const call = events[1];
      assert.ok(call.type === "tool_call");
      assert.equal(call.arguments, args);
      assert.deepEqual(JSON.parse(call.arguments), { reason: "the callee said goodbye" });
    });
  });
});

Deno.test("llm: HTTP errors become LlmError with the right retryability", async (t) => {
  await withFake(async (fake) => {
    const stream = streamerFor(fake);
    const run = () => collect(stream({ messages: MESSAGES }, neverAborted()));

    await t.step("401 wrong key: not retryable", async () => {
      const wrongKey = createChatStreamer({ apiKey: "sk-wrong", baseURL: fake.baseURL });
      const error = await llmErrorFrom(collect(wrongKey({ messages: MESSAGES }, neverAborted())));
      assert.equal(error.status, 401);
      assert.equal(error.code, "invalid_api_key");
      assert.equal(error.retryable, false);
    });

    const cases = [
      { status: 400, code: "invalid_value", retryable: false },
      { status: 403, code: "unsupported_country_region_territory", retryable: false },
      { status: 429, code: "rate_limit_exceeded", retryable: true },
      { status: 429, code: "insufficient_quota", retryable: false },
      { status: 500, code: null, retryable: true },
      { status: 503, code: null, retryable: true },
    ];
    for (const c of cases) {
      await t.step(`${c.status} ${c.code ?? ""}: retryable=${c.retryable}`, async () => {
        fake.enqueue({ kind: "http_error", status: c.status, code: c.code, message: "boom" });
        const error = await llmErrorFrom(run());
        assert.equal(error.status, c.status);
        assert.equal(error.retryable, c.retryable);
        if (c.code) assert.equal(error.code, c.code);
        assert.match(error.message, /boom/);
      });
    }
  });
});

Deno.test("llm: a mid-stream error event throws after the text already yielded", async () => {
  await withFake(async (fake) => {
    fake.enqueue({ kind: "stream_error", text: "Let me check", message: "overloaded" });
    const seen: LlmEvent[] = [];
    const error = await llmErrorFrom(
      (async () => {
        for await (const e of streamerFor(fake)({ messages: MESSAGES }, neverAborted())) {
          seen.push(e);
        }
      })(),
    );
    assert.equal(textOf(seen), "Let me check");
    assert.equal(error.status, undefined);
    assert.equal(error.code, "server_error");
    assert.equal(error.retryable, true);
    assert.match(error.message, /overloaded/);
  });
});

Deno.test("llm: a stream that ends without finish_reason is a truncated answer", async () => {
  await withFake(async (fake) => {
    fake.enqueue({ kind: "truncated", text: "The appointment is on" });
    const error = await llmErrorFrom(
      collect(streamerFor(fake)({ messages: MESSAGES }, neverAborted())),
    );
    assert.equal(error.code, "truncated");
    assert.equal(error.retryable, true);
  });
});

Deno.test("llm: abort mid-stream throws the abort reason and cancels the body", async () => {
  await withFake(async (fake) => {
    fake.enqueue({ kind: "hang", text: "I was saying" });
    const caller = new AbortController();
    const reason = new Error("callee barged in");
    const seen: string[] = [];
    const outcome = (async () => {
      for await (const e of streamerFor(fake)({ messages: MESSAGES }, caller.signal)) {
        if (e.type !== "text") continue;
        seen.push(e.text);
        if (seen.join("") === "I was saying") caller.abort(reason);
      }
    })();
    await assert.rejects(outcome, (e) => e === reason);
    assert.equal(seen.join(""), "I was saying");
    assert.equal(await fake.requests[0].outcome, "cancelled");
  });
});

Deno.test("llm: abort before the response headers throws the abort reason", async (t) => {
  await t.step("while the request is in flight", async () => {
    const fake = startFakeOpenAi();
    try {
      // Headers held back far longer than the test may take: only the abort can end the wait.
      fake.enqueue({ kind: "text", text: "too late", headersDelayMs: 600_000 });
      const caller = new AbortController();
      const pending = collect(streamerFor(fake)({ messages: MESSAGES }, caller.signal));
      await fake.waitForRequests(1);
      const reason = new DOMException("turn cancelled", "AbortError");
      caller.abort(reason);
      await assert.rejects(pending, (e) => e === reason);
    } finally {
      await fake.close();
    }
    // Deno.serve does not always notice this disconnect (see ResponseOutcome), but the answer
    // was never delivered either way.
    assert.match(await fake.requests[0].outcome, /^(cancelled|closed)$/);
  });

  await t.step("already aborted: no request is sent", async () => {
    await withFake(async (fake) => {
      const caller = new AbortController();
      const reason = new Error("already over");
      caller.abort(reason);
      await assert.rejects(
        collect(streamerFor(fake)({ messages: MESSAGES }, caller.signal)),
        (e) => e === reason,
      );
      assert.equal(fake.requests.length, 0);
    });
  });
});

Deno.test("llm: consumer leaving early cancels the response body", async () => {
  await withFake(async (fake) => {
    fake.enqueue({ kind: "hang", text: "One two three" });
    for await (const e of streamerFor(fake)({ messages: MESSAGES }, neverAborted())) {
      if (e.type === "text") break;
    }
    assert.equal(await fake.requests[0].outcome, "cancelled");
  });
});

Deno.test("llm: timeout before the first token is a retryable LlmError", async (t) => {
  await withFake(async (fake) => {
    const stream = streamerFor(fake, { timeoutMs: 300 });

    await t.step("headers arrive, tokens never do", async () => {
      fake.enqueue({ kind: "hang" });
      const error = await llmErrorFrom(collect(stream({ messages: MESSAGES }, neverAborted())));
      assert.equal(error.code, "timeout");
      assert.equal(error.retryable, true);
      assert.equal(await fake.requests[0].outcome, "cancelled");
    });

    await t.step("the stream stalls after some text", async () => {
      fake.enqueue({ kind: "hang", text: "Half an" });
      const seen: LlmEvent[] = [];
      const error = await llmErrorFrom((async () => {
        for await (const e of stream({ messages: MESSAGES }, neverAborted())) seen.push(e);
      })());
      assert.equal(textOf(seen), "Half an");
      assert.equal(error.code, "timeout");
      assert.equal(await fake.requests[1].outcome, "cancelled");
    });
  });
});

Deno.test("llm: timeout while the response headers are held back", async () => {
  const fake = startFakeOpenAi();
  try {
    fake.enqueue({ kind: "text", text: "late", headersDelayMs: 600_000 });
    const stream = streamerFor(fake, { timeoutMs: 300 });
    const error = await llmErrorFrom(collect(stream({ messages: MESSAGES }, neverAborted())));
    assert.equal(error.code, "timeout");
    assert.equal(error.retryable, true);
  } finally {
    await fake.close();
  }
  assert.match(await fake.requests[0].outcome, /^(cancelled|closed)$/);
});

Deno.test("llm: an answer trickling in just under the chunk timeout still ends at the request bound", async () => {
  await withFake(async (fake) => {
    // Every delta arrives well inside timeoutMs, but the whole answer would take about 4 s.
    fake.enqueue({ kind: "text", text: "word ".repeat(100), deltaDelayMs: 40 });
    const stream = streamerFor(fake, { timeoutMs: 1000, requestTimeoutMs: 200 });
    const seen: LlmEvent[] = [];
    const error = await llmErrorFrom((async () => {
      for await (const e of stream({ messages: MESSAGES }, neverAborted())) seen.push(e);
    })());
    assert.equal(error.code, "timeout");
    assert.equal(error.retryable, true);
    assert.match(error.message, /took more than 200 ms/);
    assert.ok(textOf(seen).length > 0, "some text arrived before the bound");
    assert.equal(await fake.requests[0].outcome, "cancelled");
  });
});

Deno.test("llm: a consumer slow to pull does not count against the timeout", async () => {
  await withFake(async (fake) => {
    fake.enqueue({ kind: "text", text: "Take your time, I will wait." });
    const events: LlmEvent[] = [];
    for await (
      const e of streamerFor(fake, { timeoutMs: 500 })({ messages: MESSAGES }, neverAborted())
    ) {
      events.push(e);
      // Longer than timeoutMs: the request must survive a consumer that blocks (e.g. on TTS).
      if (events.length === 2) await delay(800);
    }
    assert.equal(textOf(events), "Take your time, I will wait.");
  });
});

/** A signal for calls that the test never cancels. */
function neverAborted(): AbortSignal {
  return new AbortController().signal;
}

Deno.test("the warm-up looks the model up, then lets the interval pass before the next", async () => {
  await withFake(async (fake) => {
    let now = 0;
    const warm = createLlmWarmer({
      apiKey: fake.apiKey,
      baseURL: fake.baseURL,
      model: "gpt-test",
      minIntervalMs: 1000,
      now: () => now,
    });
    const signal = new AbortController().signal;
    assert.equal(await warm(signal), "warmed");
    now = 999;
    assert.equal(await warm(signal), "skipped");
    now = 1000;
    assert.equal(await warm(signal), "warmed");
    assert.deepEqual(fake.modelLookups.map((l) => l.model), ["gpt-test", "gpt-test"]);
    assert.equal(fake.requests.length, 0, "no completion, no tokens");
  });
});

Deno.test("an answer after a warm-up is sent on the warmed connection", async () => {
  await withFake(async (fake) => {
    const warm = createLlmWarmer({ apiKey: fake.apiKey, baseURL: fake.baseURL });
    assert.equal(await warm(new AbortController().signal), "warmed");
    fake.enqueue({ kind: "text", text: "Hello." });
    await collect(streamerFor(fake)({ messages: MESSAGES }, new AbortController().signal));
    assert.equal(fake.requests[0].clientPort, fake.modelLookups[0].clientPort);
  });
});

Deno.test("a warm-up OpenAI refuses is returned as an LlmError, not thrown", async () => {
  await withFake(async (fake) => {
    const warm = createLlmWarmer({ apiKey: "sk-wrong", baseURL: fake.baseURL });
    const warmup = await warm(new AbortController().signal);
    assert.ok(warmup instanceof LlmError);
    assert.equal(warmup.status, 401);
  });
});

Deno.test("call starts at the same moment send one warm-up between them", async () => {
  await withFake(async (fake) => {
    const warm = createLlmWarmer({ apiKey: fake.apiKey, baseURL: fake.baseURL });
    const signal = new AbortController().signal;
    assert.deepEqual(await Promise.all([warm(signal), warm(signal)]), ["warmed", "skipped"]);
    assert.equal(fake.modelLookups.length, 1);
  });
});

Deno.test("a warm-up cut off before any answer leaves the next call's start to try again", async () => {
  await withFake(async (fake) => {
    const warm = createLlmWarmer({ apiKey: fake.apiKey, baseURL: fake.baseURL });
    const aborted = new AbortController();
    aborted.abort();
    assert.ok(await warm(aborted.signal) instanceof LlmError);
    assert.equal(await warm(new AbortController().signal), "warmed");
  });
});
