/**
 * rtnetlink messages for IP addresses and routes: builders for the requests kernel access
 * sends (address add, route replace and delete in the main table) and parsers for the dumps
 * it reads. Pure message work, like `_rtnl.ts` (links); sockets come from `_netlink.ts`.
 *
 * @module
 */

import {
  AF_INET,
  AF_INET6,
  broadcastOf,
  type Cidr,
  formatIp,
  type Ip,
  networkOf,
} from "./_addr.ts";
import {
  attrBytes,
  attrU32,
  host,
  type Message,
  MessageBuilder,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REPLACE,
  parseAttrs,
  type Request,
} from "./_netlink.ts";
import { ENOENT, ESRCH } from "./_rtnl.ts";

const RTM_NEWADDR = 20;
const RTM_GETADDR = 22;
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_GETROUTE = 26;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
const IFA_F_NODAD = 0x02;
const IFADDR_LEN = 8;

const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_TABLE = 15;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RT_SCOPE_NOWHERE = 255;
const RTN_UNICAST = 1;
const RTMSG_LEN = 12;

/** RTM_NEWADDR with replace semantics (idempotent), DAD off for IPv6 like libnetwork. */
export function addAddrRequest(index: number, c: Cidr, dev: string): Request {
  const b = new MessageBuilder(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, IFADDR_LEN)
    .u8(0, c.family).u8(1, c.prefix).u8(2, c.family === AF_INET6 ? IFA_F_NODAD : 0)
    .u32(4, index).attr(IFA_LOCAL, c.bytes).attr(IFA_ADDRESS, c.bytes);
  const brd = broadcastOf(c);
  if (brd) b.attr(IFA_BROADCAST, brd);
  return { build: b, what: `addr add ${formatIp(c.bytes)}/${c.prefix} dev ${dev}` };
}

/** RTM_GETADDR dump request (both families). */
export function dumpAddrsMessage(): MessageBuilder {
  return new MessageBuilder(RTM_GETADDR, NLM_F_DUMP, IFADDR_LEN);
}

/** Parses an RTM_NEWADDR message into [ifindex, "addr/prefix"]. */
export function parseAddr(m: Message): [number, string] | undefined {
  const d = m.data;
  const family = d.getUint8(0);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const a = parseAttrs(d, IFADDR_LEN);
  const bytes = attrBytes(a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS));
  if (!bytes) return undefined;
  return [host.u32(d, 4), `${formatIp(bytes)}/${d.getUint8(1)}`];
}

/** A route to program: destination (undefined = default), next hop, output device. */
export interface RouteTarget {
  family: number;
  dst?: Cidr;
  via?: Ip;
  oif?: number;
}

function routeMessage(type: number, flags: number, r: RouteTarget, del: boolean) {
  const scope = del
    ? RT_SCOPE_NOWHERE
    : r.family === AF_INET && !r.via
    ? RT_SCOPE_LINK
    : RT_SCOPE_UNIVERSE;
  const b = new MessageBuilder(type, flags, RTMSG_LEN)
    .u8(0, r.family).u8(1, r.dst?.prefix ?? 0).u8(4, RT_TABLE_MAIN)
    .u8(5, del ? 0 : RTPROT_BOOT).u8(6, scope).u8(7, del ? 0 : RTN_UNICAST);
  if (r.dst && r.dst.prefix > 0) b.attr(RTA_DST, networkOf(r.dst));
  if (r.via) b.attr(RTA_GATEWAY, r.via.bytes);
  if (r.oif !== undefined) b.attrU32(RTA_OIF, r.oif);
  return b;
}

/** RTM_NEWROUTE with replace semantics in the main table. */
export function replaceRouteRequest(r: RouteTarget, what: string): Request {
  const build = routeMessage(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, r, false);
  return { build, what: `route replace ${what}` };
}

/** RTM_DELROUTE in the main table; a missing route counts as success. */
export function deleteRouteRequest(r: RouteTarget, what: string): Request {
  return {
    build: routeMessage(RTM_DELROUTE, NLM_F_ACK, r, true),
    what: `route del ${what}`,
    ok: [ESRCH, ENOENT],
  };
}

/** RTM_GETROUTE dump request (both families). */
export function dumpRoutesMessage(): MessageBuilder {
  return new MessageBuilder(RTM_GETROUTE, NLM_F_DUMP, RTMSG_LEN);
}

/** Parses an RTM_NEWROUTE of the main table's unicast routes into dst/via/oif. */
export function parseRoute(
  m: Message,
): { dst: string; via?: string; oif?: number } | undefined {
  const d = m.data;
  const family = d.getUint8(0);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const a = parseAttrs(d, RTMSG_LEN);
  const table = attrU32(a.get(RTA_TABLE)) ?? d.getUint8(4);
  if (table !== RT_TABLE_MAIN || d.getUint8(7) !== RTN_UNICAST) return undefined;
  const dstLen = d.getUint8(1);
  const dst = attrBytes(a.get(RTA_DST));
  const gw = attrBytes(a.get(RTA_GATEWAY));
  return {
    dst: dstLen === 0 || !dst ? "default" : `${formatIp(dst)}/${dstLen}`,
    via: gw ? formatIp(gw) : undefined,
    oif: attrU32(a.get(RTA_OIF)),
  };
}
