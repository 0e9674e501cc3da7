/**
 * What each transient state does: the driver calls (and sandbox namespace work) behind
 * `creating`, `joining`, `leaving` and `deleting`. Every step is an idempotent ensure, so
 * recovery can run it again with the same effectId.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type {
  Driver,
  DriverEndpoint,
  DriverFacts,
  DriverNetwork,
  DriverSandbox,
  EffectContext,
  IpamData,
  IpamDriver,
} from "../../drivers/driver.ts";
import type { Kind } from "../journal/events.ts";
import { verbOf } from "../../actors/mod.ts";
import { DriverError, NotFoundError, toErrorRecord } from "../errors.ts";
import type { Kernel } from "../kernel/types.ts";
import type { NetworkIpam } from "./network_ipam.ts";
import type { Outcome } from "./runtime.ts";
import {
  allocateRemoteEndpoint,
  allocateRemoteNetwork,
  releaseRemoteEndpoint,
  releaseRemoteNetwork,
} from "./remote_ipam.ts";

/** A change of a sandbox's members, for sandbox-level programming. */
export interface SandboxChange {
  /** An endpoint whose driver join just succeeded, with the driver's join facts. */
  add?: { endpointId: string; facts: Record<string, unknown> };
  /** An endpoint that just left. */
  remove?: string;
}

/** What effects need from the controller. */
export interface EffectEnv {
  kernel: Kernel;
  prefix: string;
  /** The controller's owner id (ownership marks). */
  owner: string;
  driver(name: string): Driver | undefined;
  /** A non-default IPAM driver (remote plugin), resolved before effects run. */
  ipamDriver(name: string): IpamDriver | undefined;
  networkContext(id: string): NetworkContext | undefined;
  sandboxContext(id: string): SandboxContext | undefined;
  /** Called after an endpoint joined or left a sandbox (sandbox-level programming). */
  sandboxChanged(sandboxId: string, change: SandboxChange): Promise<void>;
  /**
   * Called before an endpoint's driver leave (also of a forced delete): the sandbox stops
   * publishing ports on it if it did (sandbox_ports.ts), so no DNAT outlives its address.
   */
  beforeLeave?(sandboxId: string, endpointId: string): Promise<void>;
  /** Called before a sandbox's namespace is deleted (its DNS listener stops first). */
  sandboxDeleting?(sandboxId: string): Promise<void>;
  /** Directory of a sandbox's files. */
  sandboxDir(sandboxId: string): string;
}

/** The namespace name cnm uses for a sandbox it owns. */
export function netnsNameOf(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}

/** Maps a network context to what drivers see. */
export function driverNetwork(c: NetworkContext): DriverNetwork {
  const data = (e: { pool: string; gateway?: string; auxAddresses: Record<string, string> }) =>
    ({
      addressSpace: (e as { addressSpace?: string }).addressSpace ?? "LocalDefault",
      pool: e.pool,
      ...(e.gateway ? { gateway: e.gateway } : {}),
      auxAddresses: e.auxAddresses,
    }) satisfies IpamData;
  return {
    id: c.id,
    internal: c.internal,
    enableIPv6: c.enableIPv6,
    options: c.options,
    labels: c.labels,
    ipv4: (c.ipam?.ipv4 ?? []).map(data),
    ipv6: (c.ipam?.ipv6 ?? []).map(data),
    facts: c.facts,
    ...(c.driverConfig ? { driverConfig: c.driverConfig } : {}),
  };
}

/** Maps an endpoint context to what drivers see. */
export function driverEndpoint(c: EndpointContext): DriverEndpoint {
  return {
    id: c.id,
    networkId: c.networkId,
    options: c.options,
    ...(c.ipv4Address ? { ipv4Address: c.ipv4Address } : {}),
    ...(c.ipv6Address ? { ipv6Address: c.ipv6Address } : {}),
    ...(c.macAddress ? { macAddress: c.macAddress } : {}),
    ...(c.portBindings?.length ? { portBindings: c.portBindings } : {}),
    ...(c.exposedPorts?.length ? { exposedPorts: c.exposedPorts } : {}),
    facts: c.facts,
  };
}

