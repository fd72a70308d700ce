/**
 * A {@link Webhooks} instance on a KV store with a running worker, for the webhook tests.
 *
 * @module
 */
import { delay } from "../../src/async/deadline.ts";
import { type DeliveryView, Webhooks, type WebhooksOptions } from "../../src/webhooks/webhooks.ts";

export const TEST_WEBHOOK_SECRET = "whsec-test-0123456789abcdef";

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
  const giveUpAt = performance.now() + timeoutMs;
  for (;;) {
    const views = await webhooks.deliveriesFor(callId);
    if (done(views)) return views;
    if (performance.now() > giveUpAt) {
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(views)}`);
    }
    await delay(10);
  }
}
