/**
 * Port publishing when the sandbox's gateway endpoint belongs to a driver that publishes
 * ports itself (remote plugins: `Driver.programGatewayConnectivity`), as libnetwork does it:
 * the gateway endpoint hears ProgramExternalConnectivity with the sandbox's options — its
 * labels, every member's port bindings **as asked** (`com.docker.network.portmap`) and exposed
 * ports — when it becomes the gateway, and again when the sandbox's bindings change while it
 * is; RevokeExternalConnectivity when it stops being the gateway (the gateway moves, it
 * leaves). The plugin publishes and chooses its host ports: cnm decides none, holds no socket,
 * writes no firewall rule for them.
 *
 * Journal-driven like the rest of the remote driver: what a gateway was told follows from the
 * journal (members, their bindings, the gateway choice), so at start {@link PluginPorts.restore}
 * rebuilds the records without calling the plugin — completed work is never sent again. The
 * actors of interrupted effects still show the state before them (a resumed leave is still a
 * member, a resumed join not yet one), which is what the plugin had been told once that
 * effect's calls are made again. sandbox_ports.ts calls this under its per-sandbox lock.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type { EffectContext, GatewayConnectivity } from "../../drivers/driver.ts";
import type { ExposedPort } from "../ports/binding.ts";
import type { ControllerContext } from "./context.ts";
import { driverEndpoint, driverNetwork } from "./effects.ts";
import { networkContext } from "./objects.ts";
import { chooseGateway, type SandboxMember } from "./sandbox_config.ts";
import type { PluginPorts, PluginPublication } from "./sandbox_types.ts";
export type { PluginPorts, PluginPublication } from "./sandbox_types.ts";

const keyOf = (p: PluginPublication | undefined) => p ? JSON.stringify(p) : "";

/** Creates the plugin side; `ctx` is read at each call (it is built after this). */
export function createPluginPorts(
  ctx: () => ControllerContext,
  effectContext: () => EffectContext,
): PluginPorts {
  const records = new Map<string, PluginPublication>();

  const endpointOf = (id: string) => {
    const r = ctx().runtime.objects.endpoint.get(id);
    return r ? ctx().runtime.context<EndpointContext>(r) : undefined;
  };
  const target = (p: PluginPublication) => {
    const ec = endpointOf(p.endpointId), nc = networkContext(ctx().runtime, p.networkId);
    const driver = nc && ctx().drivers.driver(nc.driver);
    return ec && nc && driver ? { ec, nc, driver } : undefined;
  };

  function desired(sandboxId: string, members: SandboxMember[]): PluginPublication | undefined {
    const gw = chooseGateway(members, "ipv4") ?? chooseGateway(members, "ipv6");
    const ec = gw && endpointOf(gw.endpointId);
    const nc = ec && networkContext(ctx().runtime, ec.networkId);
    if (!ec || !nc || !ctx().drivers.driver(nc.driver)?.programGatewayConnectivity) return;
    const sbRec = ctx().runtime.objects.sandbox.get(sandboxId);
    const labels = sbRec ? ctx().runtime.context<SandboxContext>(sbRec).labels : {};
    // By endpoint id: the same order live and after a restart (join order is not journaled
    // in one place), so an unchanged sandbox never looks changed.
    const eps = members.map((m) => endpointOf(m.endpointId))
      .filter((e): e is EndpointContext => e !== undefined)
      .sort((a, b) => a.id.localeCompare(b.id));
    const exposed = new Map<string, ExposedPort>();
    for (const e of eps.flatMap((e) => e.exposedPorts ?? [])) {
      const proto = e.proto ?? "tcp";
      exposed.set(`${e.port}/${proto}`, { port: e.port, proto });
    }
    return {
      sandboxId,
      endpointId: ec.id,
      networkId: nc.id,
      request: {
        labels: { ...labels },
        portBindings: eps.flatMap((e) => e.portBindings ?? []),
        exposedPorts: [...exposed.values()],
      },
    };
  }

  async function revoke(p: PluginPublication): Promise<void> {
    const t = target(p);
    if (!t?.driver.revokeGatewayConnectivity) return;
    await t.driver.revokeGatewayConnectivity(
      driverNetwork(t.nc),
      driverEndpoint(t.ec),
      effectContext(),
    );
  }

  return {
    desired,
    async revokeStale(sandboxId, want) {
      const have = records.get(sandboxId);
      if (!have || have.endpointId === want?.endpointId) return;
      records.delete(sandboxId); // also when revoking fails: what is left is unknown
      await revoke(have);
    },
    async program(want) {
      if (!want || keyOf(want) === keyOf(records.get(want.sandboxId))) return;
      const t = target(want);
      if (!t?.driver.programGatewayConnectivity) return;
      records.delete(want.sandboxId);
      try {
        await t.driver.programGatewayConnectivity(
          driverNetwork(t.nc),
          driverEndpoint(t.ec),
          want.request,
          effectContext(),
        );
      } catch (err) {
        // As libnetwork's rollback of a failed join: the endpoint is no gateway any more.
        await revoke(want).catch(() => {});
        throw err;
      }
      records.set(want.sandboxId, want);
    },
    async beforeLeave(sandboxId, endpointId) {
      const have = records.get(sandboxId);
      if (have?.endpointId !== endpointId) return;
      records.delete(sandboxId);
      await revoke(have);
    },
    restore() {
      const c = ctx();
      records.clear();
      for (const r of c.runtime.objects.sandbox.values()) {
        if (c.runtime.state(r) !== "ready") continue;
        const id = c.runtime.context<SandboxContext>(r).id;
        const p = desired(id, c.sandboxes.members(id));
        if (p) records.set(id, p);
      }
    },
    told: (sandboxId) => records.get(sandboxId),
  };
}
