/**
 * Signed webhooks, delivered at least once and kept in Deno KV so a restart resumes them.
 *
 * Each event is stored once (its JSON body split over keys, since a KV value holds at most
 * 64 KiB), with one delivery per target URL. A delivery is pending until a 2xx answer, a
 * `410 Gone`, a refused target, or its retry window (default 24 h) runs out. Pending deliveries
 * sit in a due index ordered by time; a worker claims one with an atomic check on the delivery's
 * versionstamp and a lease (the delivery moves to the lease's end in the index), so when several
 * instances share one KV each event is normally delivered once, and the work of a crashed
 * instance is taken over once its lease expires. KV queues are not used: a remote KV (KV Connect)
 * and the new Deno Deploy do not offer them.
 *
 * An instance whose worker runs stores a new event, its body and its deliveries already leased
 * to itself in one atomic commit, and makes the first attempt from memory: an event costs that
 * commit, the POST and the commit of the outcome. A burst (many calls ending at once) waits in
 * memory for a free slot of the worker's bounded concurrency; one still waiting when its lease
 * nears its end is left to the due index like any other.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { deadline, DeadlineError } from "../async/deadline.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { KvChangeBuilder, KvGroupCommit } from "../records/kv_group_commit.ts";
import { withKvRetry } from "../records/kv_retry.ts";
import { ID_HEADER, SIGNATURE_HEADER, WebhookSigner } from "./signature.ts";
import {
  deliveryTargetProblem,
  type Resolver,
  systemResolver,
  type TargetPolicy,
  targetPolicyFor,
} from "./target_policy.ts";

/** The events a call produces, in the order they normally happen. */
const WEBHOOK_EVENT_TYPES = [
  "call.initiated",
  "call.answered",
  "call.ended",
  "call.analyzed",
] as const;
export type WebhookEventType = typeof WEBHOOK_EVENT_TYPES[number];

/** What a receiver gets as the JSON body. */
export interface WebhookEvent {
  /** Stable across retries and resends: the receiver's idempotency key. */
  id: string;
  type: WebhookEventType;
  /** ISO 8601, when the event was first emitted. */
  created_at: string;
  /** Call id (`call_control_id` from `/start`). */
  call_id: string;
  data: unknown;
}

/** State of one delivery (one event to one URL). */
export type DeliveryState = "pending" | "delivered" | "gone" | "refused" | "expired";

/** One attempt as shown on the call record. */
export interface AttemptView {
  at: string;
  duration_ms: number;
  /** The receiver's HTTP status, when it answered. */
  status_code?: number;
  /** Why the attempt failed: network error, timeout, refused target, non-2xx status. */
  error?: string;
}

/** One delivery as shown on the call record. */
export interface DeliveryView {
  delivery_id: string;
  event_id: string;
  event_type: WebhookEventType;
  url: string;
  state: DeliveryState;
  created_at: string;
  /** When the next attempt is due (pending deliveries only). */
  next_attempt_at?: string;
  attempts: AttemptView[];
}

/** Retry schedule: exponential back-off with jitter, capped, for a bounded window. */
export interface RetrySchedule {
  /** Delay before the second attempt (default 5 s); doubles per attempt. */
  baseDelayMs: number;
  /** Longest delay between attempts (default 1 h). */
  maxDelayMs: number;
  /** A delivery still failing this long after its event was emitted gives up (default 24 h). */
  giveUpAfterMs: number;
}

/** Options for {@link Webhooks}. */
export interface WebhooksOptions {
  kv: Deno.Kv;
  /** `WEBHOOK_SECRET`: the HMAC key. */
  secret: string;
  policy: TargetPolicy;
  /** `WEBHOOK_URL`: receives every call's events, besides a call's own `webhook_url`. */
  defaultUrl?: string;
  logger?: Logger;
  /** DNS lookup for the delivery-time address check (default `Deno.resolveDns`). */
  resolve?: Resolver;
  /** One attempt's limit, connect to last byte of the answer (default 10 s). */
  timeoutMs?: number;
  retry?: Partial<RetrySchedule>;
  /** How long a claim lasts (default `timeoutMs` + 20 s); then another worker may take it. */
  leaseMs?: number;
  /** How often an idle worker looks for due deliveries enqueued elsewhere (default 1 s). */
  pollMs?: number;
  /** Deliveries in flight at once per worker (default 32). */
  concurrency?: number;
  /** How long events, deliveries and attempts are kept (default 30 days). */
  retentionMs?: number;
  /** Clock in epoch ms (tests). */
  now?: () => number;
  /** Jitter source in [0, 1) (tests). */
  random?: () => number;
}

