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
  /** Descriptors that must be free before the listener is reopened (headroom for live calls). */
  descriptorReserve: number;
  /** Wait between attempts to reopen the listener. */
  retryMs?: number;
  /** Counts the process's open descriptors and their limit; undefined where unknown. */
  descriptors?: () => Promise<DescriptorUsage | undefined>;
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

/** Open descriptors of this process and its soft limit. */
export interface DescriptorUsage {
  open: number;
  limit: number;
}

const DEFAULT_RETRY_MS = 500;

/** Starts serving `handler`, reopening the listener whenever it fails. */
export async function serveResiliently(options: ResilientServeOptions): Promise<ResilientServer> {
  const { handler, logger, descriptorReserve } = options;
  const retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
  const countDescriptors = options.descriptors ?? procDescriptors;
  const instances = new Set<Deno.HttpServer<Deno.NetAddr>>();
  const stop = new AbortController();
  const finished = Promise.withResolvers<void>();
  let reopened = 0;
  // The port actually bound (the configured one may be 0, "any free port").
  let boundPort = options.port;

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
        let usage;
        try {
          usage = await countDescriptors();
        } catch {
          continue; // No descriptor left even to count them with.
        }
        // Unknown usage (no /proc on this system): just try to listen.
        if (usage && usage.limit - usage.open < descriptorReserve) continue;
        try {
          await listen(port);
          reopened++;
          logger.info("listening again", { port, open_descriptors: usage?.open });
          return;
        } catch {
          // EMFILE or the port still held by the failed socket: try again after the wait.
        }
      }
    } finally {
      reopening = false;
    }
  };

  const addr = await listen(options.port);
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
        finished.resolve();
      })(),
    finished: finished.promise,
  };
}

/**
 * Reads this process's descriptor count and soft limit from /proc (Linux); undefined where there
 * is no /proc. Throws when the files cannot be opened, e.g. with no descriptor left.
 */
export async function procDescriptors(): Promise<DescriptorUsage | undefined> {
  let limits;
  try {
    limits = await Deno.readTextFile("/proc/self/limits");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const limit = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1]);
  if (!Number.isFinite(limit)) return undefined;
  let open = 0;
  for await (const _ of Deno.readDir("/proc/self/fd")) open++;
  return { open, limit };
}
