/**
 * The CallSession actor: one per answered call, owner of everything that call uses.
 *
 * Events from the media socket go into a mailbox and are handled one at a time, in order, so
 * no two handlers ever race on the call's state. Every task of the call hangs off one
 * `AbortController`; ending the session aborts it, which is how sockets, generators and timers
 * of the call all stop the same way, whatever ended the call.
 *
 * @module
 */
import type { CustomData } from "../telnyx/body_param.ts";
import type { Logger } from "../log.ts";
import {
  type AudioFormat,
  type AudioOutput,
  bytesFor,
  type CallTransport,
  type TransportEvent,
} from "../transport/call_transport.ts";
import { deadline, settledWithin } from "../async/deadline.ts";
import { sharedPlaybackTicker } from "./playback.ts";
import {
  type AnsweredBy,
  type CallEvent,
  type CallEventSink,
  discardCallEvents,
  type EndReason as CallEndReason,
} from "../records/call_events.ts";

/** Lifecycle of a call, in the only order it moves. */
export type SessionState = "connecting" | "active" | "ending" | "ended";

/** Why a session ended. */
export type EndReason =
  | "callee_hung_up" // Telnyx sent `stop`
  | "socket_closed" // the media socket went away without `stop`
  | "bot_hung_up" // the conversation decided to end the call
  | "shutdown" // the server is stopping
  | "voicemail_left" // an answering machine answered and the voicemail message played
  | "voicemail_skipped" // an answering machine answered and no message is configured
  | "fax" // a fax machine answered
  | "error";

/** The record's end reason for a session's, when the hang-up did not name a precise one. */
const CALL_END_REASON: Record<EndReason, CallEndReason> = {
  callee_hung_up: "callee_hung_up",
  socket_closed: "media_error",
  bot_hung_up: "bot_ended",
  shutdown: "shutdown",
  voicemail_left: "voicemail_left",
  voicemail_skipped: "voicemail_skipped",
  fax: "fax",
  error: "internal_error",
};

/** What a session knows about its call when it is created (from the `start` frame). */
export interface CallInfo {
  streamId: string;
  callControlId: string;
  from?: string;
  to?: string;
  /** The custom data given to `/start`, decoded from the signed `body` parameter. */
  body: CustomData;
}

/** Events delivered to a session: its transport's, plus answering-machine detection. */
export type SessionEvent =
  | TransportEvent
  /** Telnyx's answering-machine detection result, from its callback. */
  | { type: "answered_by"; answeredBy: AnsweredBy };

/** Hangs up a call through the Telnyx REST API. */
export type HangupCall = (callControlId: string) => Promise<"hung_up" | "already_ended">;

/**
 * What talks on the call (the voice agent). The session calls it from its mailbox, in event
 * order, one event at a time; it must not block.
 */
export interface CallAgent {
  onAudio(payload: Uint8Array): void;
  onDtmf(digit: string): void;
  onMark(name: string): void;
  /** Who or what answered, when answering-machine detection reports it. */
  onAnsweredBy?(answeredBy: AnsweredBy): void;
  /** Releases the agent's sockets and timers; awaited before the session counts as ended. */
  close(): Promise<void>;
}

/**
 * Counters kept for logs and tests. Counters only: a call keeps nothing per event for its whole
 * length (key presses are counted, never stored: they can be PINs or card numbers).
 */
export interface SessionStats {
  mediaFrames: number;
  mediaBytes: number;
  /** Inbound audio dropped for arriving faster than real time. */
  mediaFramesDropped: number;
  mediaBytesDropped: number;
  dtmfPresses: number;
  markEchoes: number;
  ignoredEvents: number;
}

/**
 * Callee audio kept while the agent is still starting, replayed to it once it attaches: a
 * callee who says "Hello?" the instant they pick up is heard whole. The most recent audio is
 * kept when more arrives.
 */
const AUDIO_BEFORE_AGENT_MS = 2000;

/** Default bound on the Telnyx hang-up request seen from the session. */
const HANGUP_TIMEOUT_MS = 5000;
/** Default bound on the agent releasing its sockets when the call ends. */
const AGENT_CLOSE_TIMEOUT_MS = 5000;