/**
 * Runs the effect of `kind` in transient `state`; throws on failure — or, when the driver
 * recorded what it had already made ({@link EffectContext.partial}), returns the `*.failed`
 * outcome carrying those facts.
 */
export async function runEffect(
  env: EffectEnv,
  kind: Kind,
  state: string,
  context: unknown,
  effectId: string,
): Promise<Outcome> {
  let partial: DriverFacts | undefined;
  const ectx: EffectContext = {
    ...effectContext(env, effectId),
    partial: (facts) => void (partial = { ...facts }),
  };
  try {
    switch (kind) {
      case "network":
        return await networkEffect(env, state, context as NetworkContext, ectx);
      case "endpoint":
        return await endpointEffect(env, state, context as EndpointContext, ectx);
      case "sandbox":
        return await sandboxEffect(env, state, context as SandboxContext);
    }
  } catch (err) {
    if (!partial) throw err;
    return {
      type: `${kind}.${verbOf(state)}.failed`,
      data: { error: toErrorRecord(err), facts: partial },
    };
  }
}

/** The remote IPAM driver of a network, or undefined for the built-in IPAM. */
function remoteIpamOf(env: EffectEnv, c: NetworkContext): IpamDriver | undefined {
  const name = c.ipamRequest?.driver ?? c.ipam?.driver;
  if (!name || name === "default") return undefined;
  const d = env.ipamDriver(name);
  if (!d) throw new NotFoundError(`unknown IPAM driver "${name}"`);
  return d;
}

function driverOf(env: EffectEnv, name: string): Driver {
  const d = env.driver(name);
  if (!d) throw new NotFoundError(`unknown driver "${name}"`);
  return d;
}

async function networkEffect(
  env: EffectEnv,
  state: string,
  c: NetworkContext,
  ectx: EffectContext,
): Promise<Outcome> {
  const driver = driverOf(env, c.driver);
  const remote = remoteIpamOf(env, c);
  if (state === "creating") {
    if (remote && !c.ipam) {
      // The plugin decides; its answer is journaled with the outcome.
      const ipam = await allocateRemoteNetwork(
        remote,
        c.ipamRequest!,
        c.enableIPv6,
        driver.capabilities().dataScope,
      );
      try {
        const facts = await driver.createNetwork(driverNetwork({ ...c, ipam }), ectx);
        return { type: "network.created", data: { facts: { ...(facts ?? {}), ipam } } };
      } catch (err) {
        await releaseRemoteNetwork(remote, ipam).catch(() => {});
        throw err;
      }
    }
    const facts = await driver.createNetwork(driverNetwork(c), ectx);
    return { type: "network.created", data: { facts: facts ?? {} } };
  }
  await driver.deleteNetwork(driverNetwork(c), ectx);
  if (remote && c.ipam) await releaseRemoteNetwork(remote, c.ipam as NetworkIpam);
  return { type: "network.deleted", data: {} };
}

