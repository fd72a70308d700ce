/** Starting `main.ts` where it cannot listen, or cannot write its records: what it says. */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { spawnServer, startServerProcess } from "../helpers/child_server.ts";

/** Hang guard for the child's start and exit; not a timing assertion. */
const EXIT_WITHIN_MS = 30_000;

/** Runs `main.ts` on `port` until it exits; its exit code and its JSON log lines. */
async function runMain(port: number, env: Record<string, string>) {
  const child = startServerProcess({ PORT: String(port), ...env });
  const status = await deadline(child.process.status, EXIT_WITHIN_MS, { what: "the child's exit" })
    .catch((error) => {
      child.process.kill("SIGKILL");
      throw error;
    });
  await child.done;
  return { code: status.code, lines: child.lines };
}

/** Runs `test` with a port held by a server, as another program would hold it. */
async function withPortTaken(test: (port: number) => Promise<void>) {
  const held = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("another program"),
  );
  try {
    await test(held.addr.port);
  } finally {
    await held.shutdown();
  }
}

Deno.test("a port already in use: the server names it, once, and exits 1", async () => {
  await withPortTaken(async (port) => {
    const { code, lines } = await runMain(port, { WORKERS: "1" });
    assert.equal(code, 1);
    const errors = lines.filter((l) => l.level === "error");
    assert.deepEqual(errors.map((l) => [l.msg, l.port]), [
      [
        `port ${port} is already in use: stop what listens there (another copy of this server?) ` +
        "or set PORT to a free port",
        port,
      ],
    ]);
  });
});

Deno.test("a second copy with several processes does not share the first one's port", async () => {
  // The first copy's processes bind with reusePort, which would let the second's bind beside them
  // and split the traffic between two deployments.
  await using first = await spawnServer({ WORKERS: "2" });
  const port = Number(new URL(first.url).port);
  const { code, lines } = await runMain(port, { WORKERS: "2" });
  assert.equal(code, 1);
  const errors = lines.filter((l) => l.level === "error");
  assert.equal(errors.length, 1);
  assert.match(String(errors[0].msg), new RegExp(`port ${port} is already in use`));
  assert.ok(!lines.some((l) => l.msg === "server process started"), "no process was started");
});

Deno.test("a KV_PATH the process may not write: records are off, and the log says where they may go", async () => {
  // The child gets no --allow-write at all, as a KV_PATH outside ./data under `deno task start`.
  await using server = await spawnServer({ KV_PATH: "/tmp/not-allowed/calls.sqlite3" });
  const error = server.lines.find((l) => l.level === "error");
  assert.match(String(error?.msg), /call records are off/);
  assert.match(String(error?.msg), /KV_PATH=\/tmp\/not-allowed\/calls\.sqlite3 is outside/);
  assert.match(String(error?.msg), /under \.\/data/);
});
