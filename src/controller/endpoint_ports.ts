/**
 * Port publishing at `createEndpoint`: the `portBindings` / `exposedPorts` / `publishAll`
 * input, the refusals (internal networks, drivers that publish nothing, bridges without a
 * firewall), and the host ports decided by the allocator under the network lock — before
 * anything is journaled, so a refused command writes nothing and replay never decides again.
 * Drivers that publish ports themselves (remote plugins, `programGatewayConnectivity`) get
 * the bindings as asked, journaled the same way, and no decision: as in libnetwork, the
 * plugin chooses its host ports (and refuses its own conflicts).
 * Global (overlay) networks give their endpoints no gateway: an overlay-only sandbox is
 * joined to the gateway bridge (gwbridge.ts), and that bridge endpoint publishes the
 * sandbox's ports, as Docker's `docker_gwbridge` endpoint does. Their host ports are decided
 * here like a bridge endpoint's, with the gateway bridge's defaults ({@link viaGatewayBridge}).
 * The decisions go into the create intent (`ports`); they are given back when the endpoint
 * is deleted or its create fails, and rebuilt from the journal at start, in journal order.
 *
 * Publishing itself (on join, on the sandbox's gateway endpoint) is sandbox_ports.ts.
 *
 * @module
 */

import { z } from "zod";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import { BridgeOptions } from "../../drivers/bridge/mod.ts";
import { errText, InvalidArgumentError } from "../errors.ts";
import type { CnmEvent, Kind } from "../journal/events.ts";
import { type FoldState, type FoldWarning, stateOf } from "../journal/fold.ts";
import {
  ExposedPortInput,
  type PortAllocator,
  PortBindingInput,
  type PortMapping,
  publishAllExposed,
  validatePortBindings,
} from "../ports/mod.ts";
import type { ControllerContext } from "./context.ts";
import { hasFirewall } from "./drift.ts";
import { isGlobal } from "./global.ts";
import { gatewayBridgeNetwork, GWBRIDGE } from "./gwbridge_names.ts";

/** Most bindings (and exposed ports) one endpoint may ask for (`-p 8000-8999:8000-8999`). */
export const MAX_PORT_BINDINGS = 1024;

const many = { error: `must have at most ${MAX_PORT_BINDINGS} entries` };

/** The publishing fields of `createEndpoint`'s input. */
export const PortInputFields = {
  /** Docker's `-p`, as data (`parsePortSpec` turns the syntax into these). */
  portBindings: z.array(PortBindingInput).max(MAX_PORT_BINDINGS, many).optional(),
  /** Ports the container exposes (`EXPOSE`), published by `publishAll`. */
  exposedPorts: z.array(ExposedPortInput).max(MAX_PORT_BINDINGS, many).optional(),
  /** Docker's `-P`: publish every exposed port no binding publishes, on a port cnm chooses. */
  publishAll: z.boolean().optional(),
};

/** What {@link decidePorts} is given (the parsed input's publishing fields). */
export interface PortRequest {
  portBindings?: unknown[];
  exposedPorts?: { port: number; proto?: "tcp" | "udp" }[];
  publishAll?: boolean;
}

/** The decision: fields for the create intent, and how to take it back if not journaled. */
export interface PortDecision {
  data: Record<string, unknown>;
  release(): void;
}

/**
 * Validates an endpoint's publishing request and decides its host ports (call it holding the
 * network's lock, before the intent is appended).
 *
 * @throws {InvalidArgumentError} a malformed binding, an internal network
 *   (`network X is internal: it publishes no ports`), a driver that publishes nothing, a
 *   publishing bridge (the gateway bridge, for a global network) without a firewall.
 * @throws {ConflictError} `Bind for 0.0.0.0:8080 failed: port is already allocated` (not
 *   for a plugin's network: its plugin decides).
 * @throws {UnavailableError} `all ports are allocated`.
 */
