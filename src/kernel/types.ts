/**
 * The kernel access contract: drivers and the sandbox say *what* they want, the
 * implementation (src/kernel/mod.ts) decides *how*. Every mutating call is an idempotent
 * ensure: create-if-missing / delete-if-present, safe to re-run after a crash.
 *
 * Namespaces are given by path (`/var/run/netns/<name>` or `/proc/<pid>/ns/net`).
 * `undefined` means the controller's host namespace (KernelOptions.hostNamespace).
 *
 * @module
 */

/** One link as the kernel reports it. */
export interface LinkInfo {
  name: string;
  index: number;
  kind?: string; // "bridge", "veth", "vxlan", ... (undefined for plain devices like lo)
  master?: string; // name of the master (bridge) if enslaved
  mtu: number;
  mac?: string;
  up: boolean;
  alias?: string;
}

/** One address (CIDR) on a link. */
export interface AddrInfo {
  link: string;
  address: string; // "10.0.0.2/24" or "fd00::2/64"
}

/** One route (main table). */
export interface RouteInfo {
  dst: string; // "default" or CIDR
  via?: string;
  dev?: string;
}

/** A bridge the caller wants to exist (in the host namespace unless `netns` is given). */
export interface BridgeSpec {
  name: string;
  /** Path of the namespace the bridge lives in; default the host namespace. */
  netns?: string;
  mtu?: number;
  mac?: string;
  addresses?: string[]; // CIDRs to ensure on the bridge (e.g. the gateway)
  alias?: string; // ownership mark
}

/**
 * A veth pair with one end on a bridge in the host namespace (or in `hostNetns`) and the peer
 * born inside a namespace.
 */
export interface VethSpec {
  hostName: string; // host-side name, on `master`
  /** Namespace of the host end and its `master`; default the host namespace. */
  hostNetns?: string;
  master?: string; // bridge to enslave the host end to
  mtu?: number;
  netns: string; // path of the namespace the peer lives in
  peerName: string; // name inside the namespace, e.g. "eth0"
  peerMac?: string;
  addresses?: string[]; // CIDRs for the peer
  routes?: RouteSpec[]; // routes in the namespace via the peer
  alias?: string; // ownership mark on the host end
}

/** A route to ensure in a namespace. */
export interface RouteSpec {
  dst: string; // "default" | CIDR
  via?: string; // next hop (omit for on-link)
  dev?: string; // device name in that namespace
}

/**
 * A VXLAN device. It is created through the host namespace's netlink socket, so its UDP
 * socket (and therefore the VNI reservation and the underlay it encapsulates over) belongs
 * to the host namespace, while the device itself is born inside `netns` (IFLA_NET_NS_FD), like
 * libnetwork's create-then-move but in one request: no crash window leaves it in the host.
 */
export interface VxlanSpec {
  name: string;
  /** VXLAN network identifier, 1-16777215. */
  vni: number;
  /** UDP destination port; default 4789 (IANA). */
  port?: number;
  /** Learn inner source MAC → outer source IP from received packets; default false. */
  learning?: boolean;
  /** Answer ARP/ND from the device's neighbour table (no ARP over the tunnel); default true. */
  proxy?: boolean;
  /** Emit netlink misses for unknown MACs / IPs; default false. */
  l2miss?: boolean;
  l3miss?: boolean;
  /** Source address of encapsulated packets; default chosen by the host's routes. */
  local?: string;
  mtu?: number;
  /** Path of the namespace the device lives in; default the host namespace. */
  netns?: string;
  /** Bridge inside `netns` to enslave the device to. */
  master?: string;
  /** Ownership mark (link alias). */
  alias?: string;
}

/** A VXLAN device as the kernel reports it. */
export interface VxlanInfo {
  name: string;
  index: number;
  /** Path of the namespace it lives in; undefined = the host namespace. */
  netns?: string;
  vni: number;
  port: number;
  learning: boolean;
  proxy: boolean;
  mtu: number;
  up: boolean;
  master?: string;
  alias?: string;
  /** True when its UDP socket is in the host namespace, where it holds `vni` on `port`. */
  socketInHost: boolean;
}

