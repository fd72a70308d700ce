/**
 * Telnyx's Ed25519 webhook signature (`telnyx-signature-ed25519` over `timestamp|raw body`),
 * verified with the SDK's own verifier so the rules (encoding, 300 s tolerance) stay Telnyx's.
 *
 * @module
 */
import { TelnyxWebhook } from "telnyx/lib/webhooks";

/** Verifies requests against the account's public key (base64, from the Telnyx portal). */
export class WebhookVerifier {
  readonly #webhook: TelnyxWebhook;

  constructor(publicKeyBase64: string) {
    this.#webhook = new TelnyxWebhook(publicKeyBase64);
  }

  /** Resolves `{ ok: true }` for a genuine request, else the reason it was refused. */
  async verify(
    rawBody: string,
    headers: Headers,
  ): Promise<{ ok: true } | { ok: false; reason: string }> {
    try {
      // The SDK reads headers from a plain object; a Headers instance looks empty to it.
      await this.#webhook.verify(rawBody, Object.fromEntries(headers));
      return { ok: true };
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
  }
}
