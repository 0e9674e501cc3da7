/**
 * Who holds a lease, and whether that process is provably dead. A lease records its holder's
 * pid, the process start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot), the
 * boot id (`/proc/sys/kernel/random/boot_id`) and the pid namespace (`/proc/self/ns/pid`).
 * On the same boot and in the same pid namespace, a holder whose pid is gone, a zombie, or
 * reused by a process with another start time is dead — a new controller need not wait for
 * its lease to lapse. Anything else (another machine, another boot, another pid namespace, a
 * record of an older version, no /proc) cannot be told, and the lease is waited out.
 *
 * @module
 */

/** The identity of a process, as a lease records it. */
export interface ProcessIdentity {
  pid: number;
  hostname: string;
  /** Start time in clock ticks since boot (`/proc/<pid>/stat` field 22). */
  startTime?: string;
  bootId?: string;
  /** `pid:[inode]` of the pid namespace. */
  pidNs?: string;
}

/** What can be said about a lease holder from here. */
export type HolderStatus =
  | { status: "alive" }
  | { status: "dead" }
  | { status: "unknown"; why: string };

const read = (path: string): string | undefined => {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
};

/** State (field 3) and start time (field 22) of a process, from `/proc/<pid>/stat`. */
function procStat(pid: number): { state: string; startTime: string } | undefined {
  const text = read(`/proc/${pid}/stat`);
  if (!text) return undefined;
  // `pid (comm) state …`: comm may hold spaces and parentheses, so split after the last `)`.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0], startTime: fields[19] };
}

function pidNamespace(): string | undefined {
  try {
    return Deno.readLinkSync("/proc/self/ns/pid");
  } catch {
    return undefined;
  }
}

let self: ProcessIdentity | undefined;

/** This process's identity (read once). */
export function selfIdentity(): ProcessIdentity {
  return self ??= {
    pid: Deno.pid,
    hostname: Deno.hostname(),
    ...optional("startTime", procStat(Deno.pid)?.startTime),
    ...optional("bootId", read("/proc/sys/kernel/random/boot_id")),
    ...optional("pidNs", pidNamespace()),
  };
}

function optional<K extends string>(key: K, value: string | undefined) {
  return (value ? { [key]: value } : {}) as { [P in K]?: string };
}

/** Whether the process `holder` describes is alive, dead, or cannot be told from here. */
export function holderStatus(holder: Partial<ProcessIdentity>): HolderStatus {
  const me = selfIdentity();
  if (!holder.bootId || !holder.startTime || !holder.pidNs || typeof holder.pid !== "number") {
    return { status: "unknown", why: "its lease names no process identity (an older cnm)" };
  }
  if (!me.bootId || !me.pidNs) return { status: "unknown", why: "no /proc here" };
  if (holder.bootId !== me.bootId) {
    return { status: "unknown", why: "on another boot or machine: cannot tell" };
  }
  if (holder.pidNs !== me.pidNs) {
    return { status: "unknown", why: "in another pid namespace: cannot tell" };
  }
  const stat = procStat(holder.pid);
  if (!stat || stat.state === "Z" || stat.state === "X") return { status: "dead" };
  return stat.startTime === holder.startTime ? { status: "alive" } : { status: "dead" };
}
