/**
 * Call-record fixtures: KV stores for tests and a KV wrapper whose commits can be made to fail.
 *
 * @module
 */
import type { RecordsKv } from "../../src/records/call_store.ts";
import type { CallEvent } from "../../src/records/call_events.ts";

/** Every key in `kv`, as JSON, for "nothing is left" assertions. */
export async function allKeys(kv: Deno.Kv): Promise<string[]> {
  const keys: string[] = [];
  for await (const entry of kv.list({ prefix: [] })) keys.push(JSON.stringify(entry.key));
  return keys;
}

/**
 * KV whose commits fail while `failing` is true, as a full disk or another process holding the
 * database lock does; reads go through.
 */
export class FlakyKv implements RecordsKv {
  failing = false;
  failedCommits = 0;
  constructor(readonly kv: Deno.Kv) {}

  get: Deno.Kv["get"] = (key, options) => this.kv.get(key, options);
  list: Deno.Kv["list"] = (selector, options) => this.kv.list(selector, options);
  atomic(): Deno.AtomicOperation {
    const op = this.kv.atomic();
    const commit = op.commit.bind(op);
    op.commit = () => {
      if (this.failing) {
        this.failedCommits++;
        return Promise.reject(new TypeError("database is locked"));
      }
      return commit();
    };
    return op;
  }
}

/** A `placed` event as `/start` reports it. */
export function placed(at: number, body: Record<string, unknown> = { name: "Zoë" }): CallEvent {
  return {
    type: "placed",
    at,
    to: "+15551234567",
    from: "+15550001111",
    body,
    remoteConversation: false,
  };
}
