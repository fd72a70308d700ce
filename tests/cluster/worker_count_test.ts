/** `WORKERS`: parsing, and the process count it gives on each kind of platform. */
import assert from "node:assert/strict";
import { workerPlan, type WorkerPlatform } from "../../src/cluster/worker_count.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { SERVER_V8_FLAGS, serverProcessArgs } from "../../src/cluster/supervisor.ts";

const linux4: WorkerPlatform = { cores: 4, onDenoDeploy: false, canSpawn: true, sharesPorts: true };

Deno.test("WORKERS is auto by default, and accepts auto or a count", () => {
  assert.equal(loadConfig({}).WORKERS, "auto");
  assert.equal(loadConfig({ WORKERS: " Auto " }).WORKERS, "auto");
  assert.equal(loadConfig({ WORKERS: "3" }).WORKERS, 3);
});

Deno.test("a WORKERS that is neither auto nor a count from 1 to 256 stops start-up", () => {
  for (const value of ["0", "1.5", "many", "257"]) {
    assert.throws(
      () => loadConfig({ WORKERS: value }),
      (error: ConfigError) =>
        error.message.includes(`WORKERS="${value}": must be auto or an integer between 1 and 256`),
    );
  }
});

Deno.test("auto runs one process per core where processes can share the port", () => {
  assert.deepEqual(workerPlan("auto", linux4), { count: 4 });
  assert.deepEqual(workerPlan("auto", { ...linux4, cores: 1 }), { count: 1 });
});

Deno.test("auto quietly runs one process where only one can run", () => {
  assert.deepEqual(workerPlan("auto", { ...linux4, onDenoDeploy: true }), { count: 1 });
  assert.deepEqual(workerPlan("auto", { ...linux4, canSpawn: false }), { count: 1 });
  assert.deepEqual(workerPlan("auto", { ...linux4, sharesPorts: false }), { count: 1 });
});

Deno.test("an explicit count runs that many, or one with the reason it cannot", () => {
  assert.deepEqual(workerPlan(8, linux4), { count: 8 });
  assert.deepEqual(workerPlan(1, { ...linux4, canSpawn: false }), { count: 1 });
  const denied = workerPlan(2, { ...linux4, canSpawn: false });
  assert.equal(denied.count, 1);
  assert.match(denied.limitedBecause!, /--allow-run/);
  assert.match(workerPlan(2, { ...linux4, onDenoDeploy: true }).limitedBecause!, /Deno Deploy/);
});

Deno.test("server processes are started with this process's permissions and script", () => {
  const args = serverProcessArgs("file:///srv/app/main.ts", "/tmp/kv-folder/calls.sqlite3", ["x"]);
  assert.deepEqual(args.slice(0, 3), ["run", "--no-prompt", "--unstable-net"]);
  assert.ok(args.includes(`--v8-flags=${SERVER_V8_FLAGS}`), "the V8 options of a single server");
  for (const name of ["net", "env", "read"]) assert.ok(args.includes(`--allow-${name}`), name);
  // The test task grants write on /tmp only: the KV folder inside it is passed on, no more.
  const fullWrite = Deno.permissions.querySync({ name: "write" }).state === "granted";
  assert.ok(args.includes(fullWrite ? "--allow-write" : "--allow-write=/tmp/kv-folder"));
  assert.ok(!args.some((a) => a.startsWith("--allow-run")), "server processes start nothing");
  const config = args[args.indexOf("--config") + 1];
  assert.ok(config.endsWith("/deno.json"), config);
  assert.deepEqual(args.slice(-2), ["/srv/app/main.ts", "x"]);
});

Deno.test({
  name: "no write permission is passed on for call records kept in memory",
  // Meaningful only without write access everywhere, as under the test task.
  ignore: Deno.permissions.querySync({ name: "write" }).state === "granted",
  fn() {
    const args = serverProcessArgs("file:///srv/app/main.ts", ":memory:", []);
    assert.ok(!args.some((a) => a.startsWith("--allow-write")), args.join(" "));
  },
});

Deno.test("deno task start gives a single server the V8 options server processes get", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  assert.ok(config.tasks.start.includes(`--v8-flags=${SERVER_V8_FLAGS}`), config.tasks.start);
  assert.ok(config.tasks.dev.includes(`--v8-flags=${SERVER_V8_FLAGS}`), config.tasks.dev);
});
