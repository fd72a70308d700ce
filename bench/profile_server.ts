/**
 * CPU profile of the server under load: runs the load phase of `bench/calls.ts` (N simulated
 * calls against a child-process server started with V8's sampling profiler on) and prints the
 * functions with the most self time while every call was up (ramp-up and shutdown excluded).
 *
 * Why `--cpu-prof` and not the inspector: with `--inspect` Deno's network bridge emits a CDP
 * event (JSON and base64 of the payload) for every WebSocket frame, which at 300 calls was a
 * quarter of the server's CPU and pushed it into overload, so the profile described the
 * profiler. `--cpu-prof` samples without it and writes the profile when the server exits.
 *
 * Run:
 * `deno run -A --cert tests/fakes/tls/ca.pem bench/profile_server.ts [--calls 250]
 * [--seconds 30] [--top 15] [--out /tmp/server.cpuprofile]`.
 * The `.cpuprofile` (kept with `--out`) opens in Chrome DevTools (Performance → Load profile).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { load, type LoadOptions } from "./calls.ts";

/** A loaded window shorter than this is not worth a profile of its own. */
const MIN_LOADED_WINDOW_MS = 5000;

/** The parts of a V8 `.cpuprofile` (DevTools `Profiler.Profile`) this tool reads. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  /** µs, V8's monotonic clock. */
  startTime: number;
  endTime: number;
  /** Node id of each sample. */
  samples: number[];
  /** µs between consecutive samples (the first is from `startTime`). */
  timeDeltas: number[];
}

/** One row of {@link selfTimes}. */
interface SelfTime {
  /** Function name, file (shortened) and line. */
  name: string;
  ms: number;
  /** Share of all sampled time in the window, idle included. */
  share: number;
}

/**
 * Self time per function (name + file + line) for the samples taken between `fromMs` and `toMs`
 * after the profile started.
 */
function selfTimes(
  profile: CpuProfile,
  fromMs = 0,
  toMs = Infinity,
): { rows: SelfTime[]; wallMs: number } {
  const byNode = new Map(profile.nodes.map((node) => [node.id, node]));
  const totals = new Map<string, number>();
  let all = 0;
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i];
    // The interval up to the next sample is charged to this sample's function.
    const us = profile.timeDeltas[i + 1] ?? 0;
    if (at / 1000 < fromMs || at / 1000 > toMs) continue;
    const { functionName, url, lineNumber } = byNode.get(profile.samples[i])!.callFrame;
    const file = url.replace(/^.*\/(node_modules|registry\.npmjs\.org|src)\//, "");
    const key = `${functionName || "(anonymous)"}${file ? ` ${file}:${lineNumber + 1}` : ""}`;
    totals.set(key, (totals.get(key) ?? 0) + us);
    all += us;
  }
  const rows = [...totals].map(([name, us]) => ({ name, ms: us / 1000, share: us / all }))
    .sort((a, b) => b.ms - a.ms);
  return { rows, wallMs: all / 1000 };
}

if (import.meta.main) {
  const { values: args } = parseArgs({
    args: Deno.args,
    options: {
      calls: { type: "string", default: "250" },
      seconds: { type: "string", default: "30" },
      top: { type: "string", default: "15" },
      out: { type: "string" },
    },
  });
  const dir = await Deno.makeTempDir({ prefix: "server_profile_" });
  const marks: NonNullable<LoadOptions["marks"]> = {};
  try {
    const report = await load(Number(args.calls), Number(args.seconds), {
      serverDenoFlags: ["--cpu-prof", `--cpu-prof-dir=${dir}`, "--cpu-prof-interval=500"],
      marks,
    });
    console.log(report.join("\n"));
    const [file] = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".cpuprofile"));
    if (!file) throw new Error("the server wrote no profile");
    const text = await Deno.readTextFile(`${dir}/${file.name}`);
    if (args.out) await Deno.writeTextFile(args.out, text);
    // The profile starts with the server process, i.e. about when it was spawned. When the
    // ramp-up ate the run (a busy machine), the window with every call up is too short to say
    // anything, so the whole run is profiled instead, and the output says so.
    const loadedMs = marks.stoppedAt! - marks.loadedAt!;
    const wholeRun = loadedMs < MIN_LOADED_WINDOW_MS;
    const { rows, wallMs } = selfTimes(
      JSON.parse(text) as CpuProfile,
      wholeRun ? 0 : marks.loadedAt! - marks.spawnedAt!,
      marks.stoppedAt! - marks.spawnedAt!,
    );
    const idle = rows.find((r) => r.name === "(idle)")?.ms ?? 0;
    const what = wholeRun
      ? `the whole run (every call was up for only ${(loadedMs / 1000).toFixed(1)} s)`
      : "the loaded window";
    console.log(
      `\nprofile of ${what}: ${(wallMs / 1000).toFixed(1)} s, JS thread busy ${
        ((1 - idle / wallMs) * 100).toFixed(0)
      }%`,
    );
    console.log("| self ms | % of window | function |\n|---|---|---|");
    for (const row of rows.slice(0, Number(args.top))) {
      console.log(`| ${row.ms.toFixed(0)} | ${(row.share * 100).toFixed(1)} | ${row.name} |`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
