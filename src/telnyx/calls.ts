/**
 * The two Telnyx REST calls this service makes, through the official SDK: place an outbound
 * TeXML call (with its progress and answering-machine callbacks), and hang a call up.
 *
 * @module
 */
import Telnyx from "telnyx";
import { delay } from "../async/deadline.ts";
import { maskPhoneNumbers } from "../log.ts";

/** Longest a hang-up attempt waits for Telnyx by default. */
export const DEFAULT_HANGUP_TIMEOUT_MS = 2_000;
/** Hang-up attempts by default, the first included. */
export const DEFAULT_HANGUP_ATTEMPTS = 2;
/** Pause before a hang-up is retried, so a refused connection gets a moment to come back. */
const HANGUP_RETRY_PAUSE_MS = 250;

/** Settings for {@link TelnyxCalls}. */
export interface TelnyxCallsOptions {
  apiKey: string;
  accountSid: string;
  applicationSid: string;
  fromNumber: string;
  /** Overrides the SDK's default `https://api.telnyx.com/v2` (tests point it at a fake). */
  baseURL?: string;
  timeoutMs: number;
  /**
   * Longest one hang-up attempt waits; defaults to {@link DEFAULT_HANGUP_TIMEOUT_MS} or
   * `timeoutMs`, whichever is shorter.
   */
  hangupTimeoutMs?: number;
  /** Attempts per hang-up, the first included; defaults to {@link DEFAULT_HANGUP_ATTEMPTS}. */
  hangupAttempts?: number;
}

/** What Telnyx said when it refused or failed a request. */
export class TelnyxRequestError extends Error {
  constructor(
    message: string,
    /** HTTP status from Telnyx; undefined when it never answered. */
    readonly status: number | undefined,
    readonly kind: "refused" | "timeout" | "unreachable",
  ) {
    super(message);
    this.name = "TelnyxRequestError";
  }
}

/** Where Telnyx reports on a call besides its `/answer` URL. */
export interface CallCallbacks {
  /** Signed URL for progress callbacks (initiated, ringing, answered, completed). */
  status?: string;
  /**
   * Signed URL for the answering-machine result. Setting it turns detection on: asynchronous, so
   * the conversation starts at once and the result arrives beside it.
   */
  amd?: string;
}

/** Progress events Telnyx is asked to report. */
const STATUS_CALLBACK_EVENTS = "initiated ringing answered completed";

/** A call Telnyx accepted. */
export interface PlacedCall {
  /** Telnyx's `call_sid`, which is the call-control id of the new call. */
  callControlId: string | undefined;
  status: string | undefined;
}

/** Places and ends calls on one Telnyx account. */
export class TelnyxCalls {
  readonly #client: Telnyx;
  readonly #hangupTimeoutMs: number;
  readonly #hangupAttempts: number;

