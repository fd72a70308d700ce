/**
 * Webhook signatures: `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
 * `"<t>.<raw body>"` with `WEBHOOK_SECRET` as the key. The timestamp is signed so a receiver can
 * refuse replays older than its tolerance; every attempt is signed afresh with its own time.
 *
 * The receiver's side is the README's verification snippet (tests run that very snippet).
 *
 * @module
 */

/** Header carrying `t=<unix seconds>,v1=<hex>`. */
export const SIGNATURE_HEADER = "Webhook-Signature";
/** Header carrying the event id, stable across retries (the idempotency key). */
export const ID_HEADER = "Webhook-Id";

const encoder = new TextEncoder();

/** Signs webhook bodies with one secret. */
export class WebhookSigner {
  readonly #key: Promise<CryptoKey>;

  constructor(secret: string) {
    this.#key = crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
  }

  /** The `Webhook-Signature` value for `body` sent at `unixSeconds`. */
  async sign(body: string, unixSeconds: number): Promise<string> {
    const t = Math.floor(unixSeconds);
    const mac = await crypto.subtle.sign("HMAC", await this.#key, encoder.encode(`${t}.${body}`));
    const hex = Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
    return `t=${t},v1=${hex}`;
  }
}
