/**
 * OpenAI streaming Chat Completions as an async generator of {@link LlmEvent}s.
 *
 * The SDK has one trap that matters for a voice agent: when a request is aborted after the
 * response started, its `for await` loop ends silently, exactly like a complete answer. This
 * adapter never lets a cut answer pass as a complete one: a generator that returns normally has
 * seen the model's `finish_reason`; every other ending throws — the caller's abort reason when
 * the caller aborted, otherwise an {@link LlmError}.
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai";
import { z } from "zod";
import { deadline, DeadlineError } from "../async/deadline.ts";

/** A message of the chat context, in the SDK's own shape. */
export type ChatMessage = OpenAI.Chat.ChatCompletionMessageParam;

/** A tool offered to the model, in the SDK's own shape. */
export type ChatTool = OpenAI.Chat.ChatCompletionTool;

/** What one streamed completion produces, in arrival order. */
export type LlmEvent =
  /** Time from the start of the request to the first text or tool-call delta; emitted once. */
  | { type: "first_token"; ms: number }
  /** A piece of the spoken answer, as soon as it arrives. */
  | { type: "text"; text: string }
  /** A tool call whose arguments are complete (emitted when the model finishes). */
  | { type: "tool_call"; id: string; name: string; arguments: string }
  /** Token usage, from the final chunk of the stream. */
  | { type: "usage"; promptTokens: number; completionTokens: number; totalTokens: number };

/** Validated adapter options; input type is {@link LlmOptions}. */
const LlmOptionsSchema = z.object({
  apiKey: z.string().min(1),
  /** Must include `/v1`. When absent the SDK reads `OPENAI_BASE_URL`, then uses the real API. */
  baseURL: z.url().optional(),
  /**
   * Default `gpt-4.1-mini`, a current non-reasoning model. Reasoning models (the gpt-5 family,
   * o-series) spend seconds before their first token, which a caller hears as silence.
   */
  model: z.string().min(1).default("gpt-4.1-mini"),
  /**
   * Longest wait for the response's first chunk (so it bounds time-to-first-token), and then
   * for each next chunk. Exceeding it aborts the request and fails with a retryable
   * {@link LlmError} (`code: "timeout"`). Time the consumer spends between pulls does not count.
   */
  timeoutMs: z.number().positive().default(10_000),
  /**
   * Longest time OpenAI may take for one answer as a whole, counted like `timeoutMs` (only while
   * we wait on the network), so a stream that trickles a chunk just inside `timeoutMs` forever
   * still ends. Exceeding it fails like `timeoutMs`. A spoken answer streams in a few seconds.
   */
  requestTimeoutMs: z.number().positive().default(30_000),
});

/** Options for {@link createChatStreamer}. */
export type LlmOptions = z.input<typeof LlmOptionsSchema>;

/** One completion request: the context so far and the tools the model may call. */
export interface ChatRequest {
  messages: ChatMessage[];
  tools?: ChatTool[];
}

/** Streams one completion; aborting `signal` stops it and makes the generator throw. */
export type ChatStreamer = (req: ChatRequest, signal: AbortSignal) => AsyncGenerator<LlmEvent>;

/** Fields of {@link LlmError} besides its message. */
export interface LlmErrorInit {
  status?: number;
  code?: string;
  retryable: boolean;
  cause?: unknown;
}

/**
 * A failed completion. `retryable` says whether the same request may succeed if sent again
 * (rate limit, server error, timeout, lost connection, truncated stream), as opposed to a request
 * that will fail the same way (bad key, bad request).
 */
export class LlmError extends Error {
  /** HTTP status, when the API answered with an error status. */
  readonly status?: number;
  /** OpenAI's error `code` (or `type`), or our own: `timeout`, `connection`, `truncated`. */
  readonly code?: string;
  readonly retryable: boolean;

  constructor(message: string, init: LlmErrorInit) {
    super(message, { cause: init.cause });
    this.name = "LlmError";
    this.status = init.status;
    this.code = init.code;
    this.retryable = init.retryable;
  }
}

