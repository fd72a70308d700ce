/**
 * Resident memory per call of the server, for configurations run alternately (so the machine's
 * load drifts over all of them alike): each round runs the load phase of `bench/calls.ts` once
 * per configuration and reports (peak RSS − idle RSS) / calls, plus the server's CPU.
 *
 * A configuration is a set of extra `deno run` flags for the server, separated by `|`; an empty
 * one is the default. Example, the default against a smaller V8 young generation:
 * `taskset -c 1 deno run -A --cert tests/fakes/tls/ca.pem bench/memory_per_call.ts --calls 100
 * --seconds 30 --pin-server 0 --rounds 2 --configs '|--v8-flags=--max-semi-space-size=2'`
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
  },
});

const configs = args.configs.split("|").map((flags) => flags.trim());
const rows = [
  "| round | server flags | memory per call | CPU s per call-minute | underruns (calls) |",
  "|---|---|---|---|---|",
];
for (let round = 1; round <= Number(args.rounds); round++) {
  for (const flags of configs) {
    const lines = await load(Number(args.calls), Number(args.seconds), {
      serverDenoFlags: flags === "" ? [] : flags.split(/\s+/),
      pinServerCpus: args["pin-server"] || undefined,
    });
    const cell = (label: string) =>
      lines.find((line) => line.startsWith(`| ${label}`))?.split("|")[2]?.trim() ?? "?";
    const row = `| ${round} | ${flags || "(default)"} | ${cell("resident memory per call")} | ${
      cell("server CPU seconds per call-minute")
    } | ${cell("playback underruns")} |`;
    console.error(row);
    rows.push(row);
  }
}
console.log(rows.join("\n"));
