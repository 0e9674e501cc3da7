/**
 * `POST /networks/{id}/connect` and `/disconnect`. A Docker container is a cnm sandbox:
 * connect creates an endpoint named after the sandbox in the network and joins it (the
 * endpoint is deleted again when the join fails); disconnect leaves and deletes the
 * sandbox's endpoints in the network (`Force` deletes even when the leave fails).
 *
 * From `EndpointConfig` cnm uses `IPAMConfig.IPv4Address`/`IPv6Address`, `MacAddress` (in
 * any form Go's `net.ParseMAC` reads), `DriverOpts` (the endpoint's options: journaled and
 * handed to its driver, as dockerd hands them over — a remote plugin gets them as
 * `CreateEndpoint`'s `Options`, the bridge ignores them) and `Aliases` (the endpoint's
 * `aliases`: names the embedded DNS resolver answers on the network); everything else CLI 28
 * sends (`Links`, `GwPriority`, `DNSNames`, …) is ignored, as dockerd 20.10 ignores it.
 *
 * @module
 */

import { DockerApiError } from "./_errors.ts";
import { readJsonBody, type Reply, type RequestContext } from "./_http.ts";
import { ipFamily } from "./_ipam_check.ts";
import { decodeStruct, F } from "./_json.ts";
import { dockerMac } from "./_mac.ts";
import { type DockerBackend, findNetwork, findSandbox } from "./_lookup.ts";
import { isPredefined } from "./network_resource.ts";
import type { NetworkInfo } from "../../info.ts";

const ConnectRequest = F.struct("types.NetworkConnect", {
  Container: F.string,
  EndpointConfig: F.struct("network.EndpointSettings", {
    IPAMConfig: F.struct("network.EndpointIPAMConfig", {
      IPv4Address: F.string,
      IPv6Address: F.string,
    }),
    Aliases: F.strings,
    MacAddress: F.string,
    DriverOpts: F.map,
  }),
});

const DisconnectRequest = F.struct("types.NetworkDisconnect", {
  Container: F.string,
  Force: F.bool,
});

interface ConnectBody {
  Container?: string;
  EndpointConfig?: {
    IPAMConfig?: { IPv4Address?: string; IPv6Address?: string };
    Aliases?: string[];
    MacAddress?: string;
    DriverOpts?: Record<string, string>;
  };
}

/**
 * dockerd's checks of an endpoint config against its network (`validateNetworkingConfig`,
 * made before any other): static addresses and aliases only on user-defined networks, and a
 * static address only in a family the network has a subnet of.
 *
 * @throws {DockerApiError} 400 with dockerd's (runconfig's) messages.
 */
function checkNetworkingConfig(
  net: NetworkInfo,
  v4: string | undefined,
  v6: string | undefined,
  aliases: readonly string[],
): void {
  if (isPredefined(net)) {
    if (v4 || v6) {
      throw new DockerApiError(
        400,
        "user specified IP address is supported on user defined networks only",
      );
    }
    if (aliases.length) {
      throw new DockerApiError(
        400,
        "network-scoped alias is supported only for containers in user defined networks",
      );
    }
  }
  // cnm does not record which subnets the user chose (README): a family with any subnet
  // takes a static address; one with none is refused as dockerd refuses it.
  const families = new Set(net.ipam.config.map((c) => ipFamily(c.subnet.split("/")[0])));
  if ((v4 && !families.has(4)) || (v6 && !families.has(6))) {
    throw new DockerApiError(
      400,
      "user specified IP address is supported only when connecting to networks with user configured subnets",
    );
  }
}

/** Handles `POST /networks/{id}/connect`. */
export async function connect(backend: DockerBackend, ctx: RequestContext): Promise<Reply> {
  const body = decodeStruct(await readJsonBody(ctx.req), ConnectRequest) as ConnectBody;
  const sb = findSandbox(backend.sandboxes(), body.Container ?? "");
  const net = findNetwork(backend.networks(), ctx.params.id, "other");
  const cfg = body.EndpointConfig ?? {};
  const v4 = cfg.IPAMConfig?.IPv4Address || undefined;
  const v6 = cfg.IPAMConfig?.IPv6Address || undefined;
  const aliases = cfg.Aliases ?? [];
  checkNetworkingConfig(net, v4, v6, aliases);
  if (net.driver === "host") {
    throw new DockerApiError(
      400,
      "container cannot be disconnected from host network or connected to host network",
    );
  }
  const mine = backend.endpoints().filter((e) => e.sandboxId === sb.id);
  const noneIds = new Set(backend.networks().filter((n) => n.driver === "null").map((n) => n.id));
  if (mine.length && (net.driver === "null" || mine.some((e) => noneIds.has(e.networkId)))) {
    throw new DockerApiError(
      400,
      "container cannot be connected to multiple networks with one of the networks in private (none) mode",
    );
  }
  if (mine.some((e) => e.networkId === net.id)) {
    throw new DockerApiError(
      403,
      `endpoint with name ${sb.name} already exists in network ${net.name}`,
    );
  }
  if (v4 && ipFamily(v4) !== 4) throw new DockerApiError(400, `Invalid IPv4 address: ${v4}`);
  if (v6 && ipFamily(v6) !== 6) throw new DockerApiError(400, `Invalid IPv6 address: ${v6}`);
  const mac = cfg.MacAddress ? dockerMac(cfg.MacAddress) : undefined;
  const ep = await backend.createEndpoint(net.id, {
    name: sb.name,
    options: cfg.DriverOpts ?? {},
    ...(aliases.length ? { aliases } : {}),
    ...(v4 ? { ipv4Address: v4 } : {}),
    ...(v6 ? { ipv6Address: v6 } : {}),
    ...(mac ? { macAddress: mac } : {}),
  });
  try {
    await backend.join(ep.id, sb.id);
  } catch (err) {
    await backend.deleteEndpoint(ep.id, { force: true }).catch(() => {});
    throw err;
  }
  return { empty: true };
}

/** Handles `POST /networks/{id}/disconnect`. */
export async function disconnect(backend: DockerBackend, ctx: RequestContext): Promise<Reply> {
  const body = decodeStruct(await readJsonBody(ctx.req), DisconnectRequest) as {
    Container?: string;
    Force?: boolean;
  };
  const sb = findSandbox(backend.sandboxes(), body.Container ?? "");
  const net = findNetwork(backend.networks(), ctx.params.id, "other");
  const eps = backend.endpoints({ network: net.id }).filter((e) => e.sandboxId === sb.id);
  if (!eps.length) {
    throw new DockerApiError(400, `container ${sb.id} is not connected to network ${net.name}`);
  }
  const force = body.Force ?? false;
  for (const e of eps) {
    if (e.state === "joined") {
      try {
        await backend.leave(e.id, sb.id);
      } catch (err) {
        if (!force) throw err;
      }
    }
    await backend.deleteEndpoint(e.id, { force });
  }
  return { empty: true };
}
