/**
 * Running a synchronous function with the calling thread inside another network namespace:
 * `setns()` in, the function, `setns()` back, before any other JavaScript runs. A socket
 * keeps the namespace it was created in, so this is how a socket is placed into a sandbox
 * (`Deno.listenDatagram` and `Deno.listen` create theirs synchronously).
 *
 * @example
 * ```ts ignore
 * import { inNetns } from "./in_netns.ts";
 * const udp = inNetns("/var/run/netns/sb1", () =>
 *   Deno.listenDatagram({ hostname: "127.0.0.11", port: 0, transport: "udp" }));
 * ```
 *
 * @module
 */

import { closeFd, openReadOnly, setNetns } from "./_ffi.ts";

let origin: number | undefined;

/**
 * Runs `fn` with this thread in the network namespace at `path` (`undefined`: the
 * process's own, `fn` runs as is) and returns its result. `fn` must be synchronous: what it
 * starts asynchronously would run in whatever namespace the thread is in by then.
 *
 * @throws {Error} when the namespace cannot be opened or entered, or when `fn` returns a
 *   promise (the work would escape the namespace).
 */
export function inNetns<T>(path: string | undefined, fn: () => T): T {
  if (path === undefined) return fn();
  origin ??= openReadOnly("/proc/thread-self/ns/net");
  const fd = openReadOnly(path);
  try {
    setNetns(fd, path);
    let result: T;
    try {
      result = fn();
    } finally {
      // Must not fail silently: the thread would stay in the wrong namespace.
      setNetns(origin, "back to the original namespace");
    }
    if (result instanceof Promise) {
      result.catch(() => {});
      throw new Error("inNetns: the function must be synchronous");
    }
    return result;
  } finally {
    closeFd(fd);
  }
}
