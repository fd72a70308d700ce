/**
 * The entry point's answer to SIGINT and SIGTERM: drain, then exit 0.
 *
 * @module
 */

/**
 * Returns the signal handler that runs `stop` once and then exits 0, however many signals come:
 * Ctrl-C under `deno task` reaches the server twice (from the terminal, and forwarded by the task
 * runner), and under `--watch` a second `Deno.exit` throws instead of exiting.
 */
export function exitAfterStopping(
  stop: () => Promise<void>,
  exit: (code: number) => void = Deno.exit,
): () => void {
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= stop().then(() => exit(0));
  };
}
