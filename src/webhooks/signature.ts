/**
 * Webhook signatures: `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
 * `"<t>.<raw body>"` with `WEBHOOK_SECRET` as the key. The timestamp is signed so a receiver can
 * refuse replays older than its tolerance; every attempt is signed afresh with its own time.
 *
 * The receiver's side is the README's verification snippet (tests run that very snippet).
 *
 * @module
 */
import { createHmac } from "node:crypto";

/** Header carrying `t=<unix seconds>,v1=<hex>`. */
export const SIGNATURE_HEADER = "Webhook-Signature";
/** Header carrying the event id, stable across retries (the idempotency key). */
export const ID_HEADER = "Webhook-Id";

/** Signs webhook bodies with one secret. */
export class WebhookSigner {
  readonly #secret: string;

  constructor(secret: string) {
    this.#secret = secret;
  }

  /**
   * The `Webhook-Signature` value for `body` sent at `unixSeconds`. Node's synchronous HMAC:
   * every attempt signs afresh, and Web Crypto's async round trip costs several times more.
   */
  sign(body: string, unixSeconds: number): string {
    const t = Math.floor(unixSeconds);
    const hex = createHmac("sha256", this.#secret).update(`${t}.`).update(body).digest("hex");
    return `t=${t},v1=${hex}`;
  }
}
