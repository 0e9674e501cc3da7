/**
 * How the controller uses IPAM. Allocations are decided here, written into the intent
 * events, and rebuilt from those events on start; the allocator's state is never stored
 * anywhere else, so no address is handed out twice and none leaks.
 *
 * @module
 */

import type { NetworkIpamEntry } from "../../actors/network.ts";
import type { EndpointContext } from "../../actors/endpoint.ts";
import {
  ForbiddenError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../errors.ts";
import {
  addressOf,
  cidrContains,
  cidrToString,
  isIPv6,
  normalizeIp,
  parseCidr,
  parseIp,
} from "../ipam/cidr.ts";
import { type Ipam, LocalDefault } from "../ipam/mod.ts";

/** IPAM facts of a network, as journaled in `network.create.requested`. */
export interface NetworkIpam {
  driver: string;
  options?: Record<string, string>;
  ipv4: NetworkIpamEntry[];
  ipv6: NetworkIpamEntry[];
}

/** One requested subnet. */
export interface IpamConfigEntry {
  subnet: string;
  ipRange?: string;
  gateway?: string;
  auxAddresses?: Record<string, string>;
}

/** What `createNetwork` asked for. */
export interface NetworkIpamRequest {
  enableIPv6: boolean;
  ipam?: { driver: string; options: Record<string, string>; config: IpamConfigEntry[] };
}

/**
 * Checks the subnets and ip ranges a network asks for, whatever its IPAM driver, as Docker's
 * API does: no host bits (`invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24`).
 *
 * @throws {InvalidArgumentError} naming the subnet or range.
 */
export function checkIpamConfig(config: IpamConfigEntry[]): void {
  for (const c of config) {
    for (const [what, text] of [["subnet", c.subnet], ["ip-range", c.ipRange]] as const) {
      if (text === undefined) continue;
      const cidr = parseCidr(text);
      if (cidr.address !== cidr.network) {
        throw new InvalidArgumentError(
          `invalid ${what} ${text}: it should be ${cidrToString(cidr)}`,
        );
      }
    }
  }
}

/** Why an address cannot be a gateway of `pool`, when it is one the IPAM reserves. */
function reservedReason(pool: string, ip: string): string | undefined {
  const cidr = parseCidr(pool);
  const bits = cidr.family === 4 ? 32 : 128;
  if (bits - cidr.prefix <= 1) return undefined; // a /31 or /32 (/127, /128): all hosts
  const value = parseIp(ip).value;
  if (value === cidr.network) {
    return cidr.family === 4 ? "network address" : "subnet-router anycast address";
  }
  if (cidr.family === 4 && value === cidr.last) return "broadcast address";
  return undefined;
}

/**
 * Decides a network's pools, gateways and aux addresses. On error nothing stays allocated.
 *
 * @throws {InvalidArgumentError|ForbiddenError|UnavailableError} with libnetwork's messages.
 */
export function allocateNetwork(
  ipam: Ipam,
  req: NetworkIpamRequest,
  addressSpace: string = LocalDefault,
): NetworkIpam {
  const driver = req.ipam?.driver ?? "default";
  if (driver !== "default") throw new NotFoundError(`unknown IPAM driver "${driver}"`);
  const options = req.ipam?.options ?? {};
  const config = req.ipam?.config ?? [];
  for (const c of config) {
    if (isIPv6(c.subnet.split("/")[0]) && !req.enableIPv6) {
      throw new InvalidArgumentError(
        `invalid ipam config: subnet ${c.subnet} is IPv6 but enableIPv6 is false`,
      );
    }
  }
  const v4 = config.filter((c) => !isIPv6(c.subnet.split("/")[0]));
  const v6 = config.filter((c) => isIPv6(c.subnet.split("/")[0]));
  const out: NetworkIpam = {
    driver,
    ...(Object.keys(options).length ? { options } : {}),
    ipv4: [],
    ipv6: [],
  };
  try {
    for (const c of v4.length ? v4 : [undefined]) {
      out.ipv4.push(allocatePool(ipam, c, false, options, addressSpace));
    }
    if (req.enableIPv6) {
      for (const c of v6.length ? v6 : [undefined]) {
        out.ipv6.push(allocatePool(ipam, c, true, options, addressSpace));
      }
    }
  } catch (err) {
    releaseNetwork(ipam, out);
    throw err;
  }
  return out;
}

function allocatePool(
  ipam: Ipam,
  c: IpamConfigEntry | undefined,
  v6: boolean,
  options: Record<string, string>,
  addressSpace: string,
): NetworkIpamEntry {
  const info = ipam.requestPool({
    addressSpace,
    ...(c?.subnet ? { pool: c.subnet } : {}),
    ...(c?.ipRange ? { subPool: c.ipRange } : {}),
    v6,
    options,
  });
  try {
    const reserved = c?.gateway ? reservedReason(info.pool, addressOf(c.gateway)) : undefined;
    if (reserved) {
      // Docker says only "failed to allocate gateway (X): Address already in use"; say why.
      throw new ForbiddenError(
        `failed to allocate gateway (${c!.gateway}): Address already in use: ` +
          `${c!.gateway} is the ${reserved} of ${info.pool}`,
      );
    }
    const gateway = ipam.requestAddress(info.poolId, {
      ...(c?.gateway ? { address: c.gateway } : {}),
      gateway: true,
    });
    const auxAddresses: Record<string, string> = {};
    for (const [name, ip] of Object.entries(c?.auxAddresses ?? {})) {
      auxAddresses[name] = ipam.requestAddress(info.poolId, { address: ip });
    }
    return {
      poolId: info.poolId,
      // Recorded only when not the local default, so local networks' events stay as before.
      ...(addressSpace !== LocalDefault ? { addressSpace } : {}),
      pool: info.pool,
      ...(info.subPool ? { subPool: info.subPool } : {}),
      gateway,
      auxAddresses,
    };
  } catch (err) {
    ipam.releasePool(info.poolId);
    throw err;
  }
}

/** Releases a network's pools (and with them its addresses). */
export function releaseNetwork(
  ipam: Ipam,
  facts: Pick<NetworkIpam, "ipv4" | "ipv6"> | undefined,
): void {
  for (const e of [...(facts?.ipv4 ?? []), ...(facts?.ipv6 ?? [])]) {
    try {
      ipam.releasePool(e.poolId);
    } catch { /* already released */ }
  }
}

/** Marks a network's journaled pools and addresses as allocated (replay). */
export function restoreNetwork(ipam: Ipam, facts: NetworkIpam): void {
  for (const [v6, entries] of [[false, facts.ipv4], [true, facts.ipv6]] as const) {
    for (const e of entries) {
      ipam.restorePool({
        poolId: e.poolId,
        pool: e.pool,
        ...(e.subPool ? { subPool: e.subPool } : {}),
        addressSpace: e.addressSpace ?? LocalDefault,
        v6,
        ...(facts.options ? { options: facts.options } : {}),
      });
      if (e.gateway) ipam.restoreAddress(e.poolId, e.gateway);
      for (const a of Object.values(e.auxAddresses)) ipam.restoreAddress(e.poolId, a);
    }
  }
}

/** An endpoint's decided addresses. */
export interface EndpointAddresses {
  ipv4Address?: string;
  ipv6Address?: string;
}

/**
 * Decides an endpoint's addresses: the requested ones, else the first free of the network's
 * pools. On error nothing stays allocated.
 */
export function allocateEndpoint(
  ipam: Ipam,
  facts: NetworkIpam,
  req: EndpointAddresses,
): EndpointAddresses {
  const out: EndpointAddresses = {};
  try {
    if (facts.ipv4.length) {
      out.ipv4Address = allocateAddress(ipam, facts.ipv4, req.ipv4Address, "IPv4");
    } else if (req.ipv4Address) throw outside(req.ipv4Address);
    if (facts.ipv6.length) {
      out.ipv6Address = allocateAddress(ipam, facts.ipv6, req.ipv6Address, "IPv6");
    } else if (req.ipv6Address) throw outside(req.ipv6Address);
  } catch (err) {
    releaseEndpoint(ipam, facts, out);
    throw err;
  }
  return out;
}

const outside = (ip: string) =>
  new InvalidArgumentError(
    `invalid address ${ip}: It does not belong to any of this network's subnets`,
  );

function allocateAddress(
  ipam: Ipam,
  entries: NetworkIpamEntry[],
  requested: string | undefined,
  family: "IPv4" | "IPv6",
): string {
  if (requested) {
    const ip = addressOf(requested);
    normalizeIp(ip); // throws a clear error for a malformed address
    const entry = entries.find((e) => cidrContains(e.pool, ip));
    if (!entry) throw outside(ip);
    return ipam.requestAddress(entry.poolId, { address: ip });
  }
  for (const e of entries) {
    try {
      return ipam.requestAddress(e.poolId);
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
    }
  }
  throw new UnavailableError(`no available ${family} addresses on this network's address pools`);
}

function poolOf(entries: NetworkIpamEntry[], address: string): string | undefined {
  return entries.find((e) => cidrContains(e.pool, addressOf(address)))?.poolId;
}

/** Releases an endpoint's addresses. */
export function releaseEndpoint(
  ipam: Ipam,
  facts: NetworkIpam | undefined,
  ep: EndpointAddresses,
): void {
  if (!facts) return;
  for (
    const [entries, a] of [[facts.ipv4, ep.ipv4Address], [facts.ipv6, ep.ipv6Address]] as const
  ) {
    const pool = a ? poolOf(entries, a) : undefined;
    if (pool && a) {
      try {
        ipam.releaseAddress(pool, a);
      } catch { /* pool gone */ }
    }
  }
}

/** Marks an endpoint's journaled addresses as allocated (replay). */
export function restoreEndpoint(ipam: Ipam, facts: NetworkIpam, ep: EndpointContext): void {
  for (
    const [entries, a] of [[facts.ipv4, ep.ipv4Address], [facts.ipv6, ep.ipv6Address]] as const
  ) {
    const pool = a ? poolOf(entries, a) : undefined;
    if (pool && a) ipam.restoreAddress(pool, a);
  }
}

/** A random, locally administered, unicast MAC address. */
export function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0] & 0xfc) | 0x02;
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** The network's IPAM facts when the built-in IPAM manages them. */
export function defaultIpamOf(
  c: { ipam?: { driver: string } } | undefined,
): NetworkIpam | undefined {
  return c?.ipam?.driver === "default" ? c.ipam as NetworkIpam : undefined;
}

/**
 * Releases what a failed create or a finished delete no longer holds, once its outcome is
 * durable. `networkOf` finds an endpoint's network.
 */
export function releaseOnOutcome(
  ipam: Ipam,
  kind: string,
  context: unknown,
  outcome: { type: string },
  networkOf: (id: string) => { ipam?: { driver: string } } | undefined,
): void {
  const t = outcome.type;
  if (kind === "network" && (t === "network.deleted" || t === "network.create.failed")) {
    releaseNetwork(ipam, defaultIpamOf(context as { ipam?: { driver: string } }));
  }
  if (kind === "endpoint" && (t === "endpoint.deleted" || t === "endpoint.create.failed")) {
    const c = context as EndpointContext;
    releaseEndpoint(ipam, defaultIpamOf(networkOf(c.networkId)), c);
  }
}
