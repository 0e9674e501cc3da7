/**
 * The overlay driver's view of a network: its options parsed (VNIs, MTU, encrypted), one
 * entry per IPv4 subnet with the VNI and the device names libnetwork uses, and the names and
 * ownership marks of everything the driver makes.
 *
 * @module
 */

import type { DriverNetwork } from "../driver.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { addressOf, type Cidr, cidrContains, parseCidr, parseIp } from "../../src/ipam/cidr.ts";

/** Option keys the overlay driver reads (libnetwork's). */
export const OverlayOptions = {
  /** CSV of VNIs, one per IPv4 subnet, in subnet order. Decided by the controller. */
  vxlanIdList: "com.docker.network.driver.overlay.vxlanid_list",
  /** The underlay-side MTU; the overlay's is 50 less (VXLAN encapsulation). */
  mtu: "com.docker.network.driver.mtu",
  /** Presence asks for IPsec between hosts. */
  encrypted: "encrypted",
} as const;

/** Bytes a VXLAN header costs on an IPv4 underlay (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14). */
export const VXLAN_ENCAP = 50;
/** IANA's VXLAN port. */
export const DEFAULT_VXLAN_PORT = 4789;
/** The automatic VNI range starts here (libnetwork's ovmanager). */
export const FIRST_VNI = 4096;

/** One IPv4 subnet of an overlay network on this host. */
export interface OverlaySubnet {
  /** CIDR of the pool. */
  pool: string;
  /** Gateway with the pool's prefix length (on the bridge), when IPAM gave one. */
  gateway?: string;
  vni: number;
  /** `ov-<vni %06x>-<nid[:5]>`, inside the network's namespace. */
  bridge: string;
  /** `vx-<vni %06x>-<nid[:5]>`, inside the network's namespace. */
  vxlan: string;
}

/** A network as the overlay driver sees it. */
export interface OverlayConfig {
  networkId: string;
  /** MTU of the container interfaces, the bridge and the VXLAN device. */
  mtu: number;
  encrypted: boolean;
  subnets: OverlaySubnet[];
}

const hex6 = (n: number) => n.toString(16).padStart(6, "0");

/** Parses `vxlanid_list`; throws with libnetwork's words when absent. */
export function parseVnis(text: string | undefined): number[] {
  if (text === undefined || text.trim() === "") {
    throw new InvalidArgumentError("no VNI provided");
  }
  const vnis = text.split(",").map((part) => {
    const s = part.trim();
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 0xffffff) {
      throw new InvalidArgumentError(
        `invalid option ${OverlayOptions.vxlanIdList}: ${
          JSON.stringify(s)
        } is not a VXLAN id (1-16777215)`,
      );
    }
    return n;
  });
  const dup = vnis.find((v, i) => vnis.indexOf(v) !== i);
  if (dup !== undefined) {
    throw new InvalidArgumentError(
      `invalid option ${OverlayOptions.vxlanIdList}: VXLAN id ${dup} is listed twice`,
    );
  }
  return vnis;
}

/**
 * Parses and validates a network for the overlay driver.
 *
 * @throws {InvalidArgumentError} `ipv4 pool is empty`, `no VNI provided`,
 *   `insufficient vnis(N) passed to overlay`, or naming the bad option.
 */
export function overlayConfig(
  network: Pick<DriverNetwork, "id" | "options" | "ipv4" | "ipv6" | "enableIPv6">,
  options: { requireVnis?: boolean } = {},
): OverlayConfig {
  const o = network.options;
  for (const key of Object.keys(o)) {
    if (
      key.startsWith("com.docker.network.driver.overlay.") && key !== OverlayOptions.vxlanIdList
    ) {
      throw new InvalidArgumentError(`invalid option ${key}: not an overlay driver option`);
    }
  }
  if (network.enableIPv6 || network.ipv6.length > 0) {
    throw new InvalidArgumentError("overlay networks do not support IPv6 yet (IPv4 subnets only)");
  }
  if (network.ipv4.length === 0) throw new InvalidArgumentError("ipv4 pool is empty");
  // Before the controller has decided the VNIs (validation of the user's request), only the
  // syntax of a given list is checked.
  const listed = o[OverlayOptions.vxlanIdList];
  const vnis = options.requireVnis === false && (listed === undefined || listed.trim() === "")
    ? network.ipv4.map(() => 0)
    : parseVnis(listed);
  if (vnis.length < network.ipv4.length) {
    throw new InvalidArgumentError(`insufficient vnis(${vnis.length}) passed to overlay`);
  }
  const mtuText = o[OverlayOptions.mtu];
  const outer = mtuText === undefined || mtuText === "" ? 1500 : Number(mtuText);
  if (!Number.isInteger(outer) || outer < 68 + VXLAN_ENCAP || outer > 65535) {
    throw new InvalidArgumentError(
      `invalid option ${OverlayOptions.mtu}: ${JSON.stringify(mtuText)} is not an MTU (${
        68 + VXLAN_ENCAP
      }-65535)`,
    );
  }
  const nid5 = network.id.slice(0, 5);
  return {
    networkId: network.id,
    mtu: outer - VXLAN_ENCAP,
    encrypted: OverlayOptions.encrypted in o,
    subnets: network.ipv4.map((d, i) => ({
      pool: d.pool,
      ...(d.gateway ? { gateway: d.gateway } : {}),
      vni: vnis[i],
      bridge: `ov-${hex6(vnis[i])}-${nid5}`,
      vxlan: `vx-${hex6(vnis[i])}-${nid5}`,
    })),
  };
}

