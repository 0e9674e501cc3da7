/**
 * External access for overlay-only sandboxes, Docker's way: an overlay network gives its
 * endpoints no default gateway, so a sandbox whose only networks are global ones is joined to
 * a per-host bridge network `cnm_gwbridge` (ICC off, masquerade on: outbound connections to
 * anything the host reaches, nothing inbound, no traffic between the containers on it). It is
 * attached after a join that leaves the sandbox without a gateway and detached once the
 * sandbox has a gateway of its own again or leaves its last global network. Every step is an
 * ordinary journaled command (the network, the endpoint `gateway_<sandbox id12>`, the join),
 * so a crash in between leaves nothing half-made; the next join or leave of the sandbox, or
 * the sweep after a restart, completes it.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import { BridgeOptions } from "../../drivers/bridge/mod.ts";
import { errText } from "../errors.ts";
import type { ControllerContext } from "./context.ts";
import { createEndpoint, deleteEndpoint, join, leave } from "./endpoints.ts";
import { isGlobal } from "./global.ts";
import { gatewayBridgeNetwork, gatewayEndpointName, GWBRIDGE } from "./gwbridge_names.ts";
import { createNetwork } from "./networks.ts";
import {
  endpointsNamed,
  endpointsOfNetwork,
  endpointsOfSandbox,
  namedObjects,
  networkContext,
} from "./objects.ts";

export { GWBRIDGE } from "./gwbridge_names.ts";
const nameOf = gatewayEndpointName;

/**
 * What a sandbox has: global endpoints, endpoints with a gateway, its gwbridge endpoint —
 * found by its name, joined or not (one left or made but not joined when a crash came between
 * two steps has no sandbox id; a failed create holds no name).
 */
function survey(ctx: ControllerContext, sandboxId: string) {
  const rt = ctx.runtime;
  let global = 0;
  let gateway = 0;
  let bridgeEp: string | undefined;
  const name = nameOf(sandboxId);
  // From the indexes (this runs after every join and leave): the sandbox's endpoints, and
  // the one of its name on the gateway bridge network.
  const found = new Set(endpointsOfSandbox(rt, sandboxId));
  for (const net of namedObjects(rt, "network", GWBRIDGE)) {
    for (const r of endpointsNamed(rt, net.id, name)) found.add(r);
  }
  for (const r of found) {
    const e = rt.context<EndpointContext>(r);
    const net = networkContext(rt, e.networkId);
    if (net?.name === GWBRIDGE && e.name === name) {
      if (rt.state(r) !== "failed") bridgeEp = r.id;
      continue;
    }
    if (e.sandboxId !== sandboxId || rt.state(r) !== "joined") continue;
    if (isGlobal(net)) global++;
    if (typeof e.joinFacts.gateway === "string" && !net?.internal) gateway++;
  }
  return { global, gateway, bridgeEp };
}

/** The gwbridge network, made on first need. */
async function gwbridge(ctx: ControllerContext): Promise<NetworkContext> {
  const rt = ctx.runtime;
  const find = () => gatewayBridgeNetwork(rt);
  const have = find();
  if (have) return have;
  await createNetwork(ctx, {
    name: GWBRIDGE,
    driver: "bridge",
    options: {
      [BridgeOptions.name]: GWBRIDGE,
      [BridgeOptions.icc]: "false",
      [BridgeOptions.masquerade]: "true",
    },
    labels: { "cnm.gwbridge": "true" },
  }).catch((err) => {
    if (!find()) throw err; // a concurrent sandbox made it first
  });
  return find()!;
}

/**
 * Attaches or detaches the sandbox's gwbridge endpoint as its networks now require. Never
 * throws: a failure is logged (the join or leave that called it stands), and the next change
 * of the sandbox tries again.
 */
export async function ensureGatewayBridge(
  ctx: ControllerContext,
  sandboxId: string,
): Promise<void> {
  try {
    const rt = ctx.runtime;
    if (!rt.objects.sandbox.get(sandboxId)) return;
    const { global, gateway, bridgeEp } = survey(ctx, sandboxId);
    if (global > 0 && gateway === 0 && !bridgeEp) {
      const net = await gwbridge(ctx);
      const ep = await createEndpoint(ctx, net.id, {
        name: nameOf(sandboxId),
        labels: { "cnm.gwbridge": "true" },
      });
      await join(ctx, ep.id, sandboxId);
    } else if (bridgeEp && (global === 0 || gateway > 0)) {
      const rec = rt.objects.endpoint.get(bridgeEp);
      if (rec && rt.state(rec) === "joined") await leave(ctx, bridgeEp, sandboxId);
      await deleteEndpoint(ctx, bridgeEp, { force: true });
    } else if (bridgeEp) {
      // Made but not joined (a crash between the two): join it now.
      const rec = rt.objects.endpoint.get(bridgeEp);
      if (rec && rt.state(rec) === "created") await join(ctx, bridgeEp, sandboxId);
    }
  } catch (err) {
    console.error(`cnm: gateway bridge of sandbox ${sandboxId}: ${errText(err)}`);
  }
}

/**
 * After a restart: every ready sandbox gets what its networks require, and a gwbridge
 * endpoint whose sandbox is gone (a crash in the middle of a sandbox delete) is deleted.
 */
export async function sweepGatewayBridges(ctx: ControllerContext): Promise<void> {
  const rt = ctx.runtime;
  const sandboxes = [...rt.objects.sandbox.values()];
  for (const r of sandboxes) {
    if (rt.state(r) === "ready") await ensureGatewayBridge(ctx, r.id);
  }
  const names = new Set(sandboxes.map((r) => nameOf(r.id)));
  const orphans = namedObjects(rt, "network", GWBRIDGE).flatMap((net) =>
    endpointsOfNetwork(rt, net.id)
  );
  for (const r of orphans) {
    const e = rt.context<EndpointContext>(r);
    if (!e.name.startsWith("gateway_") || names.has(e.name) || e.sandboxId) continue;
    if (rt.state(r) !== "created") continue;
    await deleteEndpoint(ctx, r.id, { force: true }).catch((err) =>
      console.error(`cnm: gateway bridge endpoint ${e.name} without sandbox: ${errText(err)}`)
    );
  }
}