/** Dependencies of a session. */
export interface CallSessionDeps {
  /** The wire of this call; the session closes it when the call ends. */
  transport: CallTransport;
  hangupCall: HangupCall;
  logger: Logger;
  /** Longest wait for {@link HangupCall}; the session ends anyway. Default {@link HANGUP_TIMEOUT_MS}. */
  hangupTimeoutMs?: number;
  /** Longest wait for the agent's `close()`. Default {@link AGENT_CLOSE_TIMEOUT_MS}. */
  agentCloseTimeoutMs?: number;
  /** Where the call's record is fed; never awaited. */
  events?: CallEventSink;
}

/** One call's actor. Construct it, then {@link CallSession.start}. */
export class CallSession {
  readonly info: CallInfo;
  /**
   * The agent's way out to the callee: the transport's audio, marks and clear, dropped unless
   * the call is active (nothing reaches a call that is ending).
   */
  readonly output: AudioOutput;
  readonly stats: SessionStats = {
    mediaFrames: 0,
    mediaBytes: 0,
    mediaFramesDropped: 0,
    mediaBytesDropped: 0,
    dtmfPresses: 0,
    markEchoes: 0,
    ignoredEvents: 0,
  };
  readonly startedAt = Date.now();

  #state: SessionState = "connecting";
  #endReason: EndReason | undefined;
  #outcome: CallEndReason | undefined;
  readonly #abort = new AbortController();
  readonly #mailbox: SessionEvent[] = [];
  /** True while an event is being handled (including an async handler still pending). */
  #draining = false;
  #hangup: Promise<void> | undefined;
  #hangupConfirmed = false;
  /** The latest answering-machine detection result, kept for an agent that attaches later. */
  #answeredBy: AnsweredBy | undefined;
  #agent: CallAgent | undefined;
  /** Callee audio that arrived before the agent attached ({@link AUDIO_BEFORE_AGENT_MS}). */
  readonly #audioBeforeAgent: Uint8Array[] = [];
  #audioBeforeAgentBytes = 0;
  readonly #ended: PromiseWithResolvers<void> = Promise.withResolvers();
  readonly #deps: CallSessionDeps;
  readonly #log: Logger;