export function decidePorts(
  ctx: ControllerContext,
  endpointId: string,
  nc: NetworkContext,
  req: PortRequest,
): PortDecision {
  const exposed = (req.exposedPorts ?? []).map((e) => ({ port: e.port, proto: e.proto ?? "tcp" }));
  let bindings = validatePortBindings(req.portBindings ?? []);
  if (req.publishAll) bindings = publishAllExposed(exposed, bindings);
  const base = exposed.length ? { exposedPorts: exposed } : {};
  if (!bindings.length) return { data: base, release: () => {} };
  if (nc.internal) {
    throw new InvalidArgumentError(`network ${nc.name} is internal: it publishes no ports`);
  }
  const driver = ctx.drivers.driver(nc.driver);
  if (!driver?.programExternalConnectivity && driver?.programGatewayConnectivity) {
    return { data: { ...base, portBindings: bindings }, release: () => {} };
  }
  const publisher = driver?.programExternalConnectivity
    ? publisherOf(nc)
    : isGlobal(nc)
    ? viaGatewayBridge(ctx, nc)
    : undefined;
  if (!publisher) {
    throw new InvalidArgumentError(
      `network ${nc.name} (driver ${nc.driver}) publishes no ports: its driver cannot`,
    );
  }
  if (!publisher.firewall) {
    throw new InvalidArgumentError(
      `network ${publisher.name} was created without a firewall (firewallBackend none): ` +
        "it publishes no ports",
    );
  }
  const ports = ctx.ports.allocator.allocate(endpointId, bindings, {
    ipv6: publisher.ipv6,
    ...(publisher.hostIp ? { defaultHostIp: publisher.hostIp } : {}),
  });
  return {
    data: { ...base, portBindings: bindings, ports },
    release: () => ctx.ports.allocator.release(endpointId),
  };
}

/** What a decision needs of the network that publishes an endpoint's ports. */
interface Publisher {
  name: string;
  /** Whether it writes rules (a bridge made with `firewallBackend: "none"` does not). */
  firewall: boolean;
  ipv6: boolean;
  /** `host_binding_ipv4`. */
  hostIp?: string;
}

const publisherOf = (nc: NetworkContext): Publisher => ({
  name: nc.name,
  firewall: nc.driver !== "bridge" || hasFirewall(nc),
  ipv6: nc.enableIPv6,
  ...(nc.options[BridgeOptions.hostBinding]
    ? { hostIp: nc.options[BridgeOptions.hostBinding] }
    : {}),
});

/**
 * What publishes for an endpoint of a global network: the gateway bridge, whose options
 * (`host_binding_ipv4`, IPv6, its firewall) shape the decision. Until it exists, what it
 * will be made with: IPv4 only, host address `0.0.0.0`, and a firewall unless the bridge
 * driver's `firewallBackend` is `none` now.
 */
function viaGatewayBridge(ctx: ControllerContext, nc: NetworkContext): Publisher {
  const gw = gatewayBridgeNetwork(ctx.runtime);
  if (gw) return publisherOf(gw);
  return {
    name: `${GWBRIDGE} (the gateway bridge of network ${nc.name})`,
    firewall: ctx.driverConfigs.get("bridge")?.config.firewallBackend !== "none",
    ipv6: false,
  };
}

/** Gives an endpoint's host ports back once it is deleted or its create failed. */
export function releasePortsOnOutcome(
  allocator: PortAllocator,
  kind: Kind,
  context: unknown,
  outcome: CnmEvent,
): void {
  if (kind !== "endpoint") return;
  if (outcome.type === "endpoint.deleted" || outcome.type === "endpoint.create.failed") {
    allocator.release((context as EndpointContext).id);
  }
}

/**
 * Rebuilds the allocator from the journal before any effect runs: every decision of this
 * host's endpoints, in journal order (deleted and failed ones are taken and given back, so
 * the scan position of each range — Docker's "from the port after the last one handed out"
 * — is the same as before the restart).
 */
export function restorePorts(
  allocator: PortAllocator,
  fold: FoldState,
  hostId: string,
  warnings: FoldWarning[],
): void {
  for (const obj of fold.objects.values()) {
    if (obj.kind !== "endpoint" || obj.host !== hostId) continue;
    const c = obj.snapshot.context as EndpointContext;
    const ports: PortMapping[] = c.ports ?? [];
    if (!ports.length) continue;
    try {
      allocator.restore(c.id, ports);
    } catch (err) {
      warnings.push({ seq: 0, objectId: c.id, type: "ports", reason: errText(err) });
    }
    const state = stateOf(obj.snapshot);
    if (state === "deleted" || state === "failed") allocator.release(c.id);
  }
}
