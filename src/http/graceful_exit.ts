/**
 * The entry point's answer to SIGINT and SIGTERM: drain, then exit.
 *
 * @module
 */

/**
 * Returns the signal handler that runs `stop` once and then exits, 0 or, if the drain failed,
 * 1 after `onFailure`, however many signals come: Ctrl-C under `deno task` reaches the server
 * twice (from the terminal, and forwarded by the task runner), and under `--watch` a second
 * `Deno.exit` throws instead of exiting. A failed drain must still end the process, since the
 * signals that follow are ignored.
 */
export function exitAfterStopping(
  stop: () => Promise<void>,
  onFailure: (error: unknown) => void,
  exit: (code: number) => void = Deno.exit,
): () => void {
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= stop().then(() => exit(0), (error) => {
      onFailure(error);
      exit(1);
    });
  };
}
