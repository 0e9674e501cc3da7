/**
 * What `cnm network create` and `cnm network prune` need: the create options from the flags
 * (subnets with their gateways, ranges and aux addresses, IPAM driver and options), checked
 * before connecting, and the networks prune may remove.
 *
 * @module
 */

import type { ApiClient } from "../api/client.ts";
import { pairs, UsageError } from "./_args.ts";
import type { Ctx } from "./_context.ts";

/** Networks the host's controller could remove now: no endpoints, not predefined. */
export async function unused(api: ApiClient) {
  const nets = await api.networks();
  const eps = await api.endpoints();
  const used = new Set(eps.map((e) => e.networkId));
  return nets.filter((n) =>
    !used.has(n.id) && !["null", "host"].includes(n.driver) &&
    n.options["com.docker.network.bridge.default_bridge"] !== "true" &&
    !["none", "host", "bridge"].includes(n.name)
  );
}

/** The `network create` options, checked before connecting. */
export function networkOptions(ctx: Ctx, name: string) {
  const f = ctx.flags;
  const subnets = (f.subnet as string[] | undefined) ?? [];
  const gateways = (f.gateway as string[] | undefined) ?? [];
  const ranges = (f["ip-range"] as string[] | undefined) ?? [];
  if (gateways.length > subnets.length || ranges.length > subnets.length) {
    throw new UsageError("every --gateway and --ip-range needs a --subnet");
  }
  const aux = pairs(f["aux-address"] as string[], "aux-address");
  if (Object.keys(aux).length && !subnets.length) {
    throw new UsageError("--aux-address needs a --subnet");
  }
  const config = subnets.map((subnet, i) => ({
    subnet,
    ...(gateways[i] ? { gateway: gateways[i] } : {}),
    ...(ranges[i] ? { ipRange: ranges[i] } : {}),
  }));
  // Each aux address goes with the subnet that contains it (the only one, when one is given).
  for (const [k, ip] of Object.entries(aux)) {
    const c = config.length === 1 ? config[0] : config.find((c) => contains(c.subnet, ip));
    if (!c) throw new UsageError(`--aux-address ${k}=${ip} is in none of the --subnet ranges`);
    (c as { auxAddresses?: Record<string, string> }).auxAddresses = {
      ...(c as { auxAddresses?: Record<string, string> }).auxAddresses,
      [k]: ip,
    };
  }
  const ipamDriver = f["ipam-driver"] as string | undefined;
  const ipamOptions = pairs(f["ipam-opt"] as string[], "ipam-opt");
  const hasIpam = config.length || ipamDriver || Object.keys(ipamOptions).length;
  return {
    name,
    ...(f.driver ? { driver: f.driver as string } : {}),
    labels: pairs(f.label as string[], "label"),
    options: pairs(f.opt as string[], "opt"),
    internal: f.internal === true,
    enableIPv6: f.ipv6 === true,
    ...(hasIpam ? { ipam: { driver: ipamDriver ?? "default", config, options: ipamOptions } } : {}),
  };
}

/** Whether IPv4 `ip` lies in `cidr` (a rough check for the CLI; the controller checks again). */
function contains(cidr: string, ip: string): boolean {
  const [base, bits] = cidr.split("/");
  const n = (a: string) => a.split(".").reduce((v, o) => v * 256 + Number(o), 0);
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip) || !/^\d+\.\d+\.\d+\.\d+$/.test(base)) return false;
  const size = 2 ** (32 - Number(bits));
  return Math.floor(n(ip) / size) === Math.floor(n(base) / size);
}
