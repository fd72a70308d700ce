/**
 * A loopback fake of the Telnyx REST API (the parts this service uses), answering like the real
 * one so the real npm:telnyx client can be pointed at it with `TELNYX_BASE_URL`.
 *
 * - `POST /v2/texml/Accounts/:account/Calls` (JSON body) → `{from, to, status, call_sid}`
 * - `POST /v2/calls/:id/actions/hangup` → `{data: {result: "ok"}}`, or 422 / code 90018 once the
 *   call has ended
 *
 * Like Telnyx, it answers a call it created by POSTing that call's `Url` with the call's
 * `CallSid` ({@link FakeTelnyxApi.answerCall}), the id its media stream then names in `start`.
 * It also signs TeXML callbacks with Ed25519 the way Telnyx does, for `/answer` tests, and posts
 * a call's progress and answering-machine callbacks, form-encoded, to the signed URLs the call
 * was created with ({@link FakeTelnyxApi.sendStatus}, {@link FakeTelnyxApi.sendAmd}).
 *
 * @module
 */

/** One request the fake received. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** Parsed JSON body, or the raw text when it was not JSON. */
  body: unknown;
}

/** What our server answered to a callback the fake posted (the body read, JSON when it was). */
export interface CallbackResponse {
  status: number;
  body: unknown;
}

/** How the fake answers the next create-call (or hang-up) request. */
export type CreateBehaviour =
  | { kind: "ok" }
  | { kind: "error"; status: number; code: string; title: string; detail?: string }
  | { kind: "hang" };

/** How the fake answers hang-up requests: `hang` never answers while the fake is up. */
export type HangupBehaviour = "ok" | "hang";

/** Fake Telnyx API server on 127.0.0.1. */
export class FakeTelnyxApi {
  readonly requests: RecordedRequest[] = [];
  /** Queue of behaviours for create-call requests; `ok` when empty. */
  readonly createBehaviours: CreateBehaviour[] = [];
  /** Queue of behaviours for hang-up requests; when empty, `ok` (or 422 once the call ended). */
  readonly hangupBehaviours: CreateBehaviour[] = [];
  /** Calls that have ended: hanging them up yields 422 / 90018. */
  readonly endedCalls = new Set<string>();
  /** `hang` makes every hang-up hang, whatever the queue holds. */
  hangupBehaviour: HangupBehaviour = "ok";
  /** The `Url` of each call created, by call sid. */
  readonly #answerUrls = new Map<string, string>();
  /** The callback URLs of each call created, by call sid. */
  readonly #callbackUrls = new Map<string, { status?: string; amd?: string }>();
  /** Last `SequenceNumber` sent per call. */
  readonly #sequences = new Map<string, number>();
  /** Signs every callback this fake posts, as Telnyx does when a public key is configured. */
  callbackSigner: TelnyxWebhookSigner | undefined;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #closing = new AbortController();
  #callCounter = 0;

