/**
 * The {@link CallEventSink} the live call reports to: `record()` only appends to the call's
 * queue, and one background writer per call drains it into the {@link CallStore}, every event
 * queued since the last commit in one batch. Nothing on the audio path waits for KV.
 *
 * A failed commit (disk full, "database is locked" from another process, a remote store down)
 * is logged and the same batch is retried with bounded backoff until it lands: the record
 * catches up, and the call never notices.
 *
 * @module
 */
import { delay } from "../async/deadline.ts";
import type { Logger } from "../log.ts";
import type { CallEvent, CallEventSink } from "./call_events.ts";
import type { StoredCall } from "./call_record.ts";
import type { CallStore } from "./call_store.ts";

/**
 * Called once per event after it is committed, with the record header as committed by the batch
 * that held it (events reported together share one commit, so it may already show later ones).
 * The transcript and custom data are not in the header: read them with `store.get(callId)`.
 */
export type CallEventListener = (callId: string, event: CallEvent, record: StoredCall) => void;

/** Events committed at most per KV write (the store splits turns over commits as needed). */
const MAX_BATCH_EVENTS = 200;
/** Backoff between retries of a failed commit. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 5000;

/** Options for {@link CallRecorder}. */
export interface CallRecorderOptions {
  logger: Logger;
  /** Backoff bounds for failed commits; default {@link RETRY_FIRST_MS}–{@link RETRY_MAX_MS}. */
  retry?: { firstMs: number; maxMs: number };
}

interface CallQueue {
  events: CallEvent[];
  /** The writer draining this queue, while one runs. */
  writer: Promise<void> | undefined;
}

/** Batches call events into KV in the background. */
export class CallRecorder implements CallEventSink {
  readonly store: CallStore;
  readonly #log: Logger;
  readonly #retry: { firstMs: number; maxMs: number };
  readonly #queues = new Map<string, CallQueue>();
  readonly #listeners = new Set<CallEventListener>();
  readonly #closing = new AbortController();
  #failures = 0;

  constructor(store: CallStore, options: CallRecorderOptions) {
    this.store = store;
    this.#log = options.logger;
    this.#retry = options.retry ?? { firstMs: RETRY_FIRST_MS, maxMs: RETRY_MAX_MS };
  }

  /** Queues `event` for `callId`; returns at once and never throws. */
  record(callId: string, event: CallEvent): void {
    if (this.#closing.signal.aborted) return;
    let queue = this.#queues.get(callId);
    if (!queue) {
      queue = { events: [], writer: undefined };
      this.#queues.set(callId, queue);
    }
    queue.events.push(event);
    queue.writer ??= this.#write(callId, queue);
  }

  /**
   * Calls `listener` after each committed event (e.g. to send webhooks on `placed`, `answered`
   * and `ended`). A listener that throws is logged and does not stop the others. Returns a
   * function that removes it.
   */
  onCallEvent(listener: CallEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Events queued and not yet committed, all calls together. */
  get pending(): number {
    let count = 0;
    for (const queue of this.#queues.values()) count += queue.events.length;
    return count;
  }

  /** Commit failures since start-up (each retried). */
  get failures(): number {
    return this.#failures;
  }

  /** Resolves once every event queued so far is committed (or the recorder closed). */
  async flush(): Promise<void> {
    for (;;) {
      const writers = [...this.#queues.values()].flatMap((q) => (q.writer ? [q.writer] : []));
      if (writers.length === 0) return;
      await Promise.all(writers);
    }
  }

  /**
   * Stops retrying and waits for the commits in flight; events still queued are logged as lost.
   * Call after {@link flush} (bounded) at shutdown.
   */
  async close(): Promise<void> {
    this.#closing.abort();
    await Promise.all([...this.#queues.values()].map((q) => q.writer));
    const lost = this.pending;
    if (lost > 0) this.#log.error("call events not stored at shutdown", { events: lost });
    this.#queues.clear();
  }

  async #write(callId: string, queue: CallQueue): Promise<void> {
    // Events reported in the same tick (a turn and a tool call, an error and the end) share
    // one commit.
    await Promise.resolve();
    let backoff = this.#retry.firstMs;
    while (queue.events.length > 0 && !this.#closing.signal.aborted) {
      const batch = queue.events.slice(0, MAX_BATCH_EVENTS);
      let committed: StoredCall;
      try {
        committed = await this.store.apply(callId, batch);
      } catch (error) {
        this.#failures++;
        this.#log.warn("storing call events failed; retrying", {
          call: callId,
          events: queue.events.length,
          retry_ms: backoff,
          error,
        });
        try {
          await delay(backoff, this.#closing.signal);
        } catch {
          break; // closing
        }
        backoff = Math.min(backoff * 2, this.#retry.maxMs);
        continue;
      }
      backoff = this.#retry.firstMs;
      queue.events.splice(0, batch.length);
      for (const event of batch) this.#notify(callId, event, committed);
    }
    queue.writer = undefined;
    if (queue.events.length === 0 && this.#queues.get(callId) === queue) {
      this.#queues.delete(callId);
    }
  }

  #notify(callId: string, event: CallEvent, record: StoredCall): void {
    for (const listener of this.#listeners) {
      try {
        listener(callId, event, record);
      } catch (error) {
        this.#log.error("call event listener failed", { call: callId, event: event.type, error });
      }
    }
  }
}