/** Checks the VXLAN port with libnetwork's words. */
export function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1024 || port > 49151) {
    throw new InvalidArgumentError(
      `VXLAN UDP port number is not in valid range (1024-49151): ${port}`,
    );
  }
  return port;
}

/** The subnet of `cfg` holding `ip` (an address, or a CIDR whose address is used). */
export function subnetOf(cfg: OverlayConfig, ip: string): OverlaySubnet | undefined {
  if (cfg.subnets.length === 1) {
    // The common case, on the hot path: one subnet, compared as numbers.
    const [s] = cfg.subnets;
    const range = rangeOf(s.pool);
    const a = parseIp(ip.includes("/") ? addressOf(ip) : ip);
    return a.family === range.family && range.network <= a.value && a.value <= range.last
      ? s
      : undefined;
  }
  return cfg.subnets.find((s) => cidrContains(s.pool, ip));
}

const ranges = new Map<string, Cidr>();
function rangeOf(pool: string): Cidr {
  let r = ranges.get(pool);
  if (!r) ranges.set(pool, r = parseCidr(pool));
  return r;
}

/** libnetwork's MAC for an IPv4 address: `02:42:` + its four octets. */
export function macFromIp(ip: string): string {
  const octets = addressOf(ip).split(".").map(Number);
  return ["02", "42", ...octets.map((o) => o.toString(16).padStart(2, "0"))].join(":");
}

export { ownerId } from "../../src/ids.ts";

/** Names and marks of what one driver instance (one controller) makes. */
export interface OverlayNames {
  /** `<namePrefix>ov-<owner>-`: the start of every overlay namespace it makes. */
  namespacePrefix(namePrefix: string): string;
  /** `<namePrefix>ov-<owner>-<nid[:12]>`. */
  namespace(namePrefix: string, networkId: string): string;
  /** Link alias of a network's bridges and VXLAN devices: `cnm:<owner>:overlay:<nid[:12]>`. */
  networkMark(networkId: string): string;
  /** Link alias of an endpoint's host-side veth: `cnm:<owner>:endpoint:<eid[:12]>`. */
  endpointMark(endpointId: string): string;
  /** True when a link alias is one of this owner's overlay marks. */
  isMine(alias: string | undefined): boolean;
}

/** The names and marks for `owner` (see {@link ownerId}). */
export function overlayNames(owner: string): OverlayNames {
  if (!/^[a-z0-9]{1,16}$/.test(owner)) {
    throw new InvalidArgumentError(
      `invalid overlay owner ${JSON.stringify(owner)}: 1-16 lower-case letters or digits`,
    );
  }
  const mark = `cnm:${owner}:`;
  return {
    namespacePrefix: (p) => `${p}ov-${owner}-`,
    namespace: (p, id) => `${p}ov-${owner}-${id.slice(0, 12)}`,
    networkMark: (id) => `${mark}overlay:${id.slice(0, 12)}`,
    endpointMark: (id) => `${mark}endpoint:${id.slice(0, 12)}`,
    isMine: (alias) => alias?.startsWith(mark) ?? false,
  };
}

/** The host-side veth of an endpoint (in the network's namespace): `veth` + 11 hex digits. */
export function hostVethName(endpointId: string): string {
  return `veth${endpointId.slice(0, 11)}`;
}
