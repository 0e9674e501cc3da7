/**
 * rtnetlink messages for links (bridges, veths, VXLAN devices, namespace ids): builders for
 * the requests kernel access sends and parsers for the dumps it reads. Pure message work;
 * sockets come from `_netlink.ts`, namespaces from `_netns.ts`; addresses and routes are
 * `_rtnl_ip.ts`.
 *
 * @module
 */

import { AF_INET, formatMac } from "./_addr.ts";
import {
  attrBe16,
  attrBytes,
  attrI32,
  attrString,
  attrU32,
  attrU8,
  host,
  type Message,
  MessageBuilder,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  parseAttrs,
  type Request,
} from "./_netlink.ts";

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_SETLINK = 19;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_IFALIAS = 20;
const IFLA_PROTINFO = 12;
const IFLA_AF_SPEC = 26;
const IFLA_NET_NS_FD = 28;
const IFLA_BRPORT_MODE = 4;
const IFLA_INET_CONF = 1;
const IPV4_DEVCONF_ROUTE_LOCALNET = 26;
const AF_BRIDGE = 7;
const NLA_F_NESTED = 0x8000;
const IFLA_EXT_MASK = 29;
const IFLA_LINK_NETNSID = 37;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PROXY = 11;
const IFLA_VXLAN_L2MISS = 13;
const IFLA_VXLAN_L3MISS = 14;
const IFLA_VXLAN_PORT = 15;
const RTM_NEWNSID = 88;
const RTM_GETNSID = 90;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
const IFF_UP = 0x1;
const IFINFO_LEN = 16;

export const ENOENT = 2;
export const ESRCH = 3;
export const EEXIST = 17;
export const ENODEV = 19;

/** A link as parsed from RTM_NEWLINK, with indexes not yet resolved to names. */
export interface RawLink {
  index: number;
  name: string;
  kind?: string;
  master?: number;
  link?: number; // IFLA_LINK: for a veth, the peer's ifindex
  mtu: number;
  mac?: string;
  up: boolean;
  alias?: string;
}

/** Changes to apply to an existing link (absent fields are left alone). */
export interface LinkChanges {
  master?: number;
  mtu?: number;
  mac?: Uint8Array;
  up?: boolean;
  alias?: string;
}

function linkMessage(type: number, flags: number, index: number, up?: boolean) {
  const b = new MessageBuilder(type, flags, IFINFO_LEN).i32(4, index);
  if (up !== undefined) b.u32(8, up ? IFF_UP : 0).u32(12, IFF_UP);
  return b;
}

function addChanges(b: MessageBuilder, c: LinkChanges): MessageBuilder {
  if (c.mtu !== undefined) b.attrU32(IFLA_MTU, c.mtu);
  if (c.mac) b.attr(IFLA_ADDRESS, c.mac);
  if (c.master !== undefined) b.attrU32(IFLA_MASTER, c.master);
  if (c.alias !== undefined) b.attrStr(IFLA_IFALIAS, c.alias);
  return b;
}

/** RTM_GETLINK for one name; `onReply` receives the parsed link. ENODEV counts as success. */
export function getLinkRequest(
  name: string,
  onLink: (l: RawLink, m: Message) => void,
): Request {
  const build = linkMessage(RTM_GETLINK, NLM_F_ACK, 0).attrStr(IFLA_IFNAME, name)
    .attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  return {
    build,
    what: `link show ${name}`,
    ok: [ENODEV],
    onReply: (m) => onLink(parseLink(m), m),
  };
}

/** RTM_NEWLINK creating a link of `kind` (a bridge, say) with the given settings. */
export function createLinkRequest(name: string, kind: string, c: LinkChanges): Request {
  const b = linkMessage(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 0, c.up)
    .attrStr(IFLA_IFNAME, name);
  addChanges(b, { ...c, alias: undefined }); // IFLA_IFALIAS is ignored on create
  b.begin(IFLA_LINKINFO).attrStr(IFLA_INFO_KIND, kind).end();
  return { build: b, what: `link add ${name}` };
}

/** What a veth create needs: both ends' names and settings and the peer's namespace fd. */
export interface VethCreate {
  name: string;
  host: LinkChanges;
  peerName: string;
  peerNsFd: number;
  peer: LinkChanges;
}

