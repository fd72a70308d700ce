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
 * What this cannot do: `Deno.serve` has no header-read timeout and no connection cap, and a
 * connection that never finishes its headers never reaches our handler, so such connections hold
 * their descriptors until their clients leave. (Shutting a server down would free them, but it
 * also closes its WebSockets with 1001, ending live calls.) In production, bound them in front of
 * the process: a reverse proxy with a header timeout and a per-client connection limit.
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
  /** Wait between attempts to reopen the listener. */
  retryMs?: number;
}

/** A server that reopens its listener after descriptor exhaustion. */
export interface ResilientServer {
  /** The address first listened on; reopened listeners use the same port. */
  addr: Deno.NetAddr;
  /** Times the listener has been reopened after failing. */
  readonly reopened: number;
  /** Stops listening and drains every server instance, the failed ones included. Idempotent. */
  shutdown(): Promise<void>;
  /** Resolves once {@link shutdown} has completed. */
  finished: Promise<void>;
}

const DEFAULT_RETRY_MS = 500;

/** Starts serving `handler`, reopening the listener whenever it fails. */
export async function serveResiliently(options: ResilientServeOptions): Promise<ResilientServer> {
  const { handler, logger, descriptorReserve } = options;
  const retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
  const instances = new Set<Deno.HttpServer<Deno.NetAddr>>();
  const stop = new AbortController();
  const finished = Promise.withResolvers<void>();
  let reopened = 0;
  // The port actually bound (the configured one may be 0, "any free port").
  let boundPort = options.port;

  const reserve = new DescriptorReserve(descriptorReserve);

  const listen = (port: number) => {
    const listening = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve({
      port,
      hostname: options.hostname,
      onListen: (addr) => {
        boundPort = (addr as Deno.NetAddr).port;
        listening.resolve(addr as Deno.NetAddr);
      },
    }, handler);
    instances.add(server);
    server.finished.then(
      () => instances.delete(server),
      (error) => {
        if (stop.signal.aborted) return;
        reserve.release();
        logger.error("listener failed; refusing new connections until descriptors are free", {
          error,
          port: boundPort,
        });
        void reopen(boundPort);
      },
    );
    return listening.promise;
  };

  let reopening = false;
  const reopen = async (port: number) => {
    if (reopening) return;
    reopening = true;
    try {
      while (!stop.signal.aborted) {
        await delay(retryMs, stop.signal).catch(() => {});
        if (stop.signal.aborted) return;
        // The reserve, and as many descriptors again for live calls, or wait for more to be free.
        if (!reserve.acquire(descriptorReserve)) continue;
        try {
          await listen(port);
          reopened++;
          logger.info("listening again", { port });
          return;
        } catch {
          // EMFILE or the port still held by the failed socket: try again after the wait.
          reserve.release();
        }
      }
    } finally {
      reopening = false;
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
    get reopened() {
      return reopened;
    },
    shutdown: () =>
      stopping ??= (async () => {
        stop.abort();
        await Promise.allSettled([...instances].map((server) => server.shutdown()));
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
