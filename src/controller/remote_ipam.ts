/**
 * IPAM through a driver other than the built-in one (a remote plugin). Unlike the default
 * IPAM, whose pure decisions go into the intent, a plugin call is a side effect: it runs
 * inside the `creating` effect, after the intent is durable, and what the plugin decided is
 * journaled in the outcome (`network.created` / `endpoint.created` facts). Releases run in
 * the `deleting` effects, and undo a half-made allocation when a later step fails.
 *
 * @module
 */

import type { IpamDriver } from "../../drivers/driver.ts";
import type { NetworkContext, NetworkIpamEntry } from "../../actors/network.ts";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { IpamConfigEntry, NetworkIpam } from "./network_ipam.ts";
import { addressOf, isIPv6 } from "../ipam/cidr.ts";
import { errText } from "../errors.ts";

const GATEWAY_OPTION = { RequestAddressType: "com.docker.network.gateway" };

/** What a network asked of its IPAM driver (journaled in `network.create.requested`). */
export interface IpamRequest {
  driver: string;
  options: Record<string, string>;
  config: IpamConfigEntry[];
}

/** Requests a network's pools, gateways and aux addresses from `ipam`. */
export async function allocateRemoteNetwork(
  ipam: IpamDriver,
  req: IpamRequest,
  enableIPv6: boolean,
  scope: "local" | "global",
): Promise<NetworkIpam> {
  const spaces = await ipam.getDefaultAddressSpaces();
  const addressSpace = scope === "global" ? spaces.global : spaces.local;
  const v4 = req.config.filter((c) => !isIPv6(c.subnet.split("/")[0]));
  const v6 = req.config.filter((c) => isIPv6(c.subnet.split("/")[0]));
  const out: NetworkIpam = { driver: req.driver, options: req.options, ipv4: [], ipv6: [] };
  try {
    for (const c of v4.length ? v4 : [undefined]) {
      out.ipv4.push(await pool(ipam, addressSpace, c, false, req.options));
    }
    if (enableIPv6) {
      for (const c of v6.length ? v6 : [undefined]) {
        out.ipv6.push(await pool(ipam, addressSpace, c, true, req.options));
      }
    }
  } catch (err) {
    await releaseRemoteNetwork(ipam, out);
    throw err;
  }
  return out;
}

async function pool(
  ipam: IpamDriver,
  addressSpace: string,
  c: IpamConfigEntry | undefined,
  v6: boolean,
  options: Record<string, string>,
): Promise<NetworkIpamEntry & { addressSpace: string }> {
  const p = await ipam.requestPool({
    addressSpace,
    ...(c?.subnet ? { pool: c.subnet } : {}),
    ...(c?.ipRange ? { subPool: c.ipRange } : {}),
    options,
    v6,
  });
  const entry = { poolId: p.poolId, pool: p.pool, addressSpace, auxAddresses: {} } as
    & NetworkIpamEntry
    & { addressSpace: string };
  if (c?.ipRange) entry.subPool = c.ipRange;
  try {
    const fromPool = p.meta["com.docker.network.gateway"];
    entry.gateway = c?.gateway
      ? await ipam.requestAddress(p.poolId, { address: c.gateway, options: GATEWAY_OPTION })
      : fromPool ?? await ipam.requestAddress(p.poolId, { options: GATEWAY_OPTION });
    for (const [name, ip] of Object.entries(c?.auxAddresses ?? {})) {
      entry.auxAddresses[name] = await ipam.requestAddress(p.poolId, { address: ip, options: {} });
    }
  } catch (err) {
    await ipam.releasePool(p.poolId).catch(() => {});
    throw err;
  }
  return entry;
}

/** Gives a network's addresses and pools back to `ipam`; collects every failure. */
export async function releaseRemoteNetwork(ipam: IpamDriver, facts: NetworkIpam): Promise<void> {
  const errors: unknown[] = [];
  for (const e of [...facts.ipv4, ...facts.ipv6]) {
    for (const a of [e.gateway, ...Object.values(e.auxAddresses)]) {
      if (a) await ipam.releaseAddress(e.poolId, addressOf(a)).catch((err) => errors.push(err));
    }
    await ipam.releasePool(e.poolId).catch((err) => errors.push(err));
  }
  if (errors.length) throw new AggregateError(errors, "releasing the network's IPAM pools");
}

