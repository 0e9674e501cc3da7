/**
 * nf_tables over nfnetlink (NETLINK_NETFILTER): the messages `nft` sends for tables, base
 * chains and rules (their expressions: `_nft_expr.ts`); the transaction that carries them (one
 * batch between NFNL_MSG_BATCH_BEGIN and _END: the kernel commits all of it or none); and the
 * dumps that read them back. Wire work over `_netlink.ts`'s builder and `_ffi.ts`'s calls;
 * `nat_table.ts` says which rules.
 *
 * Wire format (include/uapi/linux/netfilter/nf_tables.h and nfnetlink.h, as libnftnl builds
 * it): nlmsghdr, then nfgenmsg { family, version 0, res_id (big-endian) }, then attributes;
 * the type is `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*`. Numbers inside nf_tables attributes
 * are big-endian (NLA_BE32, NLA_BE64) and nests carry NLA_F_NESTED; register data (cmp,
 * immediate) is the packet's own bytes. The messages below are byte for byte what nft 1.0.6
 * sends for the same rules (compared with `strace -e write=`).
 *
 * A batch sends no NFNL_BATCH_GENID: that guard is for batches computed from a cached view
 * of the ruleset (nft's cache); ours depend on nothing read before (each either creates a
 * table, failing as a whole if it exists, or replaces it whatever it holds), as nft 1.0.6's
 * own `-f` batches (a 20-byte BATCH_BEGIN, no attribute).
 *
 * @module
 */

import {
  EAGAIN,
  MSG_DONTWAIT,
  NETLINK_NETFILTER,
  openNetlinkSocket,
  recvFromKernel,
  sendToKernel,
  sendToKernelAsync,
  SyscallError,
} from "./_ffi.ts";
import { inNetns } from "./in_netns.ts";
import {
  decodeComment,
  decodeExpr,
  encodeComment,
  encodeExpr,
  type Expr,
  NLA_F_NESTED,
} from "./_nft_expr.ts";
import {
  type Attrs,
  attrString,
  host,
  MessageBuilder,
  NetlinkError,
  NetlinkSocket,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLMSG_ERROR,
  parseAttrs,
  parseError,
  type Request,
} from "./_netlink.ts";

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWTABLE = 0;
const NFT_MSG_GETTABLE = 1;
const NFT_MSG_DELTABLE = 2;
const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_GETCHAIN = 4;
const NFT_MSG_NEWRULE = 6;
const NFT_MSG_GETRULE = 7;
const NLM_F_APPEND = 0x800;
const HDR = 16;
/** Batch members ask for an ACK (nft asks for none and polls; an ACK each is simpler to read). */
const MEMBER = NLM_F_ACK;

const NFTA_TABLE_NAME = 1;
const NFTA_TABLE_FLAGS = 2;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_CHAIN_POLICY = 5;
const NFTA_CHAIN_TYPE = 7;
const NFTA_HOOK_HOOKNUM = 1;
const NFTA_HOOK_PRIORITY = 2;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_RULE_USERDATA = 7;
const NF_ACCEPT = 1;

/** NFPROTO_IPV4: the `ip` family. */
export const NFPROTO_IPV4 = 2;
export type { Expr } from "./_nft_expr.ts";

/** Netfilter hook numbers of the inet families, by nft's names. */
export const HOOKS = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;

/** A base chain as nft declares it (`type <type> hook <hook> priority <n>; policy accept;`). */
export interface BaseChain {
  name: string;
  type: string;
  hook: number;
  priority: number;
}

/** A chain as the kernel reports it. */
export interface ChainInfo {
  name: string;
  hook?: number;
  priority?: number;
  type?: string;
}

/** A rule as the kernel reports it. */
export interface RuleInfo {
  chain: string;
  handle: number;
  exprs: Expr[];
  comment?: string;
}

function nftMessage(msg: number, flags: number, family: number): MessageBuilder {
  // nfgenmsg: family, version (NFNETLINK_V0), res_id 0.
  return new MessageBuilder((NFNL_SUBSYS_NFTABLES << 8) | msg, flags, 4).u8(0, family);
}

/** NFT_MSG_NEWTABLE (`add table`; `create table` with `exclusive`: EEXIST if it exists). */
export function newTable(family: number, name: string, exclusive: boolean): Request {
  const build = nftMessage(NFT_MSG_NEWTABLE, MEMBER | (exclusive ? NLM_F_EXCL : 0), family)
    .attrStr(NFTA_TABLE_NAME, name).attrBe32(NFTA_TABLE_FLAGS, 0);
  return { build, what: `${exclusive ? "create" : "add"} table ${name}` };
}

/** NFT_MSG_DELTABLE: the table and everything in it (ENOENT if there is none). */
export function deleteTable(family: number, name: string): Request {
  const build = nftMessage(NFT_MSG_DELTABLE, MEMBER, family).attrStr(NFTA_TABLE_NAME, name);
  return { build, what: `delete table ${name}` };
}