/** One RTM_NEWLINK creating a veth pair whose peer is born inside another namespace. */
export function createVethRequest(v: VethCreate): Request {
  const b = linkMessage(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 0, v.host.up)
    .attrStr(IFLA_IFNAME, v.name);
  addChanges(b, { ...v.host, alias: undefined });
  const peerInfo = new Uint8Array(IFINFO_LEN);
  if (v.peer.up !== undefined) {
    const dv = new DataView(peerInfo.buffer);
    dv.setUint32(8, v.peer.up ? IFF_UP : 0, true); // ifinfomsg flags/change are host order
    dv.setUint32(12, IFF_UP, true);
  }
  b.begin(IFLA_LINKINFO).attrStr(IFLA_INFO_KIND, "veth")
    .begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER).raw(peerInfo)
    .attrStr(IFLA_IFNAME, v.peerName).attrU32(IFLA_NET_NS_FD, v.peerNsFd);
  addChanges(b, { ...v.peer, alias: undefined, master: undefined });
  b.end().end().end();
  return { build: b, what: `link add ${v.name}` };
}

/** What a VXLAN create needs (validated): the device lives in `nsFd` (or the sender's if < 0). */
export interface VxlanCreate {
  name: string;
  vni: number;
  port: number;
  learning: boolean;
  proxy: boolean;
  l2miss: boolean;
  l3miss: boolean;
  local?: Uint8Array;
  nsFd: number;
  changes: LinkChanges;
}

/**
 * One RTM_NEWLINK creating a VXLAN device through the sender's socket — so its UDP socket
 * (and the VNI) belong to the sender's namespace — born inside `nsFd` when given, with its
 * MTU, master (an index in that namespace) and up flag applied by the same request.
 */
export function createVxlanRequest(v: VxlanCreate): Request {
  const b = linkMessage(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 0, v.changes.up)
    .attrStr(IFLA_IFNAME, v.name);
  addChanges(b, { ...v.changes, alias: undefined });
  if (v.nsFd >= 0) b.attrU32(IFLA_NET_NS_FD, v.nsFd);
  b.begin(IFLA_LINKINFO).attrStr(IFLA_INFO_KIND, "vxlan").begin(IFLA_INFO_DATA)
    .attrU32(IFLA_VXLAN_ID, v.vni).attrBe16(IFLA_VXLAN_PORT, v.port)
    .attrU8(IFLA_VXLAN_LEARNING, v.learning ? 1 : 0).attrU8(IFLA_VXLAN_PROXY, v.proxy ? 1 : 0)
    .attrU8(IFLA_VXLAN_L2MISS, v.l2miss ? 1 : 0).attrU8(IFLA_VXLAN_L3MISS, v.l3miss ? 1 : 0);
  if (v.local) b.attr(IFLA_VXLAN_LOCAL, v.local);
  b.end().end();
  return { build: b, what: `link add ${v.name} type vxlan id ${v.vni}` };
}

/** The VXLAN part of an RTM_NEWLINK: VNI, port, flags and the socket's netns id, if any. */
export interface RawVxlan {
  vni: number;
  port: number;
  learning: boolean;
  proxy: boolean;
  /** IFLA_LINK_NETNSID: set when the socket lives in another namespace than the device. */
  linkNetnsId?: number;
}

/** Parses the VXLAN data of an RTM_NEWLINK; undefined for other kinds. */
export function parseVxlan(m: Message): RawVxlan | undefined {
  const a = parseAttrs(m.data, IFINFO_LEN);
  const info = a.get(IFLA_LINKINFO);
  if (!info) return undefined;
  const li = parseAttrs(info, 0);
  if (attrString(li.get(IFLA_INFO_KIND)) !== "vxlan") return undefined;
  const data = li.get(IFLA_INFO_DATA);
  const d = data ? parseAttrs(data, 0) : new Map();
  return {
    vni: attrU32(d.get(IFLA_VXLAN_ID)) ?? 0,
    port: attrBe16(d.get(IFLA_VXLAN_PORT)) ?? 8472, // the kernel's default when unset
    learning: attrU8(d.get(IFLA_VXLAN_LEARNING)) === 1,
    proxy: attrU8(d.get(IFLA_VXLAN_PROXY)) === 1,
    linkNetnsId: attrI32(a.get(IFLA_LINK_NETNSID)),
  };
}

