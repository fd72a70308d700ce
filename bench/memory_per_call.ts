/**
 * Resident memory per call of the server, for configurations run alternately (so the machine's
 * load drifts over all of them alike): each round runs the load phase of `bench/calls.ts` once
 * per configuration and reports (peak RSS − idle RSS) / calls, plus the server's CPU.
 *
 * A configuration is a set of extra `deno run` flags for the server, separated by `|`; an empty
 * one runs the server as `deno task start` does (its `--v8-flags` included), and a configuration
 * with its own `--v8-flags` replaces those. Example, three young-generation sizes:
 * `taskset -c 1 deno run -A --cert tests/fakes/tls/ca.pem bench/memory_per_call.ts --calls 100
 * --seconds 30 --pin-server 0 --rounds 2
 * --configs='--v8-flags=--max-semi-space-size=1|--v8-flags=--max-semi-space-size=4|--v8-flags=--max-semi-space-size=16'`
 *
 * Peak minus idle includes what V8 keeps of its young generation (sized by allocation rate, not
 * by calls) and any module first loaded by a call, so it reads high at low call counts.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { load } from "./calls.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    calls: { type: "string", default: "100" },
    seconds: { type: "string", default: "30" },
    rounds: { type: "string", default: "2" },
    "pin-server": { type: "string", default: "" },
    configs: { type: "string", default: "" },
    /** Internal: run one load with these server flags and print its table. */
    once: { type: "string" },
  },
});

if (args.once !== undefined) {
  const flags = args.once.trim();
  const lines = await load(Number(args.calls), Number(args.seconds), {
    serverDenoFlags: flags === "" ? [] : flags.split(/\s+/),
    pinServerCpus: args["pin-server"] || undefined,
  });
  console.log(lines.join("\n"));
  Deno.exit(0);
}

/** One load in a fresh process of this script, so no run inherits another's leftovers. */
async function runOnce(flags: string): Promise<string[]> {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--cert",
      new URL("../tests/fakes/tls/ca.pem", import.meta.url).pathname,
      new URL(import.meta.url).pathname,
      `--calls=${args.calls}`,
      `--seconds=${args.seconds}`,
      `--pin-server=${args["pin-server"]}`,
      `--once=${flags}`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error(`the run with server flags "${flags}" failed`);
  return new TextDecoder().decode(stdout).split("\n");
}

const configs = args.configs.split("|").map((flags) => flags.trim());
const rows = [
  "| round | server flags | memory per call | CPU s per call-minute | underruns (calls) |",
  "|---|---|---|---|---|",
];
for (let round = 1; round <= Number(args.rounds); round++) {
  for (const flags of configs) {
    const lines = await runOnce(flags);
    const cell = (label: string) =>
      lines.find((line) => line.startsWith(`| ${label}`))?.split("|")[2]?.trim() ?? "?";
    const row = `| ${round} | ${flags || "(as deno task start)"} | ${
      cell("resident memory per call")
    } | ${cell("server CPU seconds per call-minute")} | ${cell("playback underruns")} |`;
    console.error(row);
    rows.push(row);
  }
}
console.log(rows.join("\n"));
