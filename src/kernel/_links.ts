/**
 * Links and addresses over rtnetlink: the bridge and veth ensures (the hot path) and the
 * link/address listings. Synchronous; `mod.ts` wraps them into the async Kernel interface.
 *
 * @module
 */

import { DriverError, InvalidArgumentError } from "../errors.ts";
import { checkIfName, checkMtu, parseCidr, parseMac } from "./_addr.ts";
import type { Request } from "./_netlink.ts";
import type { NsHandle } from "./_netns.ts";
import { describeRoute, devIndex, getLink, routeTarget } from "./_routes.ts";
import {
  createLinkRequest,
  createVethRequest,
  deleteLinkRequest,
  dumpLinksMessage,
  EEXIST,
  ENODEV,
  type LinkChanges,
  parseLink,
  type RawLink,
  setHairpinRequest,
  setLinkRequest,
  setRouteLocalnetRequest,
} from "./_rtnl.ts";
import { addAddrRequest, dumpAddrsMessage, parseAddr, replaceRouteRequest } from "./_rtnl_ip.ts";
import type { AddrInfo, BridgeSpec, LinkInfo, LinkOptions, VethSpec } from "./types.ts";

/** Resolves a namespace path (undefined = the host namespace) to its handle. */
export type Resolve = (path?: string) => NsHandle;

/**
 * Ensures a bridge in the host namespace (or `spec.netns`): created or repaired, up, with its
 * addresses.
 */
export function ensureBridge(ns: Resolve, spec: BridgeSpec): void {
  const name = checkIfName(spec?.name, "bridge name");
  const mtu = spec.mtu !== undefined ? checkMtu(spec.mtu, name) : undefined;
  const mac = spec.mac !== undefined ? parseMac(spec.mac) : undefined;
  const addrs = (spec.addresses ?? []).map((a) => parseCidr(a, `address of bridge ${name}`));
  const h = ns(spec.netns);
  // The ownership alias travels in the same datagram as the create: the kernel handles the
  // whole datagram inside one sendmsg, so a killed process never leaves an unmarked bridge.
  const [result] = h.sock.transact([
    { ...createLinkRequest(name, "bridge", { mtu, mac, up: true }), ok: [EEXIST] },
    ...(spec.alias !== undefined ? [setLinkRequest(0, name, { alias: spec.alias })] : []),
  ]);
  const link = getLink(h, name);
  if (!link) throw new DriverError(`link add ${name}: bridge vanished after creation`);
  if (link.kind !== "bridge") {
    throw new DriverError(
      `link add ${name}: a ${link.kind ?? "plain"} link of that name exists, not a bridge (EEXIST)`,
    );
  }
  const reqs: Request[] = [];
  if (result === EEXIST || spec.alias !== undefined) {
    reqs.push(setLinkRequest(link.index, name, { mtu, mac, alias: spec.alias, up: true }));
  }
  for (const a of addrs) reqs.push(addAddrRequest(link.index, a, name));
  if (reqs.length) h.sock.transact(reqs);
}

/**
 * Ensures a veth pair whose peer is born inside `spec.netns` (IFLA_NET_NS_FD), host end on
 * the bridge and up, peer configured with MAC, MTU, addresses and routes. Fast path: one
 * create in the host namespace, one lookup and one batch in the sandbox namespace.
 */
