/**
 * The one poll of the tests, for a state reached through real I/O (no clock to advance).
 *
 * @module
 */
import { delay } from "../../src/async/deadline.ts";

/**
 * Polls `condition` every `intervalMs` until it holds; fails after `timeoutMs` (a hang guard, not
 * a timing assertion).
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
  intervalMs = 5,
): Promise<void> {
  const giveUpAt = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`);
    await delay(intervalMs);
  }
}
