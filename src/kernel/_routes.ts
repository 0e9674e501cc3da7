/**
 * Routes of a namespace's main table over rtnetlink: ensure (replace semantics), delete if
 * present, and list. Synchronous; `mod.ts` wraps them into the async Kernel interface.
 *
 * @module
 */

import { DriverError, InvalidArgumentError } from "../errors.ts";
import { AF_INET, checkIfName, parseCidr, parseIp } from "./_addr.ts";
import type { NsHandle } from "./_netns.ts";
import { getLinkRequest, type RawLink } from "./_rtnl.ts";
import {
  deleteRouteRequest,
  dumpRoutesMessage,
  parseRoute,
  replaceRouteRequest,
  type RouteTarget,
} from "./_rtnl_ip.ts";
import type { RouteInfo, RouteSpec } from "./types.ts";

/** Looks a link up by name in one namespace; undefined when there is none. */
export function getLink(h: NsHandle, name: string): RawLink | undefined {
  let found: RawLink | undefined;
  h.sock.transact([getLinkRequest(name, (l) => (found = l))]);
  return found;
}

/** Resolves a device name to its index, or throws a DriverError naming `what`. */
export function devIndex(h: NsHandle, dev: string, what: string): number {
  const link = getLink(h, dev);
  if (!link) throw new DriverError(`${what}: device ${dev} does not exist (ENODEV)`);
  return link.index;
}

/** `default via 10.0.0.1 dev eth0`, for messages. */
export function describeRoute(r: RouteSpec): string {
  return `${r.dst}${r.via ? ` via ${r.via}` : ""}${r.dev ? ` dev ${r.dev}` : ""}`;
}

/** Validates a RouteSpec and turns it into what the message builder needs. */
export function routeTarget(r: RouteSpec, oif: number | undefined): RouteTarget {
  if (typeof r?.dst !== "string") throw new InvalidArgumentError("route: dst is required");
  const via = r.via !== undefined ? parseIp(r.via, "route gateway") : undefined;
  const dst = r.dst === "default" ? undefined : parseCidr(r.dst, "route destination");
  const family = dst?.family ?? via?.family ?? AF_INET;
  if (via && via.family !== family) {
    throw new InvalidArgumentError(`route ${describeRoute(r)}: address families differ`);
  }
  if (r.dev !== undefined) checkIfName(r.dev, `device of route ${describeRoute(r)}`);
  return { family, dst, via, oif };
}

/** Ensures a route in the main table (replace semantics). */
export function ensureRoute(h: NsHandle, route: RouteSpec): void {
  const what = describeRoute(route);
  routeTarget(route, undefined);
  if (route.via === undefined && route.dev === undefined) {
    throw new InvalidArgumentError(`route ${what}: needs via or dev`);
  }
  const oif = route.dev !== undefined ? devIndex(h, route.dev, `route ${what}`) : undefined;
  h.sock.transact([replaceRouteRequest(routeTarget(route, oif), what)]);
}

/** Deletes a route from the main table if present. */
export function deleteRoute(h: NsHandle, route: RouteSpec): void {
  const what = describeRoute(route);
  routeTarget(route, undefined);
  let oif: number | undefined;
  if (route.dev !== undefined) {
    oif = getLink(h, route.dev)?.index;
    if (oif === undefined) return; // device gone: so are its routes
  }
  h.sock.transact([deleteRouteRequest(routeTarget(route, oif), what)]);
}

/** Lists the main table's unicast routes, devices by name. */
export function listRoutes(h: NsHandle, names: Map<number, string>): RouteInfo[] {
  const out: RouteInfo[] = [];
  for (const m of h.sock.dump(dumpRoutesMessage(), "route show")) {
    const r = parseRoute(m);
    if (!r) continue;
    const info: RouteInfo = { dst: r.dst };
    if (r.via) info.via = r.via;
    if (r.oif !== undefined) info.dev = names.get(r.oif) ?? `if${r.oif}`;
    out.push(info);
  }
  return out;
}
