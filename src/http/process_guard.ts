/**
 * Keeps one call's bug from ending every call: a promise rejection nobody handles, or an
 * exception nobody catches, is logged (with its call when the error names one) instead of
 * terminating the process, which is Deno's default.
 *
 * @module
 */
import type { Logger } from "../log.ts";

/** Where the `unhandledrejection` and `error` events are dispatched (`globalThis` in a process). */
export type GuardTarget = Pick<EventTarget, "addEventListener" | "removeEventListener">;

/**
 * Installs the handlers on `target` and returns the function that removes them.
 */
export function installProcessGuard(
  logger: Logger,
  target: GuardTarget = globalThis,
): () => void {
  // Deno 2 may measure the main thread's stack only when it formats the first stack trace, by
  // reading /proc/self/maps; with every descriptor taken that read fails and the runtime panics
  // (seen with a one-module script). A trace formatted now is one fewer thing to do under EMFILE.
  void new Error("warm-up").stack;

  const onRejection = (event: Event) => {
    event.preventDefault();
    report(
      "unhandled promise rejection; the process keeps running",
      (event as PromiseRejectionEvent).reason,
    );
  };
  const onError = (event: Event) => {
    event.preventDefault();
    report("uncaught exception; the process keeps running", (event as ErrorEvent).error);
  };
  const report = (msg: string, reason: unknown) => {
    try {
      logger.error(msg, {
        call: callIdOf(reason),
        error: reason instanceof Error ? reason : String(reason),
        stack: reason instanceof Error ? reason.stack : undefined,
      });
    } catch {
      // A failing logger must not turn a logged bug into a crash.
    }
  };
  target.addEventListener("unhandledrejection", onRejection);
  target.addEventListener("error", onError);
  return () => {
    target.removeEventListener("unhandledrejection", onRejection);
    target.removeEventListener("error", onError);
  };
}

/**
 * The call an error belongs to, when it says: a `callControlId`, `call_control_id` or `call`
 * string on the error or on one of its causes.
 */
function callIdOf(reason: unknown): string | undefined {
  let current: unknown = reason;
  for (let depth = 0; depth < 4 && current !== null && typeof current === "object"; depth++) {
    const fields = current as Record<string, unknown>;
    for (const key of ["callControlId", "call_control_id", "call"]) {
      if (typeof fields[key] === "string") return fields[key];
    }
    current = fields.cause;
  }
  return undefined;
}
