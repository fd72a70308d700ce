/** `WORKERS`: parsing, and the process count it gives on each kind of platform. */
import assert from "node:assert/strict";
import { workerPlan, type WorkerPlatform } from "../../src/cluster/worker_count.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";

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
