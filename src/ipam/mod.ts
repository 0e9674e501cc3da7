/**
 * The default IPAM, libnetwork's behaviour as a pure in-memory module: no I/O, no clock, no
 * randomness. The controller *decides* with `requestPool`/`requestAddress`, records the
 * result in a journal event, and after a restart *restores* those facts with
 * `restorePool`/`restoreAddress` before anything else runs. The same sequence of calls
 * always yields the same {@link Ipam.snapshot}.
 *
 * ```ts
 * import { createIpam } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const ipam = createIpam();
 * const pool = ipam.requestPool({});
 * assert.deepEqual(pool.poolId, "LocalDefault/172.17.0.0/16");
 * assert.deepEqual(ipam.requestAddress(pool.poolId, { gateway: true }), "172.17.0.1/16");
 * assert.deepEqual(ipam.requestAddress(pool.poolId), "172.17.0.2/16");
 *
 * // After a restart: replay the facts, then keep deciding without collisions.
 * const again = createIpam();
 * again.restorePool(pool);
 * again.restoreAddress(pool.poolId, "172.17.0.1/16");
 * again.restoreAddress(pool.poolId, "172.17.0.2/16");
 * assert.deepEqual(again.requestAddress(pool.poolId), "172.17.0.3/16");
 * ```
 *
 * @module
 */