/** Requests an endpoint's addresses (the requested ones, or any) from `ipam`. */
export async function allocateRemoteEndpoint(
  ipam: IpamDriver,
  facts: NetworkIpam,
  req: { ipv4Address?: string; ipv6Address?: string; macAddress?: string },
): Promise<{ ipv4Address?: string; ipv6Address?: string }> {
  const out: { ipv4Address?: string; ipv6Address?: string } = {};
  const options: Record<string, string> = req.macAddress
    ? { "com.docker.network.endpoint.macaddress": req.macAddress }
    : {};
  try {
    if (facts.ipv4[0]) {
      out.ipv4Address = await ipam.requestAddress(facts.ipv4[0].poolId, {
        ...(req.ipv4Address ? { address: addressOf(req.ipv4Address) } : {}),
        options,
      });
    }
    if (facts.ipv6[0]) {
      out.ipv6Address = await ipam.requestAddress(facts.ipv6[0].poolId, {
        ...(req.ipv6Address ? { address: addressOf(req.ipv6Address) } : {}),
        options,
      });
    }
  } catch (err) {
    await releaseRemoteEndpoint(ipam, facts, out).catch(() => {});
    throw err;
  }
  return out;
}

/** Gives an endpoint's addresses back to `ipam`. */
export async function releaseRemoteEndpoint(
  ipam: IpamDriver,
  facts: NetworkIpam,
  ep: { ipv4Address?: string; ipv6Address?: string },
): Promise<void> {
  if (ep.ipv4Address && facts.ipv4[0]) {
    await ipam.releaseAddress(facts.ipv4[0].poolId, addressOf(ep.ipv4Address));
  }
  if (ep.ipv6Address && facts.ipv6[0]) {
    await ipam.releaseAddress(facts.ipv6[0].poolId, addressOf(ep.ipv6Address));
  }
}

/**
 * A plugin that keeps no state of its own (`RequiresRequestReplay`) is told again, as
 * libnetwork does, of every pool, gateway, aux and endpoint address in use. These are
 * re-statements of journaled facts, so they are not journaled again. Returns the networks
 * whose replay failed, with the reason.
 */
export async function replayRemoteIpam(
  ipam: IpamDriver,
  networks: NetworkContext[],
  endpointsOf: (networkId: string) => EndpointContext[],
): Promise<Map<string, string>> {
  const failures = new Map<string, string>();
  const caps = await ipam.capabilities?.().catch(() => undefined);
  if (!caps?.requiresRequestReplay) return failures;
  for (const c of networks) {
    const facts = c.ipam as NetworkIpam;
    try {
      for (const [v6, entries] of [[false, facts.ipv4], [true, facts.ipv6]] as const) {
        for (const e of entries) {
          await ipam.requestPool({
            addressSpace: e.addressSpace ?? "LocalDefault",
            pool: e.pool,
            ...(e.subPool ? { subPool: e.subPool } : {}),
            options: facts.options ?? {},
            v6,
          });
          if (e.gateway) {
            await ipam.requestAddress(e.poolId, {
              address: addressOf(e.gateway),
              options: GATEWAY_OPTION,
            });
          }
          for (const a of Object.values(e.auxAddresses)) {
            await ipam.requestAddress(e.poolId, { address: addressOf(a), options: {} });
          }
        }
      }
      for (const ep of endpointsOf(c.id)) {
        for (
          const [entries, a] of [[facts.ipv4, ep.ipv4Address], [
            facts.ipv6,
            ep.ipv6Address,
          ]] as const
        ) {
          if (a && entries[0]) {
            await ipam.requestAddress(entries[0].poolId, { address: addressOf(a), options: {} });
          }
        }
      }
    } catch (err) {
      failures.set(c.id, errText(err));
    }
  }
  return failures;
}
