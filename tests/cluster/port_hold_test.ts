/**
 * The supervisor keeps its port bound from the moment it picks it until its server processes
 * listen there: a port merely found free could be taken meanwhile (by any outgoing connection as
 * its local port), and the processes would fail to start.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { deadline } from "../../src/async/deadline.ts";
import { startSupervisor, type Supervisor } from "../../src/cluster/supervisor.ts";
import { Logger } from "../../src/log.ts";
import { waitFor } from "../helpers/wait_for.ts";

const PROBE_WORKER = fileURLToPath(new URL("./port_probe_worker.ts", import.meta.url));
const WORKERS = 2;
/** Hang guard for two Deno processes to start and listen; not a timing assertion. */
const START_WITHIN_MS = 30_000;

/**
 * A supervisor of {@link WORKERS} probe workers on `port` (0: one it picks), and what they found;
 * the workers wait `listenAfterMs` before they listen.
 */
async function probedSupervisor(
  options: { port?: number; listenAfterMs?: number; logs?: string[] } = {},
): Promise<
  AsyncDisposable & { supervisor: Supervisor; portWas: (worker: number) => Promise<string> }
> {
  const dir = await Deno.makeTempDir({ prefix: "port-hold-" });
  let supervisor: Supervisor;
  try {
    supervisor = await deadline(
      startSupervisor({
        count: WORKERS,
        config: { PORT: options.port ?? 0, HOST: "127.0.0.1", SHUTDOWN_GRACE_SECONDS: 1 },
        logger: new Logger({
          level: "warn",
          format: "json",
          sink: (line) => options.logs?.push(line),
        }),
        command: Deno.execPath(),
        args: [
          "run",
          "--allow-all",
          "--unstable-net",
          PROBE_WORKER,
          dir,
          String(options.listenAfterMs ?? 0),
        ],
      }),
      START_WITHIN_MS,
      { what: "the probe workers to listen" },
    );
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  return {
    supervisor,
    portWas: (worker) => Deno.readTextFile(`${dir}/worker-${worker}`),
    async [Symbol.asyncDispose]() {
      await supervisor.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("no one else can bind the supervisor's port before its server processes listen", async () => {
  await using probed = await probedSupervisor();
  for (let worker = 0; worker < WORKERS; worker++) {
    assert.equal(await probed.portWas(worker), "held", `as server process ${worker} started`);
  }
});

Deno.test("once its server processes listen, the supervisor lets go of the port", async () => {
  await using probed = await probedSupervisor();
  // New connections, so that the kernel spreads them over every listener on the port.
  for (let i = 0; i < 16; i++) {
    using client = Deno.createHttpClient({});
    const res = await fetch(probed.supervisor.url, { client });
    assert.equal(await res.text(), "worker");
  }
});

Deno.test("a request left unfinished during start-up does not hold the start up", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const logs: string[] = [];
  const starting = probedSupervisor({ port, listenAfterMs: 500, logs });
  // While the workers wait, only the supervisor's socket listens: a request that never ends.
  let stalled: Deno.TcpConn | undefined;
  await waitFor(async () => {
    try {
      stalled = await Deno.connect({ hostname: "127.0.0.1", port });
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionRefused) return false;
      throw error;
    }
  }, "the supervisor's socket to accept");
  await stalled!.write(
    new TextEncoder().encode("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nab"),
  );
  try {
    await using _probed = await starting;
    const warning = logs.map((line) => JSON.parse(line)).find((line) =>
      line.msg === "a request held open during start-up was left unanswered"
    );
    assert.equal(warning?.port, port);
  } finally {
    stalled!.close();
  }
});
