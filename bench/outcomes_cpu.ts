/**
 * CPU cost of call records and webhooks per call, without the calls' audio: feeds N calls'
 * events (placed, streaming, a greeting and five turns, usage, ended) through the recorder, the
 * outcome reporter and the webhooks, as a server does, and measures this process's CPU time
 * (every thread: KV's SQLite and the HTTP client included) until every `call.ended` is in.
 * The calls all end at the same instant, and the time from their end being recorded to each
 * `call.ended` reaching the receiver is reported too (the burst a load test's hang-up makes).
 *
 * Three set-ups: records in KV `:memory:` without webhooks (the load bench's "off"), records in
 * a KV file, and records in a KV file with every event signed and POSTed to a receiver in a
 * child process (its CPU is not counted). The last minus the first ("added") is what records and
 * webhooks add per call. The load bench
 * (`bench/calls.ts --records file --webhooks`) measures the same on a whole server; this one is
 * far less noisy on a shared machine. Reports, asserts nothing.
 *
 *   deno run -A bench/outcomes_cpu.ts [--calls 200] [--rounds 3]
 *
 * @module
 */
import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { delay } from "../src/async/deadline.ts";
import { Logger } from "../src/log.ts";
import { reportCallOutcomes } from "../src/outcomes/call_outcomes.ts";
import type { CallEvent } from "../src/records/call_events.ts";
import { CallRecorder } from "../src/records/call_recorder.ts";
import { CallStore } from "../src/records/call_store.ts";
import { percentile } from "../src/session/call_metrics.ts";
import { Webhooks } from "../src/webhooks/webhooks.ts";
import { waitFor } from "../tests/helpers/wait_for.ts";
import { startWebhookReceiverProcess } from "../tests/webhooks/receiver_process.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    calls: { type: "string", default: "200" },
    rounds: { type: "string", default: "3" },
  },
});
const CALLS = Number(args.calls);
const ROUNDS = Number(args.rounds);

const SAY = "Well, there is quite a lot to say about that, and here is some of it in detail.";

/** The events of one call, step by step (each step is one moment of the call). */
function steps(at: number): CallEvent[][] {
  const turn = (n: number, role: "user" | "assistant"): CallEvent => ({
    type: "turn",
    at: at + n * 3000,
    role,
    text: SAY,
    offsetMs: n * 3000,
    latency: role === "assistant" ? { llmTtftMs: 120, ttsTtfbMs: 90 } : undefined,
  });
  return [
    [{
      type: "placed",
      at,
      to: "+15551234567",
      from: "+15557654321",
      body: { name: "Zoë", account: "A-1234" },
      remoteConversation: false,
    }],
    [{ type: "streaming", at: at + 2000 }],
    [turn(1, "assistant")],
    [turn(2, "user")],
    [turn(3, "assistant")],
    [turn(4, "user")],
    [turn(5, "assistant")],
    [{
      type: "usage",
      at: at + 29_000,
      llmPromptTokens: 900,
      llmCompletionTokens: 120,
      ttsCharacters: 300,
      sttSeconds: 28,
    }, { type: "ended", at: at + 29_000, reason: "callee_hung_up" }],
  ];
}

interface Measured {
  /** CPU ms per call. */
  cpuMs: number;
  /** Every call's `ended` recorded at once → its `call.ended` at the receiver, ms. */
  endedLatencies: number[];
}

