/**
 * The network commands: validate, check libnetwork's invariants (unique names, one `null`
 * and one `host` network, no delete with endpoints), decide the IPAM, build the intent and
 * hand it to the runtime.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { CnmEvent } from "../journal/events.ts";
import type { NetworkContext } from "../../actors/network.ts";
import { NO_IPAM_DRIVERS, SINGLETON_DRIVERS } from "../../drivers/mod.ts";
import { BridgeOptions } from "../../drivers/bridge/mod.ts";
import { ConflictError, ForbiddenError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { newObjectId, shortId } from "../ids.ts";
import { type NetworkInfo, networkInfo } from "../info.ts";
import type { ControllerContext } from "./context.ts";
import { CreateNetworkInput, type CreateNetworkOptions, parseInput, parseRef } from "./inputs.ts";
import { allocateNetwork, type NetworkIpam, releaseNetwork } from "./network_ipam.ts";
import {
  endpointsOfNetwork,
  findNetwork,
  namedCount,
  networksOfDriver,
  pendingEndpoints,
  type Reservation,
  reserve,
} from "./objects.ts";

/**
 * Creates a network (`predefined` marks `none`, `host` and `bridge` made at first start).
 *
 * @throws {InvalidArgumentError|ConflictError|ForbiddenError|NotFoundError} with libnetwork's
 *   messages; nothing is journaled then.
 */
export async function createNetwork(
  ctx: ControllerContext,
  options: CreateNetworkOptions,
  predefined = false,
): Promise<NetworkInfo> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const input = parseInput(CreateNetworkInput, options, "network options");
  if (input.name === "") throw new InvalidArgumentError("invalid name: name is empty");
  const driver = await ctx.drivers.resolve(input.driver);
  const ipamDriver = input.ipam?.driver ?? "default";
  if (ipamDriver !== "default") await ctx.drivers.resolveIpam(ipamDriver);
  const id = newObjectId();
  // Names are decided under one lock, held only while deciding: the name is then reserved
  // until the intent is in the registry. (Singleton drivers keep it to the end: rare.)
  const singleton = SINGLETON_DRIVERS.has(driver.name);
  const unlock = await rt.locks.lock("network-names");
  let reservation: Reservation | undefined;
  let ipam: NetworkIpam | undefined;
  let intent!: CnmEvent;
  try {
    if (namedCount(rt, "network", input.name)) {
      throw new ConflictError(`network with name ${input.name} already exists`);
    }
    if (singleton && networksOfDriver(rt, driver.name).length) {
      throw new ForbiddenError(`only one instance of "${driver.name}" network is allowed`);
    }
    const caps = driver.capabilities();
    driver.validateNetwork?.({
      id,
      internal: input.internal,
      enableIPv6: input.enableIPv6,
      options: input.options,
      labels: input.labels,
      ipv4: [],
      ipv6: [],
      facts: {},
    });
    const remoteIpam = ipamDriver !== "default" ? input.ipam : undefined;
    if (!NO_IPAM_DRIVERS.has(driver.name) && !remoteIpam) {
      ctx.hostNetworks = (await ctx.kernel.listRoutes())
        .map((r) => r.dst).filter((d) => d !== "default" && d.includes("/"));
      ipam = allocateNetwork(ctx.ipam, input);
    }
    const data = {
      name: input.name,
      driver: driver.name,
      scope: caps.dataScope,
      internal: input.internal,
      enableIPv6: input.enableIPv6,
      labels: input.labels,
      options: input.options,
      ...(ipam ? { ipam } : {}),
      ...(remoteIpam ? { ipamRequest: remoteIpam } : {}),
      ...(predefined ? { predefined: true } : {}),
    };
    intent = rt.createIntent("network", id, data);
    reservation = reserve(rt, { kind: "network", id, name: input.name });
  } catch (err) {
    releaseNetwork(ctx.ipam, ipam);
    unlock();
    throw err;
  }
  if (!singleton) unlock();
  try {
    await rt.decide("network", undefined, intent);
  } catch (err) {
    // Not journaled: give the pools back. (A journaled failure released them already.)
    if (!rt.objects.network.has(id)) releaseNetwork(ctx.ipam, ipam);
    throw err;
  } finally {
    reservation?.release();
    if (singleton) unlock();
  }
  return network(ctx, id)!;
}

/**
 * Deletes a network that has no endpoints.
 *
 * @throws {NotFoundError|ForbiddenError} with libnetwork's messages.
 */
export async function deleteNetwork(ctx: ControllerContext, idOrName: string): Promise<void> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const ref = parseRef(idOrName, "network");
  const found = findNetwork(rt, ref);
  if (!found) throw new NotFoundError(`network ${ref} not found`);
  await rt.locks.with([found.id], async () => {
    const rec = rt.objects.network.get(found.id);
    if (!rec) throw new NotFoundError(`network ${ref} not found`);
    const c = rt.context<NetworkContext>(rec);
    if (SINGLETON_DRIVERS.has(c.driver)) {
      throw new ForbiddenError(`network of type "${c.driver}" cannot be deleted`);
    }
    if (c.predefined) {
      throw new ForbiddenError(`${c.name} is a pre-defined network and cannot be removed`);
    }
    const eps: [string, string][] = endpointsOfNetwork(rt, rec.id).map((r) => {
      const e = rt.context<EndpointContext>(r);
      return [e.id, e.name];
    });
    eps.push(...pendingEndpoints(rt, rec.id));
    if (eps.length) {
      const list = eps.map(([id, name]) =>
        `name:${JSON.stringify(name)} id:${JSON.stringify(shortId(id))}`
      ).join(", ");
      throw new ForbiddenError(`network ${c.name} has active endpoints (${list})`);
    }
    const intent = rt.intent(rec, "network.delete.requested", "deleting", {});
    await rt.decide("network", rec, intent);
  });
}

/** A network by id, name or unique id prefix. */
export function network(ctx: ControllerContext, idOrName: string): NetworkInfo | undefined {
  const rt = ctx.runtime;
  const rec = typeof idOrName === "string" ? findNetwork(rt, idOrName) : undefined;
  return rec ? networkInfo(rt.state(rec), rt.context(rec)) : undefined;
}

/** Every live network. */
export function networks(ctx: ControllerContext): NetworkInfo[] {
  const rt = ctx.runtime;
  return [...rt.objects.network.values()].map((r) => networkInfo(rt.state(r), rt.context(r)));
}

/** Creates the predefined networks that are missing: `none`, `host`, and `bridge` (cnm0). */
export async function ensurePredefined(ctx: ControllerContext): Promise<void> {
  const rt = ctx.runtime;
  const contexts = () => [...rt.objects.network.values()].map((r) => rt.context<NetworkContext>(r));
  for (const [name, driver] of [["none", "null"], ["host", "host"]]) {
    if (!networksOfDriver(rt, driver).length) {
      await createNetwork(ctx, { name, driver }, true);
    }
  }
  const hasDefault = contexts().some((c) => c.options[BridgeOptions.defaultBridge] === "true");
  if (ctx.settings.defaultBridge && !hasDefault) {
    await createNetwork(ctx, {
      name: "bridge",
      driver: "bridge",
      options: { [BridgeOptions.name]: "cnm0", [BridgeOptions.defaultBridge]: "true" },
    }, true);
  }
}
