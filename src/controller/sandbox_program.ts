/**
 * Programs what a sandbox needs beyond any one driver — its default routes (libnetwork's
 * gateway choice among its endpoints) and its `hosts`/`resolv.conf` files — recomputed from
 * its current members whenever an endpoint joins or leaves. The file contents and the choice
 * itself are pure (sandbox_config.ts); this module reads the members and writes the kernel.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type { Kernel } from "../kernel/types.ts";
import type { SandboxChange } from "./effects.ts";
import { endpointsOfSandbox, networkContext } from "./objects.ts";
import type { Runtime } from "./runtime.ts";
import type { SandboxDns } from "./sandbox_dns.ts";
import {
  chooseGateway,
  hostResolvConf,
  hostsFile,
  programRoutes,
  resolvConf,
  type SandboxMember,
  writeIfChanged,
} from "./sandbox_config.ts";
import type { SandboxProgrammer } from "./sandbox_types.ts";
export type { SandboxProgrammer } from "./sandbox_types.ts";

/** Options of {@link createSandboxProgrammer}. */
export interface SandboxProgrammerOptions {
  runtime: Runtime;
  kernel: Kernel;
  /** Directory of per-sandbox files (`<stateDir>/sandboxes/<id>`). */
  stateDir: string;
  /**
   * Runs after the routes, on every change, with the members the routes were programmed for
   * (port publishing follows the gateway: sandbox_ports.ts). A rejection fails the change.
   */
  afterRoutes?(sandboxId: string, members: SandboxMember[], change: SandboxChange): Promise<void>;
  /**
   * The embedded DNS resolver (sandbox_dns.ts), asked for the sandbox's resolv.conf after every
   * change of its members. Default: the legacy file, written when the sandbox is made.
   */
  dns?: () => Pick<SandboxDns, "program">;
}

/** Creates the programmer. */
export function createSandboxProgrammer(options: SandboxProgrammerOptions): SandboxProgrammer {
  const { runtime: rt, kernel } = options;
  /** Join facts decided by a driver whose outcome is not applied yet. */
  const pendingJoins = new Map<string, Record<string, unknown>>();
  /** The gateway choice last programmed into each sandbox (skip unchanged). */
  const routesOf = new Map<string, string>();
  const dir = (id: string) => `${options.stateDir}/sandboxes/${id}`;
  const resolvConfOf = async (sb: SandboxContext, ids: string[], initial: boolean) =>
    options.dns
      ? await options.dns().program(sb, ids, initial)
      : initial
      ? resolvConf({ name: sb.name, ...(sb.config ?? {}) }, await hostResolvConf())
      : undefined;

  /** The sandbox's members: endpoints joined or joining it, less the one leaving. */
  function members(sandboxId: string, change: SandboxChange): SandboxMember[] {
    const out: SandboxMember[] = [];
    for (const r of endpointsOfSandbox(rt, sandboxId)) {
      const e = rt.context<EndpointContext>(r);
      const state = rt.state(r);
      if (e.id === change.remove || state === "leaving" || state === "deleting") continue;
      const facts = pendingJoins.get(e.id) ?? (state === "joined" ? e.joinFacts : undefined);
      if (!facts || !e.ifname) continue;
      const nc = networkContext(rt, e.networkId);
      out.push({
        endpointId: e.id,
        ifname: e.ifname,
        networkName: nc?.name ?? e.networkId,
        internal: nc?.internal ?? false,
        ...(e.ipv4Address ? { ipv4Address: e.ipv4Address } : {}),
        ...(e.ipv6Address ? { ipv6Address: e.ipv6Address } : {}),
        ...(typeof facts.gateway === "string" ? { gateway: facts.gateway } : {}),
        ...(typeof facts.gatewayIPv6 === "string" ? { gatewayIPv6: facts.gatewayIPv6 } : {}),
      });
    }
    return out;
  }

  async function program(sandboxId: string, change: SandboxChange): Promise<void> {
    const sbRec = rt.objects.sandbox.get(sandboxId);
    if (!sbRec) return;
    const sb = rt.context<SandboxContext>(sbRec);
    if (change.add) pendingJoins.set(change.add.endpointId, change.add.facts);
    const list = members(sandboxId, change);
    // A leave that does not change the gateway choice leaves the routes alone (the removed
    // device took its own routes with it); joins and repairs always program them.
    const routes = JSON.stringify(
      [chooseGateway(list, "ipv4"), chooseGateway(list, "ipv6")].map((m) =>
        m && [m.ifname, m.gateway, m.gatewayIPv6]
      ),
    ) + list.some((m) => m.ipv6Address);
    const unchanged = change.remove !== undefined && routesOf.get(sandboxId) === routes;
    if (!unchanged && await kernel.netnsExists(sb.key)) {
      await programRoutes(kernel, sb.key, list);
      routesOf.set(sandboxId, routes);
    }
    await options.afterRoutes?.(sandboxId, list, change);
    // resolv.conf: written when the sandbox is made, and when the embedded DNS resolver
    // starts or stops serving it (sandbox_dns.ts).
    const ids = list.map((m) => m.endpointId);
    await writeFiles(sb, list, await resolvConfOf(sb, ids, !change.add && !change.remove), ids);
  }

  async function writeFiles(
    sb: SandboxContext,
    list: SandboxMember[],
    resolv: string | undefined,
    ids: string[],
  ): Promise<void> {
    const d = dir(sb.id);
    const opts = { name: sb.name, ...(sb.config ?? {}) };
    if (resolv !== undefined) {
      await Deno.mkdir(d, { recursive: true });
      await writeIfChanged(`${d}/resolv.conf`, resolv);
    }
    await writeIfChanged(`${d}/hosts`, hostsFile(opts, list)).catch(async (err) => {
      if (resolv !== undefined || !(err instanceof Deno.errors.NotFound)) throw err;
      // The directory went missing: remake it.
      await writeFiles(sb, list, await resolvConfOf(sb, ids, true), ids);
    });
  }

  return {
    dir,
    changed: (sandboxId, change) =>
      rt.locks.with([`sandbox-config:${sandboxId}`], () => program(sandboxId, change)),
    settled: (endpointId) => void pendingJoins.delete(endpointId),
    members: (sandboxId) => members(sandboxId, {}),
  };
}
