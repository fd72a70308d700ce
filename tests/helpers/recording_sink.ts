/**
 * A {@link CallEventSink} that keeps what it is given, for tests that look at call events.
 *
 * @module
 */
import type { CallEvent, CallEventSink } from "../../src/records/call_events.ts";

/** Keeps every event, in the order recorded. */
export class RecordingSink implements CallEventSink {
  readonly recorded: { callId: string; event: CallEvent }[] = [];

  record(callId: string, event: CallEvent): void {
    this.recorded.push({ callId, event });
  }

  /** The events of one call, optionally of one type. */
  of<T extends CallEvent["type"]>(
    callId: string,
    type?: T,
  ): Extract<CallEvent, { type: T }>[] {
    return this.recorded
      .filter((r) => r.callId === callId && (type === undefined || r.event.type === type))
      .map((r) => r.event as Extract<CallEvent, { type: T }>);
  }
}
