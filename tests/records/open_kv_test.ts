import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { DEFAULT_KV_FILE, kvLocation, openRecordsKv } from "../../src/records/open_kv.ts";

Deno.test("KV_PATH unset is a local file, or the attached KV on Deno Deploy", () => {
  assert.equal(kvLocation(undefined), DEFAULT_KV_FILE);
  assert.equal(kvLocation(undefined, { deploymentId: "abc123" }), undefined);
  assert.equal(kvLocation(":memory:", { deploymentId: "abc123" }), ":memory:");
  assert.equal(kvLocation("https://kv.example.com"), "https://kv.example.com");
});

Deno.test("a KV file's folder is created", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const kv = await openRecordsKv(`${dir}/nested/calls.sqlite3`);
    await kv.set(["probe"], 1);
    kv.close();
    assert.ok((await Deno.stat(`${dir}/nested/calls.sqlite3`)).isFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CALL_RETENTION_DAYS defaults to 30 and refuses 0", () => {
  assert.equal(loadConfig({}).CALL_RETENTION_DAYS, 30);
  assert.equal(loadConfig({ KV_PATH: " " }).KV_PATH, undefined);
  assert.throws(() => loadConfig({ CALL_RETENTION_DAYS: "0" }), ConfigError);
});
