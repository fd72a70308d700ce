/**
 * Opens the KV store call records live in, from `KV_PATH`:
 * - unset: `./data/calls.sqlite3` (the folder is created);
 * - `:memory:`: a throwaway in-process store;
 * - an `http(s)://` URL: a denokv server over KV Connect (Deno reads `DENO_KV_ACCESS_TOKEN`);
 * - anything else: a file path;
 * - on Deno Deploy (`DENO_DEPLOYMENT_ID` set) with `KV_PATH` unset: the attached KV.
 *
 * @module
 */

/** The default KV file, relative to the working directory. */
export const DEFAULT_KV_FILE = "./data/calls.sqlite3";

/** Where KV is opened for the given settings; `undefined` means Deno Deploy's attached KV. */
export function kvLocation(
  kvPath: string | undefined,
  env: { deploymentId?: string } = {},
): string | undefined {
  if (kvPath) return kvPath;
  if (env.deploymentId) return undefined;
  return DEFAULT_KV_FILE;
}

/** Opens KV at `kvPath` (see the module doc). */
export async function openRecordsKv(kvPath: string | undefined): Promise<Deno.Kv> {
  const location = kvLocation(kvPath, { deploymentId: Deno.env.get("DENO_DEPLOYMENT_ID") });
  if (location === undefined) return await Deno.openKv();
  const isFile = location !== ":memory:" && !/^https?:\/\//i.test(location);
  if (isFile) {
    const slash = location.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(location.slice(0, slash), { recursive: true });
  }
  return await Deno.openKv(location);
}
