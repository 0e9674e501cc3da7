/**
 * Predefined pools per address space and the search for the first free one.
 *
 * @module
 */

import { bitsOf, type Cidr } from "./cidr.ts";

/** A base subnet split into subnets of prefix length `size`. */
export interface PoolBase {
  base: string;
  size: number;
}

/**
 * libnetwork's local defaults (31 IPv4 pools), then IPv6: fd00::/8 in /64s. Docker 27+
 * picks IPv6 ULA prefixes at random; we go sequentially (fd00::/64, fd00:0:0:1::/64, …)
 * so that the same calls always decide the same pools.
 */
export const localDefaultPools: readonly PoolBase[] = [
  { base: "172.17.0.0/16", size: 16 },
  { base: "172.18.0.0/16", size: 16 },
  { base: "172.19.0.0/16", size: 16 },
  { base: "172.20.0.0/14", size: 16 },
  { base: "172.24.0.0/14", size: 16 },
  { base: "172.28.0.0/14", size: 16 },
  { base: "192.168.0.0/16", size: 20 },
  { base: "fd00::/8", size: 64 },
];

/**
 * libnetwork's global (overlay) defaults: 10.0.0.0/8 in /24s. No IPv6 default, as in
 * Docker's swarm, so that local and global auto-picked IPv6 pools never collide.
 */
export const globalDefaultPools: readonly PoolBase[] = [{ base: "10.0.0.0/8", size: 24 }];

/** An inclusive range of addresses that an auto-picked pool must not touch. */
export interface Blocker {
  lo: bigint;
  hi: bigint;
}

/**
 * The network address of the first `/size` subnet of `base` that overlaps no blocker.
 * Jumps past each blocker, so the cost is O(blockers²) per base even for fd00::/8 in /64s.
 */
export function firstFreeSubnet(
  base: Cidr,
  size: number,
  blockers: readonly Blocker[],
): bigint | undefined {
  const step = 1n << BigInt(bitsOf(base.family) - size);
  let candidate = base.network;
  while (candidate <= base.last) {
    const end = candidate + step - 1n;
    let blockedUntil: bigint | undefined;
    for (const b of blockers) {
      if (b.lo <= end && b.hi >= candidate && (blockedUntil === undefined || b.hi > blockedUntil)) {
        blockedUntil = b.hi;
      }
    }
    if (blockedUntil === undefined) return candidate;
    // base.network is aligned on `step` (size >= base prefix), so aligning on 0 is enough.
    candidate = ((blockedUntil + step) / step) * step;
  }
  return undefined;
}
