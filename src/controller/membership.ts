/**
 * A sandbox's membership as the Controller offers it: `join`, `leave` and `deleteEndpoint`
 * (the endpoint commands of endpoints.ts), each followed by what the sandbox's networks
 * then require of the gateway bridge. A sandbox whose networks are all global gets (or
 * loses) its `cnm_gwbridge` endpoint after a join, a leave, and a forced delete of a joined
 * endpoint (a leave too); that endpoint publishes the sandbox's ports, or the join fails
 * (gwbridge.ts, gwbridge_ports.ts).
 *
 * @module
 */

import type { EndpointInfo } from "../info.ts";
import type { ControllerContext } from "./context.ts";
import * as endpoints from "./endpoints.ts";
import { ensureGatewayBridge } from "./gwbridge.ts";
import { requireGatewayPublication } from "./gwbridge_ports.ts";
import type { DeleteEndpointOptions } from "./inputs.ts";
import * as sandboxes from "./sandboxes.ts";

/** Joins `endpointId` to `sandbox`, then gives the sandbox the gateway bridge it needs. */
export async function join(
  ctx: ControllerContext,
  endpointId: string,
  sandbox: string,
): Promise<EndpointInfo> {
  const ep = await endpoints.join(ctx, endpointId, sandbox);
  if (ep.sandboxId) {
    await ensureGatewayBridge(ctx, ep.sandboxId);
    await requireGatewayPublication(ctx, ep.id, ep.sandboxId);
  }
  return ctx.runtime.objects.endpoint.has(ep.id) ? endpoints.endpoint(ctx, ep.id)! : ep;
}

/** Leaves, then gives the sandbox the gateway bridge it still needs (or none). */
export async function leave(
  ctx: ControllerContext,
  endpointId: string,
  sandbox: string,
): Promise<void> {
  const sandboxId = sandboxes.sandbox(ctx, sandbox)?.id;
  await endpoints.leave(ctx, endpointId, sandbox);
  if (sandboxId) await ensureGatewayBridge(ctx, sandboxId);
}

/** Deletes an endpoint; a forced delete of a joined one is a leave too. */
export async function deleteEndpoint(
  ctx: ControllerContext,
  endpointId: string,
  options?: DeleteEndpointOptions,
): Promise<void> {
  const sandboxId = endpoints.endpoint(ctx, endpointId)?.sandboxId;
  await endpoints.deleteEndpoint(ctx, endpointId, options);
  if (sandboxId) await ensureGatewayBridge(ctx, sandboxId);
}
