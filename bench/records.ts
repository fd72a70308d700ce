/**
 * Call-record benchmark: `GET /calls?limit=50` against 10,000 stored records, through the real
 * server and a KV file, first page and deep pages (cursor), with and without a status filter.
 * Prints p50/p95/max; figures depend on the machine and are reported, never asserted.
 *
 * Run: `deno run -A bench/records.ts [--records 10000] [--requests 300]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../src/config.ts";
import type { CallEvent } from "../src/records/call_events.ts";
import { CallStore } from "../src/records/call_store.ts";
import { startServer } from "../src/server.ts";
import { Logger } from "../src/log.ts";
import { percentile } from "../src/session/call_metrics.ts";

const args = parseArgs({
  options: {
    records: { type: "string", default: "10000" },
    requests: { type: "string", default: "300" },
  },
});
const RECORDS = Number(args.values.records);
const REQUESTS = Number(args.values.requests);
const TOKEN = "bench-token-0123456789";

const dir = await Deno.makeTempDir({ prefix: "records_bench_" });
const path = `${dir}/calls.sqlite3`;
const kv = await Deno.openKv(path);
const store = new CallStore(kv, { retentionDays: 30 });

// A realistic record: placed, answered, streamed, ten turns, ended.
const t0 = Date.now() - RECORDS * 60_000;
const fillStarted = performance.now();
const fills: Promise<unknown>[] = [];
for (let i = 0; i < RECORDS; i++) {
  const at = t0 + i * 60_000;
  const events: CallEvent[] = [
    {
      type: "placed",
      at,
      to: "+15551234567",
      from: "+15550001111",
      body: { name: `Callee ${i}` },
      remoteConversation: false,
    },
    { type: "streaming", at: at + 5000 },
    ...Array.from({ length: 10 }, (_, n): CallEvent => ({
      type: "turn",
      at: at + 6000 + n * 3000,
      role: n % 2 ? "user" : "assistant",
      text: "A sentence or two of conversation, as a turn usually is. ".repeat(3),
      offsetMs: 1000 + n * 3000,
    })),
  ];
  if (i % 3 !== 0) events.push({ type: "ended", at: at + 40_000, reason: "bot_ended" });
  fills.push(store.apply(`v3:bench-${i}`, events));
  if (fills.length >= 50) await Promise.all(fills.splice(0));
}
await Promise.all(fills);
console.log(
  `stored ${RECORDS} records in ${((performance.now() - fillStarted) / 1000).toFixed(1)} s`,
);

const config = loadConfig({
  PORT: "0",
  HOST: "127.0.0.1",
  API_TOKEN: TOKEN,
  LOG_LEVEL: "error",
  LOG_FORMAT: "json",
});
const server = await startServer(config, {
  kv,
  logger: new Logger({ level: "error", format: "json", sink: () => {} }),
});

async function measure(name: string, pathFor: (i: number) => Promise<string> | string) {
  const times: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const path = await pathFor(i);
    const started = performance.now();
    const res = await fetch(`${server.url}${path}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const body = await res.json();
    times.push(performance.now() - started);
    if (res.status !== 200 || body.calls.length !== 50) throw new Error(`${path}: ${res.status}`);
  }
  const ms = (p: number) => (percentile(times, p) ?? NaN).toFixed(1);
  console.log(
    `${name}: p50 ${ms(50)} ms, p95 ${ms(95)} ms, max ${ms(100)} ms (${REQUESTS} requests)`,
  );
}

// Cursors deep into the list, taken once so each timed request is one page read.
const deepCursors: string[] = [];
let cursor: string | null = null;
for (let page = 0; page < 40; page++) {
  const query: string = `/calls?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  const res = await fetch(`${server.url}${query}`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  cursor = (await res.json()).next_cursor;
  if (!cursor) break;
  deepCursors.push(cursor);
}

try {
  await measure("GET /calls?limit=50 (first page)", () => "/calls?limit=50");
  await measure("GET /calls?limit=50&status=ended", () => "/calls?limit=50&status=ended");
  await measure(
    "GET /calls?limit=50&cursor=… (pages 2–40)",
    (i) => `/calls?limit=50&cursor=${encodeURIComponent(deepCursors[i % deepCursors.length])}`,
  );
  await measure(
    "GET /calls?limit=50&since=…&until=…",
    () => `/calls?limit=50&since=${t0 + 1000 * 60_000}&until=${t0 + 5000 * 60_000}`,
  );
} finally {
  await server.shutdown();
  kv.close();
  await Deno.remove(dir, { recursive: true });
}
