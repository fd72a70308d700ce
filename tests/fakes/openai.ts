/**
 * Loopback fake of OpenAI's streaming Chat Completions endpoint (`POST /v1/chat/completions`).
 *
 * It streams the real API's wire format (server-sent events: `data: <chat.completion.chunk JSON>`,
 * a final usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`), so the
 * real `openai` SDK can be pointed at it with `baseURL`. Every request is recorded with its body,
 * headers and how its response ended (completed, or cancelled by the client), and each request
 * consumes the next scripted {@link OpenAiReply} from a queue. A request without `stream: true`
 * (structured outputs, as post-call analysis sends) gets one `chat.completion` JSON object.
 */
import { CountWaiters } from "./count_waiters.ts";
import { loopbackTls } from "./loopback_tls.ts";

/** A reply the fake gives to one chat-completion request. */
export type OpenAiReply =
  | ({ kind: "text"; text: string } & StreamTiming & UsageOverride)
  | (
    & {
      kind: "tool_call";
      /** Function name; the conversation offers `end_call`, so that is the default. */
      name?: string;
      /** JSON arguments, streamed in small pieces; default `{}`. */
      arguments?: string;
      /** Spoken text the model emits before the call (e.g. a goodbye). */
      text?: string;
    }
    & StreamTiming
    & UsageOverride
  )
  | {
    kind: "http_error";
    status: number;
    message?: string;
    type?: string;
    code?: string | null;
    param?: string | null;
    headersDelayMs?: number;
  }
  | ({
    /** Streams `text` (may be empty) and then an in-band `data: {"error":…}` event. */
    kind: "stream_error";
    text?: string;
    message?: string;
    type?: string;
    code?: string | null;
  } & StreamTiming)
  | ({
    /** Streams the role chunk and `text`, then sends nothing until cancelled or closed. */
    kind: "hang";
    text?: string;
  } & StreamTiming)
  | ({
    /** Streams `text`, then closes the body without `finish_reason` or `[DONE]`. */
    kind: "truncated";
    text: string;
  } & StreamTiming)
  | (
    & {
      /**
       * A non-streamed answer: `value` as JSON content (a structured output), or `content` verbatim
       * (e.g. invalid JSON), or a `refusal`.
       */
      kind: "json";
      value?: unknown;
      content?: string;
      refusal?: string;
      /** Default "stop". */
      finishReason?: string;
    }
    & StreamTiming
    & UsageOverride
  );

/** Delays that shape a streamed reply; both default to 0. */
export interface StreamTiming {
  /** Wait this long before sending the response headers. */
  headersDelayMs?: number;
  /**
   * Send each SSE event after the first this long after the one before it was due (a steady
   * pace: a late timer does not push the rest back).
   */
  deltaDelayMs?: number;
}

/** Token counts to report instead of the fake's estimate. */
export interface UsageOverride {
  usage?: { prompt_tokens: number; completion_tokens: number };
}

/**
 * How a recorded request's response ended, as seen by the server. `closed`: the fake was closed
 * while the response was still pending. A client that leaves while the headers are held back
 * often ends up as `closed` rather than `cancelled`: Deno.serve aborts `request.signal` on such a
 * disconnect only for some requests (it did for a 41-byte body, not for an 81-byte one).
 */
export type ResponseOutcome = "completed" | "cancelled" | "closed" | "unauthorized" | "not_found";

/** One request as the fake received it. */
export interface RecordedRequest {
  /** Parsed JSON body, forwarded verbatim by the SDK. */
  body: Record<string, unknown>;
  headers: Headers;
  /** Resolves once the response is fully sent or the client has cancelled it. */
  outcome: Promise<ResponseOutcome>;
  /** The client's port: requests on one connection share it. */
  clientPort: number;
}

/** A `GET /v1/models/:model` the fake answered. */
export interface ModelLookup {
  model: string;
  /** The client's port: requests on one connection share it. */
  clientPort: number;
}

/** Options for {@link startFakeOpenAi}. */
export interface FakeOpenAiOptions {
  /** The only API key the fake accepts as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Reply used when the queue is empty; without it such a request gets a 500 error. */
  whenQueueEmpty?: (body: Record<string, unknown>) => OpenAiReply;
  /**
   * A real model's pace, for replies that set no timing of their own: the first text token this
   * long after the request (OpenAI: about 350 ms), then one every `tokenIntervalMs` (about 20).
   */
  pace?: { firstTokenMs: number; tokenIntervalMs: number };
}

