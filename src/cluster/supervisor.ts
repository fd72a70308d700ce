/**
 * Runs `WORKERS` server processes on one port and keeps them running.
 *
 * Each server process is this same program started again with the supervisor's permissions and
 * marked as a worker in its environment; they all listen on the port with `reusePort`, so the
 * kernel spreads new connections over them. Processes rather than Web Workers, so that one
 * process crashing (a V8 out-of-memory, a native panic) ends only its own calls: the supervisor
 * starts a new one in its place, waiting longer after each quick failure so a crash loop does not
 * spin. SIGTERM to the supervisor is passed to every process, each drains its calls as a single
 * server does, and the supervisor exits once they are all gone (bounded).
 *
 * Everything a call needs crosses processes: its signed URLs carry the call, records and webhooks
 * live in the one KV store. What is per process is kept here and reached over the control channel
 * (see `control.ts`): `/health` figures, the set of Stream URLs already used, and answering-machine
 * results that reached a process not holding their call's stream.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { delay, settledWithin } from "../async/deadline.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { kvLocation } from "../records/open_kv.ts";
import { USED_STREAM_URLS_CAPACITY, UsedSignatures } from "../security/url_signature.ts";
import {
  ClaimSchema,
  type ClusterState,
  CONTROL_TOKEN_ENV,
  CONTROL_URL_ENV,
  ReportRequestSchema,
  SharedAnsweredBySchema,
  WORKER_ENV,
  type WorkerReport,
} from "./control.ts";

/** A process that lived this long had started fine: its next crash restarts it at once. */
const STABLE_AFTER_MS = 30_000;
/** Wait before restarting a process that crashed soon after it started, doubling each time. */
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/**
 * Detection results kept for the processes' next reports: a result is for a call being set up,
 * which is long over after this.
 */
const SHARED_ANSWERED_BY_MS = 120_000;
const SHARED_ANSWERED_BY_CAPACITY = 1_000;

/** Beyond the drain grace, the time a process has to finish its shutdown before it is killed. */
const SHUTDOWN_MARGIN_MS = 30_000;
/**
 * Bound on letting go of the port held during start-up: the hold's server drains its requests
 * first, and a client that never finishes its request must not stall start-up.
 */
const RELEASE_PORT_WITHIN_MS = 2_000;

/** Options for {@link startSupervisor}. */
export interface SupervisorOptions {
  count: number;
  config: Pick<Config, "PORT" | "HOST" | "SHUTDOWN_GRACE_SECONDS">;
  logger: Logger;
  /** The Deno executable to start the server processes with. */
  command: string;
  /** Its arguments (see {@link serverProcessArgs}). */
  args: string[];
}

/** A running supervisor. */
export interface Supervisor {
  /** The URL the server processes listen on. */
  url: string;
  /** Drains every server process and stops; idempotent. */
  stop(): Promise<void>;
}

interface Slot {
  index: number;
  child?: Deno.ChildProcess;
  startedAt: number;
  /** Quick crashes in a row. */
  failures: number;
  report?: { data: WorkerReport; at: number };
  everReported: boolean;
}