  private constructor(readonly apiKey: string, readonly accountSid: string) {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#handle(req),
    );
  }

  /** Starts the fake; `apiKey` is the only key it accepts. */
  static start(options: { apiKey: string; accountSid: string }): FakeTelnyxApi {
    return new FakeTelnyxApi(options.apiKey, options.accountSid);
  }

  /** Value for `TELNYX_BASE_URL` (includes `/v2`, as the SDK expects). */
  get baseURL(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/v2`;
  }

  /** Create-call requests received. */
  get createRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.path.endsWith("/Calls"));
  }

  /** Hang-up requests received, by call-control id. */
  hangupRequests(callControlId?: string): RecordedRequest[] {
    return this.requests.filter((r) =>
      r.path.endsWith("/actions/hangup") &&
      (callControlId === undefined ||
        r.path === `/v2/calls/${callControlId}/actions/hangup`)
    );
  }

  /**
   * What Telnyx does when the callee picks up: POSTs the call's `Url` with its `CallSid`
   * (the call's call_control_id). `callSid` defaults to the last call created.
   */
  answerCall(
    callSid: string = [...this.#answerUrls.keys()].at(-1) ?? "",
    options: { signer?: TelnyxWebhookSigner } = {},
  ): Promise<{ status: number; contentType: string | null; text: string }> {
    const url = this.#answerUrls.get(callSid);
    if (!url) throw new Error(`the fake Telnyx created no call ${callSid}`);
    return fetchAnswer(url, { callSid, signer: options.signer });
  }

  /** The StatusCallback and AsyncAmdStatusCallback URLs the call was created with. */
  callbackUrls(callSid: string): { status?: string; amd?: string } {
    const urls = this.#callbackUrls.get(callSid);
    if (!urls) throw new Error(`the fake Telnyx created no call ${callSid}`);
    return urls;
  }

  /**
   * Posts a progress callback for `callSid` as Telnyx does: form-encoded, to its StatusCallback,
   * signed with {@link callbackSigner}. `sequence` defaults to one more than the last one sent,
   * so a repeat or an out-of-order callback is sent by passing an earlier number.
   */
  sendStatus(
    callSid: string,
    status: string,
    options: {
      sequence?: number;
      durationSeconds?: number;
      hangupCause?: string;
      hangupSource?: string;
      /** Overrides the URL (a forged or edited one). */
      url?: string;
    } = {},
  ): Promise<CallbackResponse> {
    const sequence = options.sequence ?? (this.#sequences.get(callSid) ?? 0) + 1;
    this.#sequences.set(callSid, Math.max(sequence, this.#sequences.get(callSid) ?? 0));
    const fields: Record<string, string> = {
      ...this.#commonFields(callSid),
      CallStatus: status,
      SequenceNumber: String(sequence),
      Timestamp: new Date().toUTCString(),
    };
    if (options.durationSeconds !== undefined) {
      fields.CallDuration = String(options.durationSeconds);
    }
    if (options.hangupCause) fields.HangupCause = options.hangupCause;
    if (options.hangupSource) fields.HangupSource = options.hangupSource;
    const url = options.url ?? this.callbackUrls(callSid).status;
    if (!url) throw new Error(`call ${callSid} was created without a StatusCallback`);
    return postForm(url, fields, this.callbackSigner);
  }

  /** Posts an answering-machine result for `callSid` to its AsyncAmdStatusCallback, signed. */
  sendAmd(
    callSid: string,
    answeredBy: string,
    options: { url?: string } = {},
  ): Promise<CallbackResponse> {
    const url = options.url ?? this.callbackUrls(callSid).amd;
    if (!url) throw new Error(`call ${callSid} was created without an AsyncAmdStatusCallback`);
    return postForm(
      url,
      { ...this.#commonFields(callSid), AnsweredBy: answeredBy },
      this.callbackSigner,
    );
  }

  #commonFields(callSid: string): Record<string, string> {
    return {
      AccountSid: this.accountSid,
      CallSid: callSid,
      CallSidLegacy: callSid,
      From: "+15550001111",
      To: "+15551234567",
    };
  }

  async close(): Promise<void> {
    this.#closing.abort();
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const text = await req.text();
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch { /* keep raw text */ }
    this.requests.push({
      method: req.method,
      path: url.pathname,
      headers: Object.fromEntries(req.headers),
      body,
    });

    if (req.headers.get("authorization") !== `Bearer ${this.apiKey}`) {
      return errors(401, "10009", "Authentication failed", "The API key is invalid.");
    }
    const create = /^\/v2\/texml\/Accounts\/([^/]+)\/Calls$/.exec(url.pathname);
    if (req.method === "POST" && create) return await this.#createCall(create[1], body);
    const hangup = /^\/v2\/calls\/([^/]+)\/actions\/hangup$/.exec(url.pathname);
    if (req.method === "POST" && hangup) {
      return await this.#hangup(decodeURIComponent(hangup[1]));
    }
    return errors(404, "10005", "Resource not found", `No route ${req.method} ${url.pathname}`);
  }

  /** Never answers while the fake is up, like a Telnyx that has stopped responding. */
  async #hang(): Promise<Response> {
    if (!this.#closing.signal.aborted) {
      await new Promise<void>((resolve) => {
        this.#closing.signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
    return new Response(null, { status: 499 });
  }

  async #createCall(account: string, body: unknown): Promise<Response> {
    const behaviour = this.createBehaviours.shift() ?? { kind: "ok" };
    if (behaviour.kind === "hang") return await this.#hang();
    if (behaviour.kind === "error") {
      return errors(behaviour.status, behaviour.code, behaviour.title, behaviour.detail);
    }
    if (account !== this.accountSid) {
      return errors(404, "10005", "Resource not found", "Account not found.");
    }
    const fields = (body ?? {}) as Record<string, unknown>;
    for (const name of ["To", "From", "ApplicationSid", "Url"]) {
      if (typeof fields[name] !== "string" || fields[name] === "") {
        return errors(422, "10032", "Missing required parameter", `${name} is required.`);
      }
    }
    const problem = callbackProblem(fields);
    if (problem) return errors(422, "10015", "Invalid parameter", problem);
    const callSid = `v3:fake-call-${++this.#callCounter}`;
    this.#answerUrls.set(callSid, fields.Url as string);
    this.#callbackUrls.set(callSid, {
      status: fields.StatusCallback as string | undefined,
      amd: fields.AsyncAmdStatusCallback as string | undefined,
    });
    return Response.json({
      call_sid: callSid,
      from: fields.From,
      to: fields.To,
      status: "queued",
    });
  }

  async #hangup(callControlId: string): Promise<Response> {
    const behaviour = this.hangupBehaviour === "hang"
      ? { kind: "hang" as const }
      : this.hangupBehaviours.shift() ?? { kind: "ok" as const };
    if (behaviour.kind === "hang") return await this.#hang();
    if (behaviour.kind === "error") {
      return errors(behaviour.status, behaviour.code, behaviour.title, behaviour.detail);
    }
    if (this.endedCalls.has(callControlId)) {
      return errors(
        422,
        "90018",
        "Call has already ended",
        "This call is no longer active and can't receive commands.",
      );
    }
    this.endedCalls.add(callControlId);
    return Response.json({ data: { result: "ok" } });
  }
}

