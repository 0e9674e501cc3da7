/**
 * The `bridge` driver: a Linux bridge per network carrying the gateway address, a veth
 * pair per joined endpoint (the container end is born inside the sandbox namespace), and
 * nftables rules for masquerade, isolation, ICC and internal networks, and port publishing
 * (`programExternalConnectivity`: held host ports, DNAT, hairpin; see `_publish.ts`).
 *
 * Options (libnetwork's): `com.docker.network.bridge.name` (default `br-<id12>`; an
 * existing device not made by cnm is the user's and survives delete),
 * `com.docker.network.bridge.enable_icc` (true), `com.docker.network.bridge.enable_ip_masquerade`
 * (true), `com.docker.network.driver.mtu` (1500), `com.docker.network.bridge.inhibit_ipv4`
 * (false), `com.docker.network.container_iface_prefix` (`eth`, applied by the controller).
 *
 * Driver configuration (`configureDriver("bridge", …)`, see `config.ts`): the default MTU,
 * IP forwarding, the firewall backend and the default address pools; a network uses the
 * configuration it was created under.
 *
 * Ownership mark: every bridge and host-side veth cnm makes carries the link alias
 * `cnm:<owner>:<kind>:<id12>` (the controller's owner id, `EffectContext.owner`); the
 * firewall marks its rules as described in `_firewall.ts`.
 *
 * @module
 */

import type {
  Driver,
  DriverEndpoint,
  DriverNetwork,
  EffectContext,
  JoinResult,
  PortMapping,
  ValidateNetworkOptions,
} from "../driver.ts";
import { ConflictError, InvalidArgumentError } from "../../src/errors.ts";
import type { LinkInfo } from "../../src/kernel/types.ts";
import { addressOf } from "../../src/ipam/cidr.ts";
import { createFirewall, type Firewall } from "./_firewall.ts";
import { createPublisher } from "./_publish.ts";

export { type ExpectedPublication, inspectPortDrift, type PortFinding } from "./_port_drift.ts";
export type { PublishedRules } from "./_portmap.ts";
import { BRIDGE_NEW_NETWORKS_ONLY, BridgeConfigSchema, bridgeDriverConfigOf } from "./config.ts";

/** Well-known option keys. */
export const BridgeOptions = {
  name: "com.docker.network.bridge.name",
  icc: "com.docker.network.bridge.enable_icc",
  masquerade: "com.docker.network.bridge.enable_ip_masquerade",
  mtu: "com.docker.network.driver.mtu",
  inhibitIPv4: "com.docker.network.bridge.inhibit_ipv4",
  hostBinding: "com.docker.network.bridge.host_binding_ipv4",
  ifacePrefix: "com.docker.network.container_iface_prefix",
  defaultBridge: "com.docker.network.bridge.default_bridge",
} as const;

const known = new Set<string>([
  ...Object.values(BridgeOptions),
  "com.docker.network.enable_ipv6",
  "com.docker.network.internal",
  "com.docker.network.generic",
]);

/** Effects run on journaled networks: what was accepted then is never refused now. */
const EFFECT: ValidateNetworkOptions = { unknownOptions: "accept" };

/** Parsed bridge options of one network. */
export interface BridgeConfig {
  bridge: string;
  icc: boolean;
  masquerade: boolean;
  mtu: number;
  inhibitIPv4: boolean;
}

const bool = (opts: Record<string, string>, key: string, dflt: boolean): boolean => {
  const v = opts[key];
  if (v === undefined || v === "") return dflt;
  // Go's strconv.ParseBool forms (what dockerd accepts: 1, t, true, …) plus yes/no.
  if (/^(true|1|yes|t)$/i.test(v)) return true;
  if (/^(false|0|no|f)$/i.test(v)) return false;
  throw new InvalidArgumentError(`invalid option ${key}: ${JSON.stringify(v)} is not a boolean`);
};

/**
 * Parses and validates a network's bridge options. Unknown `com.docker.network.*` keys are
 * refused unless `how.unknownOptions` is `accept` (the Docker API's mode; effects also parse
 * this way, so a network journaled with such keys is never refused later).
 *
 * @throws {InvalidArgumentError} naming the option.
 */
