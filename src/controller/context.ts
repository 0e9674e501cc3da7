/**
 * What the controller's command, recovery and reconcile functions share: the runtime, the
 * kernel, the default IPAM, the drivers and their configurations, the sandbox programmer and
 * the settings. Plain data
 * passed to plain functions, built once by `createController`.
 *
 * @module
 */

import type { Firewall } from "../../drivers/bridge/_firewall.ts";
import type { Kernel } from "../kernel/types.ts";
import type { Ipam } from "../ipam/mod.ts";
import type { Claims } from "./claims.ts";
import type { DriverConfig } from "../../drivers/driver.ts";
import type { DriverRegistry } from "./drivers.ts";
import type { EffectEnv } from "./effects.ts";
import { networkContext, sandboxContext } from "./objects.ts";
import type { Runtime } from "./runtime.ts";
import type { SandboxDns, SandboxPorts, SandboxProgrammer } from "./sandbox_types.ts";
import type { World } from "./world.ts";

/** Feeds global networks' drivers with peers. */
export interface PeerProgrammer {
  /** Hands every global network's whole table to its driver (start, reconcile). */
  syncAll(): Promise<void>;
  /** Starts following the world's changes. */
  start(): void;
  /** Settles once pending peer changes are programmed. */
  flushed(): Promise<void>;
  close(): void;
}

/** A configuration in force on this host, as the controller keeps it. */
export interface StoredDriverConfig {
  config: DriverConfig;
  /** Stream sequence of the event that set it. */
  seq: number;
  /** An append whose outcome is unknown (timeout): read the journal before the next use. */
  stale?: boolean;
}

/** The controller's settings, with defaults applied. */
export interface ControllerSettings {
  hostId: string;
  /** This controller's owner id, in every ownership mark it writes (ownership.ts). */
  owner: string;
  /** Prefix of the namespaces this controller creates. */
  namePrefix: string;
  /** Directory of per-sandbox files. */
  stateDir: string;
  predefined: boolean;
  defaultBridge: boolean;
  reconcileOnStart: boolean;
  /** Path of the host namespace, when the kernel was given one. */
  hostNamespace?: string;
  /** Path of the host's resolv.conf (systemd-resolved's stub is followed). */
  hostResolvConf: string;
  /** Whether sandboxes on user-defined networks get the embedded DNS resolver. */
  embeddedDns: boolean;
  /** The controller option `driverConfig`, applied at start. */
  driverConfig?: Record<string, Record<string, unknown>>;
}

/** The shared context. */
export interface ControllerContext {
  runtime: Runtime;
  kernel: Kernel;
  /** The built-in (default) IPAM, rebuilt from the journal on start. */
  ipam: Ipam;
  /** The host namespace's routed subnets, which automatic pools avoid (read per create). */
  hostNetworks: string[];
  drivers: DriverRegistry;
  /** Driver configurations in force on this host, by driver name (absent: its defaults). */
  driverConfigs: Map<string, StoredDriverConfig>;
  sandboxes: SandboxProgrammer;
  /** The embedded DNS resolver: listeners, records, resolv.conf (sandbox_dns.ts). */
  dns: SandboxDns;
  /** Every host's objects, folded from the stream and followed live. */
  world: World;
  /** Feeds global networks' drivers with the peers learned from the stream. */
  peers: PeerProgrammer;
  /** Cluster-wide claims (names, VNIs, subnets and addresses of global networks). */
  claims: Claims;
  /** The bridge firewall of the host namespace, as reconcile reads and repairs it. */
  firewall: Firewall;
  /** Port publishing: host port decisions, and what each sandbox publishes where. */
  ports: SandboxPorts;
  settings: ControllerSettings;
}

/** What effects see of the controller. */
export function effectEnv(ctx: ControllerContext): EffectEnv {
  const rt = ctx.runtime;
  return {
    kernel: ctx.kernel,
    prefix: ctx.settings.namePrefix,
    owner: ctx.settings.owner,
    driver: (name) => ctx.drivers.driver(name),
    ipamDriver: (name) => ctx.drivers.ipamDriver(name),
    networkContext: (id) => networkContext(rt, id),
    sandboxContext: (id) => sandboxContext(rt, id),
    sandboxChanged: (sandboxId, change) => ctx.sandboxes.changed(sandboxId, change),
    beforeLeave: (sandboxId, endpointId) => ctx.ports.beforeLeave(sandboxId, endpointId),
    sandboxDeleting: (sandboxId) => ctx.dns.deleting(sandboxId),
    sandboxDir: (id) => ctx.sandboxes.dir(id),
  };
}
