/**
 * The live calls of this process, and the media sockets that have not become calls yet, for
 * `/health`, for the connection caps and for draining on shutdown.
 *
 * @module
 */
import { settledWithin } from "../async/deadline.ts";
import type { AnsweredBy } from "../records/call_events.ts";
import type { CallSession } from "./call_session.ts";

/**
 * Longest the end of a drain waits for the hang-ups it sends: a Telnyx that never answers must
 * not hold shutdown past the grace period by more than this.
 */
const DRAIN_HANGUP_BOUND_MS = 5_000;

/** A media socket that has been accepted but has not sent a valid `start` yet. */
export interface PendingSocket {
  readonly client: string;
  /** Frees the slot (the socket became a call, or closed). Idempotent. */
  release(): void;
}

/** Detection results kept for calls whose stream has not started yet. */
const EARLY_ANSWERED_BY_CAPACITY = 1_000;
/** A stream starts seconds after the answer; an older early result belongs to no live call. */
const EARLY_ANSWERED_BY_MS = 120_000;

/** What {@link CallRegistry.drain} did. */
export interface DrainResult {
  /** Calls that ended on their own during the grace period. */
  finished: number;
  /** Calls hung up after the grace period. */
  hungUp: number;
  /** Of those, the ones whose hang-up Telnyx had not confirmed (failed, or still pending). */
  unconfirmed: number;
  /** Media sockets closed before they sent `start`. */
  pendingClosed: number;
}

interface PendingEntry extends PendingSocket {
  close(code: number, reason: string): void;
}

/** Tracks sessions from creation until they end, and sockets until they start a session. */
export class CallRegistry {
  /** Live sessions by stream id, in creation order. */
  readonly #sessions = new Map<string, CallSession>();
  /** The same sessions by call-control id: one live session per call. */
  readonly #byCall = new Map<string, CallSession>();
  /** Detection results that arrived before their call's stream, oldest first. */
  readonly #earlyAnsweredBy = new Map<string, { answeredBy: AnsweredBy; at: number }>();
  readonly #pending = new Set<PendingEntry>();
  readonly #pendingByClient = new Map<string, number>();
  #started = 0;

  /**
   * Adds a session unless its stream or call is already live; it removes itself when it ends.
   * Returns why it was refused, or undefined once added: an existing call is never replaced, so
   * whatever a second socket claims, the first call stays visible to `/health` and shutdown.
   */
  add(session: CallSession): string | undefined {
    const { streamId, callControlId } = session.info;
    if (this.#sessions.has(streamId)) return "a live call already uses this stream_id";
    if (this.#byCall.has(callControlId)) return "this call already has a live media stream";
    this.#sessions.set(streamId, session);
    this.#byCall.set(callControlId, session);
    this.#started++;
    session.ended.then(() => {
      if (this.#sessions.get(streamId) === session) this.#sessions.delete(streamId);
      if (this.#byCall.get(callControlId) === session) this.#byCall.delete(callControlId);
    });
    return undefined;
  }

  /** Number of calls in progress. */
  get active(): number {
    return this.#sessions.size;
  }

  /** Number of sessions created since start-up. */
  get started(): number {
    return this.#started;
  }

  /** The live session of a call (by Telnyx's call_control_id), if this process has it. */
  byCall(callControlId: string): CallSession | undefined {
    return this.#byCall.get(callControlId);
  }

  /**
   * Hands a detection result to the call's session, through its mailbox (in order with the
   * call's audio), or keeps it for a session that has not started here yet. True when a live
   * session took it.
   */
  deliverAnsweredBy(callControlId: string, answeredBy: AnsweredBy): boolean {
    const session = this.byCall(callControlId);
    if (session) session.deliver({ type: "answered_by", answeredBy });
    else this.rememberAnsweredBy(callControlId, answeredBy);
    return session !== undefined;
  }

  /**
   * Keeps a detection result that arrived before its call's media stream started here, so the
   * session can take it when it does. Bounded: the oldest are dropped, and stale ones ignored.
   */
  rememberAnsweredBy(callControlId: string, answeredBy: AnsweredBy, now = Date.now()): void {
    this.#earlyAnsweredBy.delete(callControlId);
    this.#earlyAnsweredBy.set(callControlId, { answeredBy, at: now });
    if (this.#earlyAnsweredBy.size > EARLY_ANSWERED_BY_CAPACITY) {
      this.#earlyAnsweredBy.delete(this.#earlyAnsweredBy.keys().next().value!);
    }
  }

  /** The detection result kept for a call by {@link rememberAnsweredBy}, once. */
  takeAnsweredBy(callControlId: string, now = Date.now()): AnsweredBy | undefined {
    const early = this.#earlyAnsweredBy.get(callControlId);
    this.#earlyAnsweredBy.delete(callControlId);
    return early && now - early.at <= EARLY_ANSWERED_BY_MS ? early.answeredBy : undefined;
  }

  /** Live sessions, in creation order. */
  sessions(): CallSession[] {
    return [...this.#sessions.values()];
  }

  /** Number of media sockets waiting for their `start` frame. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Number of media sockets from `client` waiting for their `start` frame. */
  pendingFrom(client: string): number {
    return this.#pendingByClient.get(client) ?? 0;
  }

  /**
   * Counts a media socket from `client` as pending until the returned slot is released;
   * `close` ends the socket if the server drains first.
   */
  holdPending(client: string, close: (code: number, reason: string) => void): PendingSocket {
    const entry: PendingEntry = {
      client,
      close,
      release: () => {
        if (!this.#pending.delete(entry)) return;
        const left = this.pendingFrom(client) - 1;
        if (left > 0) this.#pendingByClient.set(client, left);
        else this.#pendingByClient.delete(client);
      },
    };
    this.#pending.add(entry);
    this.#pendingByClient.set(client, this.pendingFrom(client) + 1);
    return entry;
  }

  /**
   * Lets calls finish on their own for up to `graceMs`, then closes the sockets that never
   * started a call and hangs up the remaining calls, waiting at most `hangupBoundMs` for those
   * hang-ups. So it resolves within `graceMs + hangupBoundMs` whatever Telnyx does.
   */
  async drain(
    graceMs: number,
    options: { hangupBoundMs?: number } = {},
  ): Promise<DrainResult> {
    const initial = this.sessions();
    await settledWithin(Promise.all(initial.map((s) => s.ended)), graceMs);

    const pending = [...this.#pending];
    for (const entry of pending) {
      entry.release();
      // 1001 "going away": the server, not the call, is why the stream ends.
      entry.close(1001, "server shutting down");
    }

    const remaining = this.sessions();
    const hangups = remaining.map((s) => s.hangUp("shutdown"));
    await settledWithin(Promise.all(hangups), options.hangupBoundMs ?? DRAIN_HANGUP_BOUND_MS);
    return {
      finished: initial.filter((s) => !remaining.includes(s)).length,
      hungUp: remaining.length,
      unconfirmed: remaining.filter((s) => !s.hangupConfirmed).length,
      pendingClosed: pending.length,
    };
  }
}
