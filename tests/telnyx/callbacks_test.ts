/**
 * The form-encoded callbacks Telnyx posts about a call: what is read from them, and what is
 * refused or ignored.
 */
import assert from "node:assert/strict";
import { ANSWERED_BY } from "../../src/records/call_events.ts";
import {
  CallbackFormError,
  parseAmdCallback,
  parseProgressCallback,
  unansweredEndReason,
} from "../../src/telnyx/callbacks.ts";

function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

Deno.test("a progress callback yields its status, sequence, duration and hang-up cause", () => {
  const progress = parseProgressCallback(form({
    AccountSid: "acct",
    CallSid: "v3:abc",
    CallStatus: "completed",
    SequenceNumber: "4",
    CallDuration: "37",
    HangupCause: "normal_clearing",
    HangupSource: "callee",
    Timestamp: "Mon, 30 Nov 2026 01:00:00 +0000",
  }));
  assert.deepEqual(progress, {
    callSid: "v3:abc",
    status: "completed",
    rawStatus: "completed",
    sequence: 4,
    durationSeconds: 37,
    hangupCause: "normal_clearing",
    hangupSource: "callee",
  });
});

Deno.test("a progress callback without SequenceNumber is ordered by its place in a call's life", () => {
  const ringing = parseProgressCallback(form({ CallSid: "v3:a", CallStatus: "ringing" }));
  const busy = parseProgressCallback(form({ CallSid: "v3:a", CallStatus: "busy" }));
  assert.ok(ringing.sequence < busy.sequence);
});

Deno.test("malformed optional fields of a progress callback are dropped, not fatal", () => {
  const progress = parseProgressCallback(form({
    CallSid: "v3:a",
    CallStatus: "in-progress",
    SequenceNumber: "2",
    CallDuration: "-5",
    HangupCause: "x".repeat(200),
  }));
  assert.equal(progress.durationSeconds, undefined);
  assert.equal(progress.hangupCause, undefined);
  assert.equal(progress.sequence, 2);
});

Deno.test("an unknown CallStatus is kept raw and has no status", () => {
  const progress = parseProgressCallback(form({ CallSid: "v3:a", CallStatus: "queued" }));
  assert.equal(progress.status, undefined);
  assert.equal(progress.rawStatus, "queued");
});

Deno.test("a callback without a valid CallSid is refused", () => {
  assert.throws(() => parseProgressCallback(form({ CallStatus: "ringing" })), CallbackFormError);
  assert.throws(
    () => parseAmdCallback(form({ CallSid: "has space", AnsweredBy: "human" })),
    CallbackFormError,
  );
});

Deno.test("every AnsweredBy spelling Telnyx documents is accepted as is", () => {
  for (const answeredBy of ANSWERED_BY) {
    const amd = parseAmdCallback(form({ CallSid: "v3:a", AnsweredBy: answeredBy }));
    assert.deepEqual(amd, { callSid: "v3:a", answeredBy });
  }
});

Deno.test("an AnsweredBy this service does not know reads as unknown and keeps the raw value", () => {
  assert.deepEqual(parseAmdCallback(form({ CallSid: "v3:a", AnsweredBy: "robot" })), {
    callSid: "v3:a",
    answeredBy: "unknown",
    rawAnsweredBy: "robot",
  });
  assert.equal(parseAmdCallback(form({ CallSid: "v3:a" })).answeredBy, "unknown");
});

Deno.test("only calls that were never answered end on their progress status", () => {
  assert.equal(unansweredEndReason("no-answer"), "no_answer");
  assert.equal(unansweredEndReason("busy"), "busy");
  assert.equal(unansweredEndReason("failed"), "failed");
  assert.equal(unansweredEndReason("canceled"), "canceled");
  assert.equal(unansweredEndReason("completed"), undefined);
  assert.equal(unansweredEndReason("ringing"), undefined);
});
