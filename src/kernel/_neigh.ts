/**
 * Neighbour and FDB entries over rtnetlink (RTM_NEWNEIGH / RTM_DELNEIGH / RTM_GETNEIGH): the
 * permanent IP neighbours and the permanent `self` FDB entries an overlay programs per remote
 * peer, their deletes, dumps for reconcile, and a batch that packs many changes into few
 * datagrams. Synchronous; `mod.ts` wraps them into the async Kernel interface.
 *
 * The details that matter (reference/networking.md §1.8): FDB entries are family AF_BRIDGE
 * with NTF_SELF (without it they land in the *bridge's* table), NUD_PERMANENT, and are written
 * with NLM_F_CREATE|NLM_F_REPLACE — a learned entry makes an exclusive add fail with EEXIST.
 * Deletes use the same family and flags as the add.
 *
 * @module
 */

import { DriverError } from "../errors.ts";
import { AF_INET, AF_INET6, checkIfName, formatIp, formatMac, parseIp, parseMac } from "./_addr.ts";
import {
  attrBytes,
  host,
  type Message,
  MessageBuilder,
  type NetlinkError,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REPLACE,
  parseAttrs,
  type Request,
} from "./_netlink.ts";
import type { NsHandle } from "./_netns.ts";
import { rawLinks } from "./_links.ts";
import { getLink } from "./_routes.ts";
import { ENOENT } from "./_rtnl.ts";
import type {
  FdbInfo,
  FdbSpec,
  NeighborBatchResult,
  NeighborChange,
  NeighborInfo,
  NeighborSpec,
} from "./types.ts";

const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;
const NDMSG_LEN = 12;
const AF_BRIDGE = 7;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_MASTER = 9;
const NTF_SELF = 0x02;
const NTF_PROXY = 0x08;
const NUD_PERMANENT = 0x80;
const NUD_NOARP = 0x40;

const nudNames: [number, string][] = [
  [0x01, "incomplete"],
  [0x02, "reachable"],
  [0x04, "stale"],
  [0x08, "delay"],
  [0x10, "probe"],
  [0x20, "failed"],
  [0x40, "noarp"],
  [0x80, "permanent"],
];

function states(nud: number): string[] {
  const out = nudNames.filter(([bit]) => nud & bit).map(([, n]) => n);
  return out.length ? out : ["none"];
}

function neighMessage(
  type: number,
  flags: number,
  family: number,
  index: number,
  state: number,
  ntf: number,
): MessageBuilder {
  // struct ndmsg { u8 family; u8 pad1; u16 pad2; s32 ifindex; u16 state; u8 flags; u8 type }
  return new MessageBuilder(type, flags, NDMSG_LEN).u8(0, family).i32(4, index).u16(8, state)
    .u8(10, ntf);
}

/** A neighbour or FDB change with its device resolved to an index; validated. */
type Resolved =
  | {
    kind: "neighbor";
    add: boolean;
    index: number;
    dev: string;
    ip: Uint8Array;
    family: number;
    mac?: Uint8Array;
  }
  | { kind: "fdb"; add: boolean; index: number; dev: string; mac: Uint8Array; dst?: Uint8Array };

function request(r: Resolved): Request {
  if (r.kind === "neighbor") {
    const what = `neigh ${r.add ? "replace" : "del"} ${formatIp(r.ip)} dev ${r.dev}`;
    if (r.add) {
      const b = neighMessage(
        RTM_NEWNEIGH,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        r.family,
        r.index,
        NUD_PERMANENT,
        0,
      ).attr(NDA_DST, r.ip).attr(NDA_LLADDR, r.mac!);
      return { build: b, what };
    }
    const b = neighMessage(RTM_DELNEIGH, NLM_F_ACK, r.family, r.index, 0, 0).attr(NDA_DST, r.ip);
    return { build: b, what, ok: [ENOENT] };
  }
  const mac = formatMac(r.mac);
  const to = r.dst ? ` dst ${formatIp(r.dst)}` : "";
  const what = `fdb ${r.add ? "replace" : "del"} ${mac} dev ${r.dev}${to} self`;
  const b = neighMessage(
    r.add ? RTM_NEWNEIGH : RTM_DELNEIGH,
    r.add ? NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE : NLM_F_ACK,
    AF_BRIDGE,
    r.index,
    NUD_PERMANENT,
    NTF_SELF,
  ).attr(NDA_LLADDR, r.mac);
  if (r.dst) b.attr(NDA_DST, r.dst);
  return r.add ? { build: b, what } : { build: b, what, ok: [ENOENT] };
}

/** Validates changes and resolves their devices (one lookup per device name). */
function resolve(h: NsHandle, changes: NeighborChange[]): Resolved[] {
  const indexes = new Map<string, number>();
  const index = (dev: string, what: string): number => {
    checkIfName(dev, `device of ${what}`);
    let i = indexes.get(dev);
    if (i === undefined) {
      i = getLink(h, dev)?.index;
      if (i === undefined) throw new DriverError(`${what}: device ${dev} does not exist (ENODEV)`);
      indexes.set(dev, i);
    }
    return i;
  };
  return changes.map((c): Resolved => {
    const add = c.op === "add";
    if ("neighbor" in c) {
      const n = c.neighbor;
      const ip = parseIp(n?.ip, "neighbour address");
      const mac = add ? parseMac((n as NeighborSpec).mac) : undefined;
      const what = `neighbour ${n.ip}`;
      return {
        kind: "neighbor",
        add,
        index: index(n.dev, what),
        dev: n.dev,
        ip: ip.bytes,
        family: ip.family,
        mac,
      };
    }
    const f = c.fdb;
    const mac = parseMac(f?.mac);
    const dstText = add ? (f as FdbSpec).dst : f.dst;
    if (add && typeof dstText !== "string") {
      throw new DriverError(`fdb entry ${f.mac}: dst (the remote VTEP) is required`);
    }
    const dst = dstText !== undefined ? parseIp(dstText, "FDB destination").bytes : undefined;
    return { kind: "fdb", add, index: index(f.dev, `fdb entry ${f.mac}`), dev: f.dev, mac, dst };
  });
}

