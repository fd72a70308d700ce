/**
 * The live calls of this process, for `/health` and for draining on shutdown.
 *
 * @module
 */
import type { CallSession } from "./call_session.ts";

/** Tracks sessions from creation until they end. */
export class CallRegistry {
  readonly #sessions = new Map<string, CallSession>();
  #started = 0;

  /** Adds a session; it removes itself when it ends. */
  add(session: CallSession): void {
    const key = session.info.streamId;
    this.#sessions.set(key, session);
    this.#started++;
    session.ended.then(() => {
      if (this.#sessions.get(key) === session) this.#sessions.delete(key);
    });
  }

  /** Number of calls in progress. */
  get active(): number {
    return this.#sessions.size;
  }

  /** Number of sessions created since start-up. */
  get started(): number {
    return this.#started;
  }

  /** The live session of a call, by call-control id. */
  byCallControlId(callControlId: string): CallSession | undefined {
    for (const session of this.#sessions.values()) {
      if (session.info.callControlId === callControlId) return session;
    }
    return undefined;
  }

  /** Live sessions, in creation order. */
  sessions(): CallSession[] {
    return [...this.#sessions.values()];
  }

  /**
   * Lets calls finish on their own for up to `graceMs`, then hangs up the rest. Resolves once
   * every session has ended.
   */
  async drain(graceMs: number): Promise<{ finished: number; hungUp: number }> {
    const initial = this.sessions();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    try {
      await Promise.race([Promise.all(initial.map((s) => s.ended)), graceOver]);
    } finally {
      clearTimeout(timer);
    }
    const remaining = this.sessions();
    await Promise.all(remaining.map((s) => s.hangUp("shutdown")));
    return { finished: initial.length - remaining.length, hungUp: remaining.length };
  }
}