export function bridgeConfig(
  network: Pick<DriverNetwork, "id" | "options" | "driverConfig">,
  how: ValidateNetworkOptions = {},
): BridgeConfig {
  const o = network.options;
  for (const key of Object.keys(o)) {
    if (how.unknownOptions === "accept") break;
    if (key.startsWith("com.docker.network.") && !known.has(key)) {
      throw new InvalidArgumentError(`invalid option ${key}: not a bridge driver option`);
    }
  }
  const bridge = o[BridgeOptions.name] || `br-${network.id.slice(0, 12)}`;
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) {
    throw new InvalidArgumentError(
      `invalid option ${BridgeOptions.name}: ${
        JSON.stringify(bridge)
      } is not a valid interface name`,
    );
  }
  const mtuText = o[BridgeOptions.mtu];
  const mtu = mtuText === undefined || mtuText === ""
    ? bridgeDriverConfigOf(network).mtu
    : Number(mtuText);
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
    throw new InvalidArgumentError(
      `invalid option ${BridgeOptions.mtu}: ${JSON.stringify(mtuText)} is not an MTU (68-65535)`,
    );
  }
  return {
    bridge,
    icc: bool(o, BridgeOptions.icc, true),
    masquerade: bool(o, BridgeOptions.masquerade, true),
    mtu,
    inhibitIPv4: bool(o, BridgeOptions.inhibitIPv4, false),
  };
}

/**
 * Host-side veth name of an endpoint: `veth` + the first 11 hex digits of its id (Docker uses
 * 7 random ones; 11 — the most IFNAMSIZ allows — makes a clash between endpoints of one host
 * as unlikely as 1 in 2^44 per pair).
 */
export function hostVethName(endpointId: string): string {
  return `veth${endpointId.slice(0, 11)}`;
}

/** The host-side veth of an endpoint: the name journaled when it was created. */
function vethOf(ep: DriverEndpoint): string {
  return typeof ep.facts.hostVeth === "string" ? ep.facts.hostVeth : hostVethName(ep.id);
}

/** The alias that marks a link as made by controller `owner` (no owner: the old mark). */
export function ownershipAlias(kind: "network" | "endpoint", id: string, owner?: string): string {
  return `cnm:${owner ? `${owner}:` : ""}${kind}:${id.slice(0, 12)}`;
}

/** What a link alias written by {@link ownershipAlias} says, or undefined for other aliases. */
export function parseOwnershipAlias(
  alias: string | undefined,
): { kind: "network" | "endpoint"; id12: string; owner?: string } | undefined {
  const m = /^cnm:(?:([a-z0-9]{1,16}):)?(network|endpoint):([^:]+)$/.exec(alias ?? "");
  if (!m) return undefined;
  return { kind: m[2] as "network" | "endpoint", id12: m[3], ...(m[1] ? { owner: m[1] } : {}) };
}

/** Options of {@link createBridgeDriver}. */
export interface BridgeDriverOptions {
  /** nftables table name. Default `cnm`. */
  table?: string;
}

