/**
 * One sandbox's resolver: a UDP and a TCP socket on random ports of `127.0.0.11` inside the
 * sandbox's namespace, the DNAT pair from `127.0.0.11:53` to them, and the loops that answer
 * from the records (in memory, read at every query: a change shows at the next query) or
 * forward. It depends on nothing but the records, the forwarder and the kernel: no NATS, no
 * controller, so it keeps answering whatever happens to them.
 *
 * @module
 */

import { DriverError } from "../errors.ts";
import { answerQuery, errorReply } from "./answer.ts";
import {
  checkDnat,
  type DnatFinding,
  type DnatPorts,
  forgetDnsFlows,
  installDnat,
  type NftExec,
} from "./dnat.ts";
import { removeDnat } from "./dnat.ts";
import type { Forwarder, Upstream } from "./forwarder.ts";
import { listenTcpIn, listenUdpIn } from "./netns_sockets.ts";
import type { DecodedPacket } from "./_packet.ts";
import { RCODE } from "./_packet.ts";
import type { DnsRecords } from "./records.ts";
import { RESOLVER_ADDRESS } from "./resolv_conf.ts";

/** Options of {@link startListener}. */
export interface ListenerOptions {
  /** The sandbox whose view of the records is answered. */
  sandboxId: string;
  /** Path of the sandbox's network namespace. */
  netns: string;
  records: DnsRecords;
  forwarder: Forwarder;
  /** Where unknown names go, in order (see `forwarder.ts`). Default none: SERVFAIL. */
  upstreams?: readonly Upstream[];
  /** See `AnswerOptions.ndotsSet`. Default false. */
  ndotsSet?: boolean;
  /** Install the DNAT pair (else clients must use the ports directly). Default true. */
  nat?: boolean;
  /**
   * Run `nft` (and `conntrack`) through this instead of programming the table over netlink
   * (`dnat.ts`). Default: netlink; `conntrack` spawned inside the sandbox.
   */
  exec?: NftExec;
  /**
   * The sandbox may hold an earlier listener's table (a restart): after installing the new
   * one, forget its DNS flows so clients that keep their source port follow (`dnat.ts`).
   */
  replacing?: boolean;
  /** A TCP connection idle this long is closed. Default 10000 ms. */
  tcpIdleMs?: number;
  /** TCP connections served at once; more are closed at once. Default 256. */
  maxTcpConnections?: number;
}

/** Counters of a listener. */
export interface ListenerStats {
  udp: number;
  tcp: number;
  forwarded: number;
  /** Forwards no upstream answered (answered SERVFAIL). */
  failed: number;
  /** Forwards refused for too many in flight (answered REFUSED). */
  refused: number;
  /** Messages that were not queries, or replies that could not be sent. */
  dropped: number;
}

/** A running listener. */
export interface SandboxListener {
  readonly sandboxId: string;
  readonly netns: string;
  /** The random ports inside the namespace. */
  readonly ports: DnatPorts;
  /** Current upstreams. */
  readonly upstreams: readonly Upstream[];
  /** Replaces the upstreams (and the ndots behaviour) without touching the sockets. */
  configure(update: { upstreams?: readonly Upstream[]; ndotsSet?: boolean }): void;
  readonly stats: Readonly<ListenerStats>;
  /** Differences between the sandbox's DNAT table and these ports ([] when right). */
  check(): Promise<DnatFinding[]>;
  /** Re-installs the DNAT pair (idempotent), and forgets the DNS flows of a replaced one. */
  repair(): Promise<void>;
  /** Closes the sockets and removes the DNAT pair (kept with `keepRule`). */
  close(options?: { keepRule?: boolean }): Promise<void>;
}

const MAX_TCP_MESSAGE = 65535;

/**
 * Starts a listener inside `options.netns`.
 *
 * @throws {DriverError} when the sockets cannot be opened (namespace gone, no
 *   `--unstable-net`, loopback down) or the DNAT pair cannot be installed; nothing is left
 *   open then.
 */
