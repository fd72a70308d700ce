import assert from "node:assert/strict";
import { CallStore, MAX_TURN_BYTES } from "../../src/records/call_store.ts";
import type { CallEvent } from "../../src/records/call_events.ts";
import { allKeys, placed } from "../helpers/records.ts";

const T0 = Date.parse("2026-03-01T10:00:00Z");

async function withStore(fn: (store: CallStore, kv: Deno.Kv) => Promise<void>): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  try {
    await fn(new CallStore(kv, { retentionDays: 30 }), kv);
  } finally {
    kv.close();
  }
}

/** Turn `i` of a long call: about 3 KB of text each, alternating speakers. */
function longTurn(i: number): CallEvent {
  return {
    type: "turn",
    at: T0 + 4000 * i,
    role: i % 2 === 0 ? "assistant" : "user",
    text: `Turn ${i}: ` + "Zoë talks at length about her account and its options. ".repeat(55),
    offsetMs: 4000 * i,
  };
}

Deno.test("a 600-second call with 150 long turns is stored and read back whole", async () => {
  await withStore(async (store) => {
    const turns = Array.from({ length: 150 }, (_, i) => longTurn(i));
    await store.apply("call-1", [placed(T0), { type: "streaming", at: T0 + 2000 }]);
    // Committed as the call goes (a few turns a batch), and one catch-up batch of the rest.
    for (let i = 0; i < 100; i += 4) await store.apply("call-1", turns.slice(i, i + 4));
    await store.apply("call-1", [...turns.slice(100), {
      type: "ended",
      at: T0 + 600_000,
      reason: "bot_ended",
    }]);

    const record = await store.get("call-1");
    assert.ok(record);
    assert.equal(record.transcript?.length, 150);
    const totalChars = record.transcript!.reduce((n, t) => n + t.text.length, 0);
    assert.ok(totalChars > 400_000, `far more than one KV value holds: ${totalChars}`);
    record.transcript!.forEach((turn, i) => {
      const sent = turns[i] as Extract<CallEvent, { type: "turn" }>;
      assert.equal(turn.text, sent.text);
      assert.equal(turn.role, sent.role);
      assert.equal(turn.offset_ms, sent.offsetMs);
    });
    assert.equal(record.status, "ended");
    assert.equal(record.end_reason, "bot_ended");
    assert.equal(record.duration_seconds, 598);
  });
});

Deno.test("a turn longer than a KV value is cut to fit, not lost", async () => {
  await withStore(async (store) => {
    const huge = "ü".repeat(100_000);
    await store.apply("call-1", [placed(T0), {
      type: "turn",
      at: T0,
      role: "user",
      text: huge,
      offsetMs: 0,
    }]);
    const [turn] = (await store.get("call-1"))!.transcript!;
    assert.ok(turn.text.length > 10_000 && turn.text.length < huge.length);
    assert.ok(new TextEncoder().encode(JSON.stringify(turn)).length <= MAX_TURN_BYTES + 200);
  });
});

Deno.test("progress callbacks repeated and out of order never move a call backwards", async () => {
  await withStore(async (store) => {
    const progress = (status: "ringing" | "in-progress" | "completed", sequence: number) =>
      ({ type: "progress", at: T0 + sequence * 1000, status, sequence }) as const;
    await store.apply("call-1", [placed(T0), progress("in-progress", 3)]);
    await store.apply("call-1", [progress("ringing", 2), progress("in-progress", 3)]);
    let record = (await store.get("call-1"))!;
    assert.equal(record.status, "answered");
    assert.equal(record.timeline.ringing, new Date(T0 + 2000).toISOString());
    assert.equal(record.timeline.answered, new Date(T0 + 3000).toISOString());

    await store.apply("call-1", [{ ...progress("completed", 5), durationSeconds: 42 }]);
    await store.apply("call-1", [progress("ringing", 2), progress("in-progress", 3)]);
    record = (await store.get("call-1"))!;
    assert.equal(record.status, "ended");
    assert.equal(record.end_reason, "callee_hung_up");
    assert.equal(record.duration_seconds, 42);
  });
});