/** Requests per datagram: ~56 bytes each keeps a datagram near 64 KiB, its ACKs near 40 KiB. */
const BATCH = 1100;

/**
 * Applies changes in order, BATCH per datagram. Validation happens before anything is sent;
 * then every change is tried and the refusals are reported together.
 */
export function applyNeighbors(h: NsHandle, changes: NeighborChange[]): NeighborBatchResult {
  if (!Array.isArray(changes)) throw new DriverError("neighbour changes: expected an array");
  const reqs = resolve(h, changes).map(request);
  const failures: NetlinkError[] = [];
  let datagrams = 0;
  for (let at = 0; at < reqs.length; at += BATCH) {
    const verdicts = h.sock.transactSettled(reqs.slice(at, at + BATCH));
    datagrams++;
    for (const v of verdicts) if (v) failures.push(v);
  }
  if (failures.length) {
    const shown = failures.slice(0, 3).map((f) => f.message).join("; ");
    const more = failures.length > 3 ? ` (and ${failures.length - 3} more)` : "";
    throw new DriverError(
      `${failures.length} of ${changes.length} neighbour/FDB changes refused: ${shown}${more}`,
      { cause: new AggregateError(failures) },
    );
  }
  return { applied: changes.length, datagrams };
}

/** Applies one change, throwing its own error (the single-entry Kernel calls). */
export function applyOne(h: NsHandle, change: NeighborChange): void {
  h.sock.transact([request(resolve(h, [change])[0])]);
}

function devNames(h: NsHandle): Map<number, string> {
  return new Map(rawLinks(h).map((l) => [l.index, l.name]));
}

/** Dumps neighbour entries (IPv4 and IPv6, no proxy entries). */
export function listNeighbors(h: NsHandle, dev?: string): NeighborInfo[] {
  const names = devNames(h);
  const out: NeighborInfo[] = [];
  const dump = neighMessage(RTM_GETNEIGH, NLM_F_DUMP, 0, 0, 0, 0);
  for (const m of h.sock.dump(dump, "neigh show")) {
    const n = parseNeigh(m);
    if (!n || (n.family !== AF_INET && n.family !== AF_INET6) || n.flags & NTF_PROXY || !n.dst) {
      continue;
    }
    const name = names.get(n.index) ?? `if${n.index}`;
    if (dev !== undefined && name !== dev) continue;
    const info: NeighborInfo = {
      dev: name,
      ip: formatIp(n.dst),
      state: states(n.state),
      permanent: (n.state & NUD_PERMANENT) !== 0,
    };
    if (n.lladdr?.byteLength === 6) info.mac = formatMac(n.lladdr);
    out.push(info);
  }
  return out;
}

/** Dumps the FDB (family AF_BRIDGE): bridges' tables and devices' own (`self`) tables. */
export function listFdb(h: NsHandle, dev?: string): FdbInfo[] {
  const names = devNames(h);
  const out: FdbInfo[] = [];
  const dump = neighMessage(RTM_GETNEIGH, NLM_F_DUMP, AF_BRIDGE, 0, 0, 0);
  for (const m of h.sock.dump(dump, "fdb show")) {
    const n = parseNeigh(m);
    if (!n || n.family !== AF_BRIDGE || !n.lladdr || n.lladdr.byteLength !== 6) continue;
    const name = names.get(n.index) ?? `if${n.index}`;
    if (dev !== undefined && name !== dev) continue;
    const info: FdbInfo = {
      dev: name,
      mac: formatMac(n.lladdr),
      self: (n.flags & NTF_SELF) !== 0,
      permanent: (n.state & (NUD_PERMANENT | NUD_NOARP)) !== 0,
      state: states(n.state),
    };
    if (n.dst && (n.dst.byteLength === 4 || n.dst.byteLength === 16)) info.dst = formatIp(n.dst);
    if (n.master !== undefined) info.master = names.get(n.master) ?? `if${n.master}`;
    out.push(info);
  }
  return out;
}

interface RawNeigh {
  family: number;
  index: number;
  state: number;
  flags: number;
  dst?: Uint8Array;
  lladdr?: Uint8Array;
  master?: number;
}

function parseNeigh(m: Message): RawNeigh | undefined {
  if (m.type !== RTM_NEWNEIGH || m.data.byteLength < NDMSG_LEN) return undefined;
  const d = m.data;
  const a = parseAttrs(d, NDMSG_LEN);
  const masterAttr = a.get(NDA_MASTER);
  return {
    family: d.getUint8(0),
    index: host.i32(d, 4),
    state: host.u16(d, 8),
    flags: d.getUint8(10),
    dst: attrBytes(a.get(NDA_DST)),
    lladdr: attrBytes(a.get(NDA_LLADDR)),
    master: masterAttr && masterAttr.byteLength >= 4 ? host.u32(masterAttr, 0) : undefined,
  };
}
