/**
 * Entry point: `deno task start` (or `deno task dev`, which also loads `.env`).
 *
 * @module
 */
import { ConfigError, loadConfig } from "./src/config.ts";
import { startServer } from "./src/server.ts";

if (import.meta.main) {
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
  const server = await startServer(config);
  const stop = () => {
    server.shutdown().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
