/**
 * Network namespaces: one cached rtnetlink socket (and an open namespace fd, for
 * IFLA_NET_NS_FD) per namespace path, opened by briefly moving the calling thread into the
 * namespace with setns(), plus the `ip netns` and `nsenter` execs that are not on the hot
 * path.
 *
 * @module
 */

import { DriverError } from "../errors.ts";
import { closeFd, openNetlinkSocket, openReadOnly, setNetns } from "./_ffi.ts";
import { NetlinkSocket } from "./_netlink.ts";

/** The directory `ip netns` keeps named namespaces in. */
export const NETNS_DIR = "/var/run/netns";

/** An open namespace: its netlink socket and a descriptor of the namespace itself. */
export interface NsHandle {
  path: string | undefined;
  sock: NetlinkSocket;
  nsFd: number;
  ino: number;
  /** Idle extra sockets for slow requests run off the event loop (see {@link NamespaceTable.lend}). */
  spares: NetlinkSocket[];
  closed: boolean;
}

const MAX_SPARES = 8;

let nsfsDev: number | undefined;

/** True when `path` is a mounted network namespace (nsfs), not a stale placeholder file. */
export function isNetns(path: string): boolean {
  try {
    nsfsDev ??= Deno.statSync("/proc/self/ns/net").dev;
    return Deno.statSync(path).dev === nsfsDev;
  } catch {
    return false;
  }
}

function inode(path: string): number | undefined {
  try {
    const st = Deno.statSync(path);
    return st.dev === nsfsDev ? st.ino ?? undefined : undefined;
  } catch {
    return undefined;
  }
}

/** Cache of namespace handles, keyed by path; `undefined` is the thread's own namespace. */
export class NamespaceTable {
  readonly #handles = new Map<string | undefined, NsHandle>();
  readonly #origin: number;
  #closed = false;

  constructor() {
    nsfsDev ??= Deno.statSync("/proc/self/ns/net").dev;
    this.#origin = openReadOnly("/proc/thread-self/ns/net");
  }

  /** Returns the handle of `path`, opening (or re-opening, if recreated) it when needed. */
  get(path: string | undefined): NsHandle {
    if (this.#closed) throw new DriverError("kernel access is closed");
    const cached = this.#handles.get(path);
    if (path === undefined) return cached ?? this.#remember(this.#open(undefined));
    const ino = inode(path);
    if (ino === undefined) {
      if (cached) this.forget(path);
      throw new DriverError(`network namespace ${path} does not exist`);
    }
    if (cached && cached.ino === ino) return cached;
    if (cached) this.forget(path);
    return this.#remember(this.#open(path));
  }

  #remember(h: NsHandle): NsHandle {
    this.#handles.set(h.path, h);
    return h;
  }

  #open(path: string | undefined): NsHandle {
    if (path === undefined) {
      const sock = new NetlinkSocket(openNetlinkSocket());
      return { path, sock, nsFd: -1, ino: 0, spares: [], closed: false };
    }
    let nsFd: number;
    try {
      nsFd = openReadOnly(path);
    } catch (err) {
      throw new DriverError(`network namespace ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      const sock = new NetlinkSocket(this.#socketIn(nsFd, path));
      return { path, sock, nsFd, ino: inode(path) ?? 0, spares: [], closed: false };
    } catch (err) {
      closeFd(nsFd);
      throw new DriverError(`network namespace ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Opens a netlink socket inside the namespace `nsFd` by visiting it with this thread. */
  #socketIn(nsFd: number, path: string): number {
    return this.#visit(nsFd, path, openNetlinkSocket);
  }

  /** Runs `fn` (synchronous: no other JavaScript may run meanwhile) on this thread in `nsFd`. */
  #visit<T>(nsFd: number, path: string, fn: () => T): T {
    if (nsFd < 0) return fn();
    setNetns(nsFd, path);
    try {
      return fn();
    } finally {
      // Must not fail silently: the thread would stay in the wrong namespace.
      setNetns(this.#origin, "back to the original namespace");
    }
  }

  /** True when a handle of `path` is cached (open). */
  has(path: string | undefined): boolean {
    return this.#handles.has(path);
  }

  /** A descriptor of the namespace of `path` (the thread's own for `undefined`). */
  fdOf(path: string | undefined): number {
    const h = this.get(path);
    return h.nsFd >= 0 ? h.nsFd : this.#origin;
  }

  /**
   * Runs the synchronous `fn` with this thread inside the namespace `path` (undefined: the
   * thread's own): sockets it opens belong to that namespace for their whole life.
   */
  inside<T>(path: string | undefined, fn: () => T): T {
    const h = this.get(path);
    return this.#visit(h.nsFd, path ?? "", fn);
  }

  /**
   * Lends `fn` a socket of `path` that nobody else uses meanwhile (an idle spare or a new
   * one), so a slow request can await the kernel without blocking the event loop or
   * mixing its ACKs with other requests.
   */
  async lend<T>(path: string | undefined, fn: (sock: NetlinkSocket) => Promise<T>): Promise<T> {
    const h = this.get(path);
    const sock = h.spares.pop() ?? new NetlinkSocket(this.#socketIn(h.nsFd, path ?? ""));
    let result: T;
    try {
      result = await fn(sock);
    } catch (err) {
      sock.close(); // its state (pending ACKs) is unknown
      throw err;
    }
    if (h.closed || h.spares.length >= MAX_SPARES) sock.close();
    else h.spares.push(sock);
    return result;
  }

  /** Closes and drops the handle of `path`, if any. */
  forget(path: string | undefined): void {
    const h = this.#handles.get(path);
    if (!h) return;
    this.#handles.delete(path);
    h.closed = true;
    h.sock.close();
    for (const spare of h.spares.splice(0)) spare.close();
    if (h.nsFd >= 0) closeFd(h.nsFd);
  }

  /** Closes every handle. */
  close(): void {
    if (this.#closed) return;
    for (const path of [...this.#handles.keys()]) this.forget(path);
    closeFd(this.#origin);
    this.#closed = true;
  }
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Text written to the command's stdin; default: none. */
  stdin?: string;
  /** Namespace path to run in via `nsenter --net=`; default: the process's own. */
  netns?: string;
}

/** Runs a command, returning stdout; rejects with a DriverError naming it and its stderr. */
export async function run(argv: string[], options: RunOptions = {}): Promise<string> {
  if (argv.length === 0) throw new DriverError("exec: empty command");
  const full = options.netns ? ["nsenter", `--net=${options.netns}`, "--", ...argv] : argv;
  const cmd = new Deno.Command(full[0], {
    args: full.slice(1),
    stdin: options.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  });
  let out: Deno.CommandOutput;
  try {
    const child = cmd.spawn();
    if (options.stdin !== undefined) {
      const w = child.stdin.getWriter();
      try {
        await w.write(new TextEncoder().encode(options.stdin));
      } finally {
        await w.close().catch(() => {});
      }
    }
    out = await child.output();
  } catch (err) {
    throw new DriverError(`exec ${argv.join(" ")}: ${(err as Error).message}`, { cause: err });
  }
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    const where = options.netns ? ` (in ${options.netns})` : "";
    throw new DriverError(
      `exec ${argv.join(" ")}${where} exited with ${out.code}: ${stderr || stdout.trim()}`,
    );
  }
  return stdout;
}