/** NFT_MSG_NEWCHAIN: a base chain with policy accept. */
export function newBaseChain(family: number, table: string, c: BaseChain): Request {
  const build = nftMessage(NFT_MSG_NEWCHAIN, MEMBER | NLM_F_CREATE, family)
    .attrStr(NFTA_CHAIN_TABLE, table).attrStr(NFTA_CHAIN_NAME, c.name)
    .attrStr(NFTA_CHAIN_TYPE, c.type).attrBe32(NFTA_CHAIN_POLICY, NF_ACCEPT)
    .begin(NFTA_CHAIN_HOOK | NLA_F_NESTED)
    .attrBe32(NFTA_HOOK_HOOKNUM, c.hook).attrBe32(NFTA_HOOK_PRIORITY, c.priority)
    .end();
  return { build, what: `add chain ${table} ${c.name}` };
}

/** NFT_MSG_NEWRULE appending `exprs` (and a comment, as nft's rule userdata) to a chain. */
export function newRule(
  family: number,
  where: { table: string; chain: string; what: string },
  exprs: Expr[],
  comment?: string,
): Request {
  const b = nftMessage(NFT_MSG_NEWRULE, MEMBER | NLM_F_CREATE | NLM_F_APPEND, family)
    .attrStr(NFTA_RULE_TABLE, where.table).attrStr(NFTA_RULE_CHAIN, where.chain)
    .begin(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED);
  for (const e of exprs) encodeExpr(b, e);
  b.end();
  if (comment !== undefined) b.attr(NFTA_RULE_USERDATA, encodeComment(comment));
  return { build: b, what: where.what };
}

const be32 = (v: DataView | undefined) => v && v.byteLength >= 4 ? v.getUint32(0, false) : 0;

/**
 * The datagram of one transaction: BATCH_BEGIN (sequence number `begin`), the requests
 * (`begin + 1` …), BATCH_END.
 */
export function batchBytes(requests: Request[], begin: number): Uint8Array<ArrayBuffer> {
  // nfgenmsg of the batch messages: res_id is the subsystem, big-endian.
  const batch = (type: number) => new MessageBuilder(type, 0, 4).u8(3, NFNL_SUBSYS_NFTABLES);
  let seq = begin;
  const parts = [batch(NFNL_MSG_BATCH_BEGIN).finish(seq)];
  for (const r of requests) parts.push(r.build.finish(++seq));
  parts.push(batch(NFNL_MSG_BATCH_END).finish(++seq));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.byteLength), 0);
  return out;
}

/** Receives a batch's answers (synchronously: one user at a time). */
const verdictBuffer = new Uint8Array(64 * 1024);

/** A socket on nf_tables, opened inside a namespace (and kept there for its life). */
export class NftSocket {
  readonly #sock: NetlinkSocket;
  #seq = Math.floor(Math.random() * 0x3fffffff);

  private constructor(sock: NetlinkSocket) {
    this.#sock = sock;
  }

  /** Opens one in the namespace `netns` (undefined: this thread's). */
  static openIn(netns: string | undefined): NftSocket {
    return new NftSocket(
      new NetlinkSocket(inNetns(netns, () => openNetlinkSocket(NETLINK_NETFILTER))),
    );
  }

