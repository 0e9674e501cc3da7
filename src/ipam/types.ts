/**
 * The default IPAM's contract: address spaces, the requests, the pool facts journaled and
 * restored, and the {@link Ipam} interface. The implementation is mod.ts.
 *
 * @module
 */

/** Name of the local default address space (bridge and other local-scope networks). */
export const LocalDefault = "LocalDefault";
/** Name of the global default address space (overlay and other global-scope networks). */
export const GlobalDefault = "GlobalDefault";
/** Pool or address option: allocate round-robin instead of first-free when `"true"`. */
export const SerialOption = "com.docker.network.ipam.serial";

/** Options of {@link createIpam}. */
export interface IpamOptions {
  /**
   * CIDRs (or bare IPs, taken as /32 or /128) the host already uses, e.g. its on-link routes
   * and resolvers; auto-picked pools skip anything overlapping them. Called on every
   * auto-pick. A /0 entry (a default route) is ignored. Default: `() => []`.
   */
  hostNetworks?: () => string[];
  /**
   * Predefined pools per address space, each a base CIDR split into `/size` subnets,
   * tried in order; IPv4 and IPv6 bases may be mixed (the request's family picks).
   * Given spaces replace the defaults of that space; other spaces keep theirs.
   * Default: `LocalDefault`: 172.17.0.0/16, 172.18.0.0/16, 172.19.0.0/16, 172.20.0.0/14,
   * 172.24.0.0/14, 172.28.0.0/14 in /16s, 192.168.0.0/16 in /20s, fd00::/8 in /64s
   * (sequential); `GlobalDefault`: 10.0.0.0/8 in /24s.
   */
  defaultPools?: { [space: string]: { base: string; size: number }[] };
}

/** Arguments of {@link Ipam.requestPool}. */
export interface PoolRequest {
  /** Address space. Default {@link LocalDefault}. */
  addressSpace?: string;
  /** Subnet to use (normalised: `10.0.0.5/24` → `10.0.0.0/24`). Default: auto-pick. */
  pool?: string;
  /** Range inside `pool` that dynamic allocations come from (Docker's `--ip-range`). */
  subPool?: string;
  /** Family of an auto-picked pool; with an explicit pool it must match if given. Default false. */
  v6?: boolean;
  /** IPAM options; {@link SerialOption}=`"true"` makes every allocation round-robin. */
  options?: Record<string, string>;
}

/** A pool in use, as recorded in journal events and given back to {@link Ipam.restorePool}. */
export interface PoolInfo {
  /** `<space>/<pool>` or `<space>/<pool>/<subPool>`. */
  poolId: string;
  /** The subnet, normalised. */
  pool: string;
  /** The dynamic-allocation range, normalised, when one was requested. */
  subPool?: string;
  addressSpace: string;
  v6: boolean;
  /** The request's options, when any were given (needed to restore serial allocation). */
  options?: Record<string, string>;
}

/** Arguments of {@link Ipam.requestAddress}. */
export interface AddressRequest {
  /** A specific address (a prefix, if written, is ignored). It must lie in the pool. */
  address?: string;
  /** The gateway request (libnetwork's `RequestAddressType=com.docker.network.gateway`): always first-free. */
  gateway?: boolean;
  /** Round-robin for this request: continue after the pool's last allocated address. */
  serial?: boolean;
}

/** The default IPAM. Every method is synchronous and pure with respect to the outside world. */
export interface Ipam {
  /** `{ local: "LocalDefault", global: "GlobalDefault" }`. */
  getDefaultAddressSpaces(): { local: string; global: string };
  /**
   * Reserves a pool: the given one, or the first predefined one overlapping neither a pool
   * in use in the space nor the host's networks.
   * @throws {InvalidArgumentError} malformed CIDR, unknown space, subPool outside pool, family mismatch.
   * @throws {ForbiddenError} `Pool overlaps with other one on this address space`.
   * @throws {UnavailableError} `all predefined address pools have been fully subnetted`.
   */
  requestPool(req: PoolRequest): PoolInfo;
  /**
   * Releases a pool; the subnet's addresses are forgotten when its last pool goes.
   * @throws {NotFoundError} `pool X not found`.
   */
  releasePool(poolId: string): void;
  /**
   * Allocates an address and returns it with the pool's prefix (`172.18.0.2/16`).
   * @throws {NotFoundError} unknown pool.
   * @throws {InvalidArgumentError} malformed address, or `invalid address X: It does not belong to any of this network's subnets`.
   * @throws {ForbiddenError} `Address already in use` (also for the reserved network/broadcast).
   * @throws {UnavailableError} `no available IPv4 addresses on this network's address pools` (or IPv6).
   */
  requestAddress(poolId: string, req?: AddressRequest): string;
  /**
   * Frees an address (with or without prefix). Freeing a free address is a no-op, so
   * replaying a release twice is harmless.
   * @throws {NotFoundError} unknown pool. @throws {InvalidArgumentError} malformed or outside the pool.
   */
  releaseAddress(poolId: string, address: string): void;
  /**
   * Marks a recorded pool as in use (replay). Idempotent.
   * @throws {InvalidArgumentError} malformed or inconsistent info. @throws {ForbiddenError} overlap.
   */
  restorePool(info: PoolInfo): void;
  /**
   * Marks a recorded address as allocated (replay). Idempotent.
   * @throws {NotFoundError} unknown pool. @throws {InvalidArgumentError} outside the pool.
   * @throws {ForbiddenError} `Address already in use` for a reserved address.
   */
  restoreAddress(poolId: string, address: string): void;
  /** Pools in use, sorted by space, family, address, then subPool. */
  pools(): PoolInfo[];
  /**
   * Allocated addresses of the pool's subnet, with prefix, in address order. Pools sharing a
   * subnet (different subPools of one pool) share its addresses.
   * @throws {NotFoundError} unknown pool.
   */
  addresses(poolId: string): string[];
  /** JSON-able, deterministic state: pools, and per subnet the allocated ranges and cursor. */
  snapshot(): unknown;
  /**
   * Replaces the predefined pools of an address space (daemon.json's `default-address-pools`);
   * `undefined` restores the built-in ones. Only later auto-picks see the change: pools in use
   * stay as they are, whatever base they came from.
   * @throws {InvalidArgumentError} a malformed base or size; nothing changes then.
   */
  setDefaultPools(
    space: string,
    pools: readonly { base: string; size: number }[] | undefined,
  ): void;
}
