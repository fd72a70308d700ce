/**
 * Call records on Deno KV.
 *
 * Keys (every one written with `expireIn` = the retention):
 * - `["calls", id]`: the header ({@link StoredCall}), the only key a change checks and commits;
 * - `["call_data", id]`: the custom data given to `/start` (personal data, erased with the call);
 * - `["call_turns", id, n]`: transcript turn `n`, one per key: a KV value holds at most 64 KiB
 *   and a long call's transcript is many times that;
 * - `["calls_by_time", created_ms, id]` and `["calls_by_status", status, created_ms, id]`: index
 *   entries holding the call's {@link CallSummary}, so `GET /calls` is one range read, newest
 *   first, without reading a header per line.
 *
 * Changes are read-modify-write with a versionstamp check, so several instances sharing one KV
 * (a progress callback on one, the media stream on another) never lose each other's changes.
 * The header this instance last committed is kept in memory while the call is live, so a change
 * normally costs one commit and no read; a check that fails (another writer got in between)
 * reads it afresh. A failing {@link CallStore.apply} throws and its caller (the recorder)
 * retries the batch with back-off; every other operation retries here when KV fails for a
 * moment ("database is locked" from another process sharing the file, a remote store blinking).
 *
 * @module
 */
import type { CallEvent } from "./call_events.ts";
import {
  applyEvent,
  type CallRecordView,
  type CallStatus,
  type CallSummary,
  copyStoredCall,
  headerBytesBound,
  newStoredCall,
  sameSummary,
  type StoredCall,
  type StoredTurn,
  summarise,
  viewOf,
} from "./call_record.ts";
import { type KvChange, KvChangeBuilder, KvGroupCommit } from "./kv_group_commit.ts";
import { withKvRetry } from "./kv_retry.ts";

/** The part of `Deno.Kv` the store uses (tests wrap it to inject failures). */
export type RecordsKv = Pick<Deno.Kv, "get" | "list" | "atomic">;

/** KV's largest value. */
const MAX_VALUE_BYTES = 64 * 1024;
/** Largest stored turn, in bytes of JSON; a longer text is cut (values hold at most 64 KiB). */
export const MAX_TURN_BYTES = 60_000;
/** Bytes and mutations per atomic commit, under KV's 800 KiB / 1000 mutation limits. */
const ATOMIC_BUDGET_BYTES = 600 * 1024;
const ATOMIC_MAX_MUTATIONS = 900;
/** Attempts at a change that lost a race with another writer of the same call. */
const CONFLICT_ATTEMPTS = 10;
/** Most calls per `GET /calls` page. */
export const MAX_PAGE = 100;
/** Live calls whose header is kept in memory; beyond this the oldest is read again when needed. */
const MAX_CACHED_HEADERS = 10_000;

const encoder = new TextEncoder();
const bytesOf = (value: unknown) => encoder.encode(JSON.stringify(value)).length;

const keys = {
  call: (id: string) => ["calls", id],
  data: (id: string) => ["call_data", id],
  turns: (id: string) => ["call_turns", id],
  turn: (id: string, n: number) => ["call_turns", id, n],
  byTime: (call: StoredCall) => ["calls_by_time", call.created_at, call.id],
  byStatus: (call: StoredCall) => ["calls_by_status", call.status, call.created_at, call.id],
};

/** Filters and page of `GET /calls`. */
export interface ListQuery {
  status?: CallStatus;
  /** Epoch ms, inclusive. */
  since?: number;
  /** Epoch ms, inclusive. */
  until?: number;
  limit: number;
  cursor?: string;
}

/** A page of calls, newest first; `next_cursor` is null on the last page. */
export interface CallPage {
  calls: CallSummary[];
  next_cursor: string | null;
}

/** Thrown for a `cursor` KV does not accept (from another query, or made up). */
export class BadCursorError extends Error {
  constructor() {
    super("cursor is not one this query returned");
    this.name = "BadCursorError";
  }
}

/** Cuts a turn's text until its JSON fits in {@link MAX_TURN_BYTES}. */
function fitTurn(turn: StoredTurn): StoredTurn {
  let fitted = turn;
  while (bytesOf(fitted) > MAX_TURN_BYTES) {
    const text = fitted.text;
    fitted = { ...fitted, text: `${text.slice(0, Math.floor(text.length * 0.8))}…` };
  }
  return fitted;
}

/** Reads and writes call records. */
export class CallStore {
  readonly #kv: RecordsKv;
  /** Record changes of many calls at once (a burst of call ends) share commits. */
  readonly #commits: KvGroupCommit;
  readonly #expireIn: number;
  /** Header and versionstamp this instance last committed, per live call. */
  readonly #headers = new Map<string, Deno.KvEntry<StoredCall>>();

