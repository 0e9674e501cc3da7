/**
 * One DNS exchange over TCP with a socket created inside a given network namespace.
 * `Deno.connect` is asynchronous (its socket may be created after the thread has left the
 * namespace), so the socket is made with libc `socket()` under {@link inNetns} and then
 * driven with blocking libc calls on Deno's FFI thread pool, each bounded by
 * SO_SNDTIMEO/SO_RCVTIMEO.
 *
 * @module
 */

import { inNetns } from "../kernel/in_netns.ts";
import { ipToString, parseIp } from "../ipam/cidr.ts";

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32", nonblocking: true },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize", nonblocking: true },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize", nonblocking: true },
});

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;
const MSG_NOSIGNAL = 0x4000;
const MSG_WAITALL = 0x100;
const SHUT_RDWR = 2;

function sockaddr(address: string, port: number): Uint8Array<ArrayBuffer> {
  const ip = parseIp(address);
  if (ip.family === 4) {
    const sa = new Uint8Array(16); // sockaddr_in
    const v = new DataView(sa.buffer);
    v.setUint16(0, AF_INET, true);
    v.setUint16(2, port, false);
    v.setUint32(4, Number(ip.value), false);
    return sa;
  }
  const sa = new Uint8Array(28); // sockaddr_in6
  const v = new DataView(sa.buffer);
  v.setUint16(0, AF_INET6, true);
  v.setUint16(2, port, false);
  for (let i = 0; i < 16; i++) sa[8 + i] = Number((ip.value >> BigInt((15 - i) * 8)) & 0xffn);
  return sa;
}

function setTimeouts(fd: number, ms: number): void {
  const tv = new Uint8Array(16);
  const v = new DataView(tv.buffer);
  const t = Math.max(1, Math.ceil(ms));
  v.setBigInt64(0, BigInt(Math.floor(t / 1000)), true);
  v.setBigInt64(8, BigInt((t % 1000) * 1000), true);
  libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
  libc.symbols.setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, tv, 16);
}

/** Thrown when a TCP exchange fails or times out. */
export class TcpDialError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TcpDialError";
  }
}

/**
 * Sends `message` (a DNS message, without the length prefix) to `address`:`port` over TCP
 * from the namespace `netns` (undefined: the process's own) and returns the reply.
 *
 * @throws {TcpDialError} when connecting, sending or receiving fails or exceeds `timeoutMs`.
 */
export async function exchangeTcp(
  netns: string | undefined,
  address: string,
  port: number,
  message: Uint8Array,
  timeoutMs: number,
): Promise<Uint8Array> {
  const family = parseIp(address).family === 4 ? AF_INET : AF_INET6;
  const where = `${family === AF_INET ? address : `[${ipToString(parseIp(address))}]`}:${port}`;
  const fd = inNetns(netns, () => libc.symbols.socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd < 0) throw new TcpDialError(`tcp ${where}: cannot create a socket`);
  const deadline = performance.now() + timeoutMs;
  const left = () => {
    const ms = deadline - performance.now();
    if (ms <= 0) throw new TcpDialError(`tcp ${where}: timed out after ${timeoutMs} ms`);
    return ms;
  };
  // A timer shuts the socket down at the deadline, so no blocked call outlives it.
  const timer = setTimeout(() => libc.symbols.shutdown(fd, SHUT_RDWR), timeoutMs);
  try {
    setTimeouts(fd, left());
    const sa = sockaddr(address, port);
    if ((await libc.symbols.connect(fd, sa, sa.byteLength)) !== 0) {
      throw new TcpDialError(`tcp ${where}: cannot connect`);
    }
    const frame = new Uint8Array(2 + message.byteLength);
    new DataView(frame.buffer).setUint16(0, message.byteLength, false);
    frame.set(message, 2);
    setTimeouts(fd, left());
    const sent = Number(await libc.symbols.send(fd, frame, BigInt(frame.byteLength), MSG_NOSIGNAL));
    if (sent !== frame.byteLength) throw new TcpDialError(`tcp ${where}: send failed`);
    const recvAll = async (n: number): Promise<Uint8Array<ArrayBuffer>> => {
      const buf = new Uint8Array(n);
      setTimeouts(fd, left());
      const got = Number(await libc.symbols.recv(fd, buf, BigInt(n), MSG_WAITALL));
      if (got !== n) {
        left(); // reports a timeout as such
        throw new TcpDialError(`tcp ${where}: connection closed before the reply`);
      }
      return buf;
    };
    const head = await recvAll(2);
    const length = new DataView(head.buffer).getUint16(0, false);
    if (length === 0) throw new TcpDialError(`tcp ${where}: empty reply`);
    return await recvAll(length);
  } finally {
    clearTimeout(timer);
    libc.symbols.close(fd);
  }
}
