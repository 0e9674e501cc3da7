/**
 * What this host knows of every host's global-network objects: its registry for its own
 * (current), the world for the other hosts' (the world folds this host's events too, from the
 * stream, and may lag behind its latest delete). Global networks are mirrored in the registry
 * too. Used to decide (VNIs, pools and addresses in use) and to refuse (endpoints of a network
 * being deleted).
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import { addressOf } from "../ipam/cidr.ts";
import type { ControllerContext } from "./context.ts";
import { endpointsOfNetwork } from "./objects.ts";

/**
 * Live endpoints of a network on every host: this host's from its registry, the others' from
 * the world (which folds this host's own events too, but may lag behind its latest delete).
 */
export function endpointsOnNetwork(
  ctx: ControllerContext,
  networkId: string,
): { id: string; name: string; host: string }[] {
  const rt = ctx.runtime;
  const out = new Map<string, { id: string; name: string; host: string }>();
  for (const r of endpointsOfNetwork(rt, networkId)) {
    out.set(r.id, { id: r.id, name: rt.context<EndpointContext>(r).name, host: rt.hostId });
  }
  for (const o of ctx.world.live("endpoint")) {
    const c = o.snapshot.context as EndpointContext;
    if (c.networkId === networkId && o.host !== rt.hostId && !out.has(o.id)) {
      out.set(o.id, { id: o.id, name: c.name, host: o.host });
    }
  }
  return [...out.values()];
}

/** VNIs of every live global network the world knows (but `except`). */
export function vnisInUse(ctx: ControllerContext, except: string): Set<number> {
  const used = new Set<number>();
  for (const o of ctx.world.live("network")) {
    const c = o.snapshot.context as NetworkContext;
    if (o.id === except || c.scope !== "global") continue;
    for (const [key, value] of Object.entries(c.options)) {
      if (!/vxlanid_list$/.test(key)) continue;
      for (const v of value.split(",")) if (/^\d+$/.test(v.trim())) used.add(Number(v));
    }
  }
  return used;
}

/**
 * Pools of the live global networks known here: the registry's, and the world's of other
 * hosts (the world may lag behind this host's latest delete).
 */
export function poolsInUse(ctx: ControllerContext): Set<string> {
  const rt = ctx.runtime;
  const contexts = [
    ...[...rt.objects.network.values()].filter((r) => rt.state(r) !== "failed")
      .map((r) => rt.context<NetworkContext>(r)),
    ...ctx.world.live("network").filter((o) => o.host !== rt.hostId)
      .map((o) => o.snapshot.context as NetworkContext),
  ];
  const out = new Set<string>();
  for (const c of contexts.filter((c) => c.scope === "global")) {
    for (const e of [...c.ipam?.ipv4 ?? [], ...c.ipam?.ipv6 ?? []]) out.add(e.pool);
  }
  return out;
}

/** Addresses (without their prefix length) of a network's live endpoints known here. */
export function addressesInUse(ctx: ControllerContext, networkId: string): Set<string> {
  const rt = ctx.runtime;
  const contexts = [
    ...endpointsOfNetwork(rt, networkId).filter((r) => rt.state(r) !== "failed")
      .map((r) => rt.context<EndpointContext>(r)),
    ...ctx.world.live("endpoint").filter((o) => o.host !== rt.hostId)
      .map((o) => o.snapshot.context as EndpointContext)
      .filter((c) => c.networkId === networkId),
  ];
  return new Set(
    contexts.flatMap((c) => [c.ipv4Address, c.ipv6Address]).filter((a): a is string => !!a)
      .map(addressOf),
  );
}