  constructor(kv: RecordsKv, options: { retentionDays: number }) {
    this.#kv = kv;
    this.#commits = new KvGroupCommit(kv);
    this.#expireIn = options.retentionDays * 24 * 60 * 60 * 1000;
  }

  /**
   * Applies `events` to the call's record in arrival order and commits them; returns the header
   * as committed. Throws when KV does (the caller retries the same batch).
   */
  async apply(callId: string, events: readonly CallEvent[]): Promise<StoredCall> {
    for (let attempt = 1;; attempt++) {
      const entry = (attempt === 1 ? this.#headers.get(callId) : undefined) ??
        await this.#kv.get<StoredCall>(keys.call(callId));
      const before = entry.value;
      const call: StoredCall = before
        ? copyStoredCall(before)
        : newStoredCall(callId, events[0]?.at ?? Date.now());
      const turns: [number, StoredTurn][] = [];
      let customData: Record<string, unknown> | undefined;
      for (const event of events) {
        const applied = applyEvent(call, event);
        if (applied.turn) turns.push([call.turn_count - 1, fitTurn(applied.turn)]);
        if (applied.customData) customData = applied.customData;
      }

      // Turns that do not fit beside the header go first, each batch on its own: their keys are
      // only reachable through the header's turn count, which is committed last.
      const expireIn = this.#expireIn;
      let change = new KvChangeBuilder();
      for (const [n, turn] of turns) {
        const size = bytesOf(turn) + 64;
        if (
          change.mutations.length + 1 > ATOMIC_MAX_MUTATIONS - 8 ||
          change.bytes + size > ATOMIC_BUDGET_BYTES
        ) {
          await this.#commit(change);
          change = new KvChangeBuilder();
        }
        change.set(keys.turn(callId, n), turn, { expireIn }, size);
      }

      change.check(entry);
      // The header is bounded, not measured: measuring would serialise it once more.
      change.set(keys.call(callId), call, { expireIn }, headerBytesBound(call));
      // Most changes (a turn, a tool call) leave the index line as it was: not rewritten then.
      if (!before || !sameSummary(before, call)) {
        const summary = summarise(call);
        if (before) {
          // Index keys move when the status (or, rarely, the creation time) changes.
          const oldTime = keys.byTime(before);
          const oldStatus = keys.byStatus(before);
          if (!sameKey(oldTime, keys.byTime(call))) change.delete(oldTime);
          if (!sameKey(oldStatus, keys.byStatus(call))) change.delete(oldStatus);
        }
        change.set(keys.byTime(call), summary, { expireIn });
        change.set(keys.byStatus(call), summary, { expireIn });
      }
      if (customData !== undefined) {
        change.set(keys.data(callId), customData, { expireIn }, bytesOf(customData));
      }
      const result = await this.#commits.commit(change);
      if (result.ok) {
        this.#remember(callId, call, result.versionstamp);
        return call;
      }
      if (attempt >= CONFLICT_ATTEMPTS) {
        throw new Error(`call record ${callId} kept changing under us (${attempt} attempts)`);
      }
    }
  }

  /** Keeps the header as committed for the next change of a live call; forgets an ended one. */
  #remember(callId: string, call: StoredCall, versionstamp: string): void {
    this.#headers.delete(callId);
    if (call.status === "ended") return;
    if (this.#headers.size >= MAX_CACHED_HEADERS) {
      this.#headers.delete(this.#headers.keys().next().value!);
    }
    this.#headers.set(callId, { key: keys.call(callId), value: call, versionstamp });
  }

