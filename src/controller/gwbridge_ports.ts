/**
 * Published ports of overlay-only sandboxes. An overlay endpoint gives no gateway, so such a
 * sandbox is joined to the gateway bridge (gwbridge.ts); that bridge endpoint is then the
 * sandbox's gateway endpoint and publishes the union of its members' ports
 * (sandbox_ports.ts) — the overlay endpoint's host ports, decided at its create
 * (endpoint_ports.ts), DNATed to the sandbox's address on `cnm_gwbridge`, as Docker carries a
 * container's port map to its `docker_gwbridge` endpoint.
 *
 * Publishing is part of the join (libnetwork: `setupDefaultGW`'s error fails the join and
 * undoes it). The gateway bridge attach runs after the overlay endpoint's join and never
 * throws (a sandbox without published ports still gets its join when outbound access
 * fails), so {@link requireGatewayPublication} checks afterwards: when the joined endpoint
 * has ports to publish and the sandbox has no gateway, it joins the gateway bridge endpoint
 * once more, strictly, so that its error is known; if that fails too, it undoes the join
 * (the endpoint leaves, the unjoined gateway endpoint is deleted) and throws the error.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import { CnmError, errText, UnavailableError } from "../errors.ts";
import type { ControllerContext } from "./context.ts";
import { gatewayBridgeNetwork, gatewayEndpointName } from "./gwbridge_names.ts";
import { deleteEndpoint, join, leave } from "./endpoints.ts";
import { isGlobal } from "./global.ts";
import { ensureGatewayBridge } from "./gwbridge.ts";
import { endpointsOfNetwork, networkContext } from "./objects.ts";
import { chooseGateway } from "./sandbox_config.ts";

/** Docker's prefix, keeping the cause's class (a port conflict stays a ConflictError). */
function gatewayJoinError(sandboxId: string, cause: unknown): CnmError {
  const message = `container ${sandboxId}: endpoint join on GW Network failed: ${errText(cause)}`;
  const Ctor = cause instanceof CnmError && cause.constructor !== CnmError
    ? cause.constructor as new (message: string, options?: ErrorOptions) => CnmError
    : UnavailableError;
  return new Ctor(message, { cause });
}

/**
 * After `endpointId` joined `sandboxId` and the gateway bridge was attached as needed: makes
 * sure the endpoint's ports are published, or fails the join.
 *
 * @throws the gateway bridge join's error, with Docker's prefix
 *   `container <sandbox id>: endpoint join on GW Network failed: ` (e.g. a ConflictError
 *   `… failed to bind host port 0.0.0.0:9090/tcp: address already in use`); the endpoint
 *   has left the sandbox again then, and nothing of the attempt is left.
 */
export async function requireGatewayPublication(
  ctx: ControllerContext,
  endpointId: string,
  sandboxId: string,
): Promise<void> {
  const rt = ctx.runtime;
  const rec = rt.objects.endpoint.get(endpointId);
  if (!rec || rt.state(rec) !== "joined") return;
  const ec = rt.context<EndpointContext>(rec);
  if (!ec.ports?.length || ec.sandboxId !== sandboxId) return;
  if (!isGlobal(networkContext(rt, ec.networkId))) return;
  const members = ctx.sandboxes.members(sandboxId);
  // A gateway publishes the ports: its join (or this one) did so strictly, or failed.
  if (chooseGateway(members, "ipv4") ?? chooseGateway(members, "ipv6")) return;

  let cause: unknown;
  const gwNet = gatewayBridgeNetwork(rt);
  const name = gatewayEndpointName(sandboxId);
  const gwEp = gwNet && endpointsOfNetwork(rt, gwNet.id)
    .find((r) => rt.context<EndpointContext>(r).name === name);
  if (gwEp && rt.state(gwEp) === "created") {
    try {
      await join(ctx, gwEp.id, sandboxId);
      return;
    } catch (err) {
      cause = err;
    }
  } else {
    cause = new UnavailableError(
      `sandbox ${sandboxId} has no gateway endpoint to publish the ports of endpoint ` +
        `${ec.name} (${ec.id}) on`,
    );
  }
  const undo = async (what: string, f: () => Promise<unknown>) => {
    await f().catch((err) => console.error(`cnm: sandbox ${sandboxId}: ${what}: ${errText(err)}`));
  };
  await undo(`undoing the join of endpoint ${endpointId}`, () => leave(ctx, endpointId, sandboxId));
  const left = gwEp && rt.objects.endpoint.get(gwEp.id);
  if (left && rt.state(left) === "created") {
    // Made for this join and never joined: it goes with the join.
    await undo("removing its gateway endpoint", () => deleteEndpoint(ctx, left.id));
  }
  await ensureGatewayBridge(ctx, sandboxId); // what the sandbox's other networks still need
  throw gatewayJoinError(sandboxId, cause);
}