async function measure(setup: { file: boolean; webhooks: boolean }): Promise<Measured> {
  const mode = `${setup.file ? "file" : "memory"}-${setup.webhooks ? "hooks" : "none"}`;
  const dir = await Deno.makeTempDir({ prefix: "outcomes_cpu_" });
  const kv = await Deno.openKv(setup.file ? `${dir}/calls.sqlite3` : ":memory:");
  const receiver = setup.webhooks ? await startWebhookReceiverProcess() : undefined;
  const ended = () =>
    new Map(
      (receiver?.received ?? []).map((r) => ({ r, event: JSON.parse(r.body) }))
        .filter(({ event }) => event.type === "call.ended")
        .map(({ r, event }) => [event.call_id as string, r.receivedAt]),
    );
  // Lines are formatted as the server formats them, then dropped.
  const logger = new Logger({ level: "info", format: "json", sink: () => {} });
  const recorder = new CallRecorder(new CallStore(kv, { retentionDays: 30 }), { logger });
  const webhooks = receiver
    ? new Webhooks({
      kv,
      secret: "bench-secret-0123456789",
      policy: { local: true, allowPrivate: false },
      defaultUrl: receiver.url,
    })
    : undefined;
  const stopping = new AbortController();
  const worker = webhooks?.run(stopping.signal);
  const outcomes = reportCallOutcomes({
    records: recorder,
    webhooks,
    analysisLlm: undefined,
    logger,
    signal: stopping.signal,
  });
  const before = cpuUsage();
  const at = Date.now();
  const perCall = Array.from({ length: CALLS }, (_, i) => steps(at + i));
  let endedAt = 0;
  for (let step = 0; step < perCall[0].length; step++) {
    if (step === perCall[0].length - 1) {
      // As in calls of any length, `call.initiated` and `call.answered` are out before the end.
      if (receiver) {
        await waitFor(
          () => receiver.received.length >= CALLS * 2,
          "every call's call.initiated and call.answered",
          60_000,
        ).catch(() => {});
      }
      // The last step ends every call at the same instant.
      endedAt = performance.now();
    }
    for (let i = 0; i < CALLS; i++) {
      for (const event of perCall[i][step]) recorder.record(`v3:cpu-${mode}-${i}`, event);
    }
    // The calls' moments are apart in time, as in a real call: each step is committed alone.
    await recorder.flush();
    await delay(20);
  }
  await outcomes.idle(60_000);
  const expected = CALLS * 3; // initiated, answered, ended
  if (receiver && webhooks) {
    // Received, and also recorded as delivered: deliveries still recording their outcome are part
    // of the cost. Bounded: a shortfall is reported below.
    await waitFor(
      () => receiver.received.length >= expected && webhooks.stats.delivered >= expected,
      "every webhook received and recorded as delivered",
      60_000,
    ).catch(() => {});
  }
  const used = cpuUsage(before);
  if (webhooks && webhooks.stats.delivered < expected) {
    console.warn(`only ${webhooks.stats.delivered} of ${expected} webhooks delivered`);
  }
  const endedLatencies = [...ended().values()].map((t) => t - endedAt);
  outcomes.stop();
  stopping.abort();
  await worker;
  await recorder.close();
  kv.close();
  await receiver?.close();
  await Deno.remove(dir, { recursive: true });
  return { cpuMs: (used.user + used.system) / 1000 / CALLS, endedLatencies };
}

const rows: string[] = [];
const latencyRows: string[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  const off = await measure({ file: false, webhooks: false });
  const fileOnly = await measure({ file: true, webhooks: false });
  const on = await measure({ file: true, webhooks: true });
  rows.push(
    `| ${round} | ${off.cpuMs.toFixed(2)} | ${fileOnly.cpuMs.toFixed(2)} | ${
      on.cpuMs.toFixed(2)
    } | ${(on.cpuMs - off.cpuMs).toFixed(2)} |`,
  );
  const ms = (p: number) => percentile(on.endedLatencies, p)?.toFixed(0);
  latencyRows.push(
    `| ${round} | ${on.endedLatencies.length} | ${ms(50)} | ${ms(95)} | ${ms(100)} |`,
  );
}
console.log(
  `${CALLS} calls per run; CPU ms per call (this process, every thread)\n` +
    "| round | records in memory | records in a KV file | KV file + webhooks | added |\n" +
    "|---|---|---|---|---|\n" + rows.join("\n"),
);
console.log(
  `\nall ${CALLS} calls end at once: ended recorded → call.ended received (ms)\n` +
    "| round | received | p50 | p95 | max |\n|---|---|---|---|---|\n" + latencyRows.join("\n"),
);
