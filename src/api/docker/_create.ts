/**
 * `POST /networks/create`: Docker's `NetworkCreateRequest` decoded as dockerd decodes it,
 * checked in dockerd's order (predefined name, duplicate, scope, IPAM, bridge options) with
 * its messages, then handed to the controller with unknown options accepted (dockerd keeps
 * and echoes them).
 *
 * @module
 */

import { DockerApiError } from "./_errors.ts";
import { readJsonBody, type Reply, type RequestContext } from "./_http.ts";
import { type IpamConfigRequest, validateIpam } from "./_ipam_check.ts";
import { decodeStruct, F } from "./_json.ts";
import type { DockerBackend } from "./_lookup.ts";
import type { NetworkInfo } from "../../info.ts";

const IpamConfig = F.struct("network.IPAMConfig", {
  Subnet: F.string,
  IPRange: F.string,
  Gateway: F.string,
  AuxiliaryAddresses: F.map,
});

/** The fields of NetworkCreateRequest cnm reads; others (EnableIPv4, …) are ignored. */
const CreateRequest = F.struct("types.NetworkCreateRequest", {
  Name: F.string,
  CheckDuplicate: F.bool,
  Driver: F.string,
  Scope: F.string,
  EnableIPv6: F.bool,
  IPAM: F.struct("network.IPAM", {
    Driver: F.string,
    Options: F.map,
    Config: F.structs("[]network.IPAMConfig", IpamConfig),
  }),
  Internal: F.bool,
  Attachable: F.bool,
  Ingress: F.bool,
  ConfigOnly: F.bool,
  ConfigFrom: F.struct("network.ConfigReference", { Network: F.string }),
  Options: F.map,
  Labels: F.map,
});

interface CreateBody {
  Name?: string;
  Driver?: string;
  Scope?: string;
  EnableIPv6?: boolean;
  IPAM?: { Driver?: string; Options?: Record<string, string>; Config?: IpamConfigRequest[] };
  Internal?: boolean;
  Attachable?: boolean;
  Ingress?: boolean;
  ConfigOnly?: boolean;
  ConfigFrom?: { Network?: string };
  Options?: Record<string, string>;
  Labels?: Record<string, string>;
}

/** Names dockerd reserves (`runconfig.IsPreDefinedNetwork`). */
const PREDEFINED_NAMES = new Set(["bridge", "host", "none", "default", "ingress"]);

/** Go's `strconv.ParseBool` forms. */
const GO_BOOL = /^(1|t|T|TRUE|true|True|0|f|F|FALSE|false|False)$/;
const BRIDGE_BOOLS = [
  "com.docker.network.bridge.enable_icc",
  "com.docker.network.bridge.enable_ip_masquerade",
  "com.docker.network.bridge.inhibit_ipv4",
];
const MTU = "com.docker.network.driver.mtu";

/** dockerd's parse errors for the bridge options it reads (400 here; 20.10 said 500). */
function checkBridgeOptions(options: Record<string, string>): void {
  if (MTU in options && !/^[+-]?\d+$/.test(options[MTU])) {
    const v = options[MTU];
    throw new DockerApiError(
      400,
      `failed to parse ${MTU} value: ${v} (strconv.Atoi: parsing ${
        JSON.stringify(v)
      }: invalid syntax)`,
    );
  }
  for (const key of BRIDGE_BOOLS) {
    if (key in options && !GO_BOOL.test(options[key])) {
      const v = options[key];
      throw new DockerApiError(
        400,
        `failed to parse ${key} value: ${v} (strconv.ParseBool: parsing ${
          JSON.stringify(v)
        }: invalid syntax)`,
      );
    }
  }
}

/** The network already using the bridge device a create asks for, if any. */
function bridgeNameClash(
  networks: readonly NetworkInfo[],
  options: Record<string, string>,
): { id: string; bridge: string } | undefined {
  const wanted = options["com.docker.network.bridge.name"];
  if (!wanted) return undefined;
  const other = networks.find((n) =>
    n.driver === "bridge" &&
    (n.driverInfo.bridge ?? n.options["com.docker.network.bridge.name"]) === wanted
  );
  return other ? { id: other.id, bridge: wanted } : undefined;
}

/** Handles `POST /networks/create`. */
export async function createNetwork(backend: DockerBackend, ctx: RequestContext): Promise<Reply> {
  const body = decodeStruct(await readJsonBody(ctx.req), CreateRequest) as CreateBody;
  const name = body.Name ?? "";
  if (name === "") throw new DockerApiError(400, "invalid name: ");
  if (PREDEFINED_NAMES.has(name)) {
    throw new DockerApiError(403, `operation is not permitted on predefined ${name} network `);
  }
  const networks = backend.networks();
  // Duplicates are refused whatever CheckDuplicate says (dockerd 1.44+; 20.10 allowed them).
  if (networks.some((n) => n.name === name)) {
    throw new DockerApiError(409, `network with name ${name} already exists`);
  }
  if (body.Scope === "swarm" || body.Ingress) {
    throw new DockerApiError(
      403,
      body.Ingress
        ? "cannot create an ingress network when swarm is not active"
        : "cannot create a swarm scoped network when swarm is not active",
    );
  }
  if (body.Scope && body.Scope !== "local") {
    throw new DockerApiError(
      400,
      `invalid scope ${JSON.stringify(body.Scope)}: cnm networks are local`,
    );
  }
  if (body.ConfigOnly || body.ConfigFrom?.Network) {
    throw new DockerApiError(
      400,
      "config-only networks (ConfigOnly, ConfigFrom) are not supported by cnm",
    );
  }
  const driver = body.Driver || "bridge";
  const config = body.IPAM?.Config ?? [];
  const enableIPv6 = body.EnableIPv6 ?? false;
  validateIpam(config, enableIPv6);
  const options = body.Options ?? {};
  if (driver === "bridge") {
    const v4 = config.filter((c) => !(c.Subnet ?? "").includes(":"));
    if (v4.length > 1) {
      throw new DockerApiError(403, "bridge driver doesn't support multiple subnets");
    }
    checkBridgeOptions(options);
    const clash = bridgeNameClash(networks, options);
    if (clash) {
      throw new DockerApiError(
        403,
        `cannot create network (${clash.bridge}): conflicts with network ${clash.id} ` +
          `(${clash.bridge}): networks have same bridge name`,
      );
    }
  }
  const info = await backend.createNetwork({
    name,
    driver,
    options,
    labels: body.Labels ?? {},
    internal: body.Internal ?? false,
    enableIPv6,
    ...(body.IPAM
      ? {
        ipam: {
          driver: body.IPAM.Driver || "default",
          options: body.IPAM.Options ?? {},
          config: config.map((c) => ({
            subnet: c.Subnet!,
            ...(c.IPRange ? { ipRange: c.IPRange } : {}),
            ...(c.Gateway ? { gateway: c.Gateway } : {}),
            ...(c.AuxiliaryAddresses && Object.keys(c.AuxiliaryAddresses).length
              ? { auxAddresses: c.AuxiliaryAddresses }
              : {}),
          })),
        },
      }
      : {}),
  }, { unknownOptions: "accept" });
  return { json: { Id: info.id, Warning: "" }, status: 201 };
}