/** A permanent IP neighbour entry (`ip neigh replace IP lladdr MAC dev DEV nud permanent`). */
export interface NeighborSpec {
  dev: string;
  ip: string;
  mac: string;
}

/** A neighbour entry as the kernel reports it. */
export interface NeighborInfo {
  dev: string;
  ip: string;
  mac?: string;
  /** NUD states, lower case: `permanent`, `reachable`, `stale`, `failed`, `noarp`, … */
  state: string[];
  permanent: boolean;
}

/**
 * A permanent FDB entry on a VXLAN device's own table
 * (`bridge fdb replace MAC dev DEV dst VTEP self permanent`): AF_BRIDGE, NTF_SELF.
 */
export interface FdbSpec {
  dev: string;
  mac: string;
  /** Remote VTEP (underlay address). */
  dst: string;
}

/** An FDB entry (family AF_BRIDGE) as the kernel reports it. */
export interface FdbInfo {
  dev: string;
  mac: string;
  /** Remote VTEP, for entries of a VXLAN device's own table. */
  dst?: string;
  /** In the device's own table (NTF_SELF) rather than its master bridge's. */
  self: boolean;
  /** The bridge, for entries of the master's table. */
  master?: string;
  /** NUD_PERMANENT (or NUD_NOARP, static): not learned. */
  permanent: boolean;
  /** NUD states, lower case. */
  state: string[];
}

/** One change of a {@link Kernel.applyNeighbors} batch. Adds replace; deletes tolerate absence. */
export type NeighborChange =
  | { op: "add"; neighbor: NeighborSpec }
  | { op: "delete"; neighbor: { dev: string; ip: string } }
  | { op: "add"; fdb: FdbSpec }
  | { op: "delete"; fdb: { dev: string; mac: string; dst?: string } };

/** What a {@link Kernel.applyNeighbors} batch did. */
export interface NeighborBatchResult {
  /** Changes the kernel accepted (deletes of absent entries included). */
  applied: number;
  /** Netlink datagrams (sendmsg calls) it took. */
  datagrams: number;
}

/**
 * A host port held by a bound socket in the host namespace (TCP: listening), on behalf of
 * `owner` (an endpoint id). See `holdPort`.
 */
export interface HeldPort {
  proto: "tcp" | "udp";
  /** `0.0.0.0`, `::` or a host address. */
  hostIp: string;
  hostPort: number;
  owner: string;
}

/** Settings of a link in the host namespace that {@link Kernel.setLinkOptions} changes. */
export interface LinkOptions {
  /** Bridge port hairpin mode (frames may leave by the port they came in). */
  hairpin?: boolean;
  /** `net.ipv4.conf.<link>.route_localnet`: route 127/8 to and from this link. */
  routeLocalnet?: boolean;
}

/** The kernel access interface. */
export interface Kernel {
  /** Ensures `/var/run/netns/<name>` exists with loopback up; returns its path. */
  ensureNetns(name: string): Promise<string>;
  /** Removes the named namespace if present. */
  deleteNetns(name: string): Promise<void>;
  /** Names of namespaces in /var/run/netns starting with `prefix`. */
  listNetns(prefix: string): Promise<string[]>;
  /** True when the namespace at `path` exists. */
  netnsExists(path: string): Promise<boolean>;
  /** Ensures loopback is up in the namespace at `path`. */
  ensureLoopbackUp(path: string): Promise<void>;