/** Starts `count` server processes and resolves once every one listens. */
export async function startSupervisor(options: SupervisorOptions): Promise<Supervisor> {
  const { count, config, logger } = options;
  if (config.PORT !== 0) checkIsFree(config.HOST, config.PORT);
  const hold = holdPort(config.HOST, config.PORT);
  const port = hold.addr.port;
  const host = config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST;
  const url = `http://${host === "0.0.0.0" ? "localhost" : host}:${port}`;
  const token = crypto.randomUUID() + crypto.randomUUID();
  const stopping = new AbortController();
  const ready = Promise.withResolvers<void>();
  // Unhandled until awaited below; a failure after start-up never rejects it.
  ready.promise.catch(() => {});
  let restarts = 0;
  // One set for every process: a Stream URL opens one socket, whichever process it reaches.
  const usedStreamUrls = new UsedSignatures(USED_STREAM_URLS_CAPACITY);
  // Detection results for calls whose stream the receiving process did not hold, numbered.
  const sharedAnsweredBy: (ClusterState["answered_by"][number] & { at: number })[] = [];
  let answeredBySeq = 0;
  const slots: Slot[] = Array.from(
    { length: count },
    (_, index) => ({ index, startedAt: 0, failures: 0, everReported: false }),
  );

  const state = (answeredByAfter: number): ClusterState => {
    const now = performance.now();
    while (
      sharedAnsweredBy.length > SHARED_ANSWERED_BY_CAPACITY ||
      (sharedAnsweredBy.length > 0 && now - sharedAnsweredBy[0].at > SHARED_ANSWERED_BY_MS)
    ) sharedAnsweredBy.shift();
    return {
      answered_by: sharedAnsweredBy.filter((s) => s.seq > answeredByAfter)
        .map(({ at: _, ...shared }) => shared),
      expected: count,
      stopping: stopping.signal.aborted,
      restarts,
      workers: slots.flatMap((slot) =>
        slot.report
          ? [{ ...slot.report.data, reported_ms_ago: Math.round(now - slot.report.at) }]
          : []
      ),
    };
  };

  const control = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, async (request) => {
    if (request.headers.get("authorization") !== `Bearer ${token}`) {
      return new Response("unauthorized", { status: 401 });
    }
    const path = new URL(request.url).pathname;
    if (request.method === "POST" && path === "/claim") {
      const claim = ClaimSchema.safeParse(await request.json().catch(() => undefined));
      if (!claim.success) return new Response("bad claim", { status: 400 });
      return Response.json({ result: usedStreamUrls.claim(claim.data) });
    }
    if (request.method === "POST" && path === "/answered-by") {
      const shared = SharedAnsweredBySchema.safeParse(await request.json().catch(() => undefined));
      if (!shared.success) return new Response("bad result", { status: 400 });
      sharedAnsweredBy.push({ ...shared.data, seq: ++answeredBySeq, at: performance.now() });
      return new Response(null, { status: 204 });
    }
    if (request.method !== "POST" || path !== "/report") {
      return new Response("not found", { status: 404 });
    }
    const parsed = ReportRequestSchema.safeParse(await request.json().catch(() => undefined));
    if (!parsed.success) return new Response("bad report", { status: 400 });
    const { answered_by_after: answeredByAfter, ...report } = parsed.data;
    const slot = slots[report.worker];
    // A report from a process that has since been replaced says nothing about the new one.
    if (slot?.child?.pid === report.pid) {
      slot.report = { data: report, at: performance.now() };
      if (!slot.everReported) {
        slot.everReported = true;
        if (slots.every((s) => s.everReported)) ready.resolve();
      }
    }
    return Response.json(state(answeredByAfter));
  });
  const controlUrl = `http://127.0.0.1:${control.addr.port}`;

  const spawn = (slot: Slot) => {
    const child = new Deno.Command(options.command, {
      args: options.args,
      env: {
        [WORKER_ENV]: String(slot.index),
        [CONTROL_URL_ENV]: controlUrl,
        [CONTROL_TOKEN_ENV]: token,
        PORT: String(port),
      },
      // stdin stays open for the supervisor's life: its end tells the child we are gone.
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    slot.child = child;
    slot.startedAt = performance.now();
    slot.report = undefined;
    logger.info("server process started", { worker: slot.index, pid: child.pid });
    child.status.then((status) => exited(slot, child, status));
  };

  const exited = async (slot: Slot, child: Deno.ChildProcess, status: Deno.CommandStatus) => {
    if (slot.child !== child) return;
    slot.report = undefined;
    const fields = { worker: slot.index, pid: child.pid, code: status.code, signal: status.signal };
    if (stopping.signal.aborted) {
      logger.info("server process stopped", fields);
      return;
    }
    if (!slot.everReported) {
      // It never listened: a bad setting or a port in use, which another try will not fix.
      ready.reject(
        new Error(`server process ${slot.index} exited before it listened (code ${status.code})`),
      );
      return;
    }
    const lived = performance.now() - slot.startedAt;
    slot.failures = lived >= STABLE_AFTER_MS ? 0 : slot.failures + 1;
    const wait = slot.failures === 0
      ? 0
      : Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (slot.failures - 1));
    logger.error("server process exited; its calls have ended, starting a new one", {
      ...fields,
      restart_in_ms: wait,
    });
    try {
      await delay(wait, stopping.signal);
    } catch {
      return;
    }
    restarts++;
    spawn(slot);
  };

  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      stopping.abort();
      logger.info("shutting down every server process", { workers: count });
      const live = slots.flatMap((slot) => (slot.child ? [slot.child] : []));
      for (const child of live) signal(child, "SIGTERM");
      const bound = config.SHUTDOWN_GRACE_SECONDS * 1000 + SHUTDOWN_MARGIN_MS;
      const all = Promise.all(live.map((child) => child.status));
      if (!(await settledWithin(all, bound))) {
        logger.warn("server processes still running after the shutdown bound; killing them");
        for (const child of live) signal(child, "SIGKILL");
        await all;
      }
      for (const child of live) await child.stdin.close().catch(() => {});
      await control.shutdown();
      logger.info("shut down", { workers: count, restarts });
    })();

  try {
    for (const slot of slots) spawn(slot);
    await ready.promise;
  } catch (error) {
    await stop();
    throw error;
  } finally {
    if (!(await settledWithin(hold.shutdown(), RELEASE_PORT_WITHIN_MS))) {
      logger.warn("a request held open during start-up was left unanswered", {
        port,
        waited_ms: RELEASE_PORT_WITHIN_MS,
      });
    }
  }
  logger.info("listening", { url, workers: count, pids: slots.map((s) => s.child?.pid) });
  return { url, stop };
}