Deno.test("the live call's end reason wins over the callback's", async () => {
  await withStore(async (store) => {
    await store.apply("call-1", [placed(T0), { type: "streaming", at: T0 + 1000 }]);
    await store.apply("call-1", [{
      type: "progress",
      at: T0 + 9000,
      status: "completed",
      sequence: 4,
    }]);
    await store.apply("call-1", [{ type: "ended", at: T0 + 9100, reason: "max_duration" }]);
    assert.equal((await store.get("call-1"))!.end_reason, "max_duration");
  });
});

Deno.test("ENV=production records say the transcript lives on Pipecat Cloud", async () => {
  await withStore(async (store) => {
    await store.apply("call-1", [{ ...placed(T0), remoteConversation: true } as CallEvent]);
    const record = (await store.get("call-1"))!;
    assert.equal(record.transcript, null);
    assert.equal(record.transcript_location, "pipecat_cloud");
  });
});

Deno.test("records survive a restart of the store", async () => {
  const path = await Deno.makeTempFile({ suffix: ".sqlite3" });
  try {
    const first = await Deno.openKv(path);
    await new CallStore(first, { retentionDays: 30 }).apply("call-1", [
      placed(T0),
      longTurn(0),
      { type: "ended", at: T0 + 5000, reason: "callee_hung_up" },
    ]);
    first.close();

    const second = await Deno.openKv(path);
    try {
      const record = await new CallStore(second, { retentionDays: 30 }).get("call-1");
      assert.equal(record?.end_reason, "callee_hung_up");
      assert.equal(record?.transcript?.length, 1);
      assert.deepEqual(record?.custom_data, { name: "Zoë" });
    } finally {
      second.close();
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("delete erases the header, index entries, transcript and custom data", async () => {
  await withStore(async (store, kv) => {
    await store.apply("keep", [placed(T0)]);
    const turns = Array.from({ length: 30 }, (_, i) => longTurn(i));
    await store.apply("gone", [placed(T0 + 1), ...turns, {
      type: "ended",
      at: T0 + 9,
      reason: "bot_ended",
    }]);
    assert.equal(await store.delete("gone"), true);
    const left = await allKeys(kv);
    assert.ok(left.every((key) => !key.includes('"gone"')), left.join("\n"));
    assert.ok(left.some((key) => key.includes('"keep"')));
    assert.equal(await store.get("gone"), null);
    assert.equal(await store.delete("gone"), false);
  });
});

Deno.test("every key is written with the retention as its expiry", async () => {
  // Deno KV keeps no readable expiry: a zero-day retention would be refused, so check the
  // figure the store hands to KV through a recording atomic.
  const kv = await Deno.openKv(":memory:");
  try {
    const expiries: (number | undefined)[] = [];
    const recording = {
      get: kv.get.bind(kv),
      list: kv.list.bind(kv),
      atomic() {
        const op = kv.atomic();
        const set = op.set.bind(op);
        op.set = (key, value, options) => {
          expiries.push(options?.expireIn);
          return set(key, value, options);
        };
        const mutate = op.mutate.bind(op);
        op.mutate = (...mutations) => {
          for (const m of mutations) if (m.type === "set") expiries.push(m.expireIn);
          return mutate(...mutations);
        };
        return op;
      },
    } as Pick<Deno.Kv, "get" | "list" | "atomic">;
    await new CallStore(recording, { retentionDays: 7 }).apply("c", [placed(T0), longTurn(1)]);
    assert.ok(expiries.length >= 5);
    assert.ok(expiries.every((ms) => ms === 7 * 24 * 3600 * 1000), String(expiries));
  } finally {
    kv.close();
  }
});

Deno.test("listing is newest first, filtered by status and time, and pages with a cursor", async () => {
  await withStore(async (store) => {
    for (let i = 0; i < 25; i++) {
      const events: CallEvent[] = [placed(T0 + i * 60_000)];
      if (i % 2 === 0) events.push({ type: "ended", at: T0 + i * 60_000 + 1000, reason: "busy" });
      await store.apply(`call-${i}`, events);
    }
    const ids: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const result = await store.list({ limit: 10, cursor });
      ids.push(...result.calls.map((c) => c.id));
      if (!result.next_cursor) break;
      cursor = result.next_cursor;
    }
    assert.deepEqual(ids, Array.from({ length: 25 }, (_, i) => `call-${24 - i}`));

    const ended = await store.list({ limit: 100, status: "ended" });
    assert.equal(ended.calls.length, 13);
    assert.ok(ended.calls.every((c) => c.status === "ended"));
    const initiated = await store.list({ limit: 100, status: "initiated" });
    assert.equal(initiated.calls.length, 12, "a status change moves the call between indexes");

    const window = await store.list({ limit: 100, since: T0 + 5 * 60_000, until: T0 + 7 * 60_000 });
    assert.deepEqual(window.calls.map((c) => c.id), ["call-7", "call-6", "call-5"]);
  });
});

Deno.test("a catch-up batch larger than one atomic commit is split and stored whole", async () => {
  await withStore(async (store) => {
    const turns: CallEvent[] = Array.from({ length: 30 }, (_, i) => ({
      type: "turn",
      at: T0 + i,
      role: "user",
      text: `${i} ` + "x".repeat(50_000),
      offsetMs: i,
    }));
    await store.apply("call-1", [placed(T0), ...turns]);
    const record = (await store.get("call-1"))!;
    assert.equal(record.transcript?.length, 30);
    assert.ok(record.transcript!.every((t, i) => t.text.startsWith(`${i} xxx`)));
  });
});

Deno.test("Telnyx's answer time replaces the stream start standing in for it", async () => {
  await withStore(async (store) => {
    await store.apply("call-1", [placed(T0), { type: "streaming", at: T0 + 5000 }]);
    assert.equal((await store.get("call-1"))!.timeline.answered, new Date(T0 + 5000).toISOString());
    await store.apply("call-1", [{
      type: "progress",
      at: T0 + 4000,
      status: "in-progress",
      sequence: 2,
    }]);
    const record = (await store.get("call-1"))!;
    assert.equal(record.timeline.answered, new Date(T0 + 4000).toISOString());
    assert.equal(record.status, "streaming");
  });
});

Deno.test("two stores sharing one KV keep each other's changes (the live call's header cached)", async () => {
  await withStore(async (first, kv) => {
    const second = new CallStore(kv, { retentionDays: 30 });
    await first.apply("call-1", [placed(T0), { type: "streaming", at: T0 + 1000 }]);
    await second.apply("call-1", [longTurn(0)]);
    // `first` still holds the header it committed; its check fails and it reads afresh.
    await first.apply("call-1", [longTurn(1)]);
    await second.apply("call-1", [{ type: "dtmf", at: T0 + 9000, digits: "1" }]);
    const record = await first.get("call-1");
    assert.deepEqual(record?.transcript?.map((t) => t.text.slice(0, 7)), ["Turn 0:", "Turn 1:"]);
    assert.deepEqual(record?.dtmf.map((d) => d.digits), ["1"]);
    assert.equal(record?.status, "streaming");
  });
});

Deno.test("a turn leaves the index lines as they were; a status change rewrites them", async () => {
  await withStore(async (store, kv) => {
    await store.apply("call-1", [placed(T0), { type: "streaming", at: T0 + 1000 }]);
    const indexStamp = async () => {
      const [line] = await Array.fromAsync(kv.list({ prefix: ["calls_by_time"] }));
      return line.versionstamp;
    };
    const before = await indexStamp();
    await store.apply("call-1", [longTurn(0)]);
    assert.equal(await indexStamp(), before);
    await store.apply("call-1", [{ type: "ended", at: T0 + 5000, reason: "bot_ended" }]);
    assert.notEqual(await indexStamp(), before);
    const page = await store.list({ limit: 10 });
    assert.equal(page.calls[0].status, "ended");
    assert.equal(page.calls[0].duration_seconds, 4);
  });
});

Deno.test("viewAt reads only what the header does not hold", async () => {
  await withStore(async (store) => {
    const call = await store.apply("call-1", [placed(T0)]);
    const known = await store.viewAt(call, { customData: { name: "given" } });
    assert.deepEqual(known.custom_data, { name: "given" });
    assert.deepEqual(known.transcript, []);
    const read = await store.viewAt(await store.apply("call-1", [longTurn(0)]));
    assert.deepEqual(read.custom_data, { name: "Zoë" });
    assert.equal(read.transcript?.length, 1);
  });
});