export function ensureVeth(ns: Resolve, spec: VethSpec): void {
  const name = checkIfName(spec?.hostName, "veth host name");
  const peerName = checkIfName(spec.peerName, "veth peer name");
  if (typeof spec.netns !== "string" || spec.netns === "") {
    throw new InvalidArgumentError(`veth ${name}: netns is required`);
  }
  if (spec.master !== undefined) checkIfName(spec.master, "bridge name");
  const mtu = spec.mtu !== undefined ? checkMtu(spec.mtu, name) : undefined;
  const mac = spec.peerMac !== undefined ? parseMac(spec.peerMac) : undefined;
  const addrs = (spec.addresses ?? []).map((a) => parseCidr(a, `address of ${peerName}`));
  const routes = spec.routes ?? [];
  routes.forEach((r) => routeTarget(r, undefined)); // validate before touching anything

  const h = ns(spec.hostNetns);
  const sb = ns(spec.netns);
  let master: number | undefined;
  if (spec.master !== undefined) {
    master = getLink(h, spec.master)?.index;
    if (master === undefined) {
      throw new DriverError(`link add ${name}: master ${spec.master} does not exist (ENODEV)`);
    }
  }
  const hostChanges: LinkChanges = { master, mtu, up: true, alias: spec.alias };
  // The peer cannot be brought up inside the create (veth_open fails with ENOTCONN before the
  // pair is linked); it goes up in the sandbox batch below.
  const peerChanges: LinkChanges = { mtu, mac };
  const create = (tolerant: boolean): Request[] => {
    const peer = { name, host: hostChanges, peerName, peerNsFd: sb.nsFd, peer: peerChanges };
    const reqs: Request[] = [{ ...createVethRequest(peer), ok: tolerant ? [EEXIST] : [] }];
    // IFLA_IFALIAS is ignored by a create; set it in the same datagram.
    if (spec.alias !== undefined) {
      reqs.push({ ...setLinkRequest(0, name, { alias: spec.alias }), ok: [ENODEV] });
    }
    return reqs;
  };

  let peer: RawLink | undefined;
  const [result] = h.sock.transact(create(true));
  if (result === EEXIST) {
    // Repair: keep the pair only if it is ours (ends point at each other), else rebuild it.
    const hostLink = getLink(h, name);
    peer = getLink(sb, peerName);
    if (!hostLink) {
      throw new DriverError(
        `link add ${name}: ${peerName} already exists in ${spec.netns} (EEXIST)`,
      );
    }
    if (
      hostLink.kind === "veth" && peer?.kind === "veth" && peer.link === hostLink.index &&
      hostLink.link === peer.index
    ) {
      h.sock.transact([setLinkRequest(hostLink.index, name, hostChanges)]);
      sb.sock.transact([setLinkRequest(peer.index, peerName, peerChanges)]);
    } else {
      h.sock.transact([deleteLinkRequest(name, hostLink.index)]);
      h.sock.transact(create(false));
      peer = undefined;
    }
  }
  peer ??= getLink(sb, peerName);
  if (!peer) throw new DriverError(`link add ${name}: peer ${peerName} vanished`);
  const peerIndex = peer.index;
  const reqs: Request[] = [setLinkRequest(peerIndex, peerName, { up: true })];
  for (const a of addrs) reqs.push(addAddrRequest(peerIndex, a, peerName));
  for (const r of routes) {
    const oif = r.dev === undefined || r.dev === peerName
      ? peerIndex
      : devIndex(sb, r.dev, `route ${describeRoute(r)}`);
    reqs.push(replaceRouteRequest(routeTarget(r, oif), describeRoute(r)));
  }
  sb.sock.transact(reqs);
}

/** Dumps a namespace's links as the kernel reports them. */
export function rawLinks(h: NsHandle): RawLink[] {
  return h.sock.dump(dumpLinksMessage(), "link show").map(parseLink);
}

/** Lists a namespace's links with masters resolved to names. */
export function listLinks(h: NsHandle): LinkInfo[] {
  const links = rawLinks(h);
  const names = new Map(links.map((l) => [l.index, l.name]));
  return links.map((l) => {
    const info: LinkInfo = { name: l.name, index: l.index, mtu: l.mtu, up: l.up };
    if (l.kind) info.kind = l.kind;
    if (l.master !== undefined) info.master = names.get(l.master);
    if (l.mac) info.mac = l.mac;
    if (l.alias) info.alias = l.alias;
    return info;
  });
}

/** Lists a namespace's addresses (both families) as `link` + CIDR. */
export function listAddrs(h: NsHandle, names: Map<number, string>): AddrInfo[] {
  const out: AddrInfo[] = [];
  for (const m of h.sock.dump(dumpAddrsMessage(), "addr show")) {
    const a = parseAddr(m);
    if (a) out.push({ link: names.get(a[0]) ?? `if${a[0]}`, address: a[1] });
  }
  return out;
}

/** Applies a link's bridge-port and IPv4 settings in one batch. */
export function setLinkOptions(h: NsHandle, name: string, o: LinkOptions): void {
  checkIfName(name, "link name");
  const reqs: Request[] = [];
  const index = () => {
    const link = getLink(h, name);
    if (!link) throw new DriverError(`link set ${name}: no such link (ENODEV)`);
    return link.index;
  };
  if (o.hairpin === undefined && o.routeLocalnet === undefined) return;
  const i = index();
  if (o.hairpin !== undefined) reqs.push(setHairpinRequest(i, name, o.hairpin));
  if (o.routeLocalnet !== undefined) reqs.push(setRouteLocalnetRequest(i, name, o.routeLocalnet));
  h.sock.transact(reqs);
}

/** Ensures a link of `name` is up. */
export function setUp(h: NsHandle, name: string): void {
  h.sock.transact([setLinkRequest(0, name, { up: true })]);
}

/** The request deleting a link by name if present (run it with `transactAsync`). */
export function deleteLinkRequestFor(name: string): Request {
  return deleteLinkRequest(checkIfName(name, "link name"));
}
