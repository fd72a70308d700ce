/**
 * HMAC-SHA256 signatures on the URLs we hand to Telnyx: those that carry a call's custom data
 * (`/answer` and `/ws`) and the call-progress and answering-machine callbacks.
 *
 * Trusting whatever `body` arrives would let anyone who finds the server open a media socket
 * with invented data, or edit the data of a real call. So every URL we hand to Telnyx carries
 * `exp` (unix seconds) and `sig` over purpose, expiry, the call it is for and the exact body
 * parameter; anything else is refused. A Stream URL names its call (`call=`), so a
 * socket opened with it can only ever become that call. Web Crypto only: verification is
 * constant-time there.
 *
 * @module
 */

/**
 * Which URL a signature is for; a signature for one is useless on the others. `status` and `amd`
 * are Telnyx's call-progress and answering-machine callbacks.
 */
export type SignaturePurpose = "answer" | "ws" | "status" | "amd";

/**
 * Lifetime of the callback URLs (`status`, `amd`) unless configured: Telnyx posts to them from
 * ringing until the call has ended, a call may last hours, and Telnyx retries failed callbacks.
 */
export const CALLBACK_URL_TTL_SECONDS = 24 * 3600;

/** What a signature covers besides its expiry. */
export interface SignedFields {
  purpose: SignaturePurpose;
  /** The exact `body` query value, "" when absent. */
  body: string;
  /** The call the URL is bound to (Telnyx's CallSid / call_control_id), "" when unbound. */
  call?: string;
}

/** Query parameters a signed URL carries. */
export interface UrlSignature {
  exp: string;
  sig: string;
}

/** Why a signature was refused. */
export type SignatureFailure = "missing" | "malformed" | "expired" | "forged";

/** Result of {@link UrlSigner.verify}. */
export type SignatureCheck = { ok: true } | { ok: false; reason: SignatureFailure };

/**
 * How long each kind of signed URL stays valid, in seconds; callback URLs default to
 * {@link CALLBACK_URL_TTL_SECONDS}.
 */
export type UrlLifetimes =
  & Record<"answer" | "ws", number>
  & Partial<Record<"status" | "amd", number>>;

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

/**
 * The signed text. A JSON array keeps the fields apart whatever they contain (a call id is
 * chosen by whoever posts to `/answer`, so no separator character can be trusted).
 */
function message(fields: SignedFields, exp: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(
    JSON.stringify(["v2", fields.purpose, exp, fields.call ?? "", fields.body]),
  );
}

/** Signs and verifies URLs with one HMAC key. */
export class UrlSigner {
  private constructor(private readonly key: CryptoKey, readonly lifetimes: UrlLifetimes) {}

  /**
   * A signer keyed by `secret`. With `derive` the key is HKDF-derived from `secret` (used when
   * only the Telnyx API key is configured, so the API key itself never signs anything).
   */
  static async create(
    secret: string,
    options: { lifetimes: UrlLifetimes; derive?: boolean },
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
    return new UrlSigner(key, { ...options.lifetimes });
  }

  /** Signature over `fields`, valid for the lifetime of its purpose. */
  async sign(fields: SignedFields, nowMs: number = Date.now()): Promise<UrlSignature> {
    const lifetime = this.lifetimes[fields.purpose] ?? CALLBACK_URL_TTL_SECONDS;
    const exp = String(Math.floor(nowMs / 1000) + lifetime);
    const mac = await crypto.subtle.sign("HMAC", this.key, message(fields, exp));
    return { exp, sig: toBase64Url(mac) };
  }

  /** Checks `exp`/`sig` from a URL against `fields`. */
  async verify(
    fields: SignedFields,
    exp: string | undefined,
    sig: string | undefined,
    nowMs: number = Date.now(),
  ): Promise<SignatureCheck> {
    if (!exp || !sig) return { ok: false, reason: "missing" };
    const mac = fromBase64Url(sig);
    if (!/^\d{1,12}$/.test(exp) || !mac) return { ok: false, reason: "malformed" };
    const valid = await crypto.subtle.verify("HMAC", this.key, mac, message(fields, exp));
    if (!valid) return { ok: false, reason: "forged" };
    // Expiry is checked after the MAC so an attacker learns nothing from editing `exp`.
    if (Number(exp) * 1000 < nowMs) return { ok: false, reason: "expired" };
    return { ok: true };
  }

  /**
   * `base` with the signed query: `body` (percent-encoded in full, so a Pipecat Cloud agent
   * decodes it as it expects), `call`, `exp`, `sig`. Parameters that are empty are left out.
   */
  async signUrl(base: string, fields: SignedFields, nowMs?: number): Promise<string> {
    const { exp, sig } = await this.sign(fields, nowMs);
    const body = fields.body ? `body=${encodeURIComponent(fields.body)}&` : "";
    const call = fields.call ? `call=${encodeURIComponent(fields.call)}&` : "";
    return `${base}?${body}${call}exp=${exp}&sig=${sig}`;
  }

  /** Reads the signed parameters of `url` (as {@link signUrl} writes them) and verifies them. */
  async verifyUrl(
    url: URL,
    purpose: SignaturePurpose,
    nowMs?: number,
  ): Promise<
    ({ ok: true; signature: UrlSignature } | { ok: false; reason: SignatureFailure }) & {
      fields: SignedFields;
    }
  > {
    const fields: SignedFields = {
      purpose,
      body: url.searchParams.get("body") ?? "",
      call: url.searchParams.get("call") ?? "",
    };
    const exp = url.searchParams.get("exp") ?? undefined;
    const sig = url.searchParams.get("sig") ?? undefined;
    const check = await this.verify(fields, exp, sig, nowMs);
    if (!check.ok) return { ...check, fields };
    return { ok: true, fields, signature: { exp: exp!, sig: sig! } };
  }
}

/**
 * Stream URLs remembered as used at once, in one process or over every process of a cluster.
 * Only URLs this server minted count, each for at most STREAM_URL_TTL_SECONDS, so this holds
 * hundreds of new calls a second.
 */
export const USED_STREAM_URLS_CAPACITY = 20_000;

/**
 * Signatures already used, so that each signed Stream URL opens one socket. Entries are kept
 * until their URL expires (after that the signature is refused anyway) and never beyond
 * `capacity`: when every slot holds a live URL, new ones are refused rather than old ones
 * forgotten, since forgetting one would let it be replayed.
 */
export class UsedSignatures {
  /** Signature → expiry in ms. Insertion order is nearly expiry order (one lifetime). */
  readonly #expiries = new Map<string, number>();

  constructor(readonly capacity: number) {}

  /** Number of remembered signatures. */
  get size(): number {
    return this.#expiries.size;
  }

  /**
   * Records `signature` as used. "fresh" the first time, "reused" after that, "full" when no
   * slot is free.
   */
  claim(signature: UrlSignature, nowMs: number = Date.now()): "fresh" | "reused" | "full" {
    this.#forgetExpired(nowMs);
    if (this.#expiries.has(signature.sig)) return "reused";
    if (this.#expiries.size >= this.capacity) this.#forgetExpired(nowMs, { all: true });
    if (this.#expiries.size >= this.capacity) return "full";
    this.#expiries.set(signature.sig, Number(signature.exp) * 1000);
    return "fresh";
  }

  #forgetExpired(nowMs: number, options: { all?: boolean } = {}): void {
    for (const [sig, expMs] of this.#expiries) {
      if (expMs >= nowMs) {
        // Entries behind a live one are almost always live too: stop here unless full.
        if (!options.all) return;
        continue;
      }
      this.#expiries.delete(sig);
    }
  }
}
