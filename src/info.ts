/**
 * The read model handed to callers: plain, JSON-able snapshots of networks, endpoints and
 * sandboxes, derived from actor contexts.
 *
 * @module
 */

import type { EndpointContext } from "../actors/endpoint.ts";
import type { NetworkContext } from "../actors/network.ts";
import type { SandboxContext } from "../actors/sandbox.ts";
import type { ErrorRecord } from "./errors.ts";
import type { PortBinding, PortMapping } from "./ports/binding.ts";

/** Network states (public contract). */
export type NetworkState = "creating" | "active" | "deleting" | "deleted" | "failed";
/** Endpoint states (public contract). */
export type EndpointState =
  | "creating"
  | "created"
  | "joining"
  | "joined"
  | "leaving"
  | "deleting"
  | "deleted"
  | "failed";
/** Sandbox states (public contract). */
export type SandboxState = "creating" | "ready" | "deleting" | "deleted" | "failed";

/** One subnet of a network as callers see it. */
export interface IpamConfigInfo {
  subnet: string;
  ipRange?: string;
  gateway?: string;
  auxAddresses?: Record<string, string>;
}

/** A network. */
export interface NetworkInfo {
  id: string;
  name: string;
  driver: string;
  scope: "local" | "global";
  state: NetworkState;
  internal: boolean;
  enableIPv6: boolean;
  labels: Record<string, string>;
  options: Record<string, string>;
  /** IPAM: its driver, options (when given) and one entry per subnet. */
  ipam: { driver: string; options?: Record<string, string>; config: IpamConfigInfo[] };
  /** One of the networks made at first start (`none`, `host`, `bridge`): cannot be removed. */
  predefined?: boolean;
  /** Facts the driver decided (e.g. `bridge`). */
  driverInfo: Record<string, unknown>;
  /**
   * The driver configuration in force when the network was created (drivers that take one;
   * absent for networks made before driver configuration was journaled).
   */
  driverConfig?: Record<string, unknown>;
  created: string;
  error?: ErrorRecord;
}

/** An endpoint. */
export interface EndpointInfo {
  id: string;
  name: string;
  networkId: string;
  sandboxId: string | null;
  state: EndpointState;
  labels: Record<string, string>;
  ipv4Address?: string;
  ipv6Address?: string;
  macAddress?: string;
  /** Extra names of its sandbox on the network (embedded DNS); absent when none. */
  aliases?: string[];
  gateway?: string;
  gatewayIPv6?: string;
  /** Interface name inside the sandbox while joined. */
  ifname?: string;
  /**
   * The endpoint's published ports, decided at create: one per host address (`0.0.0.0` and,
   * on IPv6 networks, `::` for a binding without one). Published while joined, on the
   * sandbox's gateway endpoint. On a network whose plugin publishes ports itself (remote
   * drivers), nothing is decided: each entry is a binding as asked, marked `requested`.
   */
  ports?: PortInfo[];
  created: string;
  error?: ErrorRecord;
}

/**
 * A decided port mapping as callers see it — or, with `requested: true` (a remote plugin's
 * network, whose plugin chooses), the binding as asked, in libnetwork's terms: `hostIp` `""`
 * and `hostPort` `0` when not given, `hostPortEnd` the end of an asked range.
 */
export type PortInfo = Omit<PortMapping, "chosenFrom"> & {
  requested?: true;
  hostPortEnd?: number;
};

/** A sandbox. */
export interface SandboxInfo {
  id: string;
  name: string;
  /** Network namespace path. */
  key: string;
  state: SandboxState;
  endpointIds: string[];
  labels: Record<string, string>;
  /** The sandbox's hosts file, kept current on join and leave. */
  hostsPath: string;
  /** The sandbox's resolv.conf. */
  resolvConfPath: string;
  hostname?: string;
  created: string;
  error?: ErrorRecord;
}

