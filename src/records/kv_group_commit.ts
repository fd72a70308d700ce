/**
 * Group commit for Deno KV: atomic changes asked for while a commit is under way are committed
 * together in the next one. On a local KV file every commit is a SQLite transaction ending in an
 * fsync, and they run one at a time, so when many calls end at once (each with a record change,
 * a webhook event and a delivery outcome to store) their commits queue behind each other; one
 * commit of ten changes costs about what one change alone does.
 *
 * Each change keeps its own meaning: it commits whole or not at all, and its checks decide.
 * A group only holds changes that touch different keys (two read-modify-writes of one key must
 * stay apart, so the second sees the first). When a group's commit fails a check, its changes are
 * committed again one by one, so each gets its own answer. An idle store commits a change at
 * once: grouping only happens when commits are already waiting.
 *
 * @module
 */

/** One atomic change: its checks and the mutations that apply if every check holds. */
export interface KvChange {
  checks?: Deno.AtomicCheck[];
  mutations: Deno.KvMutation[];
  /** Bytes of its keys and values, roughly, to keep a group under KV's per-commit limit. */
  bytes: number;
}

/** Per-commit limits of a group; a single change over them still commits on its own. */
export interface GroupLimits {
  /**
   * Local KV allows 100 checks per commit; a denokv server (KV Connect) only 10. A store that
   * refuses a group for its checks lowers this to what it says it allows.
   */
  checks: number;
  mutations: number;
  bytes: number;
  /** Bytes of all keys together (KV allows 80 KiB). */
  keyBytes: number;
}

const DEFAULT_LIMITS: GroupLimits = {
  checks: 100,
  mutations: 900,
  bytes: 600 * 1024,
  keyBytes: 60 * 1024,
};

interface Waiting {
  change: KvChange;
  keys: string[];
  keyBytes: number;
  done: PromiseWithResolvers<Deno.KvCommitResult | Deno.KvCommitError>;
}

/** Commits {@link KvChange}s to one store, grouping those that wait. */
export class KvGroupCommit {
  readonly #kv: Pick<Deno.Kv, "atomic">;
  readonly #limits: GroupLimits;
  #waiting: Waiting[] = [];
  #committing = false;
  /** Commits made and changes they carried (for benches and tests). */
  readonly stats = { commits: 0, changes: 0 };

  constructor(kv: Pick<Deno.Kv, "atomic">, limits: Partial<GroupLimits> = {}) {
    this.#kv = kv;
    this.#limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** Commits `change` (with others waiting, if any); rejects when KV fails. */
  commit(change: KvChange): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
    const keys = [...(change.checks ?? []), ...change.mutations].map((c) => keyId(c.key));
    const done = Promise.withResolvers<Deno.KvCommitResult | Deno.KvCommitError>();
    const keyBytes = keys.reduce((n, k) => n + k.length, 0);
    this.#waiting.push({ change, keys, keyBytes, done });
    if (!this.#committing) {
      this.#committing = true;
      // Changes asked for in the same turn of the event loop go together.
      queueMicrotask(() => this.#drain());
    }
    return done.promise;
  }

  async #drain(): Promise<void> {
    while (this.#waiting.length > 0) {
      const group = this.#takeGroup();
      if (group.length === 1) {
        await this.#commitAlone(group[0]);
        continue;
      }
      let result: Deno.KvCommitResult | Deno.KvCommitError | undefined;
      try {
        result = await this.#op(group.map((w) => w.change)).commit();
        this.stats.commits++;
        this.stats.changes += group.length;
      } catch (error) {
        // KV refused or failed the whole: each change on its own finds out whether it is to blame
        // (a size estimate too low) or KV is (then every caller hears of it and retries).
        const limit = /too many (checks|mutations) \(max (\d+)\)/i.exec(String(error));
        if (limit) {
          const kind = limit[1].toLowerCase() as "checks" | "mutations";
          this.#limits[kind] = Math.min(this.#limits[kind], Number(limit[2]));
        }
      }
      if (result?.ok) {
        for (const w of group) w.done.resolve(result);
      } else {
        // A check failed (which one, only a commit of its own can say), or the commit did.
        await Promise.all(group.map((w) => this.#commitAlone(w)));
      }
    }
    this.#committing = false;
  }

  async #commitAlone(w: Waiting): Promise<void> {
    try {
      const result = await this.#op([w.change]).commit();
      this.stats.commits++;
      this.stats.changes++;
      w.done.resolve(result);
    } catch (error) {
      w.done.reject(error);
    }
  }

  /** The longest run of waiting changes, in order, that fit one commit and share no key. */
  #takeGroup(): Waiting[] {
    const group: Waiting[] = [];
    const keys = new Set<string>();
    let checks = 0;
    let mutations = 0;
    let bytes = 0;
    let keyBytes = 0;
    let i = 0;
    for (; i < this.#waiting.length; i++) {
      const w = this.#waiting[i];
      const c = w.change;
      const fits = checks + (c.checks?.length ?? 0) <= this.#limits.checks &&
        mutations + c.mutations.length <= this.#limits.mutations &&
        bytes + c.bytes <= this.#limits.bytes &&
        keyBytes + w.keyBytes <= this.#limits.keyBytes && !w.keys.some((k) => keys.has(k));
      if (!fits && group.length > 0) break;
      group.push(w);
      for (const k of w.keys) keys.add(k);
      checks += c.checks?.length ?? 0;
      mutations += c.mutations.length;
      bytes += c.bytes;
      keyBytes += w.keyBytes;
    }
    this.#waiting = this.#waiting.slice(i);
    return group;
  }

  #op(changes: KvChange[]): Deno.AtomicOperation {
    const op = this.#kv.atomic();
    for (const change of changes) {
      if (change.checks?.length) op.check(...change.checks);
      op.mutate(...change.mutations);
    }
    return op;
  }
}

function keyId(key: Deno.KvKey): string {
  return key.map((part) => `${typeof part}:${String(part)}`).join("\u0000");
}

/** Bytes counted for a key, or a small value, whose size is not given. */
const SMALL_BYTES = 512;

/** Builds a {@link KvChange} the way `Deno.AtomicOperation` builds a commit. */
export class KvChangeBuilder implements KvChange {
  checks: Deno.AtomicCheck[] = [];
  mutations: Deno.KvMutation[] = [];
  bytes = 0;

  check(...checks: Deno.AtomicCheck[]): this {
    this.checks.push(...checks);
    this.bytes += checks.length * SMALL_BYTES;
    return this;
  }

  /** `valueBytes`: the value's size when it may be large (default: a small value). */
  set(key: Deno.KvKey, value: unknown, options: { expireIn?: number } = {}, valueBytes = 0): this {
    this.mutations.push({ type: "set", key, value, ...options });
    this.bytes += SMALL_BYTES + valueBytes;
    return this;
  }

  delete(key: Deno.KvKey): this {
    this.mutations.push({ type: "delete", key });
    this.bytes += SMALL_BYTES;
    return this;
  }
}
