/**
 * The network commands: validate, check libnetwork's invariants (unique names, one `null`
 * and one `host` network, no delete with endpoints), decide the IPAM, build the intent and
 * hand it to the runtime.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { CnmEvent } from "../journal/events.ts";
import type { NetworkContext, NetworkIpamEntry } from "../../actors/network.ts";
import type { IpamData, ValidateNetworkOptions } from "../../drivers/driver.ts";
import { NO_IPAM_DRIVERS, SINGLETON_DRIVERS } from "../../drivers/mod.ts";
import { BridgeOptions } from "../../drivers/bridge/mod.ts";
import { ConflictError, ForbiddenError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { newObjectId, shortId } from "../ids.ts";
import { type NetworkInfo, networkInfo } from "../info.ts";
import type { ControllerContext } from "./context.ts";
import { checkLimits } from "./limits.ts";
import { CreateNetworkInput, type CreateNetworkOptions, parseInput, parseRef } from "./inputs.ts";
import { driverConfigInForce, driverLock } from "./driver_config.ts";
import {
  allocateNetwork,
  checkIpamConfig,
  type NetworkIpam,
  releaseNetwork,
} from "./network_ipam.ts";
import {
  endpointsOfNetwork,
  findNetwork,
  holdsName,
  namedCount,
  networksOfDriver,
  pendingEndpoints,
  type Reservation,
  reserve,
} from "./objects.ts";
import { decideGlobalNetwork, type GlobalDecision, isGlobal } from "./global.ts";
import { endpointsOnNetwork } from "./global_view.ts";

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
  how?: ValidateNetworkOptions,
): Promise<NetworkInfo> {
  const rt = ctx.runtime;
  rt.assertOpen();
  checkLimits(options, "network options");
  const input = parseInput(CreateNetworkInput, options, "network options");
  if (input.name === "") throw new InvalidArgumentError("invalid name: name is empty");
  checkIpamConfig(input.ipam?.config ?? []);
  const driver = await ctx.drivers.resolve(input.driver);
  const ipamDriver = input.ipam?.driver ?? "default";
  if (ipamDriver !== "default") await ctx.drivers.resolveIpam(ipamDriver);
  const id = newObjectId();
  // Names, and the driver's configuration in force, are decided under locks held only while
  // deciding: the name is then reserved until the intent is in the registry. (Singleton
  // drivers keep them to the end: rare.)
  const singleton = SINGLETON_DRIVERS.has(driver.name);
  const unlock = await rt.locks.lock("network-names", driverLock(driver.name));
  let reservation: Reservation | undefined;
  let ipam: NetworkIpam | undefined;
  let global: GlobalDecision | undefined;
  let intent!: CnmEvent;
  const giveBack = async () => {
    if (global) await global.release();
    else releaseNetwork(ctx.ipam, ipam);
  };
  try {
    if (namedCount(rt, "network", input.name)) {
      throw new ConflictError(`network with name ${input.name} already exists`);
    }
    if (singleton && networksOfDriver(rt, driver.name).some((r) => holdsName(rt, r))) {
      throw new ForbiddenError(`only one instance of "${driver.name}" network is allowed`);
    }
    const caps = driver.capabilities();
    const driverConfig = await driverConfigInForce(ctx, driver);
    const validate = (options: Record<string, string>, decided?: NetworkIpam) =>
      driver.validateNetwork?.({
        id,
        internal: input.internal,
        enableIPv6: input.enableIPv6,
        options,
        labels: input.labels,
        ipv4: (decided?.ipv4 ?? []).map(ipamData),
        ipv6: (decided?.ipv6 ?? []).map(ipamData),
        facts: {},
        ...(driverConfig ? { driverConfig } : {}),
      }, how);
    // A global network is validated with what was decided for it (its pools and VNIs).
    if (caps.dataScope !== "global") validate(input.options);
    let options = input.options;
    const remoteIpam = ipamDriver !== "default" ? input.ipam : undefined;
    const withIpam = !NO_IPAM_DRIVERS.has(driver.name) && !remoteIpam;
    if (caps.dataScope === "global") {
      // Decided cluster-wide: the name, subnets (GlobalDefault) and VNIs, claimed in KV.
      global = await decideGlobalNetwork(ctx, id, input, caps, withIpam);
      ({ ipam, options } = global);
      validate(options, ipam);
    } else if (withIpam) {
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
      options,
      ...(ipam ? { ipam } : {}),
      ...(remoteIpam ? { ipamRequest: remoteIpam } : {}),
      ...(predefined ? { predefined: true } : {}),
      ...(driverConfig ? { driverConfig } : {}),
    };
    intent = rt.createIntent("network", id, data);
    reservation = reserve(rt, { kind: "network", id, name: input.name });
  } catch (err) {
    await giveBack();
    unlock();
    throw err;
  }
  if (!singleton) unlock();
  try {
    await rt.decide("network", undefined, intent);
  } catch (err) {
    // Not journaled: give the pools back. (A journaled failure released them already.)
    if (!rt.objects.network.has(id)) await giveBack();
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
    // A global network's endpoints may be on any host; endpoints still being decided count.
    const eps: { id: string; name: string }[] = isGlobal(c)
      ? endpointsOnNetwork(ctx, rec.id)
      : endpointsOfNetwork(rt, rec.id).map((r) => rt.context<EndpointContext>(r));
    eps.push(...pendingEndpoints(rt, rec.id).map(([id, name]) => ({ id, name })));
    if (eps.length) {
      const list = eps.map((e) =>
        `name:${JSON.stringify(e.name)} id:${JSON.stringify(shortId(e.id))}`
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
    if (!contexts().some((c) => c.driver === driver)) {
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

/** A decided pool as drivers see it. */
function ipamData(e: NetworkIpamEntry): IpamData {
  return {
    addressSpace: e.addressSpace ?? "LocalDefault",
    pool: e.pool,
    ...(e.gateway ? { gateway: e.gateway } : {}),
    auxAddresses: e.auxAddresses,
  };
}
