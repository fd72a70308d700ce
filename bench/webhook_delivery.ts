/**
 * End of call → `call.ended` at a local receiver: emits N events into a Webhooks instance on a
 * KV file (as a server runs it) and measures the time from `emit()` to the receiver having the
 * body. Reports, asserts nothing. (Not named `*_bench.ts`: `deno bench bench/` would run it.)
 *
 *   deno run -A bench/webhook_delivery.ts [events=200] [spacing_ms=10]
 *
 * @module
 */
import { delay } from "../src/async/deadline.ts";
import { Webhooks } from "../src/webhooks/webhooks.ts";
import { startWebhookReceiver } from "../tests/fakes/webhook_receiver.ts";
import { waitFor } from "../tests/helpers/wait_for.ts";

const EVENTS = Number(Deno.args[0] ?? 200);
const SPACING_MS = Number(Deno.args[1] ?? 10);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function run(label: string, path: string, spacingMs: number): Promise<void> {
  await using receiver = startWebhookReceiver();
  const kv = await Deno.openKv(path);
  const webhooks = new Webhooks({
    kv,
    secret: "bench-secret-0123456789",
    policy: { local: true, allowPrivate: false },
    defaultUrl: receiver.url,
  });
  const stopping = new AbortController();
  const worker = webhooks.run(stopping.signal);
  const started = new Map<string, number>();
  for (let i = 0; i < EVENTS; i++) {
    const callId = `v3:bench-${i}`;
    started.set(callId, performance.now());
    await webhooks.emit(callId, "call.ended", { end_reason: "bot_ended", turns: i });
    if (spacingMs > 0) await delay(spacingMs);
  }
  // Bounded: a missing delivery shows in the count reported below.
  await waitFor(() => receiver.received.length >= EVENTS, "every event delivered", 60_000)
    .catch(() => {});
  stopping.abort();
  await worker;
  kv.close();

  const latencies = receiver.received
    .map((r) => r.receivedAt - started.get(JSON.parse(r.body).call_id)!)
    .sort((a, b) => a - b);
  const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
  console.log(
    `${label}: ${latencies.length}/${EVENTS} delivered; emit → received ` +
      `p50 ${fmt(percentile(latencies, 50))}, p95 ${fmt(percentile(latencies, 95))}, ` +
      `max ${fmt(latencies.at(-1)!)}`,
  );
}

const file = await Deno.makeTempFile({ dir: "/tmp", prefix: "webhooks_bench_", suffix: ".kv" });
try {
  await run(`KV file, one event every ${SPACING_MS} ms`, file, SPACING_MS);
  await run("KV file, back to back", file + ".burst", 0);
  await run("KV in memory, back to back", ":memory:", 0);
} finally {
  for (const path of [file, file + ".burst"]) {
    for (const suffix of ["", "-shm", "-wal"]) await Deno.remove(path + suffix).catch(() => {});
  }
}