  constructor(private readonly options: TelnyxCallsOptions) {
    // The SDK takes whole milliseconds.
    this.#hangupTimeoutMs = Math.max(
      1,
      Math.round(options.hangupTimeoutMs ?? Math.min(DEFAULT_HANGUP_TIMEOUT_MS, options.timeoutMs)),
    );
    this.#hangupAttempts = Math.max(
      1,
      Math.floor(options.hangupAttempts ?? DEFAULT_HANGUP_ATTEMPTS),
    );
    this.#client = new Telnyx({
      apiKey: options.apiKey,
      baseURL: options.baseURL,
      timeout: options.timeoutMs,
      // Set explicitly so stray TELNYX_CLIENT_ID/SECRET variables cannot switch the SDK to
      // OAuth against a hard-coded host; the key is the only credential we use.
      clientID: null,
      clientSecret: null,
      publicKey: null,
    });
  }

  /**
   * Dials `to`. When answered, Telnyx POSTs to `url` for TeXML; progress and the
   * answering-machine result go to `callbacks`, form-encoded, by POST.
   *
   * Retries are off for this request only: a retried create has no idempotency key, so a slow
   * 5xx could ring the callee twice.
   */
  async placeCall(
    to: string,
    url: string,
    callbacks: CallCallbacks = {},
    signal?: AbortSignal,
  ): Promise<PlacedCall> {
    try {
      const response = await this.#client.texml.accounts.calls.calls(
        this.options.accountSid,
        {
          // The SDK sends only what is inside `body` for this endpoint.
          body: {
            ApplicationSid: this.options.applicationSid,
            To: to,
            From: this.options.fromNumber,
            Url: url,
            UrlMethod: "POST",
            ...(callbacks.status && {
              StatusCallback: callbacks.status,
              StatusCallbackMethod: "POST",
              StatusCallbackEvent: STATUS_CALLBACK_EVENTS,
            }),
            // DetectMessageEnd reports the machine at once (machine_start) and again when its
            // greeting is over (machine_end_*), which is when a voicemail message can be left.
            ...(callbacks.amd && {
              MachineDetection: "DetectMessageEnd",
              AsyncAmd: true,
              AsyncAmdStatusCallback: callbacks.amd,
              AsyncAmdStatusCallbackMethod: "POST",
            }),
          },
        },
        { maxRetries: 0, signal },
      );
      // `call_sid` is on the wire but not in the SDK's response type.
      const raw = response as { call_sid?: unknown; status?: unknown };
      return {
        callControlId: typeof raw.call_sid === "string" ? raw.call_sid : undefined,
        status: typeof raw.status === "string" ? raw.status : undefined,
      };
    } catch (error) {
      throw toRequestError(error);
    }
  }

  /**
   * Longest one {@link hangup} can take: every attempt timing out, plus the pauses between them.
   * Whoever waits for hang-ups (the shutdown drain) can size its deadline on it.
   */
  get hangupBoundMs(): number {
    return this.#hangupAttempts * this.#hangupTimeoutMs +
      (this.#hangupAttempts - 1) * HANGUP_RETRY_PAUSE_MS;
  }

  /**
   * Hangs up `callControlId`. Resolves `"already_ended"` when Telnyx says the call is over
   * (422 / code 90018), which is the outcome the caller wanted anyway.
   *
   * Bounded by {@link hangupBoundMs}: each attempt has its own timeout, and a new attempt is
   * made only when Telnyx could not be reached, did not answer or failed (5xx). Retrying is safe
   * because a hang-up is idempotent: a second one for an ended call is the 422 above.
   */
  async hangup(callControlId: string, signal?: AbortSignal): Promise<"hung_up" | "already_ended"> {
    for (let attempt = 1;; attempt++) {
      try {
        // The SDK's own retries are off: its back-off honours Retry-After without a bound.
        await this.#client.calls.actions.hangup(callControlId, {}, {
          maxRetries: 0,
          timeout: this.#hangupTimeoutMs,
          signal,
        });
        return "hung_up";
      } catch (error) {
        if (isCallAlreadyEnded(error)) return "already_ended";
        const failure = toRequestError(error);
        if (attempt >= this.#hangupAttempts || !isWorthRetrying(failure)) throw failure;
      }
      await delay(HANGUP_RETRY_PAUSE_MS, signal);
    }
  }
}

/** Failures where Telnyx may not have acted on the request, so another attempt can help. */
function isWorthRetrying(failure: TelnyxRequestError): boolean {
  return failure.kind !== "refused" || (failure.status ?? 0) >= 500;
}

function isCallAlreadyEnded(error: unknown): boolean {
  if (!(error instanceof Telnyx.APIError) || error.status !== 422) return false;
  const errors = (error.error as { errors?: { code?: unknown }[] } | undefined)?.errors;
  return Array.isArray(errors) && errors.some((e) => String(e?.code) === "90018");
}

function toRequestError(error: unknown): TelnyxRequestError {
  if (error instanceof Telnyx.APIUserAbortError) throw error;
  if (error instanceof Telnyx.APIConnectionTimeoutError) {
    return new TelnyxRequestError("Telnyx did not answer in time", undefined, "timeout");
  }
  if (error instanceof Telnyx.APIConnectionError) {
    return new TelnyxRequestError(
      maskPhoneNumbers(`Could not reach Telnyx: ${error.message}`),
      undefined,
      "unreachable",
    );
  }
  if (error instanceof Telnyx.APIError) {
    return new TelnyxRequestError(describeApiError(error), error.status, "refused");
  }
  throw error;
}

/**
 * Telnyx's own words: `errors[].title: detail`, falling back to the status line. Phone numbers in
 * them are masked: the text is logged and returned to the API client, and Telnyx quotes the
 * dialled number in some errors.
 */
function describeApiError(error: InstanceType<typeof Telnyx.APIError>): string {
  const body = error.error as { errors?: { title?: string; detail?: string; code?: string }[] };
  const parts = (Array.isArray(body?.errors) ? body.errors : [])
    .map((e) => [e.code && `[${e.code}]`, e.title, e.detail].filter(Boolean).join(" "))
    .filter(Boolean);
  return maskPhoneNumbers(
    parts.length > 0
      ? `Telnyx ${error.status}: ${parts.join("; ")}`
      : `Telnyx ${error.status}: ${error.message}`,
  );
}
