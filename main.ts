/**
 * Entry point: `deno task start` (or `deno task dev`, which also loads `.env`).
 *
 * With `WORKERS` above one (`auto`: one per core) this process is the supervisor of that many
 * server processes on one port (see `src/cluster/supervisor.ts`); they run this file too, marked
 * as workers in their environment.
 *
 * @module
 */
import { ClusterMember, parentGone } from "./src/cluster/control.ts";
import { serverProcessArgs, startSupervisor } from "./src/cluster/supervisor.ts";
import { currentPlatform, denoCommand, workerPlan } from "./src/cluster/worker_count.ts";
import { ConfigError, loadConfig } from "./src/config.ts";
import { exitAfterStopping } from "./src/http/graceful_exit.ts";
import { installProcessGuard } from "./src/http/process_guard.ts";
import { loggerFor, startServer } from "./src/server.ts";

if (import.meta.main) {
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
  const cluster = ClusterMember.fromEnv(Deno.env);
  const plan = cluster ? { count: 1 } : workerPlan(config.WORKERS, currentPlatform());
  const logger = cluster ? loggerFor(config).child({ worker: cluster.worker }) : loggerFor(config);
  // Installed before anything runs: one call's bug must not end the others.
  installProcessGuard(logger);
  // The logger keeps an error's name and message; a failure of the process wants its stack too.
  const logFailure = (msg: string, error: unknown) =>
    logger.error(msg, { error, stack: error instanceof Error ? error.stack : undefined });
  const startFailed = (error: unknown, msg: string): never => {
    if (error instanceof Deno.errors.AddrInUse) {
      logger.error(
        `port ${config.PORT} is already in use: stop what listens there (another copy of this ` +
          "server?) or set PORT to a free port",
        { port: config.PORT },
      );
    } else logFailure(msg, error);
    Deno.exit(1);
  };
  const drainFailed = (error: unknown) =>
    logFailure("shutdown failed; exiting without finishing it", error);
  if (plan.limitedBecause) {
    logger.warn(`WORKERS=${config.WORKERS}: running one process: ${plan.limitedBecause}`);
  }
  if (plan.count > 1) {
    if (config.KV_PATH === ":memory:") {
      logger.warn(
        "KV_PATH=:memory: with several server processes: each keeps its own call records, so " +
          "GET /calls answers only for the calls of the process it reaches; use a file or a " +
          "denokv URL",
      );
    }
    const supervisor = await startSupervisor({
      count: plan.count,
      config,
      logger,
      command: denoCommand()!,
      args: serverProcessArgs(Deno.mainModule, config.KV_PATH),
    }).catch((error) => startFailed(error, "the server processes did not start"));
    const stop = exitAfterStopping(() => supervisor.stop(), drainFailed);
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  } else {
    const server = await startServer(config, { logger, cluster })
      .catch((error) => startFailed(error, "the server did not start"));
    const stop = exitAfterStopping(() => server.shutdown(), drainFailed);
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    // A server process whose supervisor is gone (even killed outright) drains and exits rather
    // than hold the port unsupervised.
    if (cluster) {
      parentGone().then(() => {
        logger.warn("the supervisor is gone; shutting down");
        stop();
      });
    }
  }
}
