/**
 * What the server's JS heap holds per call: runs the load phase of `bench/calls.ts` with the
 * server's inspector on, takes a V8 heap snapshot once every call is up, and prints the object
 * types with the most retained-by-nobody-else (self) bytes, with their count and bytes per call.
 *
 * The inspector costs the server CPU (Deno reports WebSocket traffic to a debugger), so run it
 * for the heap's composition only; memory per call comes from `bench/memory_per_call.ts`.
 *
 * Run: `deno run -A --cert tests/fakes/tls/ca.pem bench/heap_by_type.ts [--calls 100]
 * [--seconds 30] [--top 30] [--port 9239] [--out /tmp/server.heapsnapshot]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { delay } from "../src/async/deadline.ts";
import { waitFor } from "../tests/helpers/wait_for.ts";
import { load, type LoadOptions } from "./calls.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    calls: { type: "string", default: "100" },
    seconds: { type: "string", default: "30" },
    top: { type: "string", default: "30" },
    port: { type: "string", default: "9239" },
    out: { type: "string", default: "" },
  },
});
const calls = Number(args.calls);

/** The parts of a `.heapsnapshot` this tool reads. */
interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Takes one heap snapshot over the Chrome DevTools protocol; returns its JSON text. */
async function takeSnapshot(port: string): Promise<string> {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as {
    webSocketDebuggerUrl: string;
  }[];
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const chunks: string[] = [];
  const done = new Promise<void>((resolve) => {
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.method === "HeapProfiler.addHeapSnapshotChunk") chunks.push(data.params.chunk);
      if (data.id === 2) resolve();
    };
  });
  socket.send(JSON.stringify({ id: 1, method: "HeapProfiler.enable" }));
  socket.send(JSON.stringify({ id: 2, method: "HeapProfiler.takeHeapSnapshot", params: {} }));
  await done;
  socket.close();
  return chunks.join("");
}

/** Self bytes and counts per `type/name` of node. */
function byType(snapshot: HeapSnapshot): { key: string; count: number; bytes: number }[] {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const stride = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const totals = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snapshot.nodes.length; i += stride) {
    const type = types[snapshot.nodes[i + typeAt]];
    const rawName = snapshot.strings[snapshot.nodes[i + nameAt]];
    // Strings and code are named by their content: group them by type alone.
    const name = type === "object" || type === "native" || type === "closure"
      ? rawName.slice(0, 60)
      : "";
    const key = `${type}${name ? ` ${name}` : ""}`;
    const total = totals.get(key) ?? { count: 0, bytes: 0 };
    total.count++;
    total.bytes += snapshot.nodes[i + sizeAt];
    totals.set(key, total);
  }
  return [...totals].map(([key, t]) => ({ key, ...t })).sort((a, b) => b.bytes - a.bytes);
}

const marks: NonNullable<LoadOptions["marks"]> = {};
let snapshotText: Promise<string> | undefined;
const watcher = (async () => {
  await waitFor(() => marks.loadedAt !== undefined, "every call to be up", 120_000, 200);
  // Let every call reach its steady state (greeting played, first turns taken) first.
  await delay(5000);
  snapshotText = takeSnapshot(args.port);
  await snapshotText;
})();
const rows = await load(calls, Number(args.seconds), {
  serverDenoFlags: [`--inspect=127.0.0.1:${args.port}`],
  marks,
});
await watcher;
const text = await snapshotText!;
if (args.out) await Deno.writeTextFile(args.out, text);
const types = byType(JSON.parse(text));
const all = types.reduce((sum, t) => sum + t.bytes, 0);
console.log(rows.find((row) => row.includes("resident memory per call")));
console.log(`heap snapshot: ${(all / 1048576).toFixed(1)} MiB live, ${calls} calls\n`);
console.log("| type | count | count per call | KiB | bytes per call |\n|---|---|---|---|---|");
for (const t of types.slice(0, Number(args.top))) {
  console.log(
    `| ${t.key.replaceAll("|", "/")} | ${t.count} | ${(t.count / calls).toFixed(1)} | ${
      (t.bytes / 1024).toFixed(0)
    } | ${(t.bytes / calls).toFixed(0)} |`,
  );
}
