/**
 * Runs `main.ts` in a child process, as users run it, reading its JSON log lines; optionally
 * wired to a fresh fake of every vendor.
 *
 * @module
 */
import { CartesiaFake, type CartesiaFakeOptions } from "../fakes/cartesia.ts";
import {
  type FakeDeepgram,
  type FakeDeepgramOptions,
  startFakeDeepgram,
} from "../fakes/deepgram.ts";
import { type FakeOpenAi, type FakeOpenAiOptions, startFakeOpenAi } from "../fakes/openai.ts";
import { FakeTelnyxApi } from "../fakes/telnyx_api.ts";
import { TEST_ACCOUNT, TEST_API_KEY, TEST_FROM } from "./harness.ts";
import { outputLines } from "./output_lines.ts";
import { onCpus } from "./process_stats.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CA = new URL("../fakes/tls/ca.pem", import.meta.url).pathname;

/**
 * The `--v8-flags` of `deno task start`, so a child server runs as production does; a caller's
 * own `--v8-flags` in `denoFlags` replaces them.
 */
const START_V8_FLAGS: readonly string[] = String(
  JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url))).tasks.start,
).split(/\s+/).filter((arg) => arg.startsWith("--v8-flags="));

/** A running child server. */
export interface ChildServer extends AsyncDisposable {
  url: string;
  pid: number;
  /** Parsed JSON log lines so far, from stdout and stderr (other stderr text as `{ stderr }`). */
  lines: Record<string, unknown>[];
  process: Deno.ChildProcess;
  /** Resolves when stdout ends. */
  done: Promise<void>;
}

/** Options for {@link spawnServer}. */
export interface SpawnServerOptions {
  /** Extra `deno run` flags, e.g. `--cpu-prof` (see `bench/profile_server.ts`). */
  denoFlags?: string[];
  /** Runs the server under `ulimit -n` of this many descriptors. */
  maxOpenFiles?: number;
  /**
   * Runs the server (and, with `WORKERS` above 1, every server process it starts) on these CPUs
   * only, through `taskset --cpu-list`, e.g. "0" or "0,1".
   */
  cpuList?: string;
}

/** A server process as it starts: its log lines so far, and whether it came to listen. */
export interface StartingServer {
  process: Deno.ChildProcess;
  /** Parsed JSON log lines so far, from stdout and stderr (other stderr text as `{ stderr }`). */
  lines: Record<string, unknown>[];
  /** Resolves when stdout and stderr end. */
  done: Promise<void>;
  /** The server's URL once it listens; rejects if it exits first. */
  listening: Promise<string>;
}

/** Spawns the server with `env` (JSON logs, an ephemeral port) and waits until it listens. */
export async function spawnServer(
  env: Record<string, string>,
  options: SpawnServerOptions = {},
): Promise<ChildServer> {
  const { process, lines, done, listening } = startServerProcess(env, options);
  const url = await listening;
  return {
    url,
    pid: process.pid,
    lines,
    process,
    done,
    async [Symbol.asyncDispose]() {
      try {
        process.kill("SIGTERM");
      } catch { /* already gone */ }
      await process.status;
      await done;
    },
  };
}

/**
 * Spawns the server with `env` as {@link spawnServer} does, without waiting for anything: for a
 * test of a server that is meant not to start.
 */