/** Builds a streamer bound to one API key, base URL and model. */
export function createChatStreamer(options: LlmOptions): ChatStreamer {
  const { apiKey, baseURL, model, ...bounds } = LlmOptionsSchema.parse(options);
  // Retries are the conversation's decision (it knows whether anything was already spoken).
  const client = new OpenAI({ apiKey, baseURL, maxRetries: 0, timeout: bounds.timeoutMs });
  return (req, signal) => streamCompletion(client, model, bounds, req, signal);
}

/** Options for {@link createLlmWarmer}. */
export interface LlmWarmerOptions {
  apiKey: string;
  baseURL?: string;
  model?: string;
  /** A warm-up less than this long after the last one is skipped; default 20 s. */
  minIntervalMs?: number;
  /** Monotonic clock in ms, default `performance.now`. */
  now?: () => number;
}

/** Bound on a warm-up request: past it, the answer opens its own connection. */
const WARM_UP_TIMEOUT_MS = 5000;

/** What {@link createLlmWarmer}'s warm-up did. */
export type LlmWarmup = "warmed" | "skipped" | LlmError;

/**
 * Opens the HTTPS connection to OpenAI before an answer needs it. `fetch` pools connections per
 * origin but lets an idle one go, so the first answer of a process, or the first after a quiet
 * spell, would otherwise wait for DNS, TCP and TLS (several round trips) before its request is
 * even sent. A call's first answer comes seconds after it starts (the greeting, the callee's
 * reply), so the call's start looks up the model: no tokens spent, the connection left open,
 * and a wrong key or model is seen before anyone waits for an answer. Never throws.
 */
export function createLlmWarmer(
  options: LlmWarmerOptions,
): (signal: AbortSignal) => Promise<LlmWarmup> {
  const { apiKey, baseURL, now = () => performance.now() } = options;
  const model = options.model ?? LlmOptionsSchema.shape.model.parse(undefined);
  const minIntervalMs = options.minIntervalMs ?? 20_000;
  const client = new OpenAI({ apiKey, baseURL, maxRetries: 0, timeout: WARM_UP_TIMEOUT_MS });
  let lastAt = -Infinity;
  return async (signal) => {
    if (now() - lastAt < minIntervalMs) return "skipped";
    // Set before the request, so that calls starting meanwhile do not each send one.
    lastAt = now();
    try {
      await client.models.retrieve(model, { signal });
      return "warmed";
    } catch (error) {
      const failure = toLlmError(error);
      // No answer, no connection left open: the next call's start tries again.
      if (failure.status === undefined) lastAt = -Infinity;
      return failure;
    }
  };
}

