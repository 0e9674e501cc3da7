/**
 * Netlink framing: a message builder over DataView, attribute parsing, and a socket wrapper
 * that sends batches of requests (each with NLM_F_ACK) and dumps. Knows nothing of links or
 * routes; `_rtnl.ts` does.
 *
 * @module
 */

import {
  closeFd,
  closeFdAsync,
  describeErrno,
  recvFromKernel,
  recvFromKernelAsync,
  sendToKernel,
  sendToKernelAsync,
} from "./_ffi.ts";

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;
const HDR = 16;

/** Netlink uses host byte order; probe it once. */
const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A kernel refusal of one request, carrying its errno and optional extended-ACK text. */
export class NetlinkError extends Error {
  /** Positive errno (EEXIST = 17, ...). */
  readonly errno: number;
  /** The kernel's extended-ACK text, when it sent one (e.g. which VNI clashed). */
  readonly extack?: string;
  constructor(what: string, code: number, extack?: string) {
    super(`${what}: ${describeErrno(code)}${extack ? `: ${extack}` : ""}`);
    this.name = "NetlinkError";
    this.errno = code;
    if (extack) this.extack = extack;
  }
}

/** Builds one netlink message: header, fixed family struct, then (nested) attributes. */
export class MessageBuilder {
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(128);
  #view = new DataView(this.#buf.buffer);
  #len = 0;
  #nests: number[] = [];

  constructor(type: number, flags: number, fixedLen: number) {
    this.#ensure(HDR + fixedLen);
    this.#view.setUint16(4, type, LE);
    this.#view.setUint16(6, flags | NLM_F_REQUEST, LE);
    this.#len = HDR + fixedLen;
  }

