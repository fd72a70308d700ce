/**
 * `Deno.serve`, kept listening through descriptor exhaustion.
 *
 * When `accept()` fails (EMFILE: every descriptor taken, e.g. by connections that never finish
 * their headers), Deno ends that server's accept loop, closes its listening socket and rejects
 * its `finished` promise; the connections it already accepted (live media sockets among them)
 * carry on. Left alone, the rejection ends the process and every call with it. Here the failed
 * server is kept (its connections keep working, and shutdown still drains them), new connections
 * are refused by the kernel while the port is closed, and a fresh listener is opened on the same
 * port once enough descriptors are free again.
 *
 * Live calls still need descriptors while the port is closed (a new connection to the LLM, a
 * reconnecting transcriber), so a reserve of descriptors is held while listening and given back
 * the moment the listener fails.
 *
 * `Deno.serve` has no header-read timeout and no connection cap, and a connection that never
 * finishes its headers never reaches our handler: only shutting its server down closes it, and
 * that also closes the server's WebSockets with 1001. So a failed server is shut down only once
 * no call is live (`canRetire`) and no media socket joined it recently; until then the flood's
 * connections hold their descriptors and new work is refused. In production, bound them in front
 * of the process: a reverse proxy with a header timeout and a per-client connection limit.
 *
 * @module
 */
import { delay } from "../async/deadline.ts";
import type { Logger } from "../log.ts";
import type { ServeHandler } from "./connection_limits.ts";

/** Options for {@link serveResiliently}. */
export interface ResilientServeOptions {
  hostname: string;
  port: number;
  handler: ServeHandler;
  logger: Logger;
  /**
   * Descriptors held back while listening and freed for live calls when the listener fails;
   * twice as many must be free before it is reopened.
   */
  descriptorReserve: number;
  /**
   * True when a failed server may be shut down, closing its remaining connections (e.g. no call
   * is live). Without it failed servers are kept until {@link ResilientServer.shutdown}.
   */
  canRetire?: () => boolean;
  /** Lets other processes listen on the same port, the kernel spreading connections (Linux). */
  reusePort?: boolean;
}

/** A server that reopens its listener after descriptor exhaustion. */
export interface ResilientServer {
  /** The address first listened on; reopened listeners use the same port. */
  addr: Deno.NetAddr;
  /** Stops listening and drains every server instance, the failed ones included. Idempotent. */
  shutdown(): Promise<void>;
  /** Resolves once {@link shutdown} has completed. */
  finished: Promise<void>;
}

/** Wait between attempts to reopen the listener or retire a failed one. */
const RETRY_MS = 500;
/**
 * How long after its last WebSocket upgrade a failed server is kept even with no call live: the
 * media socket's call may not have started yet.
 */
const UPGRADE_GRACE_MS = 30_000;

interface Instance {
  server: Deno.HttpServer<Deno.NetAddr>;
  failed: boolean;
  lastUpgradeAt: number;
}

/** Starts serving `handler`, reopening the listener whenever it fails. */
export async function serveResiliently(options: ResilientServeOptions): Promise<ResilientServer> {
  const { handler, logger, descriptorReserve } = options;
  const instances = new Set<Instance>();
  const retiring = new Set<Promise<void>>();
  const stop = new AbortController();
  const finished = Promise.withResolvers<void>();
  const reserve = new DescriptorReserve(descriptorReserve);
  let listening = false;
  // The port actually bound (the configured one may be 0, "any free port").
  let boundPort = options.port;

  const listen = (port: number) => {
    const bound = Promise.withResolvers<Deno.NetAddr>();
    const instance: Instance = { server: undefined!, failed: false, lastUpgradeAt: -Infinity };
    instance.server = Deno.serve({
      port,
      hostname: options.hostname,
      reusePort: options.reusePort,
      onListen: (addr) => {
        boundPort = (addr as Deno.NetAddr).port;
        bound.resolve(addr as Deno.NetAddr);
      },
    }, (request, info) => {
      if (request.headers.has("upgrade")) instance.lastUpgradeAt = performance.now();
      return handler(request, info);
    });
    instances.add(instance);
    listening = true;
    instance.server.finished.then(
      () => instances.delete(instance),
      (error) => {
        if (stop.signal.aborted) return;
        instance.failed = true;
        listening = false;
        reserve.release();
        logger.error("listener failed; refusing new connections until descriptors are free", {
          error,
          port: boundPort,
        });
        void recover();
      },
    );
    return bound.promise;
  };

  /** Shuts down failed servers that may go, freeing the descriptors their connections hold. */
  const retireIdle = () => {
    for (const instance of instances) {
      if (!instance.failed || performance.now() - instance.lastUpgradeAt < UPGRADE_GRACE_MS) {
        continue;
      }
      if (!options.canRetire?.()) return;
      instances.delete(instance);
      logger.warn("closing a failed listener's remaining connections: no call is live on it");
      const done = instance.server.shutdown().catch(() => {}).finally(() => retiring.delete(done));
      retiring.add(done);
    }
  };

  let recovering = false;
  const recover = async () => {
    if (recovering) return;
    recovering = true;
    try {
      while (!stop.signal.aborted && (!listening || [...instances].some((i) => i.failed))) {
        await delay(RETRY_MS, stop.signal).catch(() => {});
        if (stop.signal.aborted) return;
        retireIdle();
        // The reserve, and as many descriptors again for live calls, or wait for more to be free.
        if (listening || !reserve.acquire(descriptorReserve)) continue;
        try {
          await listen(boundPort);
          logger.info("listening again", { port: boundPort });
        } catch {
          // EMFILE or the port still held by the failed socket: try again after the wait.
          listening = false;
          reserve.release();
        }
      }
    } finally {
      recovering = false;
    }
  };

  reserve.acquire(0);
  let addr;
  try {
    addr = await listen(options.port);
  } catch (error) {
    reserve.release();
    throw error;
  }
  let stopping: Promise<void> | undefined;
  return {
    addr,
    shutdown: () =>
      stopping ??= (async () => {
        stop.abort();
        await Promise.allSettled([
          ...[...instances].map((instance) => instance.server.shutdown()),
          ...retiring,
        ]);
        instances.clear();
        reserve.release();
        finished.resolve();
      })(),
    finished: finished.promise,
  };
}

/** Descriptors held open on /dev/null so they can be handed back when none are left. */
class DescriptorReserve {
  readonly #files: Deno.FsFile[] = [];
  #supported = true;
  constructor(readonly size: number) {}

  /**
   * Opens the reserve's descriptors, checking that `headroom` more could be opened as well.
   * False (holding none) when they could not; true where descriptors cannot be reserved at all
   * (no /dev/null), as there is nothing to wait for.
   */
  acquire(headroom: number): boolean {
    if (!this.#supported) return true;
    const probe: Deno.FsFile[] = [];
    try {
      while (this.#files.length < this.size) this.#files.push(Deno.openSync("/dev/null"));
      while (probe.length < headroom) probe.push(Deno.openSync("/dev/null"));
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) {
        this.#supported = false;
        this.release();
        return true;
      }
      this.release();
      return false;
    } finally {
      for (const file of probe) file.close();
    }
  }

  release(): void {
    for (const file of this.#files.splice(0)) file.close();
  }
}
