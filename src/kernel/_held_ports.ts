/**
 * Held host ports: for each published host port, a socket bound (and, for TCP, listening) in
 * the host namespace for as long as the mapping lives, as Docker's OSAllocator does. It makes
 * a conflict with another process fail before anything is programmed (instead of the DNAT
 * rule silently shadowing that process's service), shows the port as used in `ss`, and dies
 * with the process, so a crashed controller never leaves a port taken.
 *
 * Each socket carries a classic-BPF filter that drops every packet: nothing is ever queued
 * on it (published traffic is DNATed before it could reach it). `SO_REUSEADDR` on TCP and
 * `IPV6_V6ONLY` on IPv6 sockets, like Docker; close-on-exec, so spawned commands never
 * inherit them.
 *
 * @module
 */

import { ConflictError, DriverError, InvalidArgumentError } from "../errors.ts";
import { ipToString, parseIp } from "../ipam/cidr.ts";
import {
  bindSocket,
  closeFd,
  describeErrno,
  listenSocket,
  openInetSocket,
  setSocketOption,
  SOCK_DGRAM,
  SOCK_STREAM,
  SyscallError,
} from "./_ffi.ts";
import type { HeldPort } from "./types.ts";

const AF_INET = 2;
const AF_INET6 = 10;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ATTACH_FILTER = 26;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const EADDRINUSE = 98;
const EADDRNOTAVAIL = 99;

// struct sock_filter { BPF_RET | BPF_K, 0, 0, 0 }: "return 0" drops every packet. Backed by
// an ArrayBuffer (off V8's moving heap) and read by the function below, which keeps it alive.
const dropAll = new Uint8Array(new ArrayBuffer(8));
dropAll[0] = 0x06;

/** struct sock_fprog { u16 len; (pad); struct sock_filter *filter; } (64-bit ABI) of `dropAll`. */
function dropAllProgram(): Uint8Array<ArrayBuffer> {
  const prog = new Uint8Array(16);
  const v = new DataView(prog.buffer);
  v.setUint16(0, 1, true);
  v.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(dropAll))), true);
  return prog;
}

const int = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
};

function sockaddr(ip: string, port: number): Uint8Array<ArrayBuffer> {
  const { family, value } = parseIp(ip);
  const b = new Uint8Array(family === 4 ? 16 : 28);
  const v = new DataView(b.buffer);
  v.setUint16(0, family === 4 ? AF_INET : AF_INET6, true);
  v.setUint16(2, port, false); // network order
  if (family === 4) v.setUint32(4, Number(value), false);
  else for (let i = 0; i < 16; i++) b[8 + i] = Number((value >> BigInt(8 * (15 - i))) & 0xffn);
  return b;
}

const familyOf = (ip: string) => ip.includes(":") ? 6 : 4;
const isUnspecified = (ip: string) => ip === "0.0.0.0" || ip === "::";
const formatHostPort = (ip: string, port: number) =>
  familyOf(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;

/** `tcp 0.0.0.0 8080`: what identifies a held port. */
const keyOf = (p: Pick<HeldPort, "proto" | "hostIp" | "hostPort">) =>
  `${p.proto} ${p.hostIp} ${p.hostPort}`;

/** The registry of held ports of one kernel (one host namespace). */
export class HeldPorts {
  readonly #held = new Map<string, { port: HeldPort; fd: number }>();
  readonly #inside: <T>(fn: () => T) => T;

  /** @param inside runs a synchronous function with the thread in the host namespace. */
  constructor(inside: <T>(fn: () => T) => T) {
    this.#inside = inside;
  }

  /**
   * Holds `port` for `port.owner`; a no-op when that owner holds it already.
   *
   * @throws {ConflictError} `Bind for X:P failed: port is already allocated` when another
   *   owner of this registry holds it (or an overlapping address), and
   *   `failed to bind host port X:P/tcp: address already in use` when another process does.
   * @throws {InvalidArgumentError} when the address is not one of the host's
   *   (`… cannot assign requested address`).
   */
  hold(port: HeldPort): void {
    const p = normalize(port);
    const key = keyOf(p);
    const mine = this.#held.get(key);
    if (mine?.port.owner === p.owner) return;
    const fam = familyOf(p.hostIp);
    for (const { port: other } of this.#held.values()) {
      if (
        other.proto === p.proto && other.hostPort === p.hostPort &&
        familyOf(other.hostIp) === fam &&
        (other.hostIp === p.hostIp || isUnspecified(other.hostIp) || isUnspecified(p.hostIp))
      ) {
        throw new ConflictError(
          `Bind for ${other.hostIp}:${p.hostPort} failed: port is already allocated`,
        );
      }
    }
    const what = `${formatHostPort(p.hostIp, p.hostPort)}/${p.proto}`;
    const fd = this.#inside(() => openInetSocket(fam === 4 ? AF_INET : AF_INET6, sockType(p)));
    try {
      // The filter goes on before bind, so not even one datagram is queued.
      setSocketOption(fd, SOL_SOCKET, SO_ATTACH_FILTER, dropAllProgram());
      if (p.proto === "tcp") setSocketOption(fd, SOL_SOCKET, SO_REUSEADDR, int(1));
      if (fam === 6) setSocketOption(fd, IPPROTO_IPV6, IPV6_V6ONLY, int(1));
      bindSocket(fd, sockaddr(p.hostIp, p.hostPort));
      if (p.proto === "tcp") listenSocket(fd, 1);
    } catch (err) {
      closeFd(fd);
      const code = err instanceof SyscallError ? err.errno : 0;
      const reason = code ? describeErrno(code).replace(/ \(E[A-Z]+\)$/, "").toLowerCase() : "";
      const message = `failed to bind host port ${what}: ${reason || (err as Error).message}`;
      if (code === EADDRINUSE) throw new ConflictError(message, { cause: err });
      if (code === EADDRNOTAVAIL) throw new InvalidArgumentError(message, { cause: err });
      throw new DriverError(message, { cause: err });
    }
    this.#held.set(key, { port: p, fd });
  }

  /** Closes the socket of `port`, if held. */
  release(port: Pick<HeldPort, "proto" | "hostIp" | "hostPort">): void {
    const key = keyOf(normalize({ ...port, owner: "" }));
    const h = this.#held.get(key);
    if (!h) return;
    this.#held.delete(key);
    closeFd(h.fd);
  }

  /** Everything held, sorted. */
  list(): HeldPort[] {
    return [...this.#held.values()].map((h) => ({ ...h.port }))
      .sort((a, b) => keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0);
  }

  /** Closes every socket. */
  close(): void {
    for (const h of this.#held.values()) closeFd(h.fd);
    this.#held.clear();
  }
}

function sockType(p: HeldPort): number {
  return p.proto === "tcp" ? SOCK_STREAM : SOCK_DGRAM;
}

function normalize(p: HeldPort): HeldPort {
  if (p.proto !== "tcp" && p.proto !== "udp") {
    throw new InvalidArgumentError(`invalid held port: proto ${String(p.proto)}`);
  }
  if (!Number.isInteger(p.hostPort) || p.hostPort < 1 || p.hostPort > 65535) {
    throw new InvalidArgumentError(`invalid held port: port ${String(p.hostPort)}`);
  }
  return { ...p, hostIp: ipToString(parseIp(p.hostIp)) };
}