/**
 * RTM_GETNSID: the id the receiving socket's namespace gives the namespace `nsFd`
 * (`onId` gets -1 when it has none).
 */
export function getNsidRequest(nsFd: number, onId: (id: number) => void): Request {
  const build = new MessageBuilder(RTM_GETNSID, NLM_F_ACK, 4).attrU32(NETNSA_FD, nsFd);
  return {
    build,
    what: "netns id",
    onReply: (m) => {
      if (m.type === RTM_NEWNSID) onId(attrI32(parseAttrs(m.data, 4).get(NETNSA_NSID)) ?? -1);
    },
  };
}

/** RTM_NEWLINK (no create) changing an existing link given by index, or by name if 0. */
export function setLinkRequest(index: number, name: string, c: LinkChanges): Request {
  const b = linkMessage(RTM_NEWLINK, NLM_F_ACK, index, c.up);
  if (index === 0) b.attrStr(IFLA_IFNAME, name);
  return { build: addChanges(b, c), what: `link set ${name}` };
}

/** RTM_SETLINK (AF_BRIDGE) setting a bridge port's hairpin mode (`bridge link set hairpin`). */
export function setHairpinRequest(index: number, name: string, on: boolean): Request {
  const b = new MessageBuilder(RTM_SETLINK, NLM_F_ACK, IFINFO_LEN).u8(0, AF_BRIDGE).i32(4, index)
    .begin(IFLA_PROTINFO | NLA_F_NESTED).attr(IFLA_BRPORT_MODE, new Uint8Array([on ? 1 : 0]))
    .end();
  return { build: b, what: `bridge link set dev ${name} hairpin ${on ? "on" : "off"}` };
}

/** RTM_NEWLINK setting `net.ipv4.conf.<name>.route_localnet` (IFLA_AF_SPEC / IFLA_INET_CONF). */
export function setRouteLocalnetRequest(index: number, name: string, on: boolean): Request {
  const b = linkMessage(RTM_NEWLINK, NLM_F_ACK, index)
    .begin(IFLA_AF_SPEC).begin(AF_INET).begin(IFLA_INET_CONF)
    .attrU32(IPV4_DEVCONF_ROUTE_LOCALNET, on ? 1 : 0).end().end().end();
  return { build: b, what: `sysctl net.ipv4.conf.${name}.route_localnet=${on ? 1 : 0}` };
}

/** RTM_DELLINK by name (index 0) or index; a missing link counts as success. */
export function deleteLinkRequest(name: string, index = 0): Request {
  const b = linkMessage(RTM_DELLINK, NLM_F_ACK, index);
  if (index === 0) b.attrStr(IFLA_IFNAME, name);
  return { build: b, what: `link del ${name}`, ok: [ENODEV] };
}

/** RTM_GETLINK dump request. */
export function dumpLinksMessage(): MessageBuilder {
  return linkMessage(RTM_GETLINK, NLM_F_DUMP, 0).attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
}

/** Parses an RTM_NEWLINK message. */
export function parseLink(m: Message): RawLink {
  const d = m.data;
  const a = parseAttrs(d, IFINFO_LEN);
  const info = a.get(IFLA_LINKINFO);
  const mac = attrBytes(a.get(IFLA_ADDRESS));
  const link = attrU32(a.get(IFLA_LINK));
  const index = host.i32(d, 4);
  return {
    index,
    name: attrString(a.get(IFLA_IFNAME)) ?? "",
    kind: info ? attrString(parseAttrs(info, 0).get(IFLA_INFO_KIND)) : undefined,
    master: attrU32(a.get(IFLA_MASTER)),
    link: link !== undefined && link !== index ? link : undefined,
    mtu: attrU32(a.get(IFLA_MTU)) ?? 0,
    mac: mac && mac.byteLength === 6 ? formatMac(mac) : undefined,
    up: (host.u32(d, 8) & IFF_UP) !== 0,
    alias: attrString(a.get(IFLA_IFALIAS)) || undefined,
  };
}
