/**
 * Docker's `NetworkResource` (API 1.41) built from cnm's read model: the body of
 * `GET /networks/{id}` and of each `GET /networks` entry, and what `cnm network inspect
 * --format docker` prints. Keys are in dockerd's order; maps are sorted as Go encodes them.
 *
 * Mapping: a Docker container is a cnm sandbox, so `Containers` is keyed by sandbox id and
 * lists the network's *joined* endpoints only (Docker lists running containers only), each
 * named after its sandbox. cnm does not record `Attachable`, `Ingress`, `ConfigOnly` or
 * `ConfigFrom` (always false / empty). `IPAM.Options` are the request's (`null` for the
 * predefined networks, as dockerd shows them).
 *
 * @module
 */

import type { EndpointInfo, NetworkInfo, SandboxInfo } from "../../info.ts";
import { sortedMap } from "./_json.ts";

/** One entry of `Containers`. */
export interface EndpointResource {
  Name: string;
  EndpointID: string;
  MacAddress: string;
  IPv4Address: string;
  IPv6Address: string;
}

/** One entry of `IPAM.Config`. */
export interface IpamConfigResource {
  Subnet?: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

/** Docker's NetworkResource, API 1.41. */
export interface NetworkResource {
  Name: string;
  Id: string;
  Created: string;
  Scope: string;
  Driver: string;
  EnableIPv6: boolean;
  IPAM: {
    Driver: string;
    Options: Record<string, string> | null;
    Config: IpamConfigResource[];
  };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Containers: Record<string, EndpointResource>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

/** What the shape needs besides the network. */
export interface ResourceContext {
  /** Endpoints (any network's; the network's own are picked). */
  endpoints: readonly EndpointInfo[];
  /** Sandboxes, to name the containers. */
  sandboxes: readonly SandboxInfo[];
  /** Fill `Containers` (inspect, and lists at API < 1.28). Default false: `{}`. */
  containers?: boolean;
}

/**
 * Go's RFC 3339 with nanoseconds and trailing zeros trimmed (`time.Time` in JSON):
 * `2026-12-01T07:25:26.713Z`, `2026-12-01T07:25:26Z`.
 */
export function rfc3339Nano(iso: string): string {
  // Memoised: a list formats every network's creation time on each request, and parsing a
  // date was half the time of `GET /networks` (a CPU profile of 100 networks).
  let out = formatted.get(iso);
  if (out !== undefined) return out;
  const t = new Date(iso);
  out = Number.isNaN(t.getTime())
    ? "0001-01-01T00:00:00Z"
    : t.toISOString().replace(/\.(\d*?)0*Z$/, (_, f: string) => (f ? `.${f}Z` : "Z"));
  if (formatted.size >= 4096) formatted.clear();
  formatted.set(iso, out);
  return out;
}
const formatted = new Map<string, string>();

/**
 * Whether a network is one of the predefined `none`, `host` and `bridge` (cnm makes them
 * with the `null` and `host` drivers and the default-bridge option).
 */
export function isPredefined(
  net: Pick<NetworkInfo, "driver" | "options"> & { predefined?: boolean },
): boolean {
  return net.predefined === true || net.driver === "null" || net.driver === "host" ||
    net.options["com.docker.network.bridge.default_bridge"] === "true";
}

/** The address without its prefix length. */
const bare = (cidr: string) => cidr.split("/")[0];

/** Builds the NetworkResource of `net`. */
export function networkResource(net: NetworkInfo, ctx: ResourceContext): NetworkResource {
  const containers: Record<string, EndpointResource> = {};
  if (ctx.containers) {
    const names = new Map(ctx.sandboxes.map((s) => [s.id, s.name]));
    const joined = ctx.endpoints
      .filter((e) => e.networkId === net.id && e.state === "joined" && e.sandboxId)
      .sort((a, b) => (a.sandboxId! < b.sandboxId! ? -1 : 1));
    for (const e of joined) {
      containers[e.sandboxId!] = {
        Name: names.get(e.sandboxId!) ?? e.name,
        EndpointID: e.id,
        MacAddress: e.macAddress ?? "",
        IPv4Address: e.ipv4Address ?? "",
        IPv6Address: e.ipv6Address ?? "",
      };
    }
  }
  return {
    Name: net.name,
    Id: net.id,
    Created: rfc3339Nano(net.created),
    Scope: net.scope,
    Driver: net.driver,
    EnableIPv6: net.enableIPv6,
    IPAM: {
      Driver: net.ipam.driver,
      Options: isPredefined(net) ? null : sortedMap(net.ipam.options ?? {})!,
      Config: net.ipam.config.map((c) => ({
        Subnet: c.subnet,
        ...(c.ipRange ? { IPRange: c.ipRange } : {}),
        ...(c.gateway ? { Gateway: bare(c.gateway) } : {}),
        ...(c.auxAddresses && Object.keys(c.auxAddresses).length
          ? {
            AuxiliaryAddresses: sortedMap(
              Object.fromEntries(Object.entries(c.auxAddresses).map(([k, v]) => [k, bare(v)])),
            )!,
          }
          : {}),
      })),
    },
    Internal: net.internal,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: "" },
    ConfigOnly: false,
    Containers: containers,
    Options: sortedMap(net.options)!,
    Labels: sortedMap(net.labels)!,
  };
}

/**
 * Prints resources as `docker network inspect` does: a JSON array indented by four spaces,
 * ending with a newline (`[]` when empty).
 */
export function formatInspect(resources: readonly NetworkResource[]): string {
  return resources.length ? JSON.stringify(resources, null, 4) + "\n" : "[]\n";
}