  constructor(info: CallInfo, deps: CallSessionDeps) {
    this.info = info;
    this.#deps = deps;
    const transport = deps.transport;
    this.output = {
      outputFormat: transport.outputFormat,
      sendAudio: (frame) => {
        if (this.#state === "active") transport.sendAudio(frame);
      },
      sendMark: (name) => {
        if (this.#state === "active") transport.sendMark(name);
      },
      clear: () => {
        if (this.#state === "active") transport.clear();
      },
    };
    this.#log = deps.logger.child({ call: info.callControlId, stream: info.streamId });
  }

  /** Format of the callee audio delivered as `media` events. */
  get inputFormat(): AudioFormat {
    return this.#deps.transport.inputFormat;
  }

  /** Format the agent's audio must be in. */
  get outputFormat(): AudioFormat {
    return this.#deps.transport.outputFormat;
  }

  /** Current lifecycle state. */
  get state(): SessionState {
    return this.#state;
  }

  /** Why the session ended (undefined while it runs). */
  get endReason(): EndReason | undefined {
    return this.#endReason;
  }

  /** Why the call ended, as its record says (undefined while it runs). */
  get outcome(): CallEndReason | undefined {
    return this.#outcome;
  }

  /** Reports a fact about this call to its record; returns at once. */
  record(event: CallEvent): void {
    (this.#deps.events ?? discardCallEvents).record(this.info.callControlId, event);
  }

  /** Aborted when the call ends; every task of the call listens to it. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Resolves once the session has released everything. */
  get ended(): Promise<void> {
    return this.#ended.promise;
  }

  /** This call's logger (carries the call id on every line). */
  get log(): Logger {
    return this.#log;
  }

  /** Connects the agent that talks on this call; events from now on reach it. */
  attach(agent: CallAgent): void {
    this.#agent = agent;
    // The agent may finish starting after the call already ended: release it at once.
    if (this.#state === "ending" || this.#state === "ended") {
      agent.close().catch((error) => this.#log.error("agent did not close cleanly", { error }));
      return;
    }
    // Detection can report before the agent is ready: it learns the result once it is, after
    // the agent's own start-up has run (attach is its first step).
    const answeredBy = this.#answeredBy;
    if (answeredBy) queueMicrotask(() => this.deliver({ type: "answered_by", answeredBy }));
    // An agent that does not take it during its start-up (see takeAudioBeforeAgent) gets it
    // once that has run.
    if (this.#audioBeforeAgent.length > 0) queueMicrotask(() => this.#replayAudioBeforeAgent());
  }

  /**
   * Callee audio that arrived before the agent attached, oldest first; afterwards there is none
   * to replay. For an agent that must hear it at a given point of its start-up (before the bot
   * first speaks, so it is not mistaken for the callee talking over the bot).
   */
  takeAudioBeforeAgent(): Uint8Array[] {
    this.#audioBeforeAgentBytes = 0;
    return this.#audioBeforeAgent.splice(0);
  }

  /** Runs the mailbox until the call ends. */
  start(): void {
    if (this.#state !== "connecting") return;
    this.#state = "active";
    this.#log.info("call session started", {
      transport: this.#deps.transport.kind,
      encoding: this.inputFormat.encoding,
      sample_rate: this.inputFormat.sampleRate,
      body_keys: Object.keys(this.info.body),
    });
    if (this.#log.enabled("debug")) this.#log.debug("custom data", { body: this.info.body });
    this.record({ type: "streaming", at: Date.now() });
    this.#drain();
  }

  /**
   * Queues an event; ignored once the session is ending. A media payload is only lent: it is
   * handled before this returns, or copied when it has to wait its turn in the mailbox.
   */
  deliver(event: SessionEvent): void {
    if (this.#state === "ending" || this.#state === "ended") {
      this.stats.ignoredEvents++;
      return;
    }
    if (event.type === "media") {
      // Inbound frames keep coming when the loop's timers lag behind: see `poll`.
      sharedPlaybackTicker.poll();
      if (this.#draining || this.#state !== "active") {
        event = { type: "media", payload: event.payload.slice() };
      }
    }
    this.#mailbox.push(event);
    this.#drain();
  }

  /**
   * Ends the call: stops every task of the call, hangs up through Telnyx (at most once, whoever
   * asks and however often), closes the transport and resolves {@link ended}. Telnyx's "call
   * already ended" answer counts as success, so this is also how a callee hang-up is confirmed.
   * `outcome` is the precise reason for the record (e.g. `max_duration`); by default it follows
   * `reason` ({@link CALL_END_REASON}).
   */
  hangUp(reason: EndReason = "bot_hung_up", outcome?: CallEndReason): Promise<void> {
    this.#hangup ??= this.#end(reason, outcome ?? CALL_END_REASON[reason]);
    return this.#hangup;
  }

  /** Whether Telnyx confirmed the hang-up (false while ending, or when it failed or timed out). */
  get hangupConfirmed(): boolean {
    return this.#hangupConfirmed;
  }

  async #end(reason: EndReason, outcome: CallEndReason): Promise<void> {
    this.#state = "ending";
    this.#endReason = reason;
    this.#outcome = outcome;
    this.#abort.abort(new DOMException(`call ended: ${reason}`, "AbortError"));
    this.#mailbox.length = 0;
    this.takeAudioBeforeAgent();
    const agentClosed = this.#agent?.close().catch((error) => {
      this.#log.error("agent did not close cleanly", { error });
    });
    try {
      const outcome = await deadline(
        this.#deps.hangupCall(this.info.callControlId),
        this.#deps.hangupTimeoutMs ?? HANGUP_TIMEOUT_MS,
        { what: "Telnyx hang-up" },
      );
      this.#hangupConfirmed = true;
      this.#log.info("hang-up confirmed", { outcome, reason });
    } catch (error) {
      // The call may still be up; say so loudly, but still release our side.
      this.#log.error("hang-up failed", { error, reason });
    }
    try {
      // 1001 "going away" tells Telnyx the server, not the call, is why the stream stopped.
      this.#deps.transport.close(reason === "shutdown" ? 1001 : 1000, reason);
    } catch (error) {
      this.#log.error("media socket did not close cleanly", { error });
    }
    const agentCloseMs = this.#deps.agentCloseTimeoutMs ?? AGENT_CLOSE_TIMEOUT_MS;
    if (!(await settledWithin(agentClosed ?? Promise.resolve(), agentCloseMs))) {
      this.#log.error("agent did not close in time; ending the session anyway", {
        timeout_ms: agentCloseMs,
      });
    }
    this.#state = "ended";
    // After the agent closed, so the last words heard and the usage are reported before it.
    this.record({ type: "ended", at: Date.now(), reason: outcome });
    this.#log.info("call session ended", {
      reason,
      outcome,
      duration_ms: Date.now() - this.startedAt,
      media_frames: this.stats.mediaFrames,
      media_bytes: this.stats.mediaBytes,
      media_frames_dropped: this.stats.mediaFramesDropped,
      media_bytes_dropped: this.stats.mediaBytesDropped,
      dtmf_presses: this.stats.dtmfPresses,
    });
    this.#ended.resolve();
  }

  /**
   * Handles queued events in order, one at a time. Synchronous handlers (media, DTMF, marks:
   * nearly every event) run right here, inside `deliver`, rather than on a promise per event: at
   * 50 media frames a second per call the promise churn showed up in profiles. An async handler
   * holds the mailbox until it settles, so ordering is the same as a sequential loop.
   */
  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#state === "active") {
        const event = this.#mailbox.shift();
        if (!event) break;
        const pending = this.#handle(event);
        if (pending) {
          pending.then(() => this.#resume(), (error) => this.#fail(error));
          return; // still draining until the handler settles
        }
      }
    } catch (error) {
      this.#draining = false;
      this.#fail(error);
      return;
    }
    this.#draining = false;
  }

  #keepUntilAgent(payload: Uint8Array): void {
    // Lent by the transport: copied to be kept.
    this.#audioBeforeAgent.push(payload.slice());
    this.#audioBeforeAgentBytes += payload.length;
    const limit = bytesFor(this.inputFormat, AUDIO_BEFORE_AGENT_MS);
    while (this.#audioBeforeAgentBytes > limit) {
      this.#audioBeforeAgentBytes -= this.#audioBeforeAgent.shift()!.length;
    }
  }

  #replayAudioBeforeAgent(): void {
    const held = this.takeAudioBeforeAgent();
    const agent = this.#agent;
    if (this.#state !== "active" || !agent) return;
    this.#log.debug("audio from before the agent started", { frames: held.length });
    // Older than anything still in the mailbox, and audio is handled synchronously, so handing
    // it over here keeps the order.
    for (const payload of held) agent.onAudio(payload);
  }

  #resume(): void {
    this.#draining = false;
    this.#drain();
  }

  #fail(error: unknown): void {
    this.#log.error("call session failed", { error });
    this.hangUp("error").catch((hangUpError) => {
      this.#log.error("ending the failed call failed", { error: hangUpError });
    });
  }

  /** Handles one event; returns a promise only when the handler is async. */
  #handle(event: SessionEvent): Promise<void> | undefined {
    switch (event.type) {
      case "media":
        this.stats.mediaFrames++;
        this.stats.mediaBytes += event.payload.length;
        if (this.#agent) this.#agent.onAudio(event.payload);
        else this.#keepUntilAgent(event.payload);
        return;
      case "dtmf":
        this.stats.dtmfPresses++;
        // Key presses can be PINs or card numbers: count them, never log them. The agent logs
        // each aggregated input; a line per press would let a burst flood the logs.
        this.#log.debug("dtmf", { presses: this.stats.dtmfPresses });
        this.#agent?.onDtmf(event.digit);
        return;
      case "mark":
        this.stats.markEchoes++;
        this.#agent?.onMark(event.name);
        return;
      case "answered_by":
        this.#answeredBy = event.answeredBy;
        this.#agent?.onAnsweredBy?.(event.answeredBy);
        return;
      case "stream_error":
        this.#log.warn("telnyx reported a stream error", { code: event.code, title: event.title });
        this.record({
          type: "error",
          at: Date.now(),
          source: "telnyx",
          message: [event.code, event.title].filter(Boolean).join(": ") || "stream error",
        });
        return;
      case "stop":
        this.#log.info("telnyx stopped the stream");
        return this.hangUp("callee_hung_up");
      case "socket_closed":
        // Without a `stop` the call may still be up with nobody talking: end it properly.
        this.#log.warn("media socket closed before stop", {
          code: event.code,
          reason: event.reason,
        });
        return this.hangUp("socket_closed");
    }
  }
}
