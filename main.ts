/**
 * Entry point: `deno task start` (or `deno task dev`, which also loads `.env`).
 *
 * @module
 */
import { ConfigError, loadConfig } from "./src/config.ts";
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
  const logger = loggerFor(config);
  // Installed before anything runs: one call's bug must not end the others.
  installProcessGuard(logger);
  const server = await startServer(config, { logger });
  const stop = () => {
    server.shutdown().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
