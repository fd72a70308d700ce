/**
 * The supervisor keeps its port bound from the moment it picks it until its server processes
 * listen there: a port merely found free could be taken meanwhile (by any outgoing connection as
 * its local port), and the processes would fail to start.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startSupervisor, type Supervisor } from "../../src/cluster/supervisor.ts";
import { Logger } from "../../src/log.ts";

const PROBE_WORKER = fileURLToPath(new URL("./port_probe_worker.ts", import.meta.url));
const WORKERS = 2;

/** A supervisor of {@link WORKERS} probe workers on a port it picks, and what they found. */
async function probedSupervisor(): Promise<
  AsyncDisposable & { supervisor: Supervisor; portWas: (worker: number) => Promise<string> }
> {
  const dir = await Deno.makeTempDir({ prefix: "port-hold-" });
  // Server processes inherit this process's environment.
  Deno.env.set("PORT_PROBE_DIR", dir);
  const supervisor = await startSupervisor({
    count: WORKERS,
    config: { PORT: 0, HOST: "127.0.0.1", SHUTDOWN_GRACE_SECONDS: 1 },
    logger: new Logger({ level: "error", format: "json", sink: () => {} }),
    command: Deno.execPath(),
    args: ["run", "--allow-all", "--unstable-net", PROBE_WORKER],
  });
  return {
    supervisor,
    portWas: (worker) => Deno.readTextFile(`${dir}/worker-${worker}`),
    async [Symbol.asyncDispose]() {
      await supervisor.stop();
      Deno.env.delete("PORT_PROBE_DIR");
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
