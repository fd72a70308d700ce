/**
 * A rejection or exception nobody handles is logged with its call and does not end the process
 * (and with it every other call).
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { installProcessGuard } from "../../src/http/process_guard.ts";
import { Logger } from "../../src/log.ts";

const GUARD = new URL("../../src/http/process_guard.ts", import.meta.url).href;
const LOG = new URL("../../src/log.ts", import.meta.url).href;

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = new Logger({
    level: "debug",
    format: "json",
    sink: (line) => lines.push(JSON.parse(line)),
  });
  return { lines, logger };
}

class CallFailure extends Error {
  constructor(readonly callControlId: string) {
    super("playback failed");
  }
}

Deno.test("an unhandled rejection is logged with its call and does not end the process", () => {
  const { lines, logger } = capture();
  const target = new EventTarget();
  installProcessGuard(logger, target);
  const reason = new CallFailure("v3:call-7");
  const promise = Promise.reject(reason);
  promise.catch(() => {}); // This test dispatches the event itself.
  const event = new PromiseRejectionEvent("unhandledrejection", {
    promise,
    reason,
    cancelable: true,
  });
  target.dispatchEvent(event);
  assert.equal(event.defaultPrevented, true);
  assert.equal(lines.length, 1);
  assert.equal(lines[0].level, "error");
  assert.equal(lines[0].call, "v3:call-7");
  assert.match(String(lines[0].msg), /unhandled promise rejection/);
  assert.deepEqual(lines[0].error, { name: "Error", message: "playback failed" });
  assert.match(String(lines[0].stack), /playback failed/);
});

Deno.test("an uncaught exception is logged and does not end the process", () => {
  const { lines, logger } = capture();
  const target = new EventTarget();
  installProcessGuard(logger, target);
  const event = new ErrorEvent("error", {
    error: new TypeError("x is undefined"),
    cancelable: true,
  });
  target.dispatchEvent(event);
  assert.equal(event.defaultPrevented, true);
  assert.match(String(lines[0].msg), /uncaught exception/);
  assert.equal(lines[0].call, undefined);
});

Deno.test("the guard's uninstaller removes its handlers", () => {
  const { lines, logger } = capture();
  const target = new EventTarget();
  installProcessGuard(logger, target)();
  const event = new ErrorEvent("error", { error: new Error("late"), cancelable: true });
  target.dispatchEvent(event);
  assert.equal(event.defaultPrevented, false);
  assert.equal(lines.length, 0);
});

Deno.test("the call is found on the error or its causes", () => {
  const { lines, logger } = capture();
  const target = new EventTarget();
  installProcessGuard(logger, target);
  const reasons = [
    { call_control_id: "v3:a" },
    new Error("outer", { cause: new CallFailure("v3:b") }),
    new Error("no call"),
    "a string",
  ];
  for (const error of reasons) {
    target.dispatchEvent(new ErrorEvent("error", { error, cancelable: true }));
  }
  assert.deepEqual(lines.map((line) => line.call), ["v3:a", "v3:b", undefined, undefined]);
});

Deno.test("a real process with the guard survives unhandled errors, even with no descriptor left", async () => {
  // With every descriptor taken, as in a connection flood: formatting the first stack trace of
  // the process then needs a descriptor, and logging the error must not abort the runtime.
  const script = `
    import { installProcessGuard } from ${JSON.stringify(GUARD)};
    import { Logger } from ${JSON.stringify(LOG)};
    installProcessGuard(new Logger({ level: "info", format: "json" }));
    const files = [];
    try { for (;;) files.push(Deno.openSync("/dev/null")); } catch { /* exhausted */ }
    const failure = Object.assign(new Error("reply failed"), { callControlId: "v3:call-9" });
    Promise.reject(failure);
    setTimeout(() => { throw new Error("timer bug"); }, 10);
    setTimeout(() => {
      for (const file of files) file.close();
      console.log(JSON.stringify({ msg: "still running" }));
    }, 100);
  `;
  // A TypeScript file, not `deno eval`: its stack traces are source-mapped, as the server's are.
  const path = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(path, script);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const { code, stdout, stderr } = await deadline(child, 20_000, { what: "the child process" })
    .finally(() => Deno.remove(path));
  const out = new TextDecoder().decode(stdout);
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, err);
  const lines = [...out.split("\n"), ...err.split("\n")]
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
  const rejection = lines.find((l) => /unhandled promise rejection/.test(l.msg));
  assert.equal(rejection?.call, "v3:call-9");
  assert.ok(lines.some((l) => /uncaught exception/.test(l.msg)), err);
  assert.ok(lines.some((l) => l.msg === "still running"), out);
});
