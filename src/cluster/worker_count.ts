/**
 * How many server processes to run for `WORKERS`, given what the platform allows.
 *
 * @module
 */

/** What the platform allows, as {@link workerPlan} needs it. */
export interface WorkerPlatform {
  /** Logical cores (`navigator.hardwareConcurrency`). */
  cores: number;
  /** True on Deno Deploy (`DENO_DEPLOYMENT_ID` set): one isolate, no subprocesses. */
  onDenoDeploy: boolean;
  /** True when this process may start another Deno process without prompting. */
  canSpawn: boolean;
  /** True where several processes can listen on one port (`reusePort`: Linux only). */
  sharesPorts: boolean;
}

/** The number of processes, and why it is fewer than asked for when it is. */
export interface WorkerPlan {
  count: number;
  /** Set when `WORKERS` asked for more than the platform allows. */
  limitedBecause?: string;
}

/** The process count for `setting` on `platform`. */
export function workerPlan(setting: "auto" | number, platform: WorkerPlatform): WorkerPlan {
  const wanted = setting === "auto" ? Math.max(1, platform.cores) : setting;
  if (wanted <= 1) return { count: 1 };
  const limit = platform.onDenoDeploy
    ? "Deno Deploy runs one process (DENO_DEPLOYMENT_ID is set)"
    : !platform.sharesPorts
    ? `several processes cannot share one port on ${Deno.build.os} (reusePort is Linux only)`
    : !platform.canSpawn
    ? "subprocesses are not permitted: run with --allow-run=deno (or the path of this deno)"
    : undefined;
  if (limit === undefined) return { count: wanted };
  // `auto` quietly means one where one is all there can be; an explicit count is told why not.
  return setting === "auto" ? { count: 1 } : { count: 1, limitedBecause: limit };
}

/** The command that starts another Deno, or undefined when none may be started. */
export function denoCommand(): string | undefined {
  for (const command of [Deno.execPath(), "deno"]) {
    if (Deno.permissions.querySync({ name: "run", command }).state === "granted") return command;
  }
  return undefined;
}

/** This platform, as {@link workerPlan} sees it. */
export function currentPlatform(): WorkerPlatform {
  return {
    cores: navigator.hardwareConcurrency,
    onDenoDeploy: Deno.env.get("DENO_DEPLOYMENT_ID") !== undefined,
    canSpawn: denoCommand() !== undefined,
    sharesPorts: Deno.build.os === "linux",
  };
}
