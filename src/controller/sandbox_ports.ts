/**
 * Port publishing follows the sandbox's gateway endpoint (libnetwork's
 * ProgramExternalConnectivity on the gateway): a sandbox publishes the union of its joined
 * endpoints' decided ports (endpoint_ports.ts) on the endpoint that gives it its IPv4 default
 * route (else its IPv6 one), through that endpoint's driver. What a sandbox publishes is
 * derived from the journal — members, their ports, the gateway choice — never journaled on
 * its own, so every restart and every reconcile computes the same expectation.
 *
 * - Join: after the sandbox's routes (sandbox_program.ts calls {@link SandboxPorts.sync}):
 *   gateway unchanged and union changed → program it again (the driver makes it publish
 *   exactly that list); gateway changed → revoke the old one, program the new one. A failed
 *   program fails the join with Docker's
 *   `driver failed programming external connectivity on endpoint <name> (<id>): <cause>`,
 *   keeping the cause's error class; the join is then undone (effects.ts), which programs
 *   the sandbox's previous publication again.
 * - Leave, forced delete: {@link SandboxPorts.beforeLeave} revokes the publication when the
 *   leaving endpoint is its publisher, before the driver removes its interface (no DNAT to a
 *   dead address); after the leave, sync programs the new gateway, if any.
 * - Start: {@link SandboxPorts.republish} removes port chains of this controller's networks
 *   that no sandbox should publish (a crash mid-leave, mid-join), then programs every ready
 *   sandbox's publication from its joined members — re-binding the held host sockets, which
 *   died with the old process — before interrupted effects run again and before reconcile.
 *
 * A gateway endpoint whose driver publishes ports itself (a remote plugin) is told the
 * sandbox's bindings as asked instead, at the same points: sandbox_plugin_ports.ts. Revokes
 * of either kind run before programs, so a host port one gives up is free for the other.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type { EffectContext } from "../../drivers/driver.ts";
import type { PublishedRules } from "../../drivers/bridge/mod.ts";
import { CnmError, DriverError, errText } from "../errors.ts";
import type { PortAllocator, PortMapping } from "../ports/mod.ts";
import { familyOf } from "../ports/binding.ts";
import { newEventId } from "../ids.ts";
import type { ControllerContext } from "./context.ts";
import { hasFirewall } from "./drift.ts";
import { driverEndpoint, driverNetwork } from "./effects.ts";
import { networkContext } from "./objects.ts";
import { chooseGateway, type SandboxMember } from "./sandbox_config.ts";
import { createPluginPorts } from "./sandbox_plugin_ports.ts";
import type { Publication, SandboxPorts, SyncOptions } from "./sandbox_types.ts";
export type { Publication, SandboxPorts, SyncOptions } from "./sandbox_types.ts";

const keyOf = (p: Publication | undefined) =>
  p ? `${p.endpointId} ${p.mappings.map((m) => JSON.stringify(m)).join(",")}` : "";

const order = (a: PortMapping, b: PortMapping) =>
  a.proto.localeCompare(b.proto) || a.hostIp.localeCompare(b.hostIp) || a.hostPort - b.hostPort;

/**
 * Docker's error for a failed ProgramExternalConnectivity, with the cause's class (a conflict
 * stays a ConflictError).
 */
export function programmingError(err: unknown, endpoint: { name: string; id: string }): CnmError {
  const message = `driver failed programming external connectivity on endpoint ${endpoint.name} ` +
    `(${endpoint.id}): ${errText(err)}`;
  const Ctor = err instanceof CnmError && err.constructor !== CnmError
    ? err.constructor as new (message: string, options?: ErrorOptions) => CnmError
    : DriverError;
  return new Ctor(message, { cause: err });
}