export async function startListener(options: ListenerOptions): Promise<SandboxListener> {
  const { sandboxId, netns, records, forwarder } = options;
  const exec = options.exec;
  const nat = options.nat ?? true;
  const tcpIdleMs = options.tcpIdleMs ?? 10_000;
  const maxTcp = options.maxTcpConnections ?? 256;
  let upstreams: readonly Upstream[] = [...(options.upstreams ?? [])];
  let ndotsSet = options.ndotsSet ?? false;
  const stats: ListenerStats = { udp: 0, tcp: 0, forwarded: 0, failed: 0, refused: 0, dropped: 0 };

  const fail = (what: string, err: unknown) =>
    new DriverError(
      `embedded DNS of sandbox ${sandboxId}: ${what} in ${netns}: ${(err as Error).message}`,
      { cause: err },
    );
  let udp: Deno.DatagramConn;
  try {
    udp = listenUdpIn(netns, RESOLVER_ADDRESS);
  } catch (err) {
    throw fail(`cannot listen on ${RESOLVER_ADDRESS} (udp)`, err);
  }
  let tcp: Deno.TcpListener;
  try {
    tcp = listenTcpIn(netns, RESOLVER_ADDRESS);
  } catch (err) {
    udp.close();
    throw fail(`cannot listen on ${RESOLVER_ADDRESS} (tcp)`, err);
  }
  const ports: DnatPorts = {
    udp: (udp.addr as Deno.NetAddr).port,
    tcp: (tcp.addr as Deno.NetAddr).port,
  };
  if (nat) {
    try {
      await installDnat(netns, ports, exec);
      if (options.replacing) await forgetDnsFlows(netns, exec);
    } catch (err) {
      udp.close();
      tcp.close();
      throw fail("cannot install the DNAT pair", err);
    }
  }

  let closed = false;
  const conns = new Set<Deno.Conn>();

  /** The reply to a query that is not a local name. */
  const forward = async (
    bytes: Uint8Array,
    query: DecodedPacket,
    transport: "udp" | "tcp",
  ): Promise<Uint8Array> => {
    stats.forwarded++;
    const result = await forwarder.forward(bytes, upstreams, transport);
    if (result.kind === "reply") return result.bytes;
    if (result.kind === "refused") {
      stats.refused++;
      return errorReply(query, RCODE.REFUSED);
    }
    stats.failed++;
    return errorReply(query, RCODE.SERVFAIL);
  };

  const handle = (
    bytes: Uint8Array,
    transport: "udp" | "tcp",
  ): Uint8Array | Promise<Uint8Array> | undefined => {
    const out = answerQuery(bytes, { records, sandboxId, transport, ndotsSet });
    if (out.kind === "answer") return out.bytes;
    if (out.kind === "forward") return forward(bytes.slice(), out.query, transport);
    stats.dropped++;
    return undefined;
  };

  const serveUdp = async () => {
    let errors = 0;
    // One receive buffer for the life of the socket: Deno allocates 64 KiB per receive()
    // otherwise, and the garbage collector shows in the tail latency. A message is handled
    // (decoded, answered, or copied for forwarding) before the next receive.
    const buffer = new Uint8Array(65535);
    while (!closed) {
      let msg: [Uint8Array, Deno.Addr];
      try {
        msg = await udp.receive(buffer);
        errors = 0;
      } catch {
        if (closed || ++errors > 100) break;
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const [bytes, addr] = msg;
      stats.udp++;
      const reply = handle(bytes, "udp");
      if (reply === undefined) continue;
      if (reply instanceof Uint8Array) {
        udp.send(reply, addr).catch(() => stats.dropped++);
      } else {
        reply.then((r) => closed ? undefined : udp.send(r, addr)).catch(() => stats.dropped++);
      }
    }
  };

  const serveConn = async (conn: Deno.Conn) => {
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(MAX_TCP_MESSAGE + 2);
    let idle = setTimeout(() => conn.close(), tcpIdleMs);
    try {
      for (;;) {
        const n = await conn.read(chunk);
        if (n === null) break;
        clearTimeout(idle); // (not idle while a forward is under way)
        const next = new Uint8Array(buf.byteLength + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.byteLength);
        buf = next;
        while (buf.byteLength >= 2) {
          const length = (buf[0] << 8) | buf[1];
          if (buf.byteLength < 2 + length) break;
          const message = buf.slice(2, 2 + length);
          buf = buf.slice(2 + length);
          stats.tcp++;
          const reply = await handle(message, "tcp");
          if (reply === undefined) continue;
          const frame = new Uint8Array(2 + reply.byteLength);
          frame[0] = reply.byteLength >> 8;
          frame[1] = reply.byteLength & 0xff;
          frame.set(reply, 2);
          for (let off = 0; off < frame.byteLength;) off += await conn.write(frame.subarray(off));
        }
        idle = setTimeout(() => conn.close(), tcpIdleMs);
      }
    } catch {
      // reset, idle-closed or listener closed
    } finally {
      clearTimeout(idle);
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };

  const serveTcp = async () => {
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await tcp.accept();
      } catch {
        if (closed) break;
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      if (conns.size >= maxTcp) {
        conn.close();
        continue;
      }
      conns.add(conn);
      void serveConn(conn);
    }
  };

  const loops = Promise.all([serveUdp(), serveTcp()]);

  return {
    sandboxId,
    netns,
    ports,
    get upstreams() {
      return upstreams;
    },
    configure(update) {
      if (update.upstreams) upstreams = [...update.upstreams];
      if (update.ndotsSet !== undefined) ndotsSet = update.ndotsSet;
    },
    stats,
    check: () => checkDnat(netns, ports, exec),
    async repair() {
      await installDnat(netns, ports, exec);
      await forgetDnsFlows(netns, exec);
    },
    async close(opts = {}) {
      if (closed) return;
      closed = true;
      const errors: unknown[] = [];
      for (const c of [udp, tcp, ...conns]) {
        try {
          c.close();
        } catch (err) {
          if (!(err instanceof Deno.errors.BadResource)) errors.push(err);
        }
      }
      forwarder.release(netns);
      await loops;
      if (nat && !opts.keepRule) {
        await removeDnat(netns, exec).catch((err) => {
          // A namespace that is already gone took its table with it.
          if (!/No such file|does not exist|nsenter/.test(String(err))) errors.push(err);
        });
      }
      if (errors.length) {
        throw new AggregateError(errors, `closing the DNS listener of ${sandboxId} failed`);
      }
    },
  };
}