  /** Commits `change` on its own, now. */
  async #commit(change: KvChange): Promise<void> {
    const op = this.#kv.atomic();
    if (change.checks?.length) op.check(...change.checks);
    const result = await op.mutate(...change.mutations).commit();
    if (!result.ok) throw new Error("transcript write was refused");
  }

  /** The stored header, or null. */
  async header(callId: string): Promise<StoredCall | null> {
    return (await withKvRetry(() => this.#kv.get<StoredCall>(keys.call(callId)))).value;
  }

  /** The whole record, transcript and custom data included, or null for an unknown id. */
  async get(
    callId: string,
    extras: { webhookDeliveries?: unknown[] } = {},
  ): Promise<CallRecordView | null> {
    const [call, data, turns] = await Promise.all([
      this.header(callId),
      this.#customData(callId),
      this.#turns(callId),
    ]);
    if (!call) return null;
    return viewOf(call, { customData: data, turns, webhookDeliveries: extras.webhookDeliveries });
  }

  /**
   * The record as of `call` (a header just committed), reading only what it does not hold: the
   * custom data unless `known.customData` is given, and the transcript only once it has turns.
   */
  async viewAt(
    call: StoredCall,
    known: { customData?: Record<string, unknown> | null } = {},
  ): Promise<CallRecordView> {
    const [customData, turns] = await Promise.all([
      known.customData !== undefined ? known.customData : this.#customData(call.id),
      call.turn_count > 0 ? this.#turns(call.id) : [],
    ]);
    return viewOf(call, { customData, turns });
  }

  async #customData(callId: string): Promise<Record<string, unknown> | null> {
    const entry = await withKvRetry(() => this.#kv.get<Record<string, unknown>>(keys.data(callId)));
    return entry.value;
  }

  #turns(callId: string): Promise<StoredTurn[]> {
    return withKvRetry(async () => {
      const turns: StoredTurn[] = [];
      for await (const entry of this.#kv.list<StoredTurn>({ prefix: keys.turns(callId) })) {
        turns.push(entry.value);
      }
      return turns;
    });
  }

  /** A page of call summaries, newest first. */
  async list(query: ListQuery): Promise<CallPage> {
    const prefix = query.status ? ["calls_by_status", query.status] : ["calls_by_time"];
    // A KV cursor only means something for the range it came from: ours carries the filters,
    // so one from another query is refused instead of silently listing the wrong calls.
    const filters = btoa(JSON.stringify([query.status ?? "", query.since ?? "", query.until ?? ""]))
      .replace(/=+$/, "");
    let kvCursor: string | undefined;
    if (query.cursor !== undefined) {
      const dot = query.cursor.lastIndexOf(".");
      if (dot <= 0 || query.cursor.slice(dot + 1) !== filters) throw new BadCursorError();
      kvCursor = query.cursor.slice(0, dot);
    }
    const range = {
      start: [...prefix, query.since ?? 0],
      end: [...prefix, (query.until ?? Number.MAX_SAFE_INTEGER - 1) + 1],
    };
    let calls: CallSummary[] = [];
    let nextCursor = "";
    try {
      await withKvRetry(async () => {
        const iterator = this.#kv.list<CallSummary>(range, {
          reverse: true,
          limit: query.limit,
          cursor: kvCursor,
          batchSize: query.limit,
        });
        calls = [];
        for await (const entry of iterator) calls.push(entry.value);
        nextCursor = iterator.cursor;
      }, { retryIf: (error) => !/cursor/i.test(String(error)) });
    } catch (error) {
      if (query.cursor !== undefined) throw new BadCursorError();
      throw error;
    }
    return {
      calls,
      next_cursor: calls.length === query.limit && nextCursor ? `${nextCursor}.${filters}` : null,
    };
  }

  /** Stores the post-call analysis on the record; false for an unknown call. */
  async setAnalysis(callId: string, analysis: unknown): Promise<boolean> {
    for (let attempt = 1; attempt <= CONFLICT_ATTEMPTS; attempt++) {
      const entry = await withKvRetry(() => this.#kv.get<StoredCall>(keys.call(callId)));
      if (!entry.value) return false;
      const call = { ...entry.value, analysis };
      const change = new KvChangeBuilder().check(entry)
        .set(keys.call(callId), call, { expireIn: this.#expireIn }, MAX_VALUE_BYTES);
      const result = await withKvRetry(() => this.#commits.commit(change));
      if (result.ok) {
        this.#remember(callId, call, result.versionstamp);
        return true;
      }
    }
    throw new Error(`call record ${callId} kept changing under us`);
  }

  /**
   * Erases a call: header, index entries, transcript and custom data. Returns false when there
   * was nothing to erase.
   */
  async delete(callId: string): Promise<boolean> {
    this.#headers.delete(callId);
    const header = await withKvRetry(() => this.#kv.get<StoredCall>(keys.call(callId)));
    const doomed: Deno.KvKey[] = [keys.call(callId), keys.data(callId)];
    if (header.value) doomed.push(keys.byTime(header.value), keys.byStatus(header.value));
    const turnKeys = await withKvRetry(async () => {
      const found: Deno.KvKey[] = [];
      for await (const entry of this.#kv.list({ prefix: keys.turns(callId) })) {
        found.push(entry.key);
      }
      return found;
    });
    doomed.push(...turnKeys);
    const data = await withKvRetry(() => this.#kv.get(keys.data(callId)));
    if (!header.value && turnKeys.length === 0 && data.versionstamp === null) return false;
    for (let i = 0; i < doomed.length; i += ATOMIC_MAX_MUTATIONS - 100) {
      const change = new KvChangeBuilder();
      for (const key of doomed.slice(i, i + ATOMIC_MAX_MUTATIONS - 100)) change.delete(key);
      await withKvRetry(() => this.#commit(change));
    }
    return true;
  }
}

function sameKey(a: Deno.KvKey, b: Deno.KvKey): boolean {
  return a.length === b.length && a.every((part, i) => part === b[i]);
}
