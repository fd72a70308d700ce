import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { Logger } from "../../src/log.ts";
import type { CallEvent } from "../../src/records/call_events.ts";
import { CallRecorder } from "../../src/records/call_recorder.ts";
import { CallStore } from "../../src/records/call_store.ts";
import { FlakyKv, placed } from "../helpers/records.ts";
import { waitFor } from "../helpers/wait_for.ts";

const FLUSH_WITHIN_MS = 5000;

async function withRecorder(
  fn: (recorder: CallRecorder, kv: FlakyKv, logs: string[]) => Promise<void>,
): Promise<void> {
  const kv = new FlakyKv(await Deno.openKv(":memory:"));
  const logs: string[] = [];
  const recorder = new CallRecorder(new CallStore(kv, { retentionDays: 30 }), {
    logger: new Logger({ sink: (line) => logs.push(line), format: "json", level: "debug" }),
    retry: { firstMs: 5, maxMs: 20 },
  });
  try {
    await fn(recorder, kv, logs);
  } finally {
    await recorder.close();
    kv.kv.close();
  }
}

const turn = (i: number): CallEvent => ({
  type: "turn",
  at: 1000 + i,
  role: i % 2 ? "user" : "assistant",
  text: `turn ${i}`,
  offsetMs: i * 100,
});

Deno.test("record() returns before anything is written; flush() waits for the commit", async () => {
  await withRecorder(async (recorder) => {
    recorder.record("c1", placed(1000));
    recorder.record("c1", turn(0));
    assert.equal(recorder.pending, 2, "queued, not written, when record() returns");
    await deadline(recorder.flush(), FLUSH_WITHIN_MS, { what: "flush" });
    assert.equal(recorder.pending, 0);
    const record = await recorder.store.get("c1");
    assert.equal(record?.transcript?.[0].text, "turn 0");
  });
});

Deno.test("failing commits are logged and retried until the record catches up", async () => {
  await withRecorder(async (recorder, kv, logs) => {
    recorder.record("c1", placed(1000));
    await deadline(recorder.flush(), FLUSH_WITHIN_MS, { what: "first flush" });
    kv.failing = true;
    for (let i = 0; i < 20; i++) recorder.record("c1", turn(i));
    recorder.record("c1", { type: "ended", at: 5000, reason: "bot_ended" });
    // A few commits fail against the sabotaged store before it recovers.
    await waitFor(() => kv.failedCommits >= 3, "three failed commits", FLUSH_WITHIN_MS);
    assert.ok(recorder.pending > 0);
    kv.failing = false;
    await deadline(recorder.flush(), FLUSH_WITHIN_MS, { what: "flush after recovery" });

    const record = (await recorder.store.get("c1"))!;
    assert.deepEqual(
      record.transcript!.map((t) => t.text),
      [...Array(20)].map((_, i) => `turn ${i}`),
    );
    assert.equal(record.end_reason, "bot_ended");
    assert.ok(recorder.failures >= 3);
    assert.ok(logs.some((l) => l.includes("storing call events failed; retrying")));
  });
});

Deno.test("listeners hear each event once it is committed, with the record as stored", async () => {
  await withRecorder(async (recorder) => {
    const heard: string[] = [];
    recorder.onCallEvent((callId, event, record) => {
      heard.push(`${callId}:${event.type}:${record.status}`);
    });
    recorder.onCallEvent(() => {
      throw new Error("a broken listener");
    });
    recorder.record("c1", placed(1000));
    await deadline(recorder.flush(), FLUSH_WITHIN_MS, { what: "flush" });
    recorder.record("c1", { type: "streaming", at: 2000 });
    recorder.record("c1", { type: "ended", at: 3000, reason: "callee_hung_up" });
    await deadline(recorder.flush(), FLUSH_WITHIN_MS, { what: "flush" });
    assert.deepEqual(heard, ["c1:placed:initiated", "c1:streaming:ended", "c1:ended:ended"]);
  });
});

Deno.test("close() stops retrying a store that stays down and says what was lost", async () => {
  await withRecorder(async (recorder, kv, logs) => {
    kv.failing = true;
    recorder.record("c1", placed(1000));
    await waitFor(() => kv.failedCommits >= 1, "a failed commit", FLUSH_WITHIN_MS);
    await deadline(recorder.close(), FLUSH_WITHIN_MS, { what: "close" });
    assert.ok(logs.some((l) => l.includes("call events not stored at shutdown")));
  });
});