  #frame(requests: Request[]): { out: Uint8Array<ArrayBuffer>; begin: number } {
    const begin = ++this.#seq;
    this.#seq += requests.length + 1;
    return { out: batchBytes(requests, begin), begin };
  }

  /**
   * Reads the verdict of a batch just sent. The kernel handles a batch inside sendmsg() (and
   * defers the destruction of what it deleted to a work queue, see {@link close}), so
   * every answer is queued by now: an ACK (or error) per message, and an error pointing at
   * BATCH_BEGIN when the transaction itself failed (commit refused, out of memory), sent
   * before the messages' answers. Nothing queued before all are read means a malformed batch
   * (the kernel drops those silently).
   */
  #verdict(requests: Request[], begin: number): void {
    const codes: (number | undefined)[] = new Array(requests.length);
    const texts: (string | undefined)[] = new Array(requests.length);
    let pending = requests.length;
    const buf = verdictBuffer;
    while (pending > 0) {
      let n: number;
      try {
        n = recvFromKernel(this.#sock.fd, buf, MSG_DONTWAIT);
      } catch (err) {
        if (err instanceof SyscallError && err.errno === EAGAIN) {
          throw new Error(
            `nf_tables transaction: no answer to ${pending} of ${requests.length} messages`,
          );
        }
        throw err;
      }
      const view = new DataView(buf.buffer, 0, n);
      for (let off = 0; off + HDR <= n;) {
        const len = host.u32(view, off);
        if (len < HDR || off + len > n) break;
        const type = host.u16(view, off + 4);
        const seq = host.u32(view, off + 8);
        if (type === NLMSG_ERROR) {
          const flags = host.u16(view, off + 6);
          const data = new DataView(buf.buffer, off + HDR, len - HDR);
          const [code, text] = parseError({ type, flags, data });
          if (seq === begin && code !== 0) {
            throw new NetlinkError("nf_tables transaction", code, text);
          }
          const i = seq - begin - 1;
          if (i >= 0 && i < requests.length && codes[i] === undefined) {
            codes[i] = code;
            texts[i] = text;
            pending--;
          }
        }
        off += (len + 3) & ~3;
      }
    }
    // The first refusal is the cause; later ones may follow from it.
    const bad = codes.findIndex((c) => c !== 0);
    if (bad >= 0) throw new NetlinkError(requests[bad].what, codes[bad]!, texts[bad]);
  }

  /** Commits `requests` as one transaction; throws the first refusal (nothing changed then). */
  commit(requests: Request[]): void {
    const { out, begin } = this.#frame(requests);
    sendToKernel(this.#sock.fd, out);
    this.#verdict(requests, begin);
  }

  /**
   * {@link commit} with the send — where the kernel does the work — on a thread-pool thread:
   * a refused batch is rolled back after an RCU grace period (8 ms here), which must not
   * stop the event loop.
   */
  async commitAsync(requests: Request[]): Promise<void> {
    const { out, begin } = this.#frame(requests);
    await sendToKernelAsync(this.#sock.fd, out);
    this.#verdict(requests, begin);
  }

  /** True when the table exists. */
  hasTable(family: number, name: string): boolean {
    const build = nftMessage(NFT_MSG_GETTABLE, NLM_F_ACK, family).attrStr(NFTA_TABLE_NAME, name);
    const [code] = this.#sock.transact([{ build, what: `list table ${name}`, ok: [2] }]);
    return code === 0;
  }

  /** The attributes of every object a dump of `msg` lists in `table`. */
  #dumpIn(msg: number, family: number, table: string, what: string): Attrs[] {
    // NFTA_CHAIN_TABLE and NFTA_RULE_TABLE are both 1; the kernel filters, and so do we.
    const build = nftMessage(msg, NLM_F_DUMP, family).attrStr(NFTA_CHAIN_TABLE, table);
    return this.#sock.dump(build, `${what} of ${table}`).map((m) => parseAttrs(m.data, 4))
      .filter((a) => attrString(a.get(NFTA_CHAIN_TABLE)) === table);
  }

  /** The chains of a table. */
  chains(family: number, table: string): ChainInfo[] {
    return this.#dumpIn(NFT_MSG_GETCHAIN, family, table, "list chains").map((a) => {
      const c: ChainInfo = { name: attrString(a.get(NFTA_CHAIN_NAME)) ?? "" };
      const hook = a.get(NFTA_CHAIN_HOOK);
      if (hook) {
        const h = parseAttrs(hook, 0);
        c.hook = be32(h.get(NFTA_HOOK_HOOKNUM));
        c.priority = be32(h.get(NFTA_HOOK_PRIORITY)) | 0;
        const type = attrString(a.get(NFTA_CHAIN_TYPE));
        if (type !== undefined) c.type = type;
      }
      return c;
    });
  }

  /** The rules of a table, in chain order. */
  rules(family: number, table: string): RuleInfo[] {
    return this.#dumpIn(NFT_MSG_GETRULE, family, table, "list rules").map((a) => {
      const h = a.get(NFTA_RULE_HANDLE);
      const exprs: Expr[] = [];
      const list = a.get(NFTA_RULE_EXPRESSIONS);
      if (list) { for (const [, elem] of parseAttrList(list)) exprs.push(decodeExpr(elem)); }
      const r: RuleInfo = {
        chain: attrString(a.get(NFTA_RULE_CHAIN)) ?? "",
        handle: h && h.byteLength >= 8 ? Number(h.getBigUint64(0, false)) : 0,
        exprs,
      };
      const comment = decodeComment(a.get(NFTA_RULE_USERDATA));
      if (comment !== undefined) r.comment = comment;
      return r;
    });
  }

  /**
   * Closes the socket on a thread-pool thread: the kernel makes the close of a socket that
   * committed wait for the namespace's deferred destruction of deleted objects (an RCU grace
   * period, 8–16 ms here, after a deletion; nothing after a creation).
   */
  close(): Promise<void> {
    return this.#sock.closeAsync();
  }
}

/** The attributes of a nest in order, repeats kept (a list of NFTA_LIST_ELEM). */
function parseAttrList(view: DataView): [number, DataView][] {
  const out: [number, DataView][] = [];
  for (let off = 0; off + 4 <= view.byteLength;) {
    const len = host.u16(view, off);
    if (len < 4 || off + len > view.byteLength) break;
    const type = host.u16(view, off + 2) & 0x3fff;
    out.push([type, new DataView(view.buffer, view.byteOffset + off + 4, len - 4)]);
    off += (len + 3) & ~3;
  }
  return out;
}