/** Builds a {@link NetworkInfo}. */
export function networkInfo(state: string, c: NetworkContext): NetworkInfo {
  const ipamOptions = (c.ipam as { options?: Record<string, string> } | undefined)?.options ??
    c.ipamRequest?.options;
  const config: IpamConfigInfo[] = [...(c.ipam?.ipv4 ?? []), ...(c.ipam?.ipv6 ?? [])].map((e) => ({
    subnet: e.pool,
    ...(e.subPool ? { ipRange: e.subPool } : {}),
    ...(e.gateway ? { gateway: e.gateway.split("/")[0] } : {}),
    ...(Object.keys(e.auxAddresses).length ? { auxAddresses: e.auxAddresses } : {}),
  }));
  return {
    id: c.id,
    name: c.name,
    driver: c.driver,
    scope: c.scope,
    state: state as NetworkState,
    internal: c.internal,
    enableIPv6: c.enableIPv6,
    labels: { ...c.labels },
    options: { ...c.options },
    ipam: {
      driver: c.ipam?.driver ?? c.ipamRequest?.driver ?? "default",
      ...(ipamOptions && Object.keys(ipamOptions).length ? { options: { ...ipamOptions } } : {}),
      config,
    },
    ...(c.predefined ? { predefined: true } : {}),
    driverInfo: { ...c.facts },
    ...(c.driverConfig ? { driverConfig: structuredClone(c.driverConfig) } : {}),
    created: c.createdAt,
    ...(c.error ? { error: c.error } : {}),
  };
}

/** Builds an {@link EndpointInfo}. */
export function endpointInfo(state: string, c: EndpointContext): EndpointInfo {
  const j = c.joinFacts as { gateway?: string; gatewayIPv6?: string };
  return {
    id: c.id,
    name: c.name,
    networkId: c.networkId,
    sandboxId: c.sandboxId,
    state: state as EndpointState,
    labels: { ...c.labels },
    ...(c.ipv4Address ? { ipv4Address: c.ipv4Address } : {}),
    ...(c.ipv6Address ? { ipv6Address: c.ipv6Address } : {}),
    ...(c.macAddress ? { macAddress: c.macAddress } : {}),
    ...(c.aliases?.length ? { aliases: [...c.aliases] } : {}),
    ...(j.gateway ? { gateway: j.gateway } : {}),
    ...(j.gatewayIPv6 ? { gatewayIPv6: j.gatewayIPv6 } : {}),
    ...(c.ifname && c.sandboxId
      ? { ifname: typeof c.joinFacts.ifname === "string" ? c.joinFacts.ifname : c.ifname }
      : {}),
    ...(c.ports?.length
      ? {
        ports: c.ports.map((m) => ({
          proto: m.proto,
          containerPort: m.containerPort,
          hostIp: m.hostIp,
          hostPort: m.hostPort,
        })),
      }
      : c.portBindings?.length
      ? { ports: c.portBindings.map(requestedPort) }
      : {}),
    created: c.createdAt,
    ...(c.error ? { error: c.error } : {}),
  };
}

/** A binding as asked, for a network whose plugin decides (no `ports` in the intent). */
function requestedPort(b: PortBinding): PortInfo {
  return {
    proto: b.proto ?? "tcp",
    containerPort: b.containerPort,
    hostIp: b.hostIp ?? "",
    hostPort: b.hostPort ?? 0,
    ...(b.hostPortEnd !== undefined ? { hostPortEnd: b.hostPortEnd } : {}),
    requested: true,
  };
}

/** Builds a {@link SandboxInfo}. */
export function sandboxInfo(
  state: string,
  c: SandboxContext,
  endpointIds: string[],
  dir: string,
): SandboxInfo {
  return {
    id: c.id,
    name: c.name,
    key: c.key,
    state: state as SandboxState,
    endpointIds,
    labels: { ...c.labels },
    hostsPath: `${dir}/hosts`,
    resolvConfPath: `${dir}/resolv.conf`,
    ...(c.config?.hostname ? { hostname: c.config.hostname } : {}),
    created: c.createdAt,
    ...(c.error ? { error: c.error } : {}),
  };
}
