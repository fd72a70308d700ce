import assert from "node:assert/strict";
import { KvChangeBuilder, KvGroupCommit } from "../../src/records/kv_group_commit.ts";

async function withKv(fn: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  try {
    await fn(kv);
  } finally {
    kv.close();
  }
}

Deno.test("changes asked for together share commits, each applied whole", async () => {
  await withKv(async (kv) => {
    const commits = new KvGroupCommit(kv, { checks: 10 });
    const results = await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        commits.commit(
          new KvChangeBuilder().check({ key: ["n", i], versionstamp: null })
            .set(["n", i], i).set(["index", i], true),
        )),
    );
    assert.ok(results.every((r) => r.ok));
    assert.equal(commits.stats.changes, 25);
    assert.ok(commits.stats.commits <= 4, `${commits.stats.commits} commits`);
    const stored = await Array.fromAsync(kv.list<number>({ prefix: ["n"] }));
    assert.deepEqual(stored.map((e) => e.value), Array.from({ length: 25 }, (_, i) => i));
  });
});

Deno.test("a change whose check fails is refused alone; the others in its group commit", async () => {
  await withKv(async (kv) => {
    await kv.set(["taken"], "first");
    const commits = new KvGroupCommit(kv);
    const [a, refused, b] = await Promise.all([
      commits.commit(new KvChangeBuilder().set(["a"], 1)),
      commits.commit(
        new KvChangeBuilder().check({ key: ["taken"], versionstamp: null }).set(["taken"], "x"),
      ),
      commits.commit(new KvChangeBuilder().set(["b"], 2)),
    ]);
    assert.equal(a.ok, true);
    assert.equal(refused.ok, false);
    assert.equal(b.ok, true);
    assert.equal((await kv.get(["taken"])).value, "first");
    assert.equal((await kv.get(["b"])).value, 2);
  });
});

Deno.test("two changes of one key are never in one commit, so the second's check sees the first", async () => {
  await withKv(async (kv) => {
    const commits = new KvGroupCommit(kv);
    const empty = { key: ["k"], versionstamp: null };
    const [first, second] = await Promise.all([
      commits.commit(new KvChangeBuilder().check(empty).set(["k"], "first")),
      commits.commit(new KvChangeBuilder().check(empty).set(["k"], "second")),
    ]);
    assert.equal(first.ok, true);
    assert.equal(second.ok, false);
    assert.equal((await kv.get(["k"])).value, "first");
  });
});

Deno.test("a KV failure reaches every caller of the failed commit", async () => {
  await withKv(async (kv) => {
    const failing = {
      atomic() {
        const op = kv.atomic();
        op.commit = () => Promise.reject(new TypeError("database is locked"));
        return op;
      },
    };
    const commits = new KvGroupCommit(failing);
    const outcomes = await Promise.allSettled([
      commits.commit(new KvChangeBuilder().set(["a"], 1)),
      commits.commit(new KvChangeBuilder().set(["b"], 2)),
    ]);
    assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected"]);
    assert.equal((await kv.get(["a"])).versionstamp, null);
  });
});

Deno.test("a store allowing fewer checks per commit (a denokv server) gets smaller groups", async () => {
  await withKv(async (kv) => {
    let largestCommitted = 0;
    const tenChecksAtMost = {
      atomic() {
        const op = kv.atomic();
        let checks = 0;
        const check = op.check.bind(op);
        op.check = (...c) => {
          checks += c.length;
          return check(...c);
        };
        const commit = op.commit.bind(op);
        op.commit = () => {
          if (checks > 10) return Promise.reject(new TypeError("Too many checks (max 10)"));
          largestCommitted = Math.max(largestCommitted, checks);
          return commit();
        };
        return op;
      },
    };
    const commits = new KvGroupCommit(tenChecksAtMost);
    const change = (i: number) =>
      new KvChangeBuilder().check({ key: ["n", i], versionstamp: null }).set(["n", i], i);
    const first = await Promise.all(
      Array.from({ length: 25 }, (_, i) => commits.commit(change(i))),
    );
    assert.ok(first.every((r) => r.ok));
    const before = commits.stats.commits;
    const second = await Promise.all(
      Array.from({ length: 25 }, (_, i) => commits.commit(change(100 + i))),
    );
    assert.ok(second.every((r) => r.ok));
    assert.equal(commits.stats.commits - before, 3, "groups of ten once the limit is known");
    assert.equal(largestCommitted, 10);
  });
});
