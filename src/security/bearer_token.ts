/**
 * `Authorization: Bearer <API_TOKEN>` check for the routes that spend money.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Compares two strings in time that depends only on their lengths, so response timing does not
 * reveal how much of a guessed token was right.
 */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  let diff = x.length ^ y.length;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** True when the `Authorization` header carries exactly `Bearer <token>`. */
export function hasBearerToken(header: string | undefined | null, token: string): boolean {
  if (token === "") return false; // an unset token must never match an empty header
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? "");
  return timingSafeEqual(match?.[1] ?? "", token);
}
