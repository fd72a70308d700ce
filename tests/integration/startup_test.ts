/** `main.ts` as users start it: what it says when it cannot listen. */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
/** Hang guard for the child's start and exit; not a timing assertion. */
const EXIT_WITHIN_MS = 30_000;

Deno.test("a port already in use: the server names it and exits 1", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = held.addr.port;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", "--allow-read", MAIN],
      env: {
        PORT: String(port),
        HOST: "127.0.0.1",
        LOG_FORMAT: "json",
        KV_PATH: ":memory:",
        WORKERS: "1",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = await deadline(child.output(), EXIT_WITHIN_MS, { what: "the child's exit" })
      .catch((error) => {
        child.kill("SIGKILL");
        throw error;
      });
    assert.equal(output.code, 1);
    const lines = new TextDecoder().decode(output.stderr).split("\n").filter((l) =>
      l.startsWith("{")
    )
      .map((l) => JSON.parse(l));
    const error = lines.find((l) => l.level === "error");
    assert.match(String(error?.msg), new RegExp(`port ${port} is already in use`));
    assert.equal(error?.port, port);
  } finally {
    held.close();
  }
});