/** What Telnyx would refuse in the callback and detection parameters of a create-call request. */
function callbackProblem(fields: Record<string, unknown>): string | undefined {
  const isMethod = (v: unknown) => v === undefined || v === "GET" || v === "POST";
  if (fields.StatusCallback !== undefined && typeof fields.StatusCallback !== "string") {
    return "StatusCallback must be a URL string.";
  }
  if (!isMethod(fields.StatusCallbackMethod)) return "StatusCallbackMethod must be GET or POST.";
  if (!isMethod(fields.AsyncAmdStatusCallbackMethod)) {
    return "AsyncAmdStatusCallbackMethod must be GET or POST.";
  }
  const detection = fields.MachineDetection;
  if (
    detection !== undefined &&
    !["Enable", "Disable", "DetectMessageEnd"].includes(String(detection))
  ) {
    return "MachineDetection must be Enable, Disable or DetectMessageEnd.";
  }
  if (fields.AsyncAmd !== undefined && typeof fields.AsyncAmd !== "boolean") {
    return "AsyncAmd must be a boolean.";
  }
  return undefined;
}

/** POSTs `fields` form-encoded, as Telnyx posts its callbacks, optionally Ed25519-signed. */
async function postForm(
  url: string,
  fields: Record<string, string>,
  signer: TelnyxWebhookSigner | undefined,
): Promise<CallbackResponse> {
  const body = new URLSearchParams(fields).toString();
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(signer ? await signer.headers(body) : {}),
    },
    body,
  });
  const text = await response.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch { /* keep the text */ }
  return { status: response.status, body: json };
}

function errors(status: number, code: string, title: string, detail?: string): Response {
  return Response.json({ errors: [{ code, title, detail }] }, { status });
}

/** Signs webhook bodies as Telnyx does (Ed25519 over `timestamp|body`). */
export class TelnyxWebhookSigner {
  private constructor(private readonly privateKey: CryptoKey, readonly publicKeyBase64: string) {}

  static async create(): Promise<TelnyxWebhookSigner> {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return new TelnyxWebhookSigner(pair.privateKey, raw.toBase64());
  }

  /** The two signature headers for `body`, stamped `timestamp` (unix seconds, default now). */
  async headers(body: string, timestamp = Math.floor(Date.now() / 1000)): Promise<{
    "telnyx-timestamp": string;
    "telnyx-signature-ed25519": string;
  }> {
    const signature = await crypto.subtle.sign(
      "Ed25519",
      this.privateKey,
      new TextEncoder().encode(`${timestamp}|${body}`),
    );
    return {
      "telnyx-timestamp": String(timestamp),
      "telnyx-signature-ed25519": new Uint8Array(signature).toBase64(),
    };
  }
}

/**
 * POSTs the TeXML instruction fetch Telnyx makes when the callee answers, form-encoded as on the
 * wire, optionally signed.
 */
export async function fetchAnswer(
  answerUrl: string,
  options: { callSid: string; from?: string; to?: string; signer?: TelnyxWebhookSigner } = {
    callSid: "v3:fake",
  },
): Promise<{ status: number; contentType: string | null; text: string }> {
  const form = new URLSearchParams({
    AccountSid: "fake-account",
    ApiVersion: "2010-04-01",
    CallSid: options.callSid,
    CallSidLegacy: options.callSid,
    CallStatus: "in-progress",
    ConnectionId: "fake-connection",
    From: options.from ?? "+15550000000",
    To: options.to ?? "+15551234567",
  }).toString();
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
    ...(options.signer ? await options.signer.headers(form) : {}),
  };
  const response = await fetch(answerUrl, { method: "POST", headers, body: form });
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    text: await response.text(),
  };
}
