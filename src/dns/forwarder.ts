/**
 * Forwarding queries the records do not answer to upstream servers, libnetwork's way: the
 * servers in order, at most 3, each given 4 s; a SERVFAIL or REFUSED from one moves on to
 * the next; no answer from any → the caller answers SERVFAIL; at most 1024 forwards at a
 * time (beyond: REFUSED). A query goes upstream over the transport it came in on.
 *
 * UDP: one long-lived socket per namespace dialled from (the host namespace for the host's
 * servers, a sandbox's for its own `dns`), created there with the setns trick; queries are
 * sent under a fresh random id and a reply is accepted only from the server asked, with that
 * id. TCP: one connection per query (see `_tcp_dial.ts`).
 *
 * @module
 */

import { isIPv6 } from "../ipam/cidr.ts";
import { exchangeTcp } from "./_tcp_dial.ts";
import { RCODE } from "./_packet.ts";
import { listenUdpIn } from "./netns_sockets.ts";

/** An upstream server and the namespace it is dialled from. */
export interface Upstream {
  address: string;
  /** Default 53. */
  port?: number;
  /** Network namespace path to dial from; undefined: the process's own. */
  netns?: string;
}

/** Options of {@link createForwarder}. */
export interface ForwarderOptions {
  /** Time each upstream gets (libnetwork's `extIOTimeout`). Default 4000 ms. */
  timeoutMs?: number;
  /** Forwards in flight at most (libnetwork's `maxConcurrent`). Default 1024. */
  maxConcurrent?: number;
  /** Upstreams tried per query at most. Default 3. */
  maxUpstreams?: number;
}

/** The result of one forward. */
export type ForwardResult =
  | { kind: "reply"; bytes: Uint8Array; from: string }
  | { kind: "failed"; tried: string[] }
  | { kind: "refused" };

/** Forwards queries; shared by every listener of a resolver. */
export interface Forwarder {
  /**
   * Forwards `query` (as received; its id is replaced while in flight and restored in the
   * reply) to `upstreams` in order.
   */
  forward(
    query: Uint8Array,
    upstreams: readonly Upstream[],
    transport: "udp" | "tcp",
  ): Promise<ForwardResult>;
  /** Closes the UDP sockets dialling from `netns` (a sandbox going away). */
  release(netns: string): void;
  /** Forwards in flight. */
  readonly inFlight: number;
  /** Closes every socket; forwards in flight fail. */
  close(): void;
}

interface Pending {
  address: string;
  port: number;
  resolve(bytes: Uint8Array | undefined): void;
}

interface DialSocket {
  conn: Deno.DatagramConn;
  pending: Map<number, Pending>;
}

const rcodeOf = (bytes: Uint8Array) => bytes.byteLength >= 4 ? bytes[3] & 0x0f : -1;
const idOf = (bytes: Uint8Array) => (bytes[0] << 8) | bytes[1];
const withId = (bytes: Uint8Array, id: number): Uint8Array => {
  const copy = bytes.slice();
  copy[0] = id >> 8;
  copy[1] = id & 0xff;
  return copy;
};

/** Creates a forwarder. */
export function createForwarder(options: ForwarderOptions = {}): Forwarder {
  const timeoutMs = options.timeoutMs ?? 4000;
  const maxConcurrent = options.maxConcurrent ?? 1024;
  const maxUpstreams = options.maxUpstreams ?? 3;
  const sockets = new Map<string, DialSocket>();
  let inFlight = 0;
  let closed = false;

  const keyOf = (netns: string | undefined, v6: boolean) => `${v6 ? 6 : 4}:${netns ?? ""}`;

  const socketFor = (netns: string | undefined, v6: boolean): DialSocket => {
    const key = keyOf(netns, v6);
    let s = sockets.get(key);
    if (s) return s;
    const conn = listenUdpIn(netns, v6 ? "::" : "0.0.0.0");
    s = { conn, pending: new Map() };
    sockets.set(key, s);
    void receiveLoop(key, s);
    return s;
  };

  const receiveLoop = async (key: string, s: DialSocket) => {
    const buffer = new Uint8Array(65535); // reused: Deno allocates 64 KiB per receive() otherwise
    try {
      for (;;) {
        const [bytes, addr] = await s.conn.receive(buffer);
        if (bytes.byteLength < 12) continue;
        const p = s.pending.get(idOf(bytes));
        const from = addr as Deno.NetAddr;
        // Only the server asked may answer (a spoofed reply from elsewhere is dropped).
        if (!p || from.port !== p.port || !sameAddress(from.hostname, p.address)) continue;
        s.pending.delete(idOf(bytes));
        p.resolve(bytes.slice());
      }
    } catch {
      // closed
    } finally {
      if (sockets.get(key) === s) sockets.delete(key);
      for (const p of s.pending.values()) p.resolve(undefined);
      s.pending.clear();
    }
  };

  const freshId = (s: DialSocket): number => {
    const r = new Uint16Array(1);
    for (;;) {
      crypto.getRandomValues(r);
      if (!s.pending.has(r[0])) return r[0];
    }
  };

  const viaUdp = (query: Uint8Array, u: Upstream): Promise<Uint8Array | undefined> => {
    const address = u.address;
    const port = u.port ?? 53;
    const s = socketFor(u.netns, isIPv6(address));
    const id = freshId(s);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        s.pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      s.pending.set(id, {
        address,
        port,
        resolve: (bytes) => {
          clearTimeout(timer);
          resolve(bytes);
        },
      });
      s.conn.send(withId(query, id), { transport: "udp", hostname: address, port }).catch(() => {
        if (s.pending.delete(id)) {
          clearTimeout(timer);
          resolve(undefined);
        }
      });
    });
  };

  const viaTcp = (query: Uint8Array, u: Upstream): Promise<Uint8Array | undefined> =>
    exchangeTcp(u.netns, u.address, u.port ?? 53, query, timeoutMs).catch(() => undefined);

  return {
    get inFlight() {
      return inFlight;
    },
    async forward(query, upstreams, transport) {
      if (closed || inFlight >= maxConcurrent) return { kind: "refused" };
      inFlight++;
      const tried: string[] = [];
      try {
        const clientId = idOf(query);
        for (const u of upstreams.slice(0, maxUpstreams)) {
          const name = `${u.address}:${u.port ?? 53}`;
          tried.push(name);
          let reply: Uint8Array | undefined;
          try {
            reply = transport === "udp" ? await viaUdp(query, u) : await viaTcp(query, u);
          } catch {
            reply = undefined; // e.g. the namespace to dial from is gone
          }
          if (!reply) continue;
          const rcode = rcodeOf(reply);
          if (rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) continue;
          return { kind: "reply", bytes: withId(reply, clientId), from: name };
        }
        return { kind: "failed", tried };
      } finally {
        inFlight--;
      }
    },
    release(netns) {
      for (const v6 of [false, true]) {
        const s = sockets.get(keyOf(netns, v6));
        if (!s) continue;
        sockets.delete(keyOf(netns, v6));
        s.conn.close();
      }
    },
    close() {
      closed = true;
      for (const s of sockets.values()) s.conn.close();
      sockets.clear();
    },
  };
}

function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const strip = (s: string) => s.replace(/^::ffff:/, "").toLowerCase();
  return strip(a) === strip(b);
}
