/**
 * A {@link Webhooks} instance on a KV store with a running worker, for the webhook tests.
 *
 * @module
 */
import { type DeliveryView, Webhooks, type WebhooksOptions } from "../../src/webhooks/webhooks.ts";
import { waitFor } from "../helpers/wait_for.ts";

export const TEST_WEBHOOK_SECRET = "whsec-test-0123456789abcdef";

/** A fresh KV file under /tmp for a test that restarts or shares a store; removed on dispose. */
export async function tempKvFile(prefix: string): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempFile({ dir: "/tmp", prefix, suffix: ".kv" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path).catch(() => {}) };
}

/** A worker and its store; dispose to stop the worker and close the store. */
export interface RunningWebhooks extends AsyncDisposable {
  webhooks: Webhooks;
  kv: Deno.Kv;
  /** Stops the worker (waits for its attempts in flight) and closes the store. */
  stop(): Promise<void>;
}

/** Opens `path` (default in memory) and starts a worker with fast retries on loopback. */
export async function startWebhooks(
  options: Partial<WebhooksOptions> & { path?: string } = {},
): Promise<RunningWebhooks> {
  const { path = ":memory:", ...rest } = options;
  const kv = await Deno.openKv(path);
  const webhooks = new Webhooks({
    kv,
    secret: TEST_WEBHOOK_SECRET,
    policy: { local: true, allowPrivate: false },
    retry: { baseDelayMs: 10, maxDelayMs: 100 },
    pollMs: 20,
    timeoutMs: 2_000,
    ...rest,
  });
  const stopping = new AbortController();
  const running = webhooks.run(stopping.signal);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    stopping.abort();
    await running;
    kv.close();
  };
  return { webhooks, kv, stop, [Symbol.asyncDispose]: stop };
}

/** Polls a call's deliveries until `done` holds for them (bounded), and returns them. */
export async function waitForDeliveries(
  webhooks: Webhooks,
  callId: string,
  done: (views: DeliveryView[]) => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<DeliveryView[]> {
  let views: DeliveryView[] = [];
  try {
    await waitFor(async () => done(views = await webhooks.deliveriesFor(callId)), what, timeoutMs);
  } catch (error) {
    // The deliveries as last seen say which attempt went wrong.
    throw new Error(`${(error as Error).message}: ${JSON.stringify(views)}`, { cause: error });
  }
  return views;
}