/** Creates the bridge driver. */
export function createBridgeDriver(options: BridgeDriverOptions = {}): Driver {
  let firewall: Firewall | undefined;
  const fw = (ctx: EffectContext): Firewall =>
    firewall ??= createFirewall({
      exec: (argv, o) => ctx.kernel.exec(argv, o),
      table: options.table,
    });
  const publisher = createPublisher({
    firewall: () => {
      if (!firewall) throw new Error("bridge: firewall used before any effect");
      return firewall;
    },
  });
  const target = (net: DriverNetwork, ep: DriverEndpoint, mappings: PortMapping[]) => ({
    networkId: net.id,
    internal: net.internal,
    bridge: bridgeConfig(net).bridge,
    endpointId: ep.id,
    hostVeth: vethOf(ep),
    ...(ep.ipv4Address ? { ipv4Address: ep.ipv4Address } : {}),
    ...(ep.ipv6Address ? { ipv6Address: ep.ipv6Address } : {}),
    mappings,
  });
  /** Leave and delete never leave a published port behind, even if revoke was not called. */
  const unpublish = async (net: DriverNetwork, ep: DriverEndpoint, ctx: EffectContext) => {
    if (publisher.has(ep.id)) {
      fw(ctx);
      await publisher.revoke(ctx.kernel, target(net, ep, []));
    }
  };
  const gateways = (net: DriverNetwork, cfg: BridgeConfig): string[] => [
    ...(cfg.inhibitIPv4 ? [] : net.ipv4.flatMap((d) => (d.gateway ? [d.gateway] : []))),
    ...net.ipv6.flatMap((d) => (d.gateway ? [d.gateway] : [])),
  ];

  return {
    name: "bridge",
    capabilities: () => ({ dataScope: "local", connectivityScope: "local" }),
    configSchema: BridgeConfigSchema,
    configNewNetworksOnly: BRIDGE_NEW_NETWORKS_ONLY,
    validateNetwork(network, how) {
      bridgeConfig(network, how);
    },

    async createNetwork(net, ctx) {
      const cfg = bridgeConfig(net, EFFECT);
      const existing = (await ctx.kernel.listLinks()).find((l) => l.name === cfg.bridge);
      const alias = ownershipAlias("network", net.id, ctx.owner);
      // A device that exists and is not marked as ours is the user's: use it, never delete it.
      // A default name (`br-<id12>`) is always ours: a crash between creating the bridge and
      // marking it must not turn it into the user's.
      const explicit = Boolean(net.options[BridgeOptions.name]);
      const mark = parseOwnershipAlias(existing?.alias);
      const ours = existing !== undefined && isMarkedFor(existing, net.id, ctx.owner);
      const userOwned = explicit && existing !== undefined && !ours;
      // What this create made (or began making), journaled with a failure so that deleting
      // the failed network undoes exactly that.
      const made: Record<string, string>[] = [];
      const record = () => ctx.partial?.({ bridge: cfg.bridge, userOwned, made: [...made] });
      record();
      if (existing && existing.kind !== "bridge") {
        throw new InvalidArgumentError(
          `invalid option ${BridgeOptions.name}: ${cfg.bridge} exists and is not a bridge`,
        );
      }
      if (existing && mark && !ours) {
        throw new ConflictError(
          `invalid option ${BridgeOptions.name}: bridge ${cfg.bridge} belongs to ${mark.kind} ` +
            `${mark.id12}${mark.owner ? ` of controller ${mark.owner}` : ""}`,
        );
      }
      if (!existing) made.push({ link: cfg.bridge });
      if (userOwned) {
        const had = new Set(
          (await ctx.kernel.listAddrs()).filter((a) => a.link === cfg.bridge).map((a) => a.address),
        );
        for (const a of gateways(net, cfg)) {
          if (!had.has(a)) made.push({ address: a, link: cfg.bridge });
        }
      }
      record();
      await ctx.kernel.ensureBridge({
        name: cfg.bridge,
        mtu: cfg.mtu,
        addresses: gateways(net, cfg),
        ...(userOwned ? {} : { alias }),
      });
      const driverConfig = bridgeDriverConfigOf(net);
      if (driverConfig.enableIPForwarding) {
        await ctx.kernel.exec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        if (net.enableIPv6) {
          await ctx.kernel.exec(["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
        }
      }
      if (driverConfig.firewallBackend === "nftables") {
        await fw(ctx).ensureBase();
        await fw(ctx).ensureNetwork({
          id: net.id,
          bridge: cfg.bridge,
          subnets: [...net.ipv4, ...net.ipv6].map((d) => d.pool),
          internal: net.internal,
          icc: cfg.icc,
          masquerade: cfg.masquerade && !net.internal,
          ...(ctx.owner ? { owner: ctx.owner } : {}),
        });
      }
      return { bridge: cfg.bridge, mtu: cfg.mtu, userOwned };
    },

    async deleteNetwork(net, ctx) {
      const cfg = bridgeConfig(net, EFFECT);
      const name = typeof net.facts.bridge === "string" ? net.facts.bridge : cfg.bridge;
      const errors: unknown[] = [];
      for (const ep of publisher.endpointsOf(net.id)) {
        await publisher.revoke(ctx.kernel, { networkId: net.id, ...ep, mappings: [] })
          .catch((e) => errors.push(e));
      }
      if (bridgeDriverConfigOf(net).firewallBackend === "nftables") {
        await fw(ctx).removeNetwork(net.id).catch((e) => errors.push(e));
      }
      const link = (await ctx.kernel.listLinks()).find((l) => l.name === name);
      // Only a device carrying this network's mark is deleted (or an unmarked one under the
      // default name, see createNetwork); anything else is the user's (or another
      // controller's), and gets back only the addresses we added.
      const defaultName = !net.options[BridgeOptions.name] && name === `br-${net.id.slice(0, 12)}`;
      if (link && (isMarkedFor(link, net.id, ctx.owner) || (defaultName && !link.alias))) {
        await ctx.kernel.deleteLink(name).catch((e) => errors.push(e));
      } else if (link) {
        // A failed create says what it added; an active network on a user's device added
        // its gateways.
        const made = Array.isArray(net.facts.made)
          ? (net.facts.made as Record<string, string>[]).filter((m) => m.link === name)
          : undefined;
        const mine = new Set(
          made
            ? made.flatMap((m) => m.address ? [m.address] : [])
            : net.facts.userOwned
            ? gateways(net, cfg)
            : [],
        );
        const addrs = (await ctx.kernel.listAddrs()).filter((a) => a.link === name);
        for (const a of addrs.filter((a) => mine.has(a.address))) {
          await ctx.kernel.exec(["ip", "addr", "del", a.address, "dev", name]).catch((e) =>
            errors.push(e)
          );
        }
      }
      if (errors.length) throw new AggregateError(errors, `deleting bridge network ${net.id}`);
    },

    createEndpoint(net, ep) {
      // Nothing to do in the kernel yet: the veth is made at join, directly in the sandbox.
      const cfg = bridgeConfig(net, EFFECT);
      return Promise.resolve({ hostVeth: hostVethName(ep.id), mtu: cfg.mtu });
    },

    async deleteEndpoint(net, ep, ctx) {
      await unpublish(net, ep, ctx);
      await ctx.kernel.deleteLink(vethOf(ep));
    },

    async join(net, ep, sandbox, ctx): Promise<JoinResult> {
      const cfg = bridgeConfig(net, EFFECT);
      const addresses = addressesOf(ep);
      await ctx.kernel.ensureVeth({
        hostName: vethOf(ep),
        master: cfg.bridge,
        mtu: cfg.mtu,
        netns: sandbox.key,
        peerName: sandbox.ifname,
        ...(ep.macAddress ? { peerMac: ep.macAddress } : {}),
        addresses,
        alias: ownershipAlias("endpoint", ep.id, ctx.owner),
      });
      const gw4 = net.ipv4[0]?.gateway;
      const gw6 = net.ipv6[0]?.gateway;
      // Internal networks give no gateway: nothing leaves the subnet.
      if (net.internal) return { disableGatewayService: true };
      return {
        ...(gw4 && ep.ipv4Address && !cfg.inhibitIPv4 ? { gateway: addressOf(gw4) } : {}),
        ...(gw6 && ep.ipv6Address ? { gatewayIPv6: addressOf(gw6) } : {}),
      };
    },

    async leave(net, ep, _sandbox, ctx) {
      await unpublish(net, ep, ctx);
      await ctx.kernel.deleteLink(vethOf(ep));
    },

    async programExternalConnectivity(net, ep, mappings, ctx) {
      fw(ctx);
      const ports = await publisher.program(ctx.kernel, target(net, ep, mappings));
      return { ports };
    },

    async revokeExternalConnectivity(net, ep, mappings, ctx) {
      fw(ctx);
      await publisher.revoke(ctx.kernel, target(net, ep, mappings));
    },
  };
}

/** Whether a link carries the mark of network `id` made by `owner` (or an old mark of it). */
function isMarkedFor(link: LinkInfo, id: string, owner: string | undefined): boolean {
  const mark = parseOwnershipAlias(link.alias);
  return mark?.kind === "network" && mark.id12 === id.slice(0, 12) &&
    (mark.owner === undefined || mark.owner === owner);
}

function addressesOf(ep: DriverEndpoint): string[] {
  return [ep.ipv4Address, ep.ipv6Address].filter((a): a is string => !!a);
}