/** Creates the publishing state; `ctx` is read at each call (it is built after this). */
export function createSandboxPorts(
  ctx: () => ControllerContext,
  allocator: PortAllocator,
): SandboxPorts {
  const records = new Map<string, Publication>();
  const lock = (sandboxId: string) => [`sandbox-ports:${sandboxId}`];

  const endpointOf = (id: string) => {
    const r = ctx().runtime.objects.endpoint.get(id);
    return r ? ctx().runtime.context<EndpointContext>(r) : undefined;
  };
  const effectContext = (): EffectContext => ({
    effectId: newEventId(),
    kernel: ctx().kernel,
    prefix: ctx().settings.namePrefix,
    owner: ctx().settings.owner,
  });
  const plugins = createPluginPorts(ctx, effectContext);

  /** The publication `members` ask for, or undefined when nothing is to be published. */
  function desired(sandboxId: string, members: SandboxMember[]): Publication | undefined {
    const gw = chooseGateway(members, "ipv4") ?? chooseGateway(members, "ipv6");
    const ec = gw && endpointOf(gw.endpointId);
    const nc = ec && networkContext(ctx().runtime, ec.networkId);
    if (!ec || !nc || !ctx().drivers.driver(nc.driver)?.programExternalConnectivity) return;
    if (nc.driver === "bridge" && !hasFirewall(nc)) return; // made without rules: none here

    const has = { 4: Boolean(ec.ipv4Address), 6: Boolean(ec.ipv6Address) };
    const mappings = members.flatMap((m) => endpointOf(m.endpointId)?.ports ?? [])
      .filter((m) => has[familyOf(m.hostIp)])
      .map(({ proto, containerPort, hostIp, hostPort }) => ({
        proto,
        containerPort,
        hostIp,
        hostPort,
      }))
      .sort(order);
    if (!mappings.length) return;
    return { sandboxId, endpointId: ec.id, networkId: nc.id, mappings };
  }

  async function program(p: Publication): Promise<void> {
    const ec = endpointOf(p.endpointId), nc = networkContext(ctx().runtime, p.networkId);
    const driver = nc && ctx().drivers.driver(nc.driver);
    if (!ec || !nc || !driver?.programExternalConnectivity) {
      throw new DriverError(`endpoint ${p.endpointId} cannot publish ports`);
    }
    try {
      await driver.programExternalConnectivity(
        driverNetwork(nc),
        driverEndpoint(ec),
        p.mappings,
        effectContext(),
      );
    } catch (err) {
      throw programmingError(err, ec);
    }
  }

  async function revokeEndpoint(networkId: string, endpointId: string, mappings?: PortMapping[]) {
    const c = ctx();
    const ec = endpointOf(endpointId), nc = networkContext(c.runtime, networkId);
    const driver = nc && c.drivers.driver(nc.driver);
    if (ec && nc && driver?.revokeExternalConnectivity) {
      await driver.revokeExternalConnectivity(
        driverNetwork(nc),
        driverEndpoint(ec),
        mappings ?? [],
        effectContext(),
      );
      return;
    }
    // An endpoint the journal no longer has: its rules and held sockets, directly.
    await c.firewall.unpublishPorts({ networkId, endpointId, ...(mappings ? { mappings } : {}) });
    for (const h of await c.kernel.heldPorts()) {
      if (h.owner === endpointId) await c.kernel.releasePort(h);
    }
  }

  function expected(skip: ReadonlySet<string> = new Set()): Publication[] {
    const c = ctx();
    const out: Publication[] = [];
    for (const r of c.runtime.objects.sandbox.values()) {
      if (c.runtime.state(r) !== "ready" || skip.has(r.id)) continue;
      const id = c.runtime.context<SandboxContext>(r).id;
      const p = desired(id, c.sandboxes.members(id).filter((m) => !skip.has(m.endpointId)));
      if (p) out.push(p);
    }
    return out;
  }

  async function syncLocked(
    sandboxId: string,
    members: SandboxMember[],
    options: SyncOptions,
  ): Promise<void> {
    const want = desired(sandboxId, members);
    const have = records.get(sandboxId);
    const toPlugin = plugins.desired(sandboxId, members);
    try {
      await plugins.revokeStale(sandboxId, toPlugin);
      if (options.force || keyOf(want) !== keyOf(have)) await syncBridge(sandboxId, want, have);
      try {
        await plugins.program(toPlugin);
      } catch (err) {
        const ec = toPlugin && endpointOf(toPlugin.endpointId);
        throw ec ? programmingError(err, ec) : err;
      }
    } catch (err) {
      if (options.strict) throw err;
      console.error(`cnm: sandbox ${sandboxId}: publishing its ports: ${errText(err)}`);
    }
  }

  async function syncBridge(
    sandboxId: string,
    want: Publication | undefined,
    have: Publication | undefined,
  ): Promise<void> {
    if (have && have.endpointId !== want?.endpointId) {
      records.delete(sandboxId); // also when revoking fails: what is left is unknown
      await revokeEndpoint(have.networkId, have.endpointId, have.mappings);
    }
    if (!want) return void records.delete(sandboxId);
    try {
      await program(want);
    } catch (err) {
      records.delete(sandboxId); // the driver publishes all or nothing: now nothing
      throw err;
    }
    records.set(sandboxId, want);
  }

  return {
    allocator,
    plugins,
    sync: (sandboxId, members, options = {}) =>
      ctx().runtime.locks.with(lock(sandboxId), () => syncLocked(sandboxId, members, options)),
    beforeLeave: (sandboxId, endpointId) =>
      ctx().runtime.locks.with(lock(sandboxId), async () => {
        await plugins.beforeLeave(sandboxId, endpointId);
        const have = records.get(sandboxId);
        if (have?.endpointId !== endpointId) return;
        // A failure fails the leave (the interface stays: no DNAT to a dead address).
        records.delete(sandboxId);
        await revokeEndpoint(have.networkId, have.endpointId, have.mappings);
      }),
    expected: () => expected(),
    published: (sandboxId) => records.get(sandboxId),
    revokeEndpoint,
    async republish(warnings, resuming) {
      const c = ctx();
      const warn = (objectId: string, err: unknown) =>
        warnings.push({ seq: 0, objectId, type: "ports", reason: errText(err) });
      plugins.restore(); // what plugins were told follows from the journal: no calls
      const want = expected(resuming);
      const firewalled = [...c.runtime.objects.network.values()]
        .some((r) => hasFirewall(c.runtime.context<NetworkContext>(r)));
      if (firewalled) {
        try {
          const keep = new Set(want.map((p) => p.endpointId.slice(0, 12)));
          for (const r of (await portRulesByOwner(c)).ours) {
            if (keep.has(r.endpointId)) continue;
            const full = [...c.runtime.objects.endpoint.keys()]
              .find((id) => id.startsWith(r.endpointId)) ?? r.endpointId;
            const net = [...c.runtime.objects.network.keys()]
              .find((id) => id.startsWith(r.networkId)) ?? r.networkId;
            await revokeEndpoint(net, full, r.mappings).catch((err) => warn(full, err));
          }
        } catch (err) {
          warn("", err);
        }
      }
      for (const p of want) {
        await c.runtime.locks.with(lock(p.sandboxId), async () => {
          try {
            await program(p);
            records.set(p.sandboxId, p);
          } catch (err) {
            warn(p.endpointId, err);
          }
        });
      }
    },
  };
}

/**
 * The port chains in the firewall, split into this controller's — those of networks whose
 * rules name it, or name no controller and are known to its journal — and the others.
 */
export async function portRulesByOwner(
  ctx: ControllerContext,
): Promise<{ ours: PublishedRules[]; others: PublishedRules[] }> {
  const all = await ctx.firewall.listPorts();
  if (!all.length) return { ours: [], others: [] };
  const owners = await ctx.firewall.networkOwners();
  const mine = (net12: string) => {
    const owner = owners[net12];
    return owner === ctx.settings.owner ||
      ((owner === null || owner === undefined) && ctx.runtime.known.has(net12));
  };
  return {
    ours: all.filter((r) => mine(r.networkId)),
    others: all.filter((r) => !mine(r.networkId)),
  };
}
