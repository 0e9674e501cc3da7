/**
 * The remote network and IPAM drivers over one activated plugin: each CNM call is one plugin
 * call, answers validated and turned into facts. (Public through `mod.ts`; the resolver builds
 * on these, so they live apart from `mod.ts`, which only re-exports.)
 *
 * @module
 */

import { z } from "zod";
import type {
  Driver,
  DriverCapabilities,
  DriverEndpoint,
  DriverNetwork,
  IpamData,
  IpamDriver,
  JoinResult,
} from "../driver.ts";
import { DriverError, NotFoundError } from "../../src/errors.ts";
import { parseIp } from "../../src/ipam/cidr.ts";
import { macProblem } from "../../src/mac.ts";
import { libnetworkPortOptions } from "../../src/ports/binding.ts";
import {
  Empty,
  NotImplementedError,
  type PluginClient,
  type PluginClientOptions,
} from "./_client.ts";
import { cidr, remoteIpamDriver } from "./_ipam.ts";
import { remoteConfigSchema, type RemoteDriverConfig } from "./config.ts";
import { attachToSandbox, detachFromSandbox } from "./_sandbox.ts";
import {
  type ActivatedPlugin,
  activatePlugin,
  type DiscoverOptions,
  discoverPlugin,
} from "./discovery.ts";

/** Options of {@link createRemoteDriver} and {@link createRemoteIpamDriver}. */
export interface RemoteDriverOptions extends DiscoverOptions, PluginClientOptions {
  /** An already activated plugin (its client is shared); default: discover and activate. */
  plugin?: ActivatedPlugin;
}

/** A remote network driver; adds the optional EndpointOperInfo call. */
export interface RemoteDriver extends Driver {
  /** `NetworkDriver.EndpointOperInfo` → its `Value`; `{}` when not implemented. */
  endpointOperInfo(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
  ): Promise<Record<string, unknown>>;
  /** Closes the plugin client this driver opened (not one given in `options.plugin`). */
  close(): void;
}

/** A remote IPAM driver. */
export interface RemoteIpamDriver extends IpamDriver {
  /** Closes the plugin client this driver opened (not one given in `options.plugin`). */
  close(): void;
}

const scope = z.enum(["local", "global"]);
const Capabilities = z.looseObject({
  Scope: scope,
  ConnectivityScope: z.union([scope, z.literal("")]).nullish(),
});
const ip = () =>
  z.string().refine((s) => {
    try {
      parseIp(s);
      return true;
    } catch {
      return false;
    }
  }, { message: "expected an IP address" });
/** A Linux interface name (IFNAMSIZ), nothing `ip` could read as another word or line. */
const ifname = (max: number) =>
  z.string().regex(
    new RegExp(`^[^\\s/:]{1,${max}}$`),
    `expected an interface name (1-${max} characters)`,
  );
const optional = <T extends z.ZodType>(t: T) => z.union([z.literal(""), t]).nullish();
const mac = z.string().regex(/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/, "expected a MAC address");
const CreateEndpoint = z.looseObject({
  Interface: z.looseObject({
    Address: optional(cidr()),
    AddressIPv6: optional(cidr()),
    MacAddress: optional(mac),
  }).nullish(),
});
const Join = z.looseObject({
  InterfaceName: z.looseObject({
    SrcName: ifname(15),
    DstPrefix: z.union([z.literal(""), ifname(13)]).nullish().transform((v) => v ?? ""),
    DstName: z.union([z.literal(""), ifname(15)]).nullish().transform((v) => v ?? ""),
  }).nullish(),
  Gateway: optional(ip()),
  GatewayIPv6: optional(ip()),
  StaticRoutes: z.array(z.looseObject({
    Destination: cidr(),
    RouteType: z.union([z.literal(0), z.literal(1)]),
    NextHop: optional(ip()),
  })).nullish(),
  DisableGatewayService: z.boolean().nullish(),
});
const OperInfo = z.looseObject({ Value: z.record(z.string(), z.unknown()).nullish() });

/** libnetwork's IPAMData on the wire: Gateway and AuxAddresses are CIDRs. */
function ipamData(d: IpamData): Record<string, unknown> {
  return {
    AddressSpace: d.addressSpace,
    Pool: d.pool,
    ...(d.gateway ? { Gateway: d.gateway } : {}),
    AuxAddresses: d.auxAddresses,
  };
}

/** CreateNetwork's `Options`: the `-o` map under `com.docker.network.generic`, as Docker. */
function networkOptions(n: DriverNetwork): Record<string, unknown> {
  return {
    "com.docker.network.generic": n.options,
    "com.docker.network.enable_ipv6": n.enableIPv6,
    ...(n.internal ? { "com.docker.network.internal": true } : {}),
  };
}

