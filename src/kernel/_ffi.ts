/**
 * The few libc calls kernel access needs (netlink sockets and setns), bound with Deno FFI.
 * Everything here is synchronous on purpose: a netlink exchange finishes in microseconds,
 * and a setns() must be undone before any other JavaScript runs on this thread.
 *
 * @module
 */

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
  },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  sendto_async: {
    name: "sendto",
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
    nonblocking: true,
  },
  recv_async: {
    name: "recv",
    parameters: ["i32", "buffer", "usize", "i32"],
    result: "isize",
    nonblocking: true,
  },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  close_async: { name: "close", parameters: ["i32"], result: "i32", nonblocking: true },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
});

const AF_NETLINK = 16;
const SOCK_RAW = 3;
/** `socket()` types of the inet sockets {@link openInetSocket} makes. */
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
/** The netfilter netlink family (nf_tables, conntrack), for {@link openNetlinkSocket}. */
export const NETLINK_NETFILTER = 12;
/** `recv()` flag: return EAGAIN instead of waiting when nothing is queued. */
export const MSG_DONTWAIT = 0x40;
/** errno of a {@link MSG_DONTWAIT} receive that found nothing queued. */
export const EAGAIN = 11;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const O_RDONLY = 0;
const O_CLOEXEC = 0x80000;
const CLONE_NEWNET = 0x40000000;
const EINTR = 4;

/** Reads the calling thread's errno; call it right after the failing libc call. */
export function errno(): number {
  const p = libc.symbols.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

// Linux errno numbers we expect from netlink and the calls above, with their C names.
const errnoNames: Record<number, [string, string]> = {
  1: ["EPERM", "Operation not permitted"],
  2: ["ENOENT", "No such file or directory"],
  3: ["ESRCH", "No such process"],
  4: ["EINTR", "Interrupted system call"],
  9: ["EBADF", "Bad file descriptor"],
  11: ["EAGAIN", "Resource temporarily unavailable"],
  12: ["ENOMEM", "Cannot allocate memory"],
  13: ["EACCES", "Permission denied"],
  16: ["EBUSY", "Device or resource busy"],
  17: ["EEXIST", "File exists"],
  19: ["ENODEV", "No such device"],
  20: ["ENOTDIR", "Not a directory"],
  22: ["EINVAL", "Invalid argument"],
  24: ["EMFILE", "Too many open files"],
  28: ["ENOSPC", "No space left on device"],
  34: ["ERANGE", "Numerical result out of range"],
  36: ["ENAMETOOLONG", "File name too long"],
  90: ["EMSGSIZE", "Message too long"],
  93: ["EPROTONOSUPPORT", "Protocol not supported"],
  95: ["EOPNOTSUPP", "Operation not supported"],
  97: ["EAFNOSUPPORT", "Address family not supported by protocol"],
  98: ["EADDRINUSE", "Address already in use"],
  99: ["EADDRNOTAVAIL", "Cannot assign requested address"],
  100: ["ENETDOWN", "Network is down"],
  101: ["ENETUNREACH", "Network is unreachable"],
  107: ["ENOTCONN", "Transport endpoint is not connected"],
  105: ["ENOBUFS", "No buffer space available"],
  110: ["ETIMEDOUT", "Connection timed out"],
  113: ["EHOSTUNREACH", "No route to host"],
};

/** Formats an errno as `File exists (EEXIST)`. */
export function describeErrno(code: number): string {
  const known = errnoNames[code];
  return known ? `${known[1]} (${known[0]})` : `errno ${code}`;
}

/** A failed system call, carrying its errno. */
export class SyscallError extends Error {
  /** The errno the call failed with. */
  readonly errno: number;
  constructor(call: string, code: number) {
    super(`${call}: ${describeErrno(code)}`);
    this.name = "SyscallError";
    this.errno = code;
  }
}

const encoder = new TextEncoder();

function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(s.length * 3 + 1);
  const { written } = encoder.encodeInto(s, bytes);
  return bytes.subarray(0, written + 1);
}

