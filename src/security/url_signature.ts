/**
 * HMAC-SHA256 signatures on the URLs that carry a call's custom data (`/answer` and `/ws`).
 *
 * The original example trusts whatever `body` arrives, so anyone who finds the server can open a
 * media socket with invented data, or edit the data of a real call. Here every URL we hand to
 * Telnyx carries `exp` (unix seconds) and `sig` over purpose, expiry and the exact body
 * parameter; anything else is refused. Web Crypto only: verification is constant-time there.
 *
 * @module
 */

/** Which URL a signature is for; a signature for one is useless on the other. */
export type SignaturePurpose = "answer" | "ws";

/** Query parameters a signed URL carries. */
export interface UrlSignature {
  exp: string;
  sig: string;
}

/** Why a signature was refused. */
export type SignatureFailure = "missing" | "malformed" | "expired" | "forged";

/** Result of {@link UrlSigner.verify}. */
export type SignatureCheck = { ok: true } | { ok: false; reason: SignatureFailure };

const encoder = new TextEncoder();
const DERIVATION_INFO = "telnyx-outbound/url-signature/v1";

function toBase64Url(bytes: ArrayBuffer): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return undefined; // 32 bytes, unpadded
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/") + "=");
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function message(purpose: SignaturePurpose, exp: string, body: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`v1\n${purpose}\n${exp}\n${body}`);
}

/** Signs and verifies URLs with one HMAC key. */
export class UrlSigner {
  private constructor(private readonly key: CryptoKey, private readonly ttlSeconds: number) {}

  /**
   * A signer keyed by `secret`. With `derive` the key is HKDF-derived from `secret` (used when
   * only the Telnyx API key is configured, so the API key itself never signs anything).
   */
  static async create(
    secret: string,
    options: { ttlSeconds: number; derive?: boolean },
  ): Promise<UrlSigner> {
    let raw: Uint8Array<ArrayBuffer> | ArrayBuffer = encoder.encode(secret);
    if (options.derive) {
      const base = await crypto.subtle.importKey("raw", raw, "HKDF", false, ["deriveBits"]);
      raw = await crypto.subtle.deriveBits(
        {
          name: "HKDF",
          hash: "SHA-256",
          salt: new Uint8Array(0),
          info: encoder.encode(DERIVATION_INFO),
        },
        base,
        256,
      );
    }
    const key = await crypto.subtle.importKey(
      "raw",
      raw,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    return new UrlSigner(key, options.ttlSeconds);
  }

  /** Signature for `body` (the exact `body` query value, "" when absent), valid for the TTL. */
  async sign(
    purpose: SignaturePurpose,
    body: string,
    nowMs: number = Date.now(),
  ): Promise<UrlSignature> {
    const exp = String(Math.floor(nowMs / 1000) + this.ttlSeconds);
    const mac = await crypto.subtle.sign("HMAC", this.key, message(purpose, exp, body));
    return { exp, sig: toBase64Url(mac) };
  }

  /** Checks `exp`/`sig` from a URL against `body`. */
  async verify(
    purpose: SignaturePurpose,
    body: string,
    exp: string | undefined,
    sig: string | undefined,
    nowMs: number = Date.now(),
  ): Promise<SignatureCheck> {
    if (!exp || !sig) return { ok: false, reason: "missing" };
    const mac = fromBase64Url(sig);
    if (!/^\d{1,12}$/.test(exp) || !mac) return { ok: false, reason: "malformed" };
    const valid = await crypto.subtle.verify("HMAC", this.key, mac, message(purpose, exp, body));
    if (!valid) return { ok: false, reason: "forged" };
    // Expiry is checked after the MAC so an attacker learns nothing from editing `exp`.
    if (Number(exp) * 1000 < nowMs) return { ok: false, reason: "expired" };
    return { ok: true };
  }
}