/** A running fake; `close()` it before the test ends. */
export interface FakeOpenAi extends AsyncDisposable {
  /** `https://127.0.0.1:<port>/v1`, the value the SDK wants as `baseURL`. */
  baseURL: string;
  apiKey: string;
  /** Every request but model lookups, in arrival order (including rejected ones). */
  requests: RecordedRequest[];
  /** Every `GET /v1/models/:model`, in arrival order. */
  modelLookups: ModelLookup[];
  /** Resolves once at least `count` requests have arrived (their bodies read). */
  waitForRequests(count: number): Promise<void>;
  /** Appends replies; each chat-completion request takes the next one. */
  enqueue(...replies: OpenAiReply[]): void;
  /** Ends hanging streams and pending delays, then waits for the server to shut down. */
  close(): Promise<void>;
}

const ARGUMENT_PIECE_CHARS = 5;

/** Starts the fake on an ephemeral loopback port. */
export function startFakeOpenAi(options: FakeOpenAiOptions = {}): FakeOpenAi {
  const apiKey = options.apiKey ?? "sk-test-fake";
  const queue: OpenAiReply[] = [];
  const requests: RecordedRequest[] = [];
  const modelLookups: ModelLookup[] = [];
  const waiters = new CountWaiters(() => requests.length);
  // Aborted by close() so hanging streams and delays stop and shutdown() can complete.
  const closing = new AbortController();

  const server = Deno.serve(
    // TLS as api.openai.com: Deno's fetch then speaks HTTP/2 to it, as to an HTTP/2 front.
    { hostname: "127.0.0.1", port: 0, onListen: () => {}, ...loopbackTls() },
    async (request, info) => {
      // The client's port names the connection a request came on.
      const clientPort = (info.remoteAddr as Deno.NetAddr).port;
      // Delays count from the request's arrival, as a real server's would.
      const arrivedAt = performance.now();
      const modelPath = new URL(request.url).pathname.match(/^\/v1\/models\/([^/]+)$/);
      if (request.method === "GET" && modelPath) {
        const id = decodeURIComponent(modelPath[1]);
        modelLookups.push({ model: id, clientPort });
        return modelResponse(id, request.headers.get("authorization") === `Bearer ${apiKey}`);
      }
      let settle: (outcome: ResponseOutcome) => void = () => {};
      const outcome = new Promise<ResponseOutcome>((resolve) => settle = resolve);
      const body = await request.json().catch(() => ({}));
      // A copy: over HTTP/2 the request's own headers are unreadable once it is answered.
      requests.push({ body, headers: new Headers(request.headers), outcome, clientPort });
      waiters.notify();

      const url = new URL(request.url);
      if (request.method !== "POST" || url.pathname !== "/v1/chat/completions") {
        settle("not_found");
        return errorResponse(404, {
          message: `Invalid URL (${request.method} ${url.pathname})`,
          type: "invalid_request_error",
        });
      }
      if (request.headers.get("authorization") !== `Bearer ${apiKey}`) {
        settle("unauthorized");
        return errorResponse(401, {
          message: "Incorrect API key provided.",
          type: "invalid_request_error",
          code: "invalid_api_key",
        });
      }

      const reply = withPace(
        queue.shift() ?? options.whenQueueEmpty?.(body) ?? {
          kind: "http_error",
          status: 500,
          message: "fake OpenAI: no scripted reply left",
          type: "server_error",
        },
        options.pace,
      );

      if ((reply.headersDelayMs ?? 0) > 0) {
        // The client may give up while we hold the headers back: that is a cancellation too.
        // (Touching request.signal makes Deno print a one-off "legacy abort" notice; only here.)
        const headersDelayMs = (reply.headersDelayMs ?? 0) - (performance.now() - arrivedAt);
        await sleep(headersDelayMs, closing.signal, request.signal);
        if (request.signal.aborted || closing.signal.aborted) {
          settle(request.signal.aborted ? "cancelled" : "closed");
          return new Response(null, { status: 499 });
        }
      }

      if (reply.kind === "http_error") {
        settle("completed");
        return errorResponse(reply.status, reply);
      }
      if (reply.kind === "json" || body.stream !== true) {
        settle("completed");
        return completionResponse(reply, body);
      }
      const events = sseEvents(reply, body);
      // Due times count from the request's arrival, so the fake's own timer lateness does not
      // pile up: the nth delta is due at arrival + headers delay + n × delta delay.
      const firstDueAt = arrivedAt + (reply.headersDelayMs ?? 0);
      return sseResponse(events, reply.deltaDelayMs ?? 0, firstDueAt, closing.signal, settle);
    },
  );

  const close = async () => {
    closing.abort();
    await server.shutdown();
  };
  return {
    baseURL: `https://127.0.0.1:${server.addr.port}/v1`,
    apiKey,
    requests,
    modelLookups,
    waitForRequests: (count) => waiters.waitFor(count),
    enqueue: (...replies) => void queue.push(...replies),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * The reply with the model's pace where it sets no timing: the headers and the role chunk one
 * token interval before the first text token, so that token arrives `firstTokenMs` in.
 */
function withPace(reply: OpenAiReply, pace: FakeOpenAiOptions["pace"]): OpenAiReply {
  if (!pace || reply.kind === "http_error") return reply;
  return {
    ...reply,
    headersDelayMs: reply.headersDelayMs ??
      Math.max(0, pace.firstTokenMs - pace.tokenIntervalMs),
    deltaDelayMs: reply.deltaDelayMs ?? pace.tokenIntervalMs,
  };
}

/** `GET /v1/models/:model` as OpenAI answers it: any model is known; a wrong key is a 401. */
function modelResponse(id: string, authorized: boolean): Response {
  if (!authorized) {
    return errorResponse(401, {
      message: "Incorrect API key provided.",
      type: "invalid_request_error",
      code: "invalid_api_key",
    });
  }
  return Response.json({ id, object: "model", created: 1_700_000_000, owned_by: "system" });
}

/** JSON error body in OpenAI's shape. */
function errorResponse(
  status: number,
  error: { message?: string; type?: string; code?: string | null; param?: string | null },
): Response {
  return Response.json(
    {
      error: {
        message: error.message ?? `fake OpenAI error ${status}`,
        type: error.type ?? (status >= 500 ? "server_error" : "invalid_request_error"),
        param: error.param ?? null,
        code: error.code ?? null,
      },
    },
    { status, headers: { "x-request-id": `req_${randomId()}` } },
  );
}

/** A non-streamed `chat.completion`: the reply's JSON or text as the message content. */
function completionResponse(
  reply: Exclude<OpenAiReply, { kind: "http_error" }>,
  body: Record<string, unknown>,
): Response {
  const content = reply.kind === "json"
    ? reply.refusal !== undefined ? null : reply.content ?? JSON.stringify(reply.value ?? {})
    : ("text" in reply ? reply.text : undefined) ?? "";
  const usage = "usage" in reply ? reply.usage : undefined;
  const promptTokens = usage?.prompt_tokens ??
    Math.ceil(JSON.stringify(body.messages ?? []).length / 4);
  const completionTokens = usage?.completion_tokens ?? Math.ceil((content ?? "").length / 4);
  return Response.json({
    id: `chatcmpl-${randomId()}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: typeof body.model === "string" ? body.model : "gpt-4.1-mini",
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content,
        refusal: reply.kind === "json" ? reply.refusal ?? null : null,
        annotations: [],
      },
      logprobs: null,
      finish_reason: reply.kind === "json" ? reply.finishReason ?? "stop" : "stop",
    }],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
    service_tier: "default",
    system_fingerprint: "fp_fake0001",
  }, { headers: { "x-request-id": `req_${randomId()}` } });
}

/** What the stream generator yields: an SSE payload, or a signal to stop and wait forever. */
type SseStep = { data: string } | { hang: true };

/**
 * Streams the events lazily (pull-based) so delays sit between real writes and a client cancel
 * is seen by `cancel()` while the stream is still open.
 */
function sseResponse(
  events: Generator<SseStep>,
  deltaDelayMs: number,
  firstDueAt: number,
  closing: AbortSignal,
  settle: (outcome: ResponseOutcome) => void,
): Response {
  const cancelled = new AbortController();
  const encoder = new TextEncoder();
  /** When the next event is due; the first at `firstDueAt`. */
  let dueAt = firstDueAt - deltaDelayMs;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      dueAt += deltaDelayMs;
      await sleep(dueAt - performance.now(), closing, cancelled.signal);
      const next = events.next();
      const step = next.done ? undefined : next.value;
      if (step && "hang" in step) await sleep(Infinity, closing, cancelled.signal);
      if (cancelled.signal.aborted) return;
      if (closing.aborted || !step || "hang" in step) {
        settle(closing.aborted ? "closed" : "completed");
        controller.close();
        return;
      }
      controller.enqueue(encoder.encode(`data: ${step.data}\n\n`));
    },
    cancel() {
      settle("cancelled");
      cancelled.abort();
    },
  });
  return new Response(stream, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-request-id": `req_${randomId()}`,
    },
  });
}

/** The SSE payloads of one streamed reply, in wire order. */
function* sseEvents(
  reply: Exclude<OpenAiReply, { kind: "http_error" | "json" }>,
  body: Record<string, unknown>,
): Generator<SseStep> {
  const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)
    ?.include_usage === true;
  const envelope = {
    id: `chatcmpl-${randomId()}`,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    // The real API answers with the dated snapshot name; echoing keeps tests simple.
    model: typeof body.model === "string" ? body.model : "gpt-4.1-mini",
    service_tier: "default",
    system_fingerprint: "fp_fake0001",
  };
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
    data: JSON.stringify({
      ...envelope,
      choices,
      ...(includeUsage ? { usage: null } : {}),
      ...extra,
    }),
  });
  const delta = (d: Record<string, unknown>, finishReason: string | null = null) =>
    chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finishReason }]);

  const text = reply.text ?? "";
  const textPieces = splitIntoDeltas(text);
  let completionTokens = 0;

  if (reply.kind === "tool_call" && text === "") {
    // A pure tool call opens with the call itself, content null.
    yield delta({ role: "assistant", content: null, tool_calls: [toolHead(reply)], refusal: null });
  } else {
    yield delta({ role: "assistant", content: "", refusal: null });
    for (const piece of textPieces) {
      completionTokens++;
      yield delta({ content: piece });
    }
    if (reply.kind === "tool_call") yield delta({ tool_calls: [toolHead(reply)] });
  }

  switch (reply.kind) {
    case "hang":
      yield { hang: true };
      return;
    case "truncated":
      return;
    case "stream_error":
      yield {
        data: JSON.stringify({
          error: {
            message: reply.message ?? "The server had an error while processing your request.",
            type: reply.type ?? "server_error",
            param: null,
            code: reply.code ?? null,
          },
        }),
      };
      return;
    case "tool_call": {
      const args = reply.arguments ?? "{}";
      for (let i = 0; i < args.length; i += ARGUMENT_PIECE_CHARS) {
        completionTokens++;
        yield delta({
          tool_calls: [{
            index: 0,
            function: { arguments: args.slice(i, i + ARGUMENT_PIECE_CHARS) },
          }],
        });
      }
      yield delta({}, "tool_calls");
      break;
    }
    case "text":
      yield delta({}, "stop");
      break;
  }

  if (includeUsage) {
    const promptTokens = reply.usage?.prompt_tokens ??
      Math.ceil(JSON.stringify(body.messages ?? []).length / 4);
    const completion = reply.usage?.completion_tokens ?? completionTokens;
    yield chunk([], {
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: completion,
        total_tokens: promptTokens + completion,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: {
          reasoning_tokens: 0,
          audio_tokens: 0,
          accepted_prediction_tokens: 0,
          rejected_prediction_tokens: 0,
        },
      },
    });
  }
  yield { data: "[DONE]" };
}

/** First tool-call delta: carries id, type and name, with empty arguments. */
function toolHead(reply: { name?: string }) {
  return {
    index: 0,
    id: `call_${randomId()}`,
    type: "function",
    function: { name: reply.name ?? "end_call", arguments: "" },
  };
}

/**
 * Token-like pieces the way the API streams them: a word with its leading space, or one
 * punctuation mark. Joining the pieces gives back the input exactly.
 */
export function splitIntoDeltas(text: string): string[] {
  return text.match(/\s*[\p{L}\p{N}']+|\s*[^\s\p{L}\p{N}']|\s+$/gu) ?? [];
}

/**
 * Resolves after `ms`, or early (without throwing) when any of `signals` aborts. Listens on each
 * signal directly: a signal made by `AbortSignal.any` is only weakly held by its sources.
 */
function sleep(ms: number, ...signals: AbortSignal[]): Promise<void> {
  if (ms <= 0 || signals.some((s) => s.aborted)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", done);
      resolve();
    };
    const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
    for (const s of signals) s.addEventListener("abort", done, { once: true });
  });
}

function randomId(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 24);
}