  #ensure(extra: number): void {
    if (this.#len + extra + 4 <= this.#buf.byteLength) return;
    const next = new Uint8Array(Math.max(this.#buf.byteLength * 2, this.#len + extra + 64));
    next.set(this.#buf);
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** Writes into the fixed struct that follows the header (offset relative to it). */
  u8(off: number, v: number): this {
    this.#view.setUint8(HDR + off, v);
    return this;
  }
  u16(off: number, v: number): this {
    this.#view.setUint16(HDR + off, v, LE);
    return this;
  }
  u32(off: number, v: number): this {
    this.#view.setUint32(HDR + off, v >>> 0, LE);
    return this;
  }
  i32(off: number, v: number): this {
    this.#view.setInt32(HDR + off, v, LE);
    return this;
  }

  /** Appends an attribute with raw payload. */
  attr(type: number, payload: Uint8Array): this {
    const len = 4 + payload.byteLength;
    this.#ensure(len + 3);
    this.#view.setUint16(this.#len, len, LE);
    this.#view.setUint16(this.#len + 2, type, LE);
    this.#buf.set(payload, this.#len + 4);
    this.#len += (len + 3) & ~3;
    return this;
  }
  attrU32(type: number, v: number): this {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, v >>> 0, LE);
    return this.attr(type, p);
  }
  attrU8(type: number, v: number): this {
    return this.attr(type, new Uint8Array([v & 0xff]));
  }
  /** A 32-bit attribute in network byte order (nf_tables' NLA_BE32 attributes). */
  attrBe32(type: number, v: number): this {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, v >>> 0, false);
    return this.attr(type, p);
  }
  /** A 16-bit attribute in network byte order (ports, e.g. IFLA_VXLAN_PORT). */
  attrBe16(type: number, v: number): this {
    return this.attr(type, new Uint8Array([(v >> 8) & 0xff, v & 0xff]));
  }
  attrStr(type: number, s: string): this {
    const bytes = encoder.encode(s);
    const p = new Uint8Array(bytes.byteLength + 1);
    p.set(bytes);
    return this.attr(type, p);
  }

  /** Opens a nested attribute; close it with {@link end}. */
  begin(type: number): this {
    this.#ensure(4);
    this.#nests.push(this.#len);
    this.#view.setUint16(this.#len + 2, type, LE);
    this.#len += 4;
    return this;
  }
  end(): this {
    const start = this.#nests.pop();
    if (start === undefined) throw new Error("netlink builder: end() without begin()");
    this.#view.setUint16(start, this.#len - start, LE);
    return this;
  }

  /** Appends a raw block (e.g. a nested ifinfomsg) to the current position, 4-aligned. */
  raw(bytes: Uint8Array): this {
    this.#ensure(bytes.byteLength + 3);
    this.#buf.set(bytes, this.#len);
    this.#len += (bytes.byteLength + 3) & ~3;
    return this;
  }

  /** Finishes the message with the given sequence number. */
  finish(seq: number): Uint8Array<ArrayBuffer> {
    this.#view.setUint32(0, this.#len, LE);
    this.#view.setUint32(8, seq >>> 0, LE);
    return this.#buf.subarray(0, this.#len);
  }
}

/** One received message: type, flags and its payload (after the netlink header). */
export interface Message {
  type: number;
  flags: number;
  data: DataView;
}

/** Attributes of a message or a nest, by type (the last one wins). */
export type Attrs = Map<number, DataView>;

/** Parses rtattrs in `view` from `offset` to its end. */
export function parseAttrs(view: DataView, offset: number): Attrs {
  const out: Attrs = new Map();
  let off = offset;
  while (off + 4 <= view.byteLength) {
    const len = view.getUint16(off, LE);
    if (len < 4 || off + len > view.byteLength) break;
    const type = view.getUint16(off + 2, LE) & 0x3fff; // strip NLA_F_NESTED/NET_BYTEORDER
    out.set(type, new DataView(view.buffer, view.byteOffset + off + 4, len - 4));
    off += (len + 3) & ~3;
  }
  return out;
}

/** Reads a NUL-terminated string attribute. */
export function attrString(v: DataView | undefined): string | undefined {
  if (!v) return undefined;
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const nul = bytes.indexOf(0);
  return decoder.decode(nul >= 0 ? bytes.subarray(0, nul) : bytes);
}

/** Reads a u32 attribute. */
export function attrU32(v: DataView | undefined): number | undefined {
  return v && v.byteLength >= 4 ? v.getUint32(0, LE) : undefined;
}

/** Reads a u8 attribute. */
export function attrU8(v: DataView | undefined): number | undefined {
  return v && v.byteLength >= 1 ? v.getUint8(0) : undefined;
}

/** Reads a 16-bit attribute in network byte order. */
export function attrBe16(v: DataView | undefined): number | undefined {
  return v && v.byteLength >= 2 ? v.getUint16(0, false) : undefined;
}

/** Reads a signed 32-bit attribute (host order). */
export function attrI32(v: DataView | undefined): number | undefined {
  return v && v.byteLength >= 4 ? v.getInt32(0, LE) : undefined;
}

/** Reads the raw bytes of an attribute. */
export function attrBytes(v: DataView | undefined): Uint8Array | undefined {
  return v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : undefined;
}

/** Host-order helpers for the fixed structs of received messages. */
export const host = {
  u16: (v: DataView, off: number): number => v.getUint16(off, LE),
  u32: (v: DataView, off: number): number => v.getUint32(off, LE),
  i32: (v: DataView, off: number): number => v.getInt32(off, LE),
};

/** One request of a batch: the message and a description for errors (`link add veth1`). */
export interface Request {
  build: MessageBuilder;
  what: string;
  /** errnos that count as success (e.g. ENODEV for a delete-if-present). */
  ok?: number[];
  /** Called with each data reply of a get request, while its buffer is valid. */
  onReply?: (m: Message) => void;
}

/** An rtnetlink socket bound to one network namespace. */
export class NetlinkSocket {
  readonly fd: number;
  #seq = Math.floor(Math.random() * 0x7fffffff);
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(256 * 1024);
  #closed = false;

  constructor(fd: number) {
    this.fd = fd;
  }

  /**
   * Sends requests in one datagram and waits for every ACK. Returns the errno of each
   * (0 on success or when listed in `ok`); throws the first failure not in `ok`.
   */
  transact(requests: Request[]): number[] {
    const batch = this.#start(requests);
    sendToKernel(this.fd, batch.out);
    while (batch.pending > 0) this.#parse(recvFromKernel(this.fd, this.#buf), batch.absorb);
    return batch.finish();
  }

  /**
   * Like {@link transact}, but the send (where the kernel does the work) and the receives
   * run on a thread-pool thread, so slow requests such as a veth delete (milliseconds of
   * RCU waits in the kernel) do not block the event loop. The caller must not use this
   * socket for anything else until the promise settles.
   */
  async transactAsync(requests: Request[]): Promise<number[]> {
    const batch = this.#start(requests);
    await sendToKernelAsync(this.fd, batch.out);
    while (batch.pending > 0) {
      this.#parse(await recvFromKernelAsync(this.fd, this.#buf), batch.absorb);
    }
    return batch.finish();
  }

  /**
   * Like {@link transact}, but never throws for a refused request: returns every request's
   * verdict (errno 0 on success or when listed in `ok`, else a {@link NetlinkError}). The
   * kernel handles each message of a datagram on its own, so one refusal does not stop the
   * others.
   */
  transactSettled(requests: Request[]): (NetlinkError | undefined)[] {
    // Only the last request asks for an ACK: the kernel answers a failed request anyway, and
    // in order, so when the last ACK arrives every refusal before it has been read — half
    // the answers to build, copy and parse.
    const batch = this.#start(requests, true);
    sendToKernel(this.fd, batch.out);
    while (batch.pending > 0) this.#parse(recvFromKernel(this.fd, this.#buf), batch.absorb);
    return batch.settle();
  }

  #start(requests: Request[], ackLastOnly = false) {
    if (this.#closed) throw new Error("netlink socket is closed");
    const first = this.#seq + 1;
    const last = requests.length - 1;
    const parts = requests.map((r, i) => {
      const p = r.build.finish(++this.#seq);
      if (ackLastOnly && i < last) {
        const v = new DataView(p.buffer, p.byteOffset, HDR);
        v.setUint16(6, v.getUint16(6, LE) & ~NLM_F_ACK, LE);
      }
      return p;
    });
    let total = 0;
    for (const p of parts) total += p.byteLength;
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    const results: (number | undefined)[] = new Array(requests.length);
    const texts: (string | undefined)[] = new Array(requests.length);
    const batch = {
      out,
      pending: ackLastOnly ? Math.min(1, requests.length) : requests.length,
      absorb: (m: Message, seq: number) => {
        const i = seq - first;
        if (i < 0 || i >= requests.length || results[i] !== undefined) return; // stale
        if (m.type !== NLMSG_ERROR) return requests[i].onReply?.(m);
        const [code, text] = parseError(m);
        results[i] = code;
        texts[i] = text;
        if (!ackLastOnly || i === last) batch.pending--;
      },
      finish: () =>
        results.map((code, i) => {
          const c = code ?? 0;
          if (c === 0 || requests[i].ok?.includes(c)) return c;
          throw new NetlinkError(requests[i].what, c, texts[i]);
        }),
      settle: () =>
        results.map((code, i) => {
          const c = code ?? 0;
          if (c === 0 || requests[i].ok?.includes(c)) return undefined;
          return new NetlinkError(requests[i].what, c, texts[i]);
        }),
    };
    return batch;
  }

  /** Sends one dump request and returns every message of the answer. */
  dump(build: MessageBuilder, what: string): Message[] {
    if (this.#closed) throw new Error("netlink socket is closed");
    const seq = ++this.#seq;
    sendToKernel(this.fd, build.finish(seq));
    const messages: Message[] = [];
    let done = false;
    while (!done) {
      this.#parse(recvFromKernel(this.fd, this.#buf), (m, s) => {
        if (s !== seq || done) return;
        if (m.type === NLMSG_DONE) done = true;
        else if (m.type === NLMSG_ERROR) {
          const [code, text] = parseError(m);
          if (code !== 0) throw new NetlinkError(what, code, text);
          done = true;
        } else {
          // Copy out: the receive buffer is reused by the next recv.
          const copy = new Uint8Array(m.data.byteLength);
          copy.set(new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength));
          messages.push({ type: m.type, flags: m.flags, data: new DataView(copy.buffer) });
        }
      });
    }
    return messages;
  }

  #parse(n: number, each: (m: Message, seq: number) => void): void {
    const view = new DataView(this.#buf.buffer, 0, n);
    let off = 0;
    while (off + HDR <= n) {
      const len = view.getUint32(off, LE);
      if (len < HDR || off + len > n) break;
      const type = view.getUint16(off + 4, LE);
      const flags = view.getUint16(off + 6, LE);
      const seq = view.getUint32(off + 8, LE);
      each({ type, flags, data: new DataView(this.#buf.buffer, off + HDR, len - HDR) }, seq);
      off += (len + 3) & ~3;
    }
  }

  /** Closes the socket; later calls throw. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.fd);
  }

  /** {@link close} on a thread-pool thread, for a close the kernel makes wait. */
  async closeAsync(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeFdAsync(this.fd);
  }
}

/** Returns [positive errno, extended-ACK message] of an NLMSG_ERROR. */
export function parseError(m: Message): [number, string | undefined] {
  const code = -m.data.getInt32(0, LE);
  if (code === 0 || !(m.flags & NLM_F_ACK_TLVS)) return [code, undefined];
  const echoed = m.flags & NLM_F_CAPPED ? HDR : m.data.getUint32(4, LE);
  const attrs = parseAttrs(m.data, 4 + ((echoed + 3) & ~3));
  return [code, attrString(attrs.get(NLMSGERR_ATTR_MSG))];
}
