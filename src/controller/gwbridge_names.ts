/**
 * The names of the gateway bridge (gwbridge.ts): its network, and the endpoint of each
 * sandbox there, with the lookup of the network. In a room of their own so the port
 * decisions (endpoint_ports.ts) and the gateway publication check (gwbridge_ports.ts) use
 * them without importing gwbridge.ts, which imports the endpoint commands.
 *
 * @module
 */

import type { NetworkContext } from "../../actors/network.ts";
import { shortId } from "../ids.ts";
import { isGlobal } from "./global.ts";
import { namedObjects } from "./objects.ts";
import type { Runtime } from "./runtime.ts";

/** The gateway bridge network's name (and its device's). */
export const GWBRIDGE = "cnm_gwbridge";

/** The name of a sandbox's endpoint on the gateway bridge: `gateway_<sandbox id12>`. */
export const gatewayEndpointName = (sandboxId: string): string => `gateway_${shortId(sandboxId)}`;

/** The gateway bridge network of this host, if made (a global one of that name is not it). */
export function gatewayBridgeNetwork(rt: Runtime): NetworkContext | undefined {
  return namedObjects(rt, "network", GWBRIDGE).map((r) => rt.context<NetworkContext>(r))
    .find((c) => !isGlobal(c));
}
