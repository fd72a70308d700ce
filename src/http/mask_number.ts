/**
 * Phone numbers in logs.
 *
 * @module
 */

/** Keeps enough of a phone number to tell calls apart in logs without logging it whole. */
export function maskNumber(number: string): string {
  return number.length > 6 ? `${number.slice(0, 4)}…${number.slice(-2)}` : "…";
}