async function* streamCompletion(
  client: OpenAI,
  model: string,
  bounds: { timeoutMs: number; requestTimeoutMs: number },
  req: ChatRequest,
  signal: AbortSignal,
): AsyncGenerator<LlmEvent> {
  signal.throwIfAborted();
  const startedAt = performance.now();
  // Aborted when we stop for any reason (caller's abort, timeout, early exit): ends the HTTP body.
  const request = new AbortController();
  let waitedMs = 0;
  // Each wait on OpenAI is bounded by `timeoutMs` and by what is left of `requestTimeoutMs`;
  // only these waits count, so a consumer slow to pull is never a timeout. A caller's abort
  // rejects at once with its reason, whatever the SDK would have made of it.
  const fromOpenAi = async <T>(promise: Promise<T>): Promise<T> => {
    const left = bounds.requestTimeoutMs - waitedMs;
    const ms = Math.max(0, Math.min(bounds.timeoutMs, left));
    const since = performance.now();
    try {
      return await deadline(promise, ms, { signal });
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (!(error instanceof DeadlineError)) throw toLlmError(error);
      const message = ms < bounds.timeoutMs
        ? `OpenAI's answer took more than ${bounds.requestTimeoutMs} ms`
        : `no data from OpenAI for ${ms} ms`;
      throw new LlmError(message, { code: "timeout", retryable: true, cause: error });
    } finally {
      waitedMs += performance.now() - since;
    }
  };

  try {
    const hasTools = (req.tools?.length ?? 0) > 0;
    const stream = await fromOpenAi(client.chat.completions.create(
      {
        model,
        stream: true,
        stream_options: { include_usage: true },
        messages: req.messages,
        ...(hasTools ? { tools: req.tools, tool_choice: "auto" as const } : {}),
      },
      { signal: request.signal },
    ));

    const chunks = stream[Symbol.asyncIterator]();
    const calls = new Map<number, { id: string; name: string; arguments: string }>();
    let sawFirstToken = false;
    let finishReason: string | null = null;
    for (
      let next = await fromOpenAi(chunks.next());
      !next.done;
      next = await fromOpenAi(chunks.next())
    ) {
      const chunk = next.value;
      const choice = chunk.choices[0];
      const content = choice?.delta.content;
      const toolDeltas = choice?.delta.tool_calls ?? [];
      if (!sawFirstToken && (content || toolDeltas.length > 0)) {
        sawFirstToken = true;
        yield { type: "first_token", ms: performance.now() - startedAt };
      }
      if (content) yield { type: "text", text: content };
      for (const piece of toolDeltas) {
        const call = calls.get(piece.index) ?? { id: "", name: "", arguments: "" };
        calls.set(piece.index, call);
        if (piece.id) call.id = piece.id;
        if (piece.function?.name) call.name = piece.function.name;
        if (piece.function?.arguments) call.arguments += piece.function.arguments;
      }
      if (choice?.finish_reason) {
        finishReason = choice.finish_reason;
        // Emit now rather than after the usage chunk: ending the call should not wait on it.
        for (const [, call] of [...calls].sort(([a], [b]) => a - b)) {
          yield { type: "tool_call", ...call };
        }
        calls.clear();
      }
      if (chunk.usage) {
        yield {
          type: "usage",
          promptTokens: chunk.usage.prompt_tokens,
          completionTokens: chunk.usage.completion_tokens,
          totalTokens: chunk.usage.total_tokens,
        };
      }
    }
    // An aborted stream ends without an error; this is where a cut answer is caught.
    signal.throwIfAborted();
    if (finishReason === null) {
      // The connection closed before the model said it was done: the answer may be cut anywhere.
      throw new LlmError("OpenAI stream ended before finish_reason (truncated answer)", {
        code: "truncated",
        retryable: true,
      });
    }
  } finally {
    // Stops the HTTP body if we left early; a no-op once the stream has completed.
    request.abort();
  }
}

/** HTTP statuses worth retrying, the same set the SDK itself retries. */
function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** Maps whatever the SDK (or fetch underneath it) threw to an {@link LlmError}. */
function toLlmError(error: unknown): LlmError {
  if (error instanceof LlmError) return error;
  if (error instanceof APIConnectionTimeoutError) {
    return new LlmError(error.message, { code: "timeout", retryable: true, cause: error });
  }
  if (error instanceof APIConnectionError) {
    return new LlmError(error.message, { code: "connection", retryable: true, cause: error });
  }
  if (error instanceof APIError) {
    const code = typeof error.code === "string"
      ? error.code
      : typeof error.type === "string"
      ? error.type
      : undefined;
    // A 429 for an exhausted quota will not clear up by retrying, unlike a rate limit.
    const retryable = error.status === undefined
      // No status: an error event inside an accepted stream, i.e. a server-side failure.
      ? true
      : isRetryableStatus(error.status) && code !== "insufficient_quota";
    return new LlmError(error.message, { status: error.status, code, retryable, cause: error });
  }
  // Anything else is the transport or a malformed stream underneath the SDK.
  const message = error instanceof Error ? error.message : String(error);
  return new LlmError(message, { code: "connection", retryable: true, cause: error });
}
