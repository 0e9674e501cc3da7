/**
 * Sockets placed inside a network namespace: `setns()` in, `Deno.listenDatagram` /
 * `Deno.listen` (synchronous, so the socket is born there), `setns()` back. A socket keeps
 * its namespace for life, so one process serves every sandbox from its own namespace.
 * `node:dgram` cannot do this: its bind is asynchronous.
 *
 * @example
 * ```ts ignore
 * import { listenUdpIn } from "./netns_sockets.ts";
 * const udp = listenUdpIn("/var/run/netns/sb1", "127.0.0.11"); // random port, inside sb1
 * ```
 *
 * @module
 */

import { inNetns } from "../kernel/in_netns.ts";

/**
 * Opens a UDP socket on `hostname`:`port` (0: a random port) inside `netns` (undefined: the
 * process's own namespace).
 *
 * @throws {Error} when Deno runs without `--unstable-net`, or the namespace or the address
 *   cannot be used.
 */
export function listenUdpIn(
  netns: string | undefined,
  hostname: string,
  port = 0,
): Deno.DatagramConn {
  if (typeof Deno.listenDatagram !== "function") {
    throw new Error(
      "the embedded DNS resolver needs Deno.listenDatagram: run Deno with --unstable-net " +
        '(or "unstable": ["net"] in deno.json)',
    );
  }
  return inNetns(netns, () => Deno.listenDatagram({ hostname, port, transport: "udp" }));
}

/** Opens a TCP listener on `hostname`:`port` (0: random) inside `netns`. */
export function listenTcpIn(
  netns: string | undefined,
  hostname: string,
  port = 0,
): Deno.TcpListener {
  return inNetns(netns, () => Deno.listen({ hostname, port, transport: "tcp" }));
}