/**
 * CreateEndpoint's `Options`: the endpoint's options and, when it asked for any, the port
 * bindings as asked and its exposed ports (libnetwork's `CreateOptionPortMapping` /
 * `CreateOptionExposedPorts`, which Docker's daemon always passes together).
 */
function endpointOptions(e: DriverEndpoint): Record<string, unknown> {
  if (!e.portBindings?.length && !e.exposedPorts?.length) return e.options;
  return { ...e.options, ...libnetworkPortOptions(e.portBindings ?? [], e.exposedPorts ?? []) };
}

async function ignoreNotImplemented(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof NotImplementedError)) throw err;
  }
}

/**
 * Facts of CreateEndpoint: the addresses and MAC the plugin decided, if any. A MAC no
 * interface can have (multicast, broadcast, zero) is refused as the user's is at create.
 */
function endpointFacts(
  plugin: string,
  endpoint: DriverEndpoint,
  answer: z.infer<typeof CreateEndpoint>["Interface"],
): Record<string, string> {
  const facts: Record<string, string> = {};
  const pairs = [
    ["Address", "ipv4Address", endpoint.ipv4Address],
    ["AddressIPv6", "ipv6Address", endpoint.ipv6Address],
    ["MacAddress", "macAddress", endpoint.macAddress],
  ] as const;
  for (const [field, fact, given] of pairs) {
    const value = answer?.[field];
    if (!value) continue;
    if (given && given.toLowerCase() !== value.toLowerCase()) {
      // Docker refuses to let a plugin change what the controller already decided.
      throw new DriverError(
        `remote: NetworkDriver.CreateEndpoint: plugin answered Interface.${field} ${value}` +
          ` but ${given} was given`,
      );
    }
    const problem = field === "MacAddress" && !given ? macProblem(value) : undefined;
    if (problem) {
      throw new DriverError(
        `remote: NetworkDriver.CreateEndpoint: plugin ${JSON.stringify(plugin)} answered an ` +
          `unusable Interface.MacAddress: ${problem}`,
      );
    }
    if (!given) facts[fact] = value;
  }
  return facts;
}

function fact(endpoint: DriverEndpoint, key: string): string | undefined {
  const v = endpoint.facts[key];
  return typeof v === "string" && v ? v : undefined;
}

function networkDriver(
  name: string,
  client: PluginClient,
  caps: DriverCapabilities,
  close: () => void,
  defaults: PluginClientOptions,
): RemoteDriver {
  const call = <S extends z.ZodType>(method: string, body: unknown, schema: S) =>
    client.call(`NetworkDriver.${method}`, body, schema, "Err");
  const ids = (n: DriverNetwork, e: DriverEndpoint) => ({ NetworkID: n.id, EndpointID: e.id });
  const driver: RemoteDriver = {
    name,
    choosesMac: true,
    close,
    capabilities: () => caps,
    // cnm's side of the plugin connection; the protocol has no call to configure the plugin.
    configSchema: remoteConfigSchema(defaults),
    configure(config) {
      const c = config as RemoteDriverConfig;
      client.configure({ callTimeout: c.callTimeoutMs, retryTimeout: c.retryTimeoutMs });
    },
    async createNetwork(network) {
      await call("CreateNetwork", {
        NetworkID: network.id,
        Options: networkOptions(network),
        IPv4Data: network.ipv4.map(ipamData),
        IPv6Data: network.ipv6.map(ipamData),
      }, Empty);
      return {};
    },
    async deleteNetwork(network) {
      await call("DeleteNetwork", { NetworkID: network.id }, Empty);
    },
    async createEndpoint(network, endpoint) {
      const res = await call("CreateEndpoint", {
        ...ids(network, endpoint),
        Options: endpointOptions(endpoint),
        Interface: {
          Address: endpoint.ipv4Address ?? "",
          AddressIPv6: endpoint.ipv6Address ?? "",
          MacAddress: endpoint.macAddress ?? "",
        },
      }, CreateEndpoint);
      try {
        return endpointFacts(name, endpoint, res.Interface);
      } catch (err) {
        // libnetwork's errorWithRollback: the plugin made an endpoint cnm will not use.
        await call("DeleteEndpoint", ids(network, endpoint), Empty).catch(() => {});
        throw err;
      }
    },
    async deleteEndpoint(network, endpoint) {
      await call("DeleteEndpoint", ids(network, endpoint), Empty);
    },
    async join(network, endpoint, sandbox, ctx) {
      const res = await call("Join", {
        ...ids(network, endpoint),
        SandboxKey: sandbox.key,
        Options: sandbox.labels,
      }, Join);
      const result: JoinResult = {
        ...(res.Gateway ? { gateway: res.Gateway } : {}),
        ...(res.GatewayIPv6 ? { gatewayIPv6: res.GatewayIPv6 } : {}),
        staticRoutes: (res.StaticRoutes ?? []).map((r) => ({
          destination: r.Destination,
          routeType: r.RouteType,
          ...(r.NextHop ? { nextHop: r.NextHop } : {}),
        })),
        disableGatewayService: res.DisableGatewayService ?? false,
      };
      const iface = res.InterfaceName;
      try {
        if (iface) {
          result.srcName = iface.SrcName;
          result.ifname = await attachToSandbox(ctx, endpoint.id, sandbox, {
            srcName: iface.SrcName,
            dstPrefix: iface.DstPrefix,
            dstName: iface.DstName,
          }, {
            macAddress: endpoint.macAddress ?? fact(endpoint, "macAddress"),
            ipv4Address: endpoint.ipv4Address ?? fact(endpoint, "ipv4Address"),
            ipv6Address: endpoint.ipv6Address ?? fact(endpoint, "ipv6Address"),
            gateway: result.gateway,
            gatewayIPv6: result.gatewayIPv6,
            staticRoutes: result.staticRoutes ?? [],
          });
        }
      } catch (err) {
        // Roll back so a failed join leaves nothing half-made; report the first failure.
        await driver.leave(network, endpoint, sandbox, ctx).catch(() => {});
        throw err;
      }
      return result;
    },
    async leave(network, endpoint, sandbox, ctx) {
      const errors: unknown[] = [];
      const step = async (f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (err) {
          errors.push(err);
        }
      };
      await step(() => call("Leave", ids(network, endpoint), Empty));
      await step(() => detachFromSandbox(ctx, endpoint.id, sandbox));
      if (errors.length === 1) throw errors[0];
      if (errors.length) {
        throw new AggregateError(
          errors,
          `remote: leave of endpoint ${endpoint.id}: ${errors.length} failures`,
        );
      }
    },
    // Only on the sandbox's gateway endpoint, as libnetwork (the controller follows the
    // gateway): the sandbox's labels with its bindings as asked; the plugin publishes.
    async programGatewayConnectivity(network, endpoint, request) {
      await ignoreNotImplemented(call("ProgramExternalConnectivity", {
        ...ids(network, endpoint),
        Options: {
          ...request.labels,
          ...libnetworkPortOptions(request.portBindings, request.exposedPorts),
        },
      }, Empty));
    },
    async revokeGatewayConnectivity(network, endpoint) {
      await ignoreNotImplemented(
        call("RevokeExternalConnectivity", ids(network, endpoint), Empty),
      );
    },
    async endpointOperInfo(network, endpoint) {
      try {
        return (await call("EndpointOperInfo", ids(network, endpoint), OperInfo)).Value ?? {};
      } catch (err) {
        if (err instanceof NotImplementedError) return {};
        throw err;
      }
    },
  };
  return driver;
}

