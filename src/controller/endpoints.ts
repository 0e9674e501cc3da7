/**
 * The endpoint commands — create, delete, join, leave — with libnetwork's invariants: unique
 * names per network, one sandbox per endpoint, no delete while joined unless forced. Addresses,
 * MACs and interface names are decided here and written into the intents.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import { TRANSIENT_STATES } from "../../actors/mod.ts";
import type { CnmEvent } from "../journal/events.ts";
import { ConflictError, ForbiddenError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { newObjectId } from "../ids.ts";
import { type EndpointInfo, endpointInfo } from "../info.ts";
import type { ControllerContext } from "./context.ts";
import { checkLimits } from "./limits.ts";
import {
  CreateEndpointInput,
  type CreateEndpointOptions,
  DeleteEndpointInput,
  type DeleteEndpointOptions,
  parseInput,
  parseRef,
} from "./inputs.ts";
import {
  allocateEndpoint,
  defaultIpamOf,
  type NetworkIpam,
  randomMac,
  releaseEndpoint,
} from "./network_ipam.ts";
import {
  endpointNameCount,
  endpointsOfNetwork,
  endpointsOfSandbox,
  findEndpoint,
  findNetwork,
  findSandbox,
  ifnamesOf,
  networkContext,
  type Reservation,
  reserve,
} from "./objects.ts";
import { decideGlobalAddresses, isGlobal } from "./global.ts";
import { decidePorts, type PortDecision } from "./endpoint_ports.ts";
import type { Rec } from "./runtime.ts";

/**
 * Creates an endpoint on a network; IPAM decides its addresses unless given.
 *
 * @throws {NotFoundError|ForbiddenError|InvalidArgumentError|UnavailableError} with
 *   libnetwork's messages; nothing is journaled then.
 */
export async function createEndpoint(
  ctx: ControllerContext,
  network: string,
  options: CreateEndpointOptions,
): Promise<EndpointInfo> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const ref = parseRef(network, "network");
  checkLimits(options, "endpoint options");
  const input = parseInput(CreateEndpointInput, options, "endpoint options");
  if (input.name === "") throw new InvalidArgumentError("invalid name: name is empty");
  const found = findNetwork(rt, ref);
  if (!found) throw new NotFoundError(`network ${ref} not found`);
  const macNeeded = await needsMac(ctx, rt.context<NetworkContext>(found));
  const id = newObjectId();
  const unlockEndpoint = await rt.locks.lock(id);
  try {
    // Hold the network only while deciding; the name and the membership stay reserved until
    // the intent is in the registry, so a concurrent delete of the network sees this endpoint.
    let intent!: CnmEvent;
    let reservation!: Reservation;
    let addresses: { ipv4Address?: string; ipv6Address?: string } = {};
    let netIpam: NetworkIpam | undefined;
    let releaseClaims = () => Promise.resolve();
    let ports: PortDecision | undefined;
    const giveBack = async () => {
      releaseEndpoint(ctx.ipam, netIpam, addresses);
      ports?.release();
      await releaseClaims();
    };
    const unlockNetwork = await rt.locks.lock(found.id);
    try {
      const net = rt.objects.network.get(found.id);
      if (!net) throw new NotFoundError(`network ${ref} not found`);
      const nc = rt.context<NetworkContext>(net);
      if (rt.state(net) !== "active") {
        throw new ForbiddenError(`network ${nc.name} is not active (state ${rt.state(net)})`);
      }
      if (endpointNameCount(rt, net.id, input.name)) {
        throw new ForbiddenError(
          `endpoint with name ${input.name} already exists in network ${nc.name}`,
        );
      }
      // Host ports first: a refused binding decides nothing else.
      ports = decidePorts(ctx, id, nc, input);
      netIpam = defaultIpamOf(nc);
      const req = { ipv4Address: input.ipv4Address, ipv6Address: input.ipv6Address };
      if (netIpam && isGlobal(nc)) {
        // Addresses of a global network are unique across hosts: claimed in KV.
        const decided = await decideGlobalAddresses(ctx, id, nc, netIpam, req);
        ({ addresses } = decided);
        releaseClaims = decided.release;
      } else {
        addresses = netIpam ? allocateEndpoint(ctx.ipam, netIpam, req) : {};
      }
      const data = {
        networkId: net.id,
        name: input.name,
        labels: input.labels,
        options: input.options,
        // With a remote IPAM the request travels as asked; the plugin answers in the effect.
        ...(netIpam ? addresses : {
          ...(input.ipv4Address ? { ipv4Address: input.ipv4Address } : {}),
          ...(input.ipv6Address ? { ipv6Address: input.ipv6Address } : {}),
        }),
        // A global network's driver derives the MAC (overlay: 02:42 + the address).
        ...(input.macAddress
          ? { macAddress: input.macAddress.toLowerCase() }
          : macNeeded
          ? { macAddress: randomMac() }
          : {}),
        ...ports.data,
        ...(input.aliases?.length ? { aliases: [...new Set(input.aliases)] } : {}),
      };
      intent = rt.createIntent("endpoint", id, data);
      reservation = reserve(rt, { kind: "endpoint", id, name: input.name, networkId: net.id });
    } catch (err) {
      await giveBack(); // nothing journaled
      throw err;
    } finally {
      unlockNetwork();
    }
    let done: Promise<CnmEvent>;
    try {
      ({ done } = await rt.begin("endpoint", undefined, intent));
    } catch (err) {
      // Not journaled: give the addresses back.
      if (!rt.objects.endpoint.has(id)) await giveBack();
      throw err;
    } finally {
      reservation.release();
    }
    await done;
  } finally {
    unlockEndpoint();
  }
  return endpoint(ctx, id)!;
}