async function endpointEffect(
  env: EffectEnv,
  state: string,
  c: EndpointContext,
  ectx: EffectContext,
  repair = false,
): Promise<Outcome> {
  const net = env.networkContext(c.networkId);
  if (!net) throw new NotFoundError(`network ${c.networkId} not found`);
  const driver = driverOf(env, net.driver);
  const sandbox = (): DriverSandbox => {
    const sb = c.sandboxId ? env.sandboxContext(c.sandboxId) : undefined;
    if (!sb) throw new NotFoundError(`sandbox ${c.sandboxId} not found`);
    return { id: sb.id, key: sb.key, ifname: c.ifname ?? "", labels: sb.labels };
  };
  switch (state) {
    case "creating": {
      const remote = remoteIpamOf(env, net);
      if (remote && net.ipam) {
        const addrs = await allocateRemoteEndpoint(remote, net.ipam as NetworkIpam, c);
        try {
          const facts = await driver.createEndpoint(
            driverNetwork(net),
            driverEndpoint({ ...c, ...addrs }),
            ectx,
          );
          return { type: "endpoint.created", data: { facts: { ...addrs, ...(facts ?? {}) } } };
        } catch (err) {
          await releaseRemoteEndpoint(remote, net.ipam as NetworkIpam, addrs).catch(() => {});
          throw err;
        }
      }
      const facts = await driver.createEndpoint(driverNetwork(net), driverEndpoint(c), ectx);
      return { type: "endpoint.created", data: { facts: facts ?? {} } };
    }
    case "joining": {
      const sb = sandbox();
      const facts = (await driver.join(driverNetwork(net), driverEndpoint(c), sb, ectx)) ?? {};
      try {
        await env.sandboxChanged(sb.id, { add: { endpointId: c.id, facts } });
      } catch (err) {
        // A failed join leaves nothing behind (a repair keeps the interface it re-made).
        if (!repair) {
          await driver.leave(driverNetwork(net), driverEndpoint(c), sb, ectx).catch(() => {});
          await env.sandboxChanged(sb.id, { remove: c.id }).catch(() => {});
        }
        throw err;
      }
      return { type: "endpoint.joined", data: { facts } };
    }
    case "leaving": {
      const sb = sandbox();
      await env.beforeLeave?.(sb.id, c.id);
      await driver.leave(driverNetwork(net), driverEndpoint(c), sb, ectx);
      await env.sandboxChanged(sb.id, { remove: c.id });
      return { type: "endpoint.left", data: {} };
    }
    default: {
      // A forced delete of a joined endpoint leaves first.
      if (c.sandboxId) {
        const sb = sandbox();
        await env.beforeLeave?.(sb.id, c.id);
        await driver.leave(driverNetwork(net), driverEndpoint(c), sb, ectx);
        await env.sandboxChanged(sb.id, { remove: c.id });
      }
      await driver.deleteEndpoint(driverNetwork(net), driverEndpoint(c), ectx);
      const remote = remoteIpamOf(env, net);
      if (remote && net.ipam) await releaseRemoteEndpoint(remote, net.ipam as NetworkIpam, c);
      return { type: "endpoint.deleted", data: {} };
    }
  }
}

async function sandboxEffect(env: EffectEnv, state: string, c: SandboxContext): Promise<Outcome> {
  if (state === "creating") {
    if (c.owned) {
      await env.kernel.ensureNetns(netnsNameOf(c.key));
    } else {
      if (!(await env.kernel.netnsExists(c.key))) {
        throw new DriverError(`sandbox key ${c.key} is not a network namespace`);
      }
      await env.kernel.ensureLoopbackUp(c.key);
    }
    await env.sandboxChanged(c.id, {});
    return { type: "sandbox.created", data: { facts: {} } };
  }
  await env.sandboxDeleting?.(c.id);
  if (c.owned) await env.kernel.deleteNetns(netnsNameOf(c.key));
  await Deno.remove(env.sandboxDir(c.id), { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  return { type: "sandbox.deleted", data: {} };
}

/** Re-runs a network's create effect (idempotent ensure): repairs a missing bridge or rules. */
export async function ensureNetwork(
  env: EffectEnv,
  c: NetworkContext,
  effectId: string,
): Promise<void> {
  await networkEffect(env, "creating", c, effectContext(env, effectId));
}

/** Re-runs a joined endpoint's join effect (idempotent ensure): repairs its interface. */
export async function ensureJoined(
  env: EffectEnv,
  c: EndpointContext,
  effectId: string,
): Promise<void> {
  await endpointEffect(env, "joining", c, effectContext(env, effectId), true);
}

function effectContext(env: EffectEnv, effectId: string): EffectContext {
  return { effectId, kernel: env.kernel, prefix: env.prefix, owner: env.owner };
}
