/**
 * The webhook verification snippet exactly as the README shows it, loaded as a module, so the
 * tests check the code receivers will copy.
 *
 * @module
 */

/** `verifyWebhook(secret, header, rawBody, toleranceSeconds?)` from the README. */
export type VerifyWebhook = (
  secret: string,
  header: string | null,
  rawBody: string,
  toleranceSeconds?: number,
) => Promise<boolean>;

/** Extracts the block after `<!-- webhook-verify -->` and imports it from a file under /tmp. */
export async function loadReadmeVerifier(): Promise<VerifyWebhook> {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const match = /<!-- webhook-verify -->\n```js\n([\s\S]*?)```/.exec(readme);
  if (!match) throw new Error("README.md has no <!-- webhook-verify --> js block");
  const path = await Deno.makeTempFile({ dir: "/tmp", prefix: "verify_webhook_", suffix: ".js" });
  try {
    await Deno.writeTextFile(path, match[1]);
    const module = await import(`file://${path}`);
    return module.verifyWebhook as VerifyWebhook;
  } finally {
    await Deno.remove(path);
  }
}