/**
 * Deletes an endpoint; a joined one only with `force` (it leaves first).
 *
 * @throws {NotFoundError|ForbiddenError|ConflictError}
 */
export async function deleteEndpoint(
  ctx: ControllerContext,
  endpointId: string,
  options: DeleteEndpointOptions = {},
): Promise<void> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const ref = parseRef(endpointId, "endpoint");
  const { force } = parseInput(DeleteEndpointInput, options ?? {}, "delete options");
  const found = findEndpoint(rt, ref);
  if (!found) throw new NotFoundError(`endpoint ${ref} not found`);
  await rt.locks.with([found.id], async () => {
    const rec = rt.objects.endpoint.get(found.id);
    if (!rec) throw new NotFoundError(`endpoint ${ref} not found`);
    const c = rt.context<EndpointContext>(rec);
    const state = rt.state(rec);
    if (state === "joined" && !force) {
      throw new ForbiddenError(`endpoint with name ${c.name} id ${c.id} has active containers`);
    }
    assertNotBusy(rec, state);
    const intent = rt.intent(rec, "endpoint.delete.requested", "deleting", { force });
    await rt.decide("endpoint", rec, intent);
  });
}

/**
 * Joins an endpoint to a sandbox; the interface name is decided here.
 *
 * @throws {NotFoundError|ForbiddenError|ConflictError}
 */
export async function join(
  ctx: ControllerContext,
  endpointId: string,
  sandbox: string,
): Promise<EndpointInfo> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const ref = parseRef(endpointId, "endpoint");
  const sbRef = parseRef(sandbox, "sandbox");
  const ep = findEndpoint(rt, ref);
  if (!ep) throw new NotFoundError(`endpoint ${ref} not found`);
  const sb = findSandbox(rt, sbRef);
  if (!sb) throw new NotFoundError(`sandbox ${sbRef} not found`);
  const unlockEndpoint = await rt.locks.lock(ep.id);
  try {
    // The sandbox is held only while deciding (the interface name is decided here); the
    // membership and the name stay reserved until the intent is in the registry.
    let intent!: CnmEvent;
    let reservation!: Reservation;
    const unlockSandbox = await rt.locks.lock(sb.id);
    try {
      const rec = rt.objects.endpoint.get(ep.id);
      if (!rec) throw new NotFoundError(`endpoint ${ref} not found`);
      const sbRec = rt.objects.sandbox.get(sb.id);
      if (!sbRec) throw new NotFoundError(`sandbox ${sbRef} not found`);
      const c = rt.context<EndpointContext>(rec);
      const state = rt.state(rec);
      if (c.sandboxId) {
        throw new ForbiddenError("another container is attached to the same network endpoint");
      }
      assertNotBusy(rec, state);
      if (rt.state(sbRec) !== "ready") {
        throw new ForbiddenError(`sandbox ${sbRef} is not ready (state ${rt.state(sbRec)})`);
      }
      assertNetworksMix(ctx, sbRec.id, c);
      const ifname = nextIfname(ctx, sbRec.id, c);
      intent = rt.intent(rec, "endpoint.join.requested", "joining", {
        sandboxId: sbRec.id,
        ifname,
      });
      reservation = reserve(rt, { kind: "endpoint", id: rec.id, sandboxId: sbRec.id, ifname });
    } finally {
      unlockSandbox();
    }
    let done: Promise<CnmEvent>;
    try {
      ({ done } = await rt.begin("endpoint", rt.objects.endpoint.get(ep.id), intent));
    } finally {
      reservation.release();
    }
    await done;
  } finally {
    unlockEndpoint();
  }
  return endpoint(ctx, ep.id)!;
}

/**
 * Takes an endpoint out of its sandbox.
 *
 * @throws {NotFoundError|ForbiddenError|ConflictError}
 */