const P = "webhooks";
/** Bytes per stored body piece, under the 64 KiB value limit. */
const BODY_CHUNK_BYTES = 60_000;
/** Body pieces per atomic write, under the 800 KiB per-operation limit. */
const CHUNKS_PER_WRITE = 10;
/** The part of a receiver's answer that is read (and kept in an error message). */
const RESPONSE_EXCERPT_BYTES = 4096;
const DAY_MS = 86_400_000;
const encoder = new TextEncoder();

interface StoredEvent {
  id: string;
  type: WebhookEventType;
  createdAt: number;
  /** Names this emission's body pieces, so a racing second emission cannot mix into them. */
  bodyId: string;
  chunks: number;
  targets: string[];
}

interface StoredDelivery {
  id: string;
  callId: string;
  eventId: string;
  type: WebhookEventType;
  url: string;
  state: DeliveryState;
  createdAt: number;
  /** Emission time of the event: the retry window counts from here. */
  eventCreatedAt: number;
  attempts: number;
  /** Where the delivery sits in the due index (pending only): next attempt or lease end. */
  dueAt: number;
  /** Instance holding the lease, while one does. */
  owner?: string;
}

interface StoredAttempt {
  at: number;
  durationMs: number;
  statusCode?: number;
  error?: string;
}

/** A delivery this instance holds the lease of, ready for an attempt. */
interface Claimed {
  /** The delivery as it was before the claim (pending, due at `dueAt`, no owner). */
  delivery: StoredDelivery;
  leaseUntil: number;
  /** Of the delivery key as claimed: the outcome is committed only if it is unchanged. */
  versionstamp: string;
  /** The event's JSON body, when this instance has just emitted it. */
  body?: string;
}

/** How one attempt ended. */
type AttemptOutcome =
  & StoredAttempt
  & { next: "delivered" | "retry" | "gone" | "refused" | "shutdown" };

/** Deterministic event id from call id and type, so an event emitted twice is one event. */
export function webhookEventId(callId: string, type: WebhookEventType): string {
  const hex = createHash("sha256").update(`${callId}\u0000${type}`).digest("hex");
  return `evt_${hex.slice(0, 32)}`;
}

/**
 * The service's webhooks from its configuration, or undefined when `WEBHOOK_SECRET` is unset
 * (nothing is ever sent unsigned; `/start` refuses a `webhook_url` then).
 */
export function webhooksFromConfig(
  config: Pick<Config, "ENV" | "WEBHOOK_URL" | "WEBHOOK_SECRET" | "WEBHOOK_ALLOW_PRIVATE">,
  deps: { kv: Deno.Kv; logger?: Logger },
): Webhooks | undefined {
  if (!config.WEBHOOK_SECRET) return undefined;
  return new Webhooks({
    kv: deps.kv,
    secret: config.WEBHOOK_SECRET,
    policy: targetPolicyFor(config),
    defaultUrl: config.WEBHOOK_URL,
    logger: deps.logger,
  });
}

/** Emits, stores and delivers webhook events; see the module comment. */
export class Webhooks {
  readonly #kv: Deno.Kv;
  /** Commits of events, claims and outcomes; grouped when many wait (a burst of call ends). */
  readonly #commits: KvGroupCommit;
  readonly #signer: WebhookSigner;
  readonly #policy: TargetPolicy;
  readonly #defaultUrl?: string;
  readonly #logger?: Logger;
  readonly #resolve: Resolver;
  readonly #timeoutMs: number;
  readonly #retry: RetrySchedule;
  readonly #leaseMs: number;
  readonly #pollMs: number;
  readonly #concurrency: number;
  readonly #retentionMs: number;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #instance = crypto.randomUUID();
  #wake = Promise.withResolvers<void>();
  /** Deliveries this instance emitted and leased to itself, waiting for a free slot. */
  #ready: Claimed[] = [];
  /** Attempts in progress, by delivery id. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /** True while {@link run} does: only then are new deliveries leased to this instance. */
  #running = false;
  /** When the due index is next worth reading (epoch ms). */
  #nextScanAt = 0;
  /** Attempts this instance made, and how many of them succeeded (for logs and tests). */
  readonly stats = { attempts: 0, delivered: 0 };

