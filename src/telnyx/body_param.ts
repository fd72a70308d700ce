/**
 * The `body` query parameter that carries a call's custom data through Telnyx.
 *
 * Wire format, kept identical to the original Python example so a Pipecat Cloud bot can read
 * it: standard base64 (with `+`, `/`, `=`) of the UTF-8 JSON text. It travels URL-encoded.
 *
 * @module
 */

/** JSON object given as `body` to `/start`. */
export type CustomData = Record<string, unknown>;

/** Standard base64 of the JSON text of `data`. */
export function encodeBodyParam(data: CustomData): string {
  const bytes = new TextEncoder().encode(JSON.stringify(data));
  let binary = "";
  // Chunked so a large body never hits the argument-count limit of fromCharCode.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Thrown when a `body` parameter is not base64 of a JSON object. */
export class BodyParamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BodyParamError";
  }
}

/**
 * Decodes an already URL-decoded `body` parameter. Accepts the URL-safe alphabet and missing
 * padding too, since some HTTP stacks rewrite them.
 */
export function decodeBodyParam(param: string): CustomData {
  let b64 = param.trim().replaceAll("-", "+").replaceAll("_", "/").replaceAll(" ", "+");
  b64 += "=".repeat((4 - (b64.length % 4)) % 4);
  let binary: string;
  try {
    binary = atob(b64);
  } catch {
    throw new BodyParamError("body is not valid base64");
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new BodyParamError("body is not base64 of UTF-8 JSON");
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new BodyParamError("body is not a JSON object");
  }
  return data as CustomData;
}