/** Opens a file read-only (close-on-exec) and returns its descriptor. */
export function openReadOnly(path: string): number {
  const fd = libc.symbols.open(cString(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw new SyscallError(`open ${path}`, errno());
  return fd;
}

/** Closes a descriptor, ignoring errors (there is nothing useful to do about them). */
export function closeFd(fd: number): void {
  libc.symbols.close(fd);
}

/**
 * {@link closeFd} on a thread-pool thread: closing a netfilter netlink socket waits in the
 * kernel for the transactions' deferred destruction (an RCU grace period after a deletion).
 */
export async function closeFdAsync(fd: number): Promise<void> {
  await libc.symbols.close_async(fd);
}

/** Moves the calling thread into the network namespace referred to by `fd`. */
export function setNetns(fd: number, what: string): void {
  if (libc.symbols.setns(fd, CLONE_NEWNET) !== 0) {
    throw new SyscallError(`setns ${what}`, errno());
  }
}

function setIntOpt(fd: number, level: number, name: number, value: number): void {
  const v = new Uint8Array(4);
  new DataView(v.buffer).setInt32(0, value, true);
  libc.symbols.setsockopt(fd, level, name, v, 4);
}

/**
 * Opens an inet socket (close-on-exec, so commands we spawn never inherit it) in the calling
 * thread's current network namespace.
 */
export function openInetSocket(family: number, type: number): number {
  const fd = libc.symbols.socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError("socket", errno());
  return fd;
}

/** setsockopt(), throwing on failure. */
export function setSocketOption(
  fd: number,
  level: number,
  name: number,
  value: Uint8Array<ArrayBuffer>,
): void {
  if (libc.symbols.setsockopt(fd, level, name, value, value.byteLength) !== 0) {
    throw new SyscallError(`setsockopt(${level}, ${name})`, errno());
  }
}

/** bind() to a prepared sockaddr, throwing a {@link SyscallError} (with its errno) on failure. */
export function bindSocket(fd: number, sockaddr: Uint8Array<ArrayBuffer>): void {
  if (libc.symbols.bind(fd, sockaddr, sockaddr.byteLength) !== 0) {
    throw new SyscallError("bind", errno());
  }
}

/** listen(), throwing on failure. */
export function listenSocket(fd: number, backlog: number): void {
  if (libc.symbols.listen(fd, backlog) !== 0) throw new SyscallError("listen", errno());
}

/**
 * Opens a netlink socket (rtnetlink unless `protocol` says otherwise) in the calling thread's
 * current network namespace, with extended and capped ACKs and a receive timeout so a lost
 * answer cannot hang the process.
 */
export function openNetlinkSocket(protocol: number = NETLINK_ROUTE): number {
  const fd = libc.symbols.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new SyscallError("socket(AF_NETLINK)", errno());
  setIntOpt(fd, SOL_SOCKET, SO_SNDBUF, 1 << 20);
  setIntOpt(fd, SOL_SOCKET, SO_RCVBUF, 1 << 20);
  setIntOpt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
  setIntOpt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
  const tv = new Uint8Array(16); // struct timeval { tv_sec = 10; tv_usec = 0 }
  new DataView(tv.buffer).setBigInt64(0, 10n, true);
  libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
  return fd;
}

const kernelAddr = new Uint8Array(12); // sockaddr_nl { AF_NETLINK, pad, pid 0, groups 0 }
new DataView(kernelAddr.buffer).setUint16(0, AF_NETLINK, true);

/** Sends one datagram (one or more netlink messages) to the kernel. */
export function sendToKernel(fd: number, data: Uint8Array<ArrayBuffer>): void {
  for (;;) {
    const n = Number(libc.symbols.sendto(fd, data, BigInt(data.byteLength), 0, kernelAddr, 12));
    if (n >= 0) return;
    const e = errno();
    if (e !== EINTR) throw new SyscallError("netlink send", e);
  }
}

/** Receives one datagram into `buf` (`flags`: e.g. {@link MSG_DONTWAIT}); returns its length. */
export function recvFromKernel(fd: number, buf: Uint8Array<ArrayBuffer>, flags = 0): number {
  for (;;) {
    const n = Number(libc.symbols.recv(fd, buf, BigInt(buf.byteLength), flags));
    if (n >= 0) return n;
    const e = errno();
    if (e !== EINTR) throw new SyscallError("netlink recv", e);
  }
}

// errno lives on the pool thread that ran a nonblocking call, out of reach: async failures
// are reported without it (the netlink ACK, which carries the kernel's verdict, is unaffected).

/** {@link sendToKernel} on a thread-pool thread. */
export async function sendToKernelAsync(fd: number, data: Uint8Array<ArrayBuffer>): Promise<void> {
  const n = Number(
    await libc.symbols.sendto_async(fd, data, BigInt(data.byteLength), 0, kernelAddr, 12),
  );
  if (n < 0) throw new Error("netlink send failed");
}

/** {@link recvFromKernel} on a thread-pool thread. */
export async function recvFromKernelAsync(
  fd: number,
  buf: Uint8Array<ArrayBuffer>,
): Promise<number> {
  const n = Number(await libc.symbols.recv_async(fd, buf, BigInt(buf.byteLength), 0));
  if (n < 0) throw new Error("netlink recv failed (timeout or interrupted)");
  return n;
}
