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

/** A bridge the caller wants to exist in the host namespace. */
export interface BridgeSpec {
  name: string;
  mtu?: number;
  mac?: string;
  addresses?: string[]; // CIDRs to ensure on the bridge (e.g. the gateway)
  alias?: string; // ownership mark
}

/** A veth pair with one end on a bridge in the host namespace and the peer in a namespace. */
export interface VethSpec {
  hostName: string; // host-side name, on `master`
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