import {
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../errors.ts";
import {
  bitsOf,
  type Cidr,
  cidrToString,
  ipToString,
  parseCidr,
  parsedOverlap,
  parseIp,
} from "./cidr.ts";
import {
  type Blocker,
  firstFreeSubnet,
  globalDefaultPools,
  localDefaultPools,
} from "./_defaults.ts";
import { RangeSet } from "./_range_set.ts";
import {
  GlobalDefault,
  type Ipam,
  type IpamOptions,
  LocalDefault,
  type PoolInfo,
  type PoolRequest,
  SerialOption,
} from "./types.ts";

export { GlobalDefault, LocalDefault, SerialOption } from "./types.ts";
export { globalDefaultPools, localDefaultPools, type PoolBase } from "./_defaults.ts";
export type { AddressRequest, Ipam, IpamOptions, PoolInfo, PoolRequest } from "./types.ts";

/** A subnet in use in one address space, shared by the pools naming it (libnetwork's parent pool). */
interface Subnet {
  key: string;
  space: string;
  cidr: Cidr;
  used: RangeSet;
  reserved: bigint[];
  /** Last allocated address: where round-robin continues. */
  last?: bigint;
  /** Pool ids (the subnet's own and its subPools') holding this subnet. */
  holders: Set<string>;
}

interface Pool {
  info: PoolInfo;
  subnet: Subnet;
  lo: bigint;
  hi: bigint;
  serial: boolean;
}

const overlapMessage = "Pool overlaps with other one on this address space";
const exhaustedPoolsMessage = "all predefined address pools have been fully subnetted";
const inUseMessage = "Address already in use";

/**
 * Creates an empty default IPAM.
 *
 * @param options see {@link IpamOptions}.
 * @throws {InvalidArgumentError} a malformed default pool base or size.
 * @example
 * ```ts
 * import { createIpam } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const ipam = createIpam({ hostNetworks: () => ["172.17.0.0/16"] });
 * assert.deepEqual(ipam.requestPool({}).pool, "172.18.0.0/16");
 * ```
 */
export function createIpam(options: IpamOptions = {}): Ipam {
  const hostNetworks = options.hostNetworks ?? (() => []);
  const bases = new Map<string, { cidr: Cidr; size: number }[]>();
  const spaces = { [LocalDefault]: localDefaultPools, [GlobalDefault]: globalDefaultPools };
  const builtin = (space: string) => spaces[space as keyof typeof spaces];
  for (const [space, list] of Object.entries({ ...spaces, ...options.defaultPools })) {
    bases.set(space, list.map(({ base, size }) => parseBase(base, size)));
  }
  const subnets = new Map<string, Subnet>();
  const pools = new Map<string, Pool>();

  function checkSpace(space: string): string {
    if (!bases.has(space)) throw new InvalidArgumentError(`cannot find address space ${space}`);
    return space;
  }

  function lookup(poolId: string): Pool {
    const pool = pools.get(poolId);
    if (!pool) throw new NotFoundError(`pool ${poolId} not found`);
    return pool;
  }

  function pickDefault(space: string, v6: boolean): Cidr {
    const family = v6 ? 6 : 4;
    const blockers: Blocker[] = [];
    for (const s of subnets.values()) {
      if (s.space === space && s.cidr.family === family) {
        blockers.push({ lo: s.cidr.network, hi: s.cidr.last });
      }
    }
    for (const text of hostNetworks()) {
      const host = text.includes("/") ? parseCidr(text) : hostRoute(text);
      if (host.family === family && host.prefix > 0) {
        blockers.push({ lo: host.network, hi: host.last });
      }
    }
    for (const { cidr, size } of bases.get(space)!) {
      if (cidr.family !== family) continue;
      const network = firstFreeSubnet(cidr, size, blockers);
      if (network !== undefined) {
        return parseCidr(`${ipToString({ family, value: network })}/${size}`);
      }
    }
    throw new UnavailableError(exhaustedPoolsMessage);
  }

  /** Validates a request or a restored info into a subnet, optional range and options. */
  function resolve(req: PoolRequest): { space: string; cidr: Cidr; sub?: Cidr } {
    const space = checkSpace(req.addressSpace ?? LocalDefault);
    if (!req.pool) {
      if (req.subPool) {
        throw new InvalidArgumentError(`invalid subPool ${req.subPool}: a subPool needs a pool`);
      }
      return { space, cidr: pickDefault(space, req.v6 === true) };
    }
    const cidr = parseCidr(req.pool);
    if (req.v6 !== undefined && req.v6 !== (cidr.family === 6)) {
      const family = cidr.family === 6 ? "IPv6" : "IPv4";
      throw new InvalidArgumentError(
        `invalid pool ${req.pool}: it is ${family} but v6 is ${req.v6}`,
      );
    }
    if (!req.subPool) return { space, cidr };
    const sub = parseCidr(req.subPool);
    if (sub.family !== cidr.family || sub.network < cidr.network || sub.last > cidr.last) {
      throw new InvalidArgumentError(
        `invalid subPool ${req.subPool}: it is not inside pool ${req.pool}`,
      );
    }
    return { space, cidr, sub };
  }

  function poolIdOf(space: string, cidr: Cidr, sub?: Cidr): string {
    const id = `${space}/${cidrToString(cidr)}`;
    return sub ? `${id}/${cidrToString(sub)}` : id;
  }

  function add(space: string, cidr: Cidr, sub: Cidr | undefined, opts?: Record<string, string>) {
    const key = poolIdOf(space, cidr);
    const id = poolIdOf(space, cidr, sub);
    let subnet = subnets.get(key);
    if (subnet) {
      // As in libnetwork, distinct subPools of one pool share its subnet; anything else overlaps.
      if (!sub || subnet.holders.has(id)) throw new ForbiddenError(overlapMessage);
    } else {
      for (const other of subnets.values()) {
        if (other.space === space && parsedOverlap(other.cidr, cidr)) {
          throw new ForbiddenError(overlapMessage);
        }
      }
      subnet = newSubnet(key, space, cidr);
      subnets.set(key, subnet);
    }
    subnet.holders.add(id);
    const options = opts && Object.keys(opts).length > 0 ? sortKeys(opts) : undefined;
    const info: PoolInfo = {
      poolId: id,
      pool: cidrToString(cidr),
      ...(sub ? { subPool: cidrToString(sub) } : {}),
      addressSpace: space,
      v6: cidr.family === 6,
      ...(options ? { options } : {}),
    };
    const range = sub ?? cidr;
    const serial = options?.[SerialOption] === "true";
    pools.set(id, { info, subnet, lo: range.network, hi: range.last, serial });
    return clone(info);
  }

  /** Parses an address argument and checks it lies in the pool's subnet. */
  function addressIn(pool: Pool, text: string): bigint {
    const { family, value } = text.includes("/")
      ? { family: parseCidr(text).family, value: parseCidr(text).address }
      : parseIp(text);
    const { cidr } = pool.subnet;
    if (family !== cidr.family || value < cidr.network || value > cidr.last) {
      throw new InvalidArgumentError(
        `invalid address ${text}: It does not belong to any of this network's subnets`,
      );
    }
    return value;
  }

  function withPrefix(subnet: Subnet, value: bigint): string {
    return `${ipToString({ family: subnet.cidr.family, value })}/${subnet.cidr.prefix}`;
  }

  function take(subnet: Subnet, value: bigint): void {
    subnet.used.add(value);
    subnet.last = value;
  }

  function findFree(pool: Pool, serial: boolean): bigint | undefined {
    const { used, last } = pool.subnet;
    if (serial && last !== undefined && last >= pool.lo && last < pool.hi) {
      return used.firstFree(last + 1n, pool.hi) ?? used.firstFree(pool.lo, last);
    }
    return used.firstFree(pool.lo, pool.hi);
  }

  return {
    getDefaultAddressSpaces: () => ({ local: LocalDefault, global: GlobalDefault }),

    requestPool(req) {
      const { space, cidr, sub } = resolve(req);
      return add(space, cidr, sub, req.options);
    },

    releasePool(poolId) {
      const pool = lookup(poolId);
      pools.delete(poolId);
      pool.subnet.holders.delete(poolId);
      if (pool.subnet.holders.size === 0) subnets.delete(pool.subnet.key);
    },

    requestAddress(poolId, req = {}) {
      const pool = lookup(poolId);
      const { subnet } = pool;
      let value: bigint | undefined;
      if (req.address !== undefined) {
        value = addressIn(pool, req.address);
        if (subnet.used.has(value)) throw new ForbiddenError(inUseMessage);
      } else {
        value = findFree(pool, !req.gateway && (req.serial === true || pool.serial));
        if (value === undefined) {
          const family = subnet.cidr.family === 6 ? "IPv6" : "IPv4";
          throw new UnavailableError(
            `no available ${family} addresses on this network's address pools`,
          );
        }
      }
      take(subnet, value);
      return withPrefix(subnet, value);
    },

    releaseAddress(poolId, address) {
      const pool = lookup(poolId);
      const value = addressIn(pool, address);
      if (!pool.subnet.reserved.includes(value)) pool.subnet.used.delete(value);
    },

    restorePool(info) {
      const { space, cidr, sub } = resolve({
        addressSpace: info.addressSpace,
        pool: info.pool,
        subPool: info.subPool,
        v6: info.v6,
      });
      const id = poolIdOf(space, cidr, sub);
      if (id !== info.poolId) {
        throw new InvalidArgumentError(`invalid pool id ${info.poolId}: expected ${id}`);
      }
      if (!pools.has(id)) add(space, cidr, sub, info.options);
    },

    restoreAddress(poolId, address) {
      const pool = lookup(poolId);
      const value = addressIn(pool, address);
      if (pool.subnet.reserved.includes(value)) throw new ForbiddenError(inUseMessage);
      // Restores move the round-robin cursor like the original allocations did, so a replay
      // in journal order ends in the same state as the live run.
      take(pool.subnet, value);
    },

    pools: () => sortedPools([...pools.values()]).map(({ info }) => clone(info)),

    addresses(poolId) {
      const { subnet } = lookup(poolId);
      const out: string[] = [];
      for (const v of subnet.used.values()) {
        if (!subnet.reserved.includes(v)) out.push(withPrefix(subnet, v));
      }
      return out;
    },

    setDefaultPools(space, list) {
      const given = list ?? builtin(space);
      if (!given) throw new InvalidArgumentError(`cannot find address space ${space}`);
      // Parse all before replacing any, so a bad entry changes nothing.
      bases.set(space, given.map(({ base, size }) => parseBase(base, size)));
    },

    snapshot() {
      const subnetList = [...subnets.values()].sort((a, b) => compareCidr(a, b));
      return {
        pools: sortedPools([...pools.values()]).map(({ info }) => clone(info)),
        subnets: subnetList.map((s) => ({
          addressSpace: s.space,
          pool: cidrToString(s.cidr),
          allocated: s.used.ranges().map(({ lo, hi }) => {
            const from = ipToString({ family: s.cidr.family, value: lo });
            return lo === hi ? from : `${from}-${ipToString({ family: s.cidr.family, value: hi })}`;
          }),
          ...(s.last !== undefined
            ? { last: ipToString({ family: s.cidr.family, value: s.last }) }
            : {}),
        })),
      };
    },
  };
}

function parseBase(base: string, size: number): { cidr: Cidr; size: number } {
  const cidr = parseCidr(base);
  if (!Number.isInteger(size) || size < cidr.prefix || size > bitsOf(cidr.family)) {
    throw new InvalidArgumentError(`invalid default pool size ${size} for base ${base}`);
  }
  return { cidr, size };
}

function hostRoute(text: string): Cidr {
  const ip = parseIp(text);
  return parseCidr(`${ipToString(ip)}/${bitsOf(ip.family)}`);
}

function newSubnet(key: string, space: string, cidr: Cidr): Subnet {
  const used = new RangeSet();
  const reserved: bigint[] = [];
  // Network and broadcast addresses are reserved, except in a /31 or /32 where every address
  // is a host. IPv6 has no broadcast: only the subnet-router anycast (::0) is reserved.
  if (bitsOf(cidr.family) - cidr.prefix > 1) {
    reserved.push(cidr.network);
    if (cidr.family === 4) reserved.push(cidr.last);
  }
  for (const r of reserved) used.add(r);
  return { key, space, cidr, used, reserved, holders: new Set() };
}

function sortKeys(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

function clone(info: PoolInfo): PoolInfo {
  return { ...info, ...(info.options ? { options: { ...info.options } } : {}) };
}

function compareCidr(a: { space: string; cidr: Cidr }, b: { space: string; cidr: Cidr }): number {
  if (a.space !== b.space) return a.space < b.space ? -1 : 1;
  if (a.cidr.family !== b.cidr.family) return a.cidr.family - b.cidr.family;
  if (a.cidr.network !== b.cidr.network) return a.cidr.network < b.cidr.network ? -1 : 1;
  return a.cidr.prefix - b.cidr.prefix;
}

function sortedPools(list: Pool[]): Pool[] {
  return list.sort((a, b) =>
    compareCidr(a.subnet, b.subnet) ||
    (a.lo !== b.lo ? (a.lo < b.lo ? -1 : 1) : a.hi < b.hi ? -1 : a.hi > b.hi ? 1 : 0) ||
    // A pool without subPool spans the whole subnet, so it sorts with its range; break ties on id.
    (a.info.poolId < b.info.poolId ? -1 : a.info.poolId > b.info.poolId ? 1 : 0)
  );
}