/** Sends `name` to `child` unless it has already exited. */
function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch { /* already exited */ }
}

/**
 * Throws `Deno.errors.AddrInUse` unless a plain bind shows nothing listens on `port`: the server
 * processes bind with `reusePort`, which another copy of this server would share with them,
 * splitting its traffic.
 */
function checkIsFree(hostname: string, port: number): void {
  Deno.listen({ hostname, port }).close();
}

/**
 * Binds `port` (0: any free one, which every server process must then share) with `reusePort`,
 * so the server processes can join it, until they listen. A port number merely found free can be
 * taken meanwhile, by any outgoing connection as its local port, and the processes would then
 * fail to bind. Whatever connects before they listen is told to try again.
 */
function holdPort(hostname: string, port: number): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname, port, reusePort: true, onListen: () => {} },
    () =>
      new Response("starting: try again in a moment\n", {
        status: 503,
        headers: { "retry-after": "1" },
      }),
  );
}

/**
 * V8 options of a server process, the same as `deno task start` gives a single one: a young
 * generation capped small, because V8 grows it with the allocation rate of many calls' audio and
 * that headroom is most of what a call seems to cost in memory.
 */
export const SERVER_V8_FLAGS = "--max-semi-space-size=4";

/**
 * The `deno` arguments that start `mainModule` as a server process with the permissions this
 * process holds: net, env, read and sys when granted in full, and write where the call records
 * live. Other flags cannot be read back from a running Deno; `--cert` passes as `DENO_CERT`.
 */
export function serverProcessArgs(
  mainModule: string,
  kvPath: string | undefined,
  scriptArgs: string[] = Deno.args,
): string[] {
  // `reusePort` on `Deno.serve` is still behind --unstable-net.
  const flags = ["run", "--no-prompt", "--unstable-net", `--v8-flags=${SERVER_V8_FLAGS}`];
  for (const name of ["net", "env", "read", "sys"] as const) {
    if (Deno.permissions.querySync({ name }).state === "granted") flags.push(`--allow-${name}`);
  }
  if (Deno.permissions.querySync({ name: "write" }).state === "granted") {
    flags.push("--allow-write");
  } else {
    const location = kvLocation(kvPath, { deploymentId: Deno.env.get("DENO_DEPLOYMENT_ID") });
    if (location && location !== ":memory:" && !/^https?:\/\//i.test(location)) {
      const slash = location.lastIndexOf("/");
      const folder = slash > 0 ? location.slice(0, slash) : ".";
      if (Deno.permissions.querySync({ name: "write", path: folder }).state === "granted") {
        flags.push(`--allow-write=${folder}`);
      }
    }
  }
  const configFile = new URL("../../deno.json", import.meta.url);
  if (configFile.protocol === "file:") flags.push("--config", fileURLToPath(configFile));
  const main = new URL(mainModule);
  return [...flags, main.protocol === "file:" ? fileURLToPath(main) : mainModule, ...scriptArgs];
}
