/**
 * What the benches read about processes from Linux's /proc, and how they keep a server and its
 * load generator on separate CPUs (`taskset`, from util-linux). Deno reads /proc/<pid> and
 * /proc/self only with `--allow-all`, as the benches run.
 *
 * @module
 */

/** CPU seconds (user + system) a process has used, from /proc. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident memory of a process in bytes, from /proc. */
export async function residentBytes(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb) * 1024;
}

/** True when `taskset` (util-linux) can be run here. */
export async function tasksetAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("taskset", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** Pins every thread of `pid` (and so the threads it starts later) to `cpus`, e.g. "1-3". */
export async function pinThreads(pid: number, cpus: string): Promise<void> {
  const { success, stderr } = await new Deno.Command("taskset", {
    args: ["--all-tasks", "--cpu-list", "--pid", cpus, String(pid)],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`taskset failed: ${new TextDecoder().decode(stderr)}`);
}

/**
 * The CPUs this process may run on (its affinity, which `taskset` or a cgroup may have narrowed),
 * as `taskset` writes them, e.g. "0-3,6".
 */
export function allowedCpuList(): string {
  const status = Deno.readTextFileSync("/proc/self/status");
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  if (!list) throw new Error("no Cpus_allowed_list in /proc/self/status");
  return list;
}

/** The CPU numbers of a `taskset` CPU list such as "0-3,6". */
export function cpuNumbers(list: string): number[] {
  return list.split(",").flatMap((range) => {
    const [first, last = first] = range.split("-").map(Number);
    return Array.from({ length: last - first + 1 }, (_, i) => first + i);
  });
}

/** The CPUs a bench gives a server and its load generator, as `taskset` CPU lists. */
export interface CpuSplit {
  /** The first CPU this process may use. */
  server: string;
  /** The other ones. */
  load: string;
  /** All of them, to restore this process's affinity with. */
  all: string;
}

/**
 * Splits this process's allowed CPUs into one for a server and the rest for its load generator,
 * when there are two or more and `taskset` is there to pin them; undefined otherwise.
 */
export async function serverAndLoadCpus(): Promise<CpuSplit | undefined> {
  const all = allowedCpuList();
  const cpus = cpuNumbers(all);
  if (cpus.length < 2 || !await tasksetAvailable()) return undefined;
  return { server: String(cpus[0]), load: cpus.slice(1).join(","), all };
}

/** `argv` run on `cpus` only (through `taskset`), or as it is when `cpus` is undefined. */
export function onCpus(cpus: string | undefined, argv: string[]): [string, ...string[]] {
  const pinned = cpus === undefined ? argv : ["taskset", "--cpu-list", cpus, ...argv];
  return pinned as [string, ...string[]];
}

/** The inodes of the sockets `pids` have open, from /proc/<pid>/fd (needs `--allow-all`). */
export async function socketInodes(pids: number[]): Promise<Set<string>> {
  const inodes = new Set<string>();
  for (const pid of pids) {
    try {
      for await (const entry of Deno.readDir(`/proc/${pid}/fd`)) {
        // An fd closed between listing and reading is simply gone.
        const target = await Deno.readLink(`/proc/${pid}/fd/${entry.name}`).catch((error) => {
          if (error instanceof Deno.errors.NotFound) return "";
          throw error;
        });
        if (target.startsWith("socket:[")) inodes.add(target.slice(8, -1));
      }
    } catch (error) {
      // A process that has exited has no sockets left; anything else (permissions) is a bug.
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return inodes;
}

/**
 * For each set of socket inodes ({@link socketInodes}), the bytes that arrived on its TCP
 * connections and have not been read yet: the kernel's receive queues, from /proc/net/tcp and
 * /proc/net/tcp6. A process that keeps up reads its sockets as data comes, so this stays near
 * zero; one whose event loop is behind leaves data waiting there. A lower bound: data the runtime
 * has already pulled into its own buffers is not counted, nor is a connection reset meanwhile.
 */
export async function unreadSocketBytes(sets: Set<string>[]): Promise<number[]> {
  const unread = sets.map(() => 0);
  for (const path of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const table = await Deno.readTextFile(path).catch((error) => {
      if (error instanceof Deno.errors.NotFound) return ""; // no IPv6 in this kernel
      throw error;
    });
    unreadInTcpTable(table, sets).forEach((bytes, index) => unread[index] += bytes);
  }
  return unread;
}

/** A row of /proc/net/tcp: `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode`. */
const TCP_TABLE_ROW = /^\s*\d+: \S+ \S+ (\S\S) [0-9A-F]+:([0-9A-F]+) \S+ \S+\s+\d+\s+\d+ (\d+)/gm;
/** The `st` of a listening socket, whose rx_queue counts connections waiting to be accepted. */
const LISTEN = "0A";

/** {@link unreadSocketBytes} for the text of one /proc/net/tcp or /proc/net/tcp6. */
export function unreadInTcpTable(table: string, sets: Set<string>[]): number[] {
  const unread = sets.map(() => 0);
  for (const [, state, rxQueue, inode] of table.matchAll(TCP_TABLE_ROW)) {
    if (state === LISTEN) continue;
    const index = sets.findIndex((set) => set.has(inode));
    if (index >= 0) unread[index] += parseInt(rxQueue, 16);
  }
  return unread;
}
