/**
 * Docker's checks of a create request's IPAM config, as dockerd 1.44+ makes them for every
 * API version (`invalid network config:` + one line per problem, 400). 20.10 answered most of
 * these with 500 and other words, and accepted an ip-range outside its subnet; cnm answers
 * like the newer daemons.
 *
 * @module
 */

import { type Cidr, cidrToString, ipToString, parseCidr, parseIp } from "../../ipam/cidr.ts";
import { DockerApiError } from "./_errors.ts";

const tryCidr = (s: string): Cidr | undefined => {
  try {
    return parseCidr(s);
  } catch {
    return undefined;
  }
};

/** The address family of an IP address, or undefined when it is not one. */
export function ipFamily(text: string): 4 | 6 | undefined {
  try {
    return parseIp(text).family;
  } catch {
    return undefined;
  }
}

/** The request's IPAM config entries (strings as sent; empty = absent). */
export interface IpamConfigRequest {
  Subnet?: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

/**
 * Checks subnets, ranges, gateways and aux addresses (IPv6 entries only with `enableIPv6`).
 *
 * @throws {DockerApiError} 400 `invalid network config:\n…`.
 */
export function validateIpam(config: readonly IpamConfigRequest[], enableIPv6: boolean): void {
  const errs: string[] = [];
  for (const c of config) {
    const subnetText = c.Subnet ?? "";
    const subnet = tryCidr(subnetText);
    if (!subnet) {
      errs.push(`invalid subnet ${subnetText}: invalid CIDR block notation`);
      continue;
    }
    if (!enableIPv6 && subnet.family === 6) continue;
    const fam = `IPv${subnet.family}`;
    const shown = `${
      ipToString({ family: subnet.family, value: subnet.address })
    }/${subnet.prefix}`;
    if (subnet.address !== subnet.network) {
      errs.push(`invalid subnet ${shown}: it should be ${cidrToString(subnet)}`);
    }
    if (c.IPRange) {
      const r = tryCidr(c.IPRange);
      if (!r) errs.push(`invalid ip-range ${c.IPRange}: invalid CIDR block notation`);
      else if (r.family !== subnet.family) {
        errs.push(`invalid ip-range ${c.IPRange}: parent subnet is an ${fam} block`);
      } else {
        if (r.prefix < subnet.prefix) {
          errs.push(
            `invalid ip-range ${c.IPRange}: CIDR block is bigger than its parent subnet ${shown}`,
          );
        }
        if (r.address !== r.network) {
          errs.push(`invalid ip-range ${c.IPRange}: it should be ${cidrToString(r)}`);
        }
        if (r.network > subnet.last || r.last < subnet.network) {
          errs.push(
            `invalid ip-range ${c.IPRange}: parent subnet ${shown} doesn't contain ip-range`,
          );
        }
      }
    }
    const address = (text: string): string | undefined => {
      let ip;
      try {
        ip = parseIp(text);
      } catch {
        return "invalid address";
      }
      if (ip.family !== subnet.family) return `parent subnet is an ${fam} block`;
      if (ip.value < subnet.network || ip.value > subnet.last) {
        return `parent subnet ${shown} doesn't contain this address`;
      }
      return undefined;
    };
    if (c.Gateway) {
      const e = address(c.Gateway);
      if (e) errs.push(`invalid gateway ${c.Gateway}: ${e}`);
    }
    for (const name of Object.keys(c.AuxiliaryAddresses ?? {}).sort()) {
      const e = address(c.AuxiliaryAddresses![name]);
      if (e) errs.push(`invalid auxiliary address ${name}: ${e}`);
    }
  }
  if (!errs.length) return;
  const body = errs.length === 1 ? errs[0] : "* " + errs.join("\n* ");
  throw new DockerApiError(400, `invalid network config:\n${body}`);
}