  /** Ensures a bridge in the host namespace, up, with the given addresses. */
  ensureBridge(spec: BridgeSpec): Promise<void>;
  /** Ensures a veth pair as described (peer created directly in the namespace), up. */
  ensureVeth(spec: VethSpec): Promise<void>;
  /** Deletes a link if present (host namespace unless `netns`). */
  deleteLink(name: string, netns?: string): Promise<void>;
  /** Links of a namespace. */
  listLinks(netns?: string): Promise<LinkInfo[]>;
  /** Addresses of a namespace. */
  listAddrs(netns?: string): Promise<AddrInfo[]>;
  /** Routes of a namespace's main table. */
  listRoutes(netns?: string): Promise<RouteInfo[]>;
  /** Ensures a route exists (replace semantics). */
  ensureRoute(route: RouteSpec, netns?: string): Promise<void>;
  /** Deletes a route if present. */
  deleteRoute(route: RouteSpec, netns?: string): Promise<void>;

  /**
   * Ensures a VXLAN device as described, up (see {@link VxlanSpec}). An existing device of
   * that name is repaired when it has the same VNI and port and its socket is in the host
   * namespace; anything else of that name is a DriverError.
   *
   * @throws {DriverError} `A VXLAN device with the specified VNI already exists` (the kernel's
   *   words) naming the device that holds the VNI, when another device does.
   */
  ensureVxlan(spec: VxlanSpec): Promise<void>;
  /** VXLAN devices of one namespace (default the host's). */
  listVxlans(netns?: string): Promise<VxlanInfo[]>;
  /**
   * VXLAN devices holding `vni` in the host namespace (socket there), looked for in the host
   * namespace and in `netns` (default: every namespace in /var/run/netns). Reads only.
   */
  findVxlans(vni: number, options?: { port?: number; netns?: string[] }): Promise<VxlanInfo[]>;

  /** Ensures a permanent neighbour entry (replace semantics) in `netns` (default host). */
  ensureNeighbor(spec: NeighborSpec, netns?: string): Promise<void>;
  /** Deletes a neighbour entry if present. */
  deleteNeighbor(spec: { dev: string; ip: string }, netns?: string): Promise<void>;
  /** Neighbour entries (both families, no proxy entries), optionally of one device. */
  listNeighbors(netns?: string, dev?: string): Promise<NeighborInfo[]>;
  /** Ensures a permanent `self` FDB entry (NLM_F_REPLACE: also turns a learned one permanent). */
  ensureFdb(spec: FdbSpec, netns?: string): Promise<void>;
  /** Deletes a `self` FDB entry if present (with `dst`: only that remote of it). */
  deleteFdb(spec: { dev: string; mac: string; dst?: string }, netns?: string): Promise<void>;
  /** FDB entries (family AF_BRIDGE, both tables), optionally of one device. */
  listFdb(netns?: string, dev?: string): Promise<FdbInfo[]>;
  /**
   * Applies many neighbour/FDB changes in as few netlink datagrams as possible (one sendmsg
   * per ~64 KiB of requests), in order. Every change is tried; the failures, if any, are
   * reported together.
   *
   * @throws {DriverError} listing the refused changes (the others are applied).
   */
  applyNeighbors(changes: NeighborChange[], netns?: string): Promise<NeighborBatchResult>;

  /** Changes a host-namespace link's bridge-port or IPv4 settings (absent ones stay). */
  setLinkOptions(name: string, options: LinkOptions): Promise<void>;

  /**
   * Holds a host port: binds (TCP: and listens on) a socket in the host namespace that
   * drops every packet, kept until {@link releasePort} or {@link close}. Idempotent for the
   * same owner.
   *
   * Rejects with ConflictError `failed to bind host port 0.0.0.0:9090/tcp: address already
   * in use` when another process has the port, `Bind for 0.0.0.0:9090 failed: port is
   * already allocated` when this kernel holds it for another owner.
   */
  holdPort(port: HeldPort): Promise<void>;
  /** Closes a held port's socket, if held. */
  releasePort(port: Omit<HeldPort, "owner">): Promise<void>;
  /** The ports this kernel holds. */
  heldPorts(): Promise<HeldPort[]>;

  /** Runs a command inside the host namespace (e.g. `nft -f -`), with optional stdin. */
  exec(argv: string[], options?: { stdin?: string; netns?: string }): Promise<string>;
  /** Releases sockets (held ports included) and processes. */
  close(): Promise<void>;
}