  constructor(options: WebhooksOptions) {
    this.#kv = options.kv;
    this.#commits = new KvGroupCommit(options.kv);
    this.#signer = new WebhookSigner(options.secret);
    this.#policy = options.policy;
    this.#defaultUrl = options.defaultUrl;
    this.#logger = options.logger;
    this.#resolve = options.resolve ?? systemResolver;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#retry = {
      baseDelayMs: options.retry?.baseDelayMs ?? 5_000,
      maxDelayMs: options.retry?.maxDelayMs ?? 3_600_000,
      giveUpAfterMs: options.retry?.giveUpAfterMs ?? DAY_MS,
    };
    this.#leaseMs = options.leaseMs ?? this.#timeoutMs + 20_000;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#concurrency = options.concurrency ?? 32;
    this.#retentionMs = options.retentionMs ?? 30 * DAY_MS;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /** The URLs a call's events go to: `WEBHOOK_URL` and the call's own, without duplicates. */
  targetsFor(webhookUrl?: string): string[] {
    return [...new Set([this.#defaultUrl, webhookUrl].filter((u): u is string => !!u))];
  }

  /**
   * Stores an event and schedules its deliveries; a call without targets is skipped, and an
   * event emitted again (same call and type) is not stored twice. Never throws: a store that
   * keeps failing is logged, and false returned.
   */
  async emit(
    callId: string,
    type: WebhookEventType,
    data: unknown,
    options: { webhookUrl?: string } = {},
  ): Promise<boolean> {
    const targets = this.targetsFor(options.webhookUrl);
    if (targets.length === 0) return true;
    try {
      const id = webhookEventId(callId, type);
      const eventKey = [P, "event", callId, id];
      const createdAt = this.#now();
      const event: WebhookEvent = {
        id,
        type,
        created_at: new Date(createdAt).toISOString(),
        call_id: callId,
        data,
      };
      const body = JSON.stringify(event);
      const bytes = encoder.encode(body);
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < bytes.length; at += BODY_CHUNK_BYTES) {
        chunks.push(bytes.subarray(at, at + BODY_CHUNK_BYTES));
      }
      const expireIn = this.#retentionMs;
      const bodyId = crypto.randomUUID();
      const bodyKey = (i: number) => [P, "body", callId, id, bodyId, i];
      // A body that fits goes in the event's own commit; a larger one is written ahead, in
      // pieces, and is reachable only once the event is.
      const inline = chunks.length <= CHUNKS_PER_WRITE;
      if (!inline) {
        for (let first = 0; first < chunks.length; first += CHUNKS_PER_WRITE) {
          const op = this.#kv.atomic();
          chunks.slice(first, first + CHUNKS_PER_WRITE).forEach((chunk, i) =>
            op.set(bodyKey(first + i), chunk, { expireIn })
          );
          await withKvRetry(() => op.commit());
        }
      }
      const stored: StoredEvent = {
        id,
        type,
        createdAt,
        bodyId,
        chunks: chunks.length,
        targets,
      };
      const change = new KvChangeBuilder().check({ key: eventKey, versionstamp: null })
        .set(eventKey, stored, { expireIn });
      if (inline) {
        chunks.forEach((chunk, i) => change.set(bodyKey(i), chunk, { expireIn }, chunk.length));
      }
      const leaseUntil = this.#running ? createdAt + this.#leaseMs : undefined;
      const deliveries = targets.map((url) =>
        this.#addDelivery(change, callId, stored, url, createdAt, leaseUntil)
      );
      const result = await withKvRetry(() => this.#commits.commit(change));
      if (!result.ok) {
        // Emitted already (here or elsewhere): that emission stands; drop this body.
        if (!inline) {
          for (let i = 0; i < chunks.length; i++) {
            await withKvRetry(() => this.#kv.delete(bodyKey(i)));
          }
        }
        return true;
      }
      if (leaseUntil !== undefined) {
        for (const delivery of deliveries) {
          this.#ready.push({ delivery, leaseUntil, versionstamp: result.versionstamp, body });
        }
      }
      this.#wakeUp();
      return true;
    } catch (error) {
      this.#logger?.error("webhook event not stored", { call: callId, type, error });
      return false;
    }
  }

  /** Delivers every stored event of a call again (same event ids); returns how many. */
  async resend(callId: string): Promise<number> {
    const now = this.#now();
    let count = 0;
    for await (const entry of this.#kv.list<StoredEvent>({ prefix: [P, "event", callId] })) {
      const change = new KvChangeBuilder();
      for (const url of entry.value.targets) {
        this.#addDelivery(change, callId, entry.value, url, now);
        count++;
      }
      await withKvRetry(() => this.#commits.commit(change));
    }
    if (count > 0) {
      this.#nextScanAt = 0;
      this.#wakeUp();
    }
    return count;
  }

  /** Every delivery of a call with its attempts, oldest first. */
  async deliveriesFor(callId: string): Promise<DeliveryView[]> {
    // Deliveries first, then attempts: an attempt is committed with its delivery's new state,
    // so reading in this order never shows a finished delivery without its last attempt.
    const deliveries: StoredDelivery[] = [];
    for await (
      const entry of this.#kv.list<StoredDelivery>({ prefix: [P, "delivery", callId] })
    ) {
      deliveries.push(entry.value);
    }
    const attempts = new Map<string, AttemptView[]>();
    for await (
      const entry of this.#kv.list<StoredAttempt>({ prefix: [P, "attempt", callId] })
    ) {
      const deliveryId = String(entry.key[3]);
      const list = attempts.get(deliveryId) ?? [];
      const a = entry.value;
      list.push({
        at: new Date(a.at).toISOString(),
        duration_ms: Math.round(a.durationMs),
        ...(a.statusCode !== undefined ? { status_code: a.statusCode } : {}),
        ...(a.error !== undefined ? { error: a.error } : {}),
      });
      attempts.set(deliveryId, list);
    }
    return deliveries.map((d) => ({
      delivery_id: d.id,
      event_id: d.eventId,
      event_type: d.type,
      url: d.url,
      state: d.state,
      created_at: new Date(d.createdAt).toISOString(),
      ...(d.state === "pending" ? { next_attempt_at: new Date(d.dueAt).toISOString() } : {}),
      attempts: attempts.get(d.id) ?? [],
    }));
  }

  /**
   * Erases a call's events, bodies, deliveries and attempts (the body holds personal data).
   * Leftover due-index entries are dropped by the worker when it finds no delivery behind them.
   */
  async forget(callId: string): Promise<void> {
    for (const kind of ["event", "body", "delivery", "attempt"]) {
      for await (const entry of this.#kv.list({ prefix: [P, kind, callId] })) {
        await withKvRetry(() => this.#kv.delete(entry.key));
      }
    }
  }

  /** Deliveries waiting for an attempt (or leased), across every instance sharing the KV. */
  async pendingCount(): Promise<number> {
    let count = 0;
    for await (const _ of this.#kv.list({ prefix: [P, "due"] })) count++;
    return count;
  }

  /**
   * Delivers due events until `signal` aborts, then waits for the attempts in flight (they are
   * aborted and their claims released, so a restart retries them at once). Wakes when this
   * instance emits, and polls every `pollMs` for work emitted elsewhere.
   */
  async run(signal: AbortSignal): Promise<void> {
    this.#running = true;
    this.#nextScanAt = 0;
    while (!signal.aborted) {
      this.#startReady(signal);
      const now = this.#now();
      const free = this.#concurrency - this.#inFlight.size;
      if (free > 0 && now >= this.#nextScanAt) {
        let nextDueAt = now + this.#pollMs;
        try {
          const batch = await withKvRetry(
            () => this.#due(free + this.#inFlight.size),
            { signal },
          );
          let started = 0;
          for (const { key, dueAt } of batch) {
            if (dueAt > now) {
              nextDueAt = Math.min(nextDueAt, dueAt);
              break;
            }
            const deliveryId = String(key[4]);
            if (this.#inFlight.has(deliveryId)) continue;
            if (this.#inFlight.size >= this.#concurrency) {
              // More is due than there are slots: look again as soon as one frees.
              nextDueAt = now;
              break;
            }
            started++;
            this.#track(deliveryId, this.#claimAndDeliver(key, signal));
          }
          // Whatever was started may have more due behind it.
          if (started > 0) nextDueAt = now;
        } catch (error) {
          if (signal.aborted) break;
          this.#logger?.warn("webhook queue not readable; retrying", { error });
        }
        this.#nextScanAt = nextDueAt;
      }
      // With every slot taken, the attempt that ends first wakes the loop.
      const slotFree = this.#inFlight.size < this.#concurrency;
      const wait = !slotFree
        ? this.#pollMs
        : this.#ready.length > 0
        ? 0
        : Math.max(0, Math.min(this.#pollMs, this.#nextScanAt - this.#now()));
      await deadline(this.#wake.promise, wait, { signal }).catch(() => {});
      this.#wake = Promise.withResolvers<void>();
    }
    this.#running = false;
    await Promise.all(this.#inFlight.values());
    // Hand back what never got a slot, so a restart or another instance sends it at once.
    const unsent = this.#ready.splice(0);
    await Promise.all(unsent.map((c) => this.#release(c).catch(() => {})));
  }

  /** Starts attempts of the deliveries emitted here, as far as the concurrency allows. */
  #startReady(signal: AbortSignal): void {
    while (this.#ready.length > 0 && this.#inFlight.size < this.#concurrency) {
      const claimed = this.#ready.shift()!;
      // Waited through half its lease: the attempt might outlast it, so the due index hands the
      // delivery out once the lease ends, as for any other.
      if (claimed.leaseUntil - this.#now() < this.#leaseMs / 2) continue;
      this.#track(claimed.delivery.id, this.#deliverClaimed(claimed, signal));
    }
  }

  #track(deliveryId: string, work: Promise<void>): void {
    const tracked = work
      .catch((error) => this.#logger?.warn("webhook delivery step failed", { error }))
      .finally(() => {
        this.#inFlight.delete(deliveryId);
        this.#wakeUp();
      });
    this.#inFlight.set(deliveryId, tracked);
  }

  /** Gives a claimed delivery back, due at its old time, for whichever worker comes first. */
  async #release({ delivery: d, leaseUntil, versionstamp }: Claimed): Promise<void> {
    const deliveryKey = [P, "delivery", d.callId, d.id];
    const expireIn = this.#retentionMs;
    const change = new KvChangeBuilder().check({ key: deliveryKey, versionstamp })
      .delete([P, "due", leaseUntil, d.callId, d.id])
      .set(deliveryKey, { ...d, owner: undefined }, { expireIn })
      .set([P, "due", d.dueAt, d.callId, d.id], true, { expireIn });
    await withKvRetry(() => this.#commits.commit(change));
  }

  #wakeUp(): void {
    this.#wake.resolve();
  }

  /** The first `limit` entries of the due index (plus one, to know when the next is due). */
  async #due(limit: number): Promise<{ key: Deno.KvKey; dueAt: number }[]> {
    const out: { key: Deno.KvKey; dueAt: number }[] = [];
    for await (const entry of this.#kv.list({ prefix: [P, "due"] }, { limit: limit + 1 })) {
      out.push({ key: entry.key, dueAt: Number(entry.key[2]) });
    }
    return out;
  }

  #addDelivery(
    change: KvChangeBuilder,
    callId: string,
    event: StoredEvent,
    url: string,
    now: number,
    leaseUntil?: number,
  ): StoredDelivery {
    // Time-ordered ids keep a call's deliveries in emission order in listings.
    const id = `${now.toString(36).padStart(9, "0")}${crypto.randomUUID().slice(0, 8)}`;
    const delivery: StoredDelivery = {
      id,
      callId,
      eventId: event.id,
      type: event.type,
      url,
      state: "pending",
      createdAt: now,
      eventCreatedAt: now,
      attempts: 0,
      dueAt: now,
    };
    const expireIn = this.#retentionMs;
    const stored = leaseUntil === undefined
      ? delivery
      : { ...delivery, dueAt: leaseUntil, owner: this.#instance };
    change.set([P, "delivery", callId, id], stored, { expireIn })
      .set([P, "due", stored.dueAt, callId, id], true, { expireIn });
    return delivery;
  }

  /** Claims one due delivery (atomic check + lease), attempts it, and records the outcome. */
  async #claimAndDeliver(dueKey: Deno.KvKey, signal: AbortSignal): Promise<void> {
    const callId = String(dueKey[3]);
    const deliveryKey = [P, "delivery", callId, String(dueKey[4])];
    const entry = await withKvRetry(() => this.#kv.get<StoredDelivery>(deliveryKey));
    const d = entry.value;
    const now = this.#now();
    if (!d || d.state !== "pending" || d.dueAt !== Number(dueKey[2])) {
      // A leftover index entry (the delivery finished, was erased, or moved): drop it.
      await withKvRetry(() => this.#kv.atomic().check(entry).delete(dueKey).commit());
      return;
    }
    if (d.dueAt > now) return;
    const leaseUntil = now + this.#leaseMs;
    const claimed: StoredDelivery = { ...d, dueAt: leaseUntil, owner: this.#instance };
    const expireIn = this.#retentionMs;
    const claimChange = new KvChangeBuilder().check(entry).delete(dueKey)
      .set(deliveryKey, claimed, { expireIn })
      .set([P, "due", leaseUntil, callId, d.id], true, { expireIn });
    const claim = await withKvRetry(() => this.#commits.commit(claimChange));
    if (!claim.ok) return; // another worker claimed it first
    await this.#deliverClaimed(
      { delivery: d, leaseUntil, versionstamp: claim.versionstamp },
      signal,
    );
  }

  /** Attempts a delivery this instance holds the lease of, and records the outcome. */
  async #deliverClaimed(claimed: Claimed, signal: AbortSignal): Promise<void> {
    const { delivery: d, leaseUntil } = claimed;
    const callId = d.callId;
    const deliveryKey = [P, "delivery", callId, d.id];
    const expireIn = this.#retentionMs;
    const claimedEntry = { key: deliveryKey, versionstamp: claimed.versionstamp };

    const outcome = await this.#attempt(d, signal, claimed.body);
    if (outcome.next !== "shutdown") this.stats.attempts++;
    if (outcome.next === "delivered") this.stats.delivered++;
    const leaseKey = [P, "due", leaseUntil, callId, d.id];
    const change = new KvChangeBuilder().check(claimedEntry).delete(leaseKey);
    if (outcome.next === "shutdown") {
      // Not an attempt that counts: hand the delivery back for the next instance or restart.
      change.set(deliveryKey, { ...d, owner: undefined }, { expireIn })
        .set([P, "due", d.dueAt, callId, d.id], true, { expireIn });
      await withKvRetry(() => this.#commits.commit(change)).catch(() => {});
      return;
    }
    const attempts = d.attempts + 1;
    const attempt: StoredAttempt = {
      at: outcome.at,
      durationMs: outcome.durationMs,
      ...(outcome.statusCode !== undefined ? { statusCode: outcome.statusCode } : {}),
      ...(outcome.error !== undefined ? { error: outcome.error } : {}),
    };
    // Keyed by time and instance, not by number: a worker whose lease ran out still records its
    // attempt beside the one of the worker that took over.
    const attemptKey = [P, "attempt", callId, d.id, outcome.at, this.#instance];
    let state: DeliveryState = outcome.next === "retry" ? "pending" : outcome.next;
    let dueAt = d.dueAt;
    if (state === "pending") {
      const backoff = Math.min(
        this.#retry.baseDelayMs * 2 ** (attempts - 1),
        this.#retry.maxDelayMs,
      ) * (0.5 + 0.5 * this.#random());
      dueAt = this.#now() + backoff;
      if (dueAt - d.eventCreatedAt > this.#retry.giveUpAfterMs) state = "expired";
    }
    const next: StoredDelivery = { ...d, state, attempts, dueAt, owner: undefined };
    change.set(deliveryKey, next, { expireIn }).set(attemptKey, attempt, { expireIn });
    if (state === "pending") {
      change.set([P, "due", dueAt, callId, d.id], true, { expireIn });
      this.#nextScanAt = Math.min(this.#nextScanAt, dueAt);
    }
    const done = await withKvRetry(() => this.#commits.commit(change));
    if (!done.ok) {
      // The lease ran out and another worker took the delivery over: keep the attempt anyway.
      await withKvRetry(() => this.#kv.set(attemptKey, attempt, { expireIn }));
    }
    const log = this.#logger?.child({ call: callId, event: d.type, delivery: d.id });
    if (state === "delivered") log?.info("webhook delivered", { attempts });
    else if (state === "pending") log?.warn("webhook attempt failed; will retry", { ...attempt });
    else log?.warn("webhook delivery stopped", { state, ...attempt });
  }

  /** One POST of the event to the delivery's URL. */
  async #attempt(
    d: StoredDelivery,
    signal: AbortSignal,
    storedBody?: string,
  ): Promise<AttemptOutcome> {
    const at = this.#now();
    const started = performance.now();
    const elapsed = () => performance.now() - started;
    const problem = await deliveryTargetProblem(d.url, this.#policy, this.#resolve)
      .catch((error) => ({ message: String(error), permanent: false }));
    if (problem) {
      return {
        at,
        durationMs: elapsed(),
        error: problem.message,
        next: problem.permanent ? "refused" : "retry",
      };
    }
    const body = storedBody ?? await this.#body(d.callId, d.eventId);
    if (body === undefined) {
      return { at, durationMs: elapsed(), error: "event body no longer stored", next: "refused" };
    }
    const request = new AbortController();
    try {
      const signature = this.#signer.sign(body, this.#now() / 1000);
      const answer = await deadline(
        (async () => {
          const response = await fetch(d.url, {
            method: "POST",
            body,
            redirect: "manual",
            signal: request.signal,
            headers: {
              "content-type": "application/json",
              "user-agent": "telnyx-outbound-webhooks",
              [ID_HEADER]: d.eventId,
              [SIGNATURE_HEADER]: signature,
            },
          });
          // Read (a bounded part of) the answer: a connection dropped mid-answer is a failure.
          return { status: response.status, excerpt: await readExcerpt(response) };
        })(),
        this.#timeoutMs,
        { signal, what: "the receiver's answer" },
      );
      const durationMs = elapsed();
      if (answer.status >= 200 && answer.status < 300) {
        return { at, durationMs, statusCode: answer.status, next: "delivered" };
      }
      const error = answer.status >= 300 && answer.status < 400
        ? `redirect (${answer.status}) not followed; configure the final URL`
        : `HTTP ${answer.status}${answer.excerpt ? `: ${answer.excerpt.slice(0, 200)}` : ""}`;
      return {
        at,
        durationMs,
        statusCode: answer.status,
        error,
        next: answer.status === 410 ? "gone" : "retry",
      };
    } catch (error) {
      // Stops a request still under way (timeout, shutdown); one that was answered is done.
      request.abort();
      if (signal.aborted) return { at, durationMs: elapsed(), next: "shutdown" };
      const message = error instanceof DeadlineError
        ? `no complete answer within ${this.#timeoutMs} ms`
        : (error as Error).message;
      return { at, durationMs: elapsed(), error: message, next: "retry" };
    }
  }

  /** The stored JSON body of an event, or undefined once it has expired or been erased. */
  async #body(callId: string, eventId: string): Promise<string | undefined> {
    const event = await withKvRetry(() => this.#kv.get<StoredEvent>([P, "event", callId, eventId]));
    if (!event.value) return undefined;
    const parts: Uint8Array[] = [];
    for await (
      const entry of this.#kv.list<Uint8Array>({
        prefix: [P, "body", callId, eventId, event.value.bodyId],
      })
    ) {
      parts.push(entry.value);
    }
    if (parts.length !== event.value.chunks) return undefined;
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      bytes.set(part, offset);
      offset += part.length;
    }
    return new TextDecoder().decode(bytes);
  }
}

/** The first few KiB of a response body as text; the rest is cancelled. */
async function readExcerpt(response: Response): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < RESPONSE_EXCERPT_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const text = new TextDecoder().decode(
    parts.length === 1 ? parts[0] : new Uint8Array(parts.flatMap((p) => [...p])),
  );
  return text.slice(0, RESPONSE_EXCERPT_BYTES);
}