async function pluginFor(
  name: string,
  iface: string,
  options: RemoteDriverOptions,
): Promise<ActivatedPlugin> {
  let plugin = options.plugin;
  if (!plugin) {
    const found = await discoverPlugin(name, options);
    if (!found) throw new NotFoundError(`plugin "${name}" not found`);
    plugin = await activatePlugin(found, options);
  }
  if (!plugin.implements.includes(iface)) {
    if (!options.plugin) plugin.client.close();
    throw new NotFoundError(`plugin "${name}" does not implement ${iface}`);
  }
  return plugin;
}

/**
 * Creates the network driver of plugin `name`: discovers and activates it (unless
 * `options.plugin` is given) and reads its capabilities (`NetworkDriver.GetCapabilities`).
 *
 * @throws {NotFoundError} when no plugin `name` exists or it does not implement NetworkDriver.
 * @throws {DriverError} when the plugin is unreachable or answers badly.
 */
export async function createRemoteDriver(
  name: string,
  options: RemoteDriverOptions = {},
): Promise<RemoteDriver> {
  const plugin = await pluginFor(name, "NetworkDriver", options);
  try {
    const c = await plugin.client.call("NetworkDriver.GetCapabilities", {}, Capabilities, "Err");
    const caps: DriverCapabilities = {
      dataScope: c.Scope,
      connectivityScope: c.ConnectivityScope || c.Scope,
    };
    return networkDriver(name, plugin.client, caps, closer(plugin, options), options);
  } catch (err) {
    if (!options.plugin) plugin.client.close();
    throw err;
  }
}

/**
 * Creates the IPAM driver of plugin `name` (discovered and activated unless `options.plugin`).
 *
 * @throws {NotFoundError} when no plugin `name` exists or it does not implement IpamDriver.
 */
export async function createRemoteIpamDriver(
  name: string,
  options: RemoteDriverOptions = {},
): Promise<RemoteIpamDriver> {
  const plugin = await pluginFor(name, "IpamDriver", options);
  return { ...remoteIpamDriver(name, plugin.client), close: closer(plugin, options) };
}

function closer(plugin: ActivatedPlugin, options: RemoteDriverOptions): () => void {
  return options.plugin ? () => {} : () => plugin.client.close();
}