export function startServerProcess(
  env: Record<string, string>,
  options: SpawnServerOptions = {},
): StartingServer {
  const denoFlags = options.denoFlags ?? [];
  const denoArgs = [
    "run",
    ...(denoFlags.some((flag) => flag.startsWith("--v8-flags=")) ? [] : START_V8_FLAGS),
    ...denoFlags,
    "--allow-net",
    "--allow-env",
    "--allow-read",
    // With WORKERS above 1 the server starts its server processes with this deno.
    `--allow-run=${Deno.execPath()}`,
    "--cert",
    CA,
    MAIN,
  ];
  // `exec` keeps the pid the server's own, so /proc figures and signals reach it.
  const pinned = onCpus(options.cpuList, [Deno.execPath(), ...denoArgs]);
  const [command, args] = options.maxOpenFiles === undefined
    ? [pinned[0], pinned.slice(1)]
    : ["bash", [
      "-c",
      'ulimit -n "$0" && exec "$@"',
      String(options.maxOpenFiles),
      ...pinned,
    ]];
  const process = new Deno.Command(command, {
    args,
    env: {
      ENV: "local",
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_FORMAT: "json",
      KV_PATH: ":memory:",
      // One process unless a test asks for more; server processes take `--cert` from here.
      WORKERS: "1",
      DENO_CERT: CA,
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  const listening = Promise.withResolvers<string>();
  const read = async (stream: ReadableStream<Uint8Array>, strict: boolean) => {
    for await (const text of outputLines(stream)) {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text);
      } catch (error) {
        // stdout carries only log lines; stderr also carries Deno's own messages.
        if (strict) throw error;
        line = { stderr: text };
      }
      lines.push(line);
      if (line.msg === "listening") listening.resolve(line.url as string);
    }
  };
  const done = Promise.all([read(process.stdout, true), read(process.stderr, false)]).then(
    () =>
      listening.reject(
        new Error(
          `the server exited before listening; its last lines: ${
            lines.slice(-8).map((line) => JSON.stringify(line)).join("\n")
          }`,
        ),
      ),
    (error) => {
      listening.reject(error);
      throw error;
    },
  );
  // A caller that waits for the exit instead must not leave this rejection unhandled.
  listening.promise.catch(() => {});
  return { process, lines, done, listening: listening.promise };
}

/** Keys the vendor fakes of {@link spawnServerWithFakes} accept. */
const FAKE_OPENAI_KEY = "sk-test-openai";
const FAKE_DEEPGRAM_KEY = "dg-test";
const FAKE_CARTESIA_KEY = "sk_car_test";

/** Options for {@link spawnServerWithFakes}: how the fakes behave, and how the child runs. */
export interface ServerWithFakesOptions extends SpawnServerOptions {
  openai?: Omit<FakeOpenAiOptions, "apiKey">;
  deepgram?: Omit<FakeDeepgramOptions, "apiKey">;
  cartesia?: Omit<CartesiaFakeOptions, "apiKey">;
}

/** A child server, the vendor fakes it talks to, and a call driver aimed at it. */
export interface ServerWithFakes extends AsyncDisposable {
  server: ChildServer;
  telnyx: FakeTelnyxApi;
  openai: FakeOpenAi;
  deepgram: FakeDeepgram;
  cartesia: CartesiaFake;
  /** POSTs `/start` to the child; with `telnyx`, what `placeAndAnswer` needs. */
  start(payload: unknown): Promise<Response>;
}

/**
 * Starts a fake of every vendor and `main.ts` against them with `env` on top; disposing it stops
 * the child first, then the fakes.
 */
export async function spawnServerWithFakes(
  env: Record<string, string>,
  options: ServerWithFakesOptions = {},
): Promise<ServerWithFakes> {
  const telnyx = FakeTelnyxApi.start({ apiKey: TEST_API_KEY, accountSid: TEST_ACCOUNT });
  const openai = startFakeOpenAi({ ...options.openai, apiKey: FAKE_OPENAI_KEY });
  const deepgram = startFakeDeepgram({ ...options.deepgram, apiKey: FAKE_DEEPGRAM_KEY });
  let cartesia: CartesiaFake | undefined;
  const closeFakes = async () => {
    await Promise.all([telnyx.close(), openai.close(), deepgram.close(), cartesia?.close()]);
  };
  let server: ChildServer;
  try {
    cartesia = await CartesiaFake.start({ ...options.cartesia, apiKey: FAKE_CARTESIA_KEY });
    server = await spawnServer({
      OPENAI_API_KEY: FAKE_OPENAI_KEY,
      OPENAI_BASE_URL: openai.baseURL,
      DEEPGRAM_API_KEY: FAKE_DEEPGRAM_KEY,
      DEEPGRAM_BASE_URL: deepgram.url,
      CARTESIA_API_KEY: FAKE_CARTESIA_KEY,
      CARTESIA_BASE_URL: cartesia.baseURL,
      TELNYX_API_KEY: TEST_API_KEY,
      TELNYX_ACCOUNT_SID: TEST_ACCOUNT,
      TELNYX_APPLICATION_SID: "app",
      TELNYX_PHONE_NUMBER: TEST_FROM,
      TELNYX_BASE_URL: telnyx.baseURL,
      ...env,
    }, options);
  } catch (error) {
    await closeFakes();
    throw error;
  }
  return {
    server,
    telnyx,
    openai,
    deepgram,
    cartesia,
    start: (payload) =>
      fetch(`${server.url}/start`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(payload),
      }),
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await closeFakes();
    },
  };
}

/**
 * The pids serving `server`'s port: its server processes, latest first started per worker,
 * when it supervises several; its own pid otherwise.
 */
export function serverPids(server: ChildServer): number[] {
  const byWorker = new Map<number, number>();
  for (const line of server.lines) {
    if (line.msg === "server process started") byWorker.set(Number(line.worker), Number(line.pid));
  }
  return byWorker.size > 0 ? [...byWorker.values()] : [server.pid];
}