export async function leave(
  ctx: ControllerContext,
  endpointId: string,
  sandbox: string,
): Promise<void> {
  const rt = ctx.runtime;
  rt.assertOpen();
  const ref = parseRef(endpointId, "endpoint");
  const sbRef = parseRef(sandbox, "sandbox");
  const ep = findEndpoint(rt, ref);
  if (!ep) throw new NotFoundError(`endpoint ${ref} not found`);
  const sb = findSandbox(rt, sbRef);
  if (!sb) throw new NotFoundError(`sandbox ${sbRef} not found`);
  await rt.locks.with([ep.id, sb.id], async () => {
    const rec = rt.objects.endpoint.get(ep.id);
    if (!rec) throw new NotFoundError(`endpoint ${ref} not found`);
    const c = rt.context<EndpointContext>(rec);
    const state = rt.state(rec);
    if (!c.sandboxId) throw new ForbiddenError("cannot leave endpoint with no attached sandbox");
    if (c.sandboxId !== sb.id) {
      throw new ForbiddenError(
        `unexpected sandbox ID in leave request. Expected ${c.sandboxId}. Got ${sb.id}`,
      );
    }
    assertNotBusy(rec, state);
    const intent = rt.intent(rec, "endpoint.leave.requested", "leaving", { sandboxId: sb.id });
    await rt.decide("endpoint", rec, intent);
  });
}

/** An endpoint by id or unique id prefix. */
export function endpoint(ctx: ControllerContext, id: string): EndpointInfo | undefined {
  const rt = ctx.runtime;
  const rec = typeof id === "string" ? findEndpoint(rt, id) : undefined;
  return rec ? endpointInfo(rt.state(rec), rt.context(rec)) : undefined;
}

/** Live endpoints, optionally of one network (by id, name or prefix). */
export function endpoints(
  ctx: ControllerContext,
  filter: { network?: string } = {},
): EndpointInfo[] {
  const rt = ctx.runtime;
  let recs = [...rt.objects.endpoint.values()];
  if (filter.network !== undefined) {
    const net = findNetwork(rt, filter.network);
    if (!net) return [];
    recs = endpointsOfNetwork(rt, net.id);
  }
  return recs.map((r) => endpointInfo(rt.state(r), rt.context(r)));
}

/**
 * Whether cnm decides a MAC for a new endpoint the user gave none: on local networks with IPAM,
 * unless the driver chooses one itself (a remote plugin answers it in CreateEndpoint) — but
 * always when a remote IPAM driver requires one for its address requests (libnetwork).
 */
async function needsMac(ctx: ControllerContext, nc: NetworkContext): Promise<boolean> {
  // A global network's driver derives the MAC (overlay: 02:42 + the address).
  if ((!nc.ipam && !nc.ipamRequest) || isGlobal(nc)) return false;
  if (!ctx.drivers.driver(nc.driver)?.choosesMac) return true;
  const ipamName = nc.ipamRequest?.driver ?? nc.ipam?.driver;
  if (!ipamName || ipamName === "default") return false;
  const caps = await ctx.drivers.ipamDriver(ipamName)?.capabilities?.().catch(() => undefined);
  return caps?.requiresMACAddress === true;
}

/** Lowest free `<prefix><n>` among the sandbox's interfaces (libnetwork: `eth0`, `eth1`, …). */
function nextIfname(ctx: ControllerContext, sandboxId: string, ep: EndpointContext): string {
  const rt = ctx.runtime;
  const net = rt.objects.network.get(ep.networkId);
  const prefix = (net &&
    rt.context<NetworkContext>(net).options["com.docker.network.container_iface_prefix"]) ||
    "eth";
  const used = ifnamesOf(rt, sandboxId);
  for (let i = 0;; i++) if (!used.has(`${prefix}${i}`)) return `${prefix}${i}`;
}

/**
 * Docker's rules for a container's networks (daemon updateNetworkSettings): the host network
 * and `none` share a sandbox with no other network (a sandbox on `host` is the host's
 * namespace; one on `none` has only loopback).
 *
 * @throws {ForbiddenError} with Docker's messages.
 */
function assertNetworksMix(ctx: ControllerContext, sandboxId: string, ep: EndpointContext): void {
  const rt = ctx.runtime;
  const n = networkContext(rt, ep.networkId);
  if (!n) return;
  const others = endpointsOfSandbox(rt, sandboxId).filter((r) => r.id !== ep.id)
    .map((r) => networkContext(rt, rt.context<EndpointContext>(r).networkId))
    .filter((o): o is NetworkContext => o !== undefined && o.id !== n.id);
  if (n.driver === "host" && others.length) {
    throw new ForbiddenError(
      "container cannot be disconnected from host network or connected to host network",
    );
  }
  for (const o of others) {
    if (o.driver === "host" || n.driver === "host") {
      throw new ForbiddenError(
        "container sharing network namespace with another container or host cannot be " +
          "connected to any other network",
      );
    }
    if (o.driver === "null" || n.driver === "null") {
      throw new ForbiddenError(
        "container cannot be connected to multiple networks with one of the networks in " +
          "private (none) mode",
      );
    }
  }
}

function assertNotBusy(rec: Rec, state: string): void {
  if (TRANSIENT_STATES.has(state)) {
    throw new ConflictError(
      `${rec.kind} ${rec.id} is busy (state ${state}); its pending operation completes first`,
    );
  }
}
