/**
 * The driver contract: libnetwork's verbs in camelCase. Drivers receive ids, never names,
 * and options as parsed data. Every method is an idempotent *ensure*: the controller re-runs
 * it with the same `effectId` after a crash, so "already exists" and "already gone" are
 * success, not errors.
 *
 * A driver method returns the facts it decided (device names, MACs, …) as a plain JSON
 * object; the controller writes them into the outcome event so replay never asks again.
 *
 * Driver configuration (libnetwork's `driver.Config`): a driver that takes options declares
 * them as a zod {@link Driver.configSchema}. The controller validates a change against it,
 * journals the full resulting configuration as a `driver.configured` event, then hands it to
 * {@link Driver.configure}; each new network records the configuration in force
 * ({@link DriverNetwork.driverConfig}), so everything a driver does for an existing network
 * keeps using the configuration that network was created under, also after a restart.
 *
 * @module
 */

import type { z } from "zod";
import type { Kernel } from "../src/kernel/types.ts";
import type { ExposedPort, PortBinding, PortMapping } from "../src/ports/binding.ts";

export type { ExposedPort, PortBinding, PortMapping } from "../src/ports/binding.ts";

/** `{ dataScope, connectivityScope }`, each `local` or `global`. */
export interface DriverCapabilities {
  dataScope: "local" | "global";
  connectivityScope: "local" | "global";
  /**
   * For global drivers that need VXLAN ids: the network option that carries them (a comma
   * list, one per IPv4 subnet, as libnetwork's `com.docker.network.driver.overlay.vxlanid_list`).
   * The controller decides them cluster-wide (lowest free ≥ 4096, or the user's list, each
   * claimed in JetStream KV) and writes them into that option of the create intent.
   */
  vniOption?: string;
}

/** Per-address-family IPAM data handed to drivers (libnetwork's IPAMData). */
export interface IpamData {
  addressSpace: string;
  pool: string; // CIDR
  gateway?: string; // CIDR (address with the pool's prefix length)
  auxAddresses: Record<string, string>; // name → CIDR
}

/** What a driver knows about a network. */
export interface DriverNetwork {
  id: string;
  internal: boolean;
  enableIPv6: boolean;
  options: Record<string, string>;
  labels: Record<string, string>;
  ipv4: IpamData[];
  ipv6: IpamData[];
  /** Facts the driver returned from createNetwork (e.g. the bridge name). */
  facts: Record<string, unknown>;
  /**
   * The driver configuration in force when the network was created (parsed by the driver's
   * {@link Driver.configSchema}, defaults filled). Absent for drivers without a schema and for
   * networks created before driver configuration existed: the driver's defaults apply then.
   */
  driverConfig?: DriverConfig;
}

/** A driver's configuration: JSON data, the output of its {@link Driver.configSchema}. */
export type DriverConfig = Record<string, unknown>;

/** What a driver knows about an endpoint. */
export interface DriverEndpoint {
  id: string;
  networkId: string;
  options: Record<string, string>;
  ipv4Address?: string; // CIDR
  ipv6Address?: string; // CIDR
  macAddress?: string;
  /** The port bindings asked for at create, validated (no host port decided in them). */
  portBindings?: PortBinding[];
  /** The ports the endpoint exposes. */
  exposedPorts?: ExposedPort[];
  /** Facts the driver returned from createEndpoint. */
  facts: Record<string, unknown>;
}

/** The sandbox an endpoint joins. */
export interface DriverSandbox {
  id: string;
  /** Namespace path. */
  key: string;
  /** Interface name decided by the controller for this endpoint inside the sandbox. */
  ifname: string;
  labels: Record<string, string>;
}

/** Context of one effect run. */
export interface EffectContext {
  /** Stable across re-runs of the same decided effect. */
  effectId: string;
  /** Kernel access, scoped to the controller's host namespace. */
  kernel: Kernel;
  /** Name prefix for kernel objects owned by this controller (ownership mark). */
  prefix: string;
  /**
   * The controller's owner id (8 hex digits, see src/controller/ownership.ts): drivers put
   * it in the marks of what they make, so controllers sharing a kernel tell theirs apart.
   */
  owner?: string;
  /**
   * Records facts a driver has already made true (e.g. a device it created) before its call
   * finishes. When the call then fails, the last facts recorded are journaled in the
   * `*.failed` outcome, so a later delete undoes exactly what was made.
   */
  partial?(facts: DriverFacts): void;
}

/**
 * What a sandbox asks of its gateway endpoint when that endpoint's driver publishes ports
 * itself ({@link Driver.programGatewayConnectivity}): libnetwork's sandbox options.
 */
export interface GatewayConnectivity {
  /** The sandbox's labels (what Join got as `Options`). */
  labels: Record<string, string>;
  /** Every member's port bindings, as asked (in the members' order), host ports undecided. */
  portBindings: PortBinding[];
  /** Every member's exposed ports, each once. */
  exposedPorts: ExposedPort[];
}

/** Facts a driver decided, recorded in the outcome event. JSON only. */
export type DriverFacts = Record<string, unknown>;

/** Result of a join: what the sandbox must program (libnetwork's JoinInfo). */
export interface JoinResult extends DriverFacts {
  gateway?: string; // IPv4 address (no prefix)
  gatewayIPv6?: string;
  staticRoutes?: { destination: string; routeType: 0 | 1; nextHop?: string }[];
  disableGatewayService?: boolean;
}

/** A remote endpoint of a global network, as its host's join outcome records it. */
export interface Peer {
  /** The endpoint's address. */
  ip: string;
  mac: string;
  /** Underlay address of the endpoint's host (its VTEP). */
  vtep: string;
}

/** What peer programming needs of the controller. */
export type PeerContext = Pick<EffectContext, "kernel" | "prefix">;

/** How strictly {@link Driver.validateNetwork} treats options. */
export interface ValidateNetworkOptions {
  /**
   * `refuse` (default): an option in the driver's namespace (`com.docker.network.*` for the
   * bridge) that it does not know is an error. `accept`: it is kept and ignored, as dockerd
   * does. Values of known options are checked either way.
   */
  unknownOptions?: "refuse" | "accept";
}

/** A network driver. */
export interface Driver {
  /** The name networks use in `driver`. */
  readonly name: string;
  /**
   * True when the driver chooses an endpoint's MAC when the user gives none (a remote plugin
   * may answer one in CreateEndpoint, as in libnetwork, and its answer becomes the fact
   * `macAddress`); the controller then decides none. Otherwise the controller decides a
   * random one for networks with IPAM.
   */
  readonly choosesMac?: boolean;
  capabilities(): DriverCapabilities;
  /**
   * The driver's configuration options (driver.Config) as a zod schema of a strict object:
   * unknown keys are refused, every key has a default (`schema.parse({})` is the configuration
   * in force before any change is journaled). Absent: the driver takes no configuration.
   */
  readonly configSchema?: z.ZodType<DriverConfig>;
  /**
   * Keys whose change cannot reach networks that already exist (they keep the configuration
   * they were created under; new networks get the new value). The controller says so in the
   * result and the event (`appliesTo: "new networks"`). Other keys reach every later call.
   * Default: none.
   */
  readonly configNewNetworksOnly?: readonly string[];
  /**
   * Keys whose change reaches the next joins of every network, existing ones included, while
   * endpoints joined before keep what they joined with (the overlay's VTEP). The controller
   * says so (`appliesTo: "next joins"`, and a warning). Default: none.
   */
  readonly configNextJoins?: readonly string[];
  /**
   * Applies the configuration in force (already validated by {@link configSchema}): at start
   * with the journaled one, then after each `driver.configured` event is durable, before the
   * next command that uses the driver. Synchronous and without side effects outside the
   * driver (no kernel work): what needs the kernel reads {@link DriverNetwork.driverConfig}.
   */
  configure?(config: DriverConfig): void;
  /**
   * Validates options before anything is journaled; throws InvalidArgumentError. `how`
   * says whether options the driver does not know are refused (the default: cnm's API and
   * CLI) or accepted and kept (the Docker API, where dockerd echoes them).
   */
  validateNetwork?(network: DriverNetwork, how?: ValidateNetworkOptions): void;

  createNetwork(network: DriverNetwork, ctx: EffectContext): Promise<DriverFacts | void>;
  deleteNetwork(network: DriverNetwork, ctx: EffectContext): Promise<void>;
  createEndpoint(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    ctx: EffectContext,
  ): Promise<DriverFacts | void>;
  deleteEndpoint(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    ctx: EffectContext,
  ): Promise<void>;
  join(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    sandbox: DriverSandbox,
    ctx: EffectContext,
  ): Promise<JoinResult | void>;
  leave(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    sandbox: DriverSandbox,
    ctx: EffectContext,
  ): Promise<void>;
  /**
   * Global drivers that program remote endpoints (overlay): the whole peer table of a network,
   * learned from the stream (after a start, and by reconcile). Peers at the driver's own VTEP
   * and this host's endpoints are the driver's to ignore.
   */
  setPeers?(network: DriverNetwork, peers: Peer[], ctx: PeerContext): Promise<unknown>;
  /** Peers that joined (one call per delivery and network). */
  addPeers?(network: DriverNetwork, peers: Peer[], ctx: PeerContext): Promise<unknown>;
  /** Peers that left or were deleted, as they were recorded at join. */
  removePeers?(network: DriverNetwork, peers: Peer[], ctx: PeerContext): Promise<unknown>;
  /**
   * Publishes decided port mappings on a joined endpoint (the sandbox's gateway endpoint):
   * libnetwork's ProgramExternalConnectivity. An ensure: calling it again with another list
   * makes the endpoint publish exactly that list. All or nothing: when it throws, the
   * endpoint publishes nothing. Returns facts to journal (the bridge driver: `{ ports }`, the
   * mappings it programmed).
   */
  programExternalConnectivity?(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    mappings: PortMapping[],
    ctx: EffectContext,
  ): Promise<DriverFacts | void>;
  /**
   * Removes everything {@link programExternalConnectivity} made for the endpoint and frees
   * its host ports at once (libnetwork's RevokeExternalConnectivity). An ensure: nothing
   * published is success. `mappings`: what was programmed, when known.
   */
  revokeExternalConnectivity?(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    mappings: PortMapping[],
    ctx: EffectContext,
  ): Promise<void>;
  /**
   * For drivers that publish ports themselves and choose their own host ports (remote
   * plugins; a driver has this or {@link programExternalConnectivity}): the endpoint is the
   * sandbox's gateway endpoint now — it became it, or still is and the sandbox's bindings
   * changed — libnetwork's ProgramExternalConnectivity with the sandbox's options. The
   * controller decides no host port for such a driver's endpoints, holds no socket and writes
   * no firewall rule for them. Called while the endpoint is joined; an ensure.
   */
  programGatewayConnectivity?(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    request: GatewayConnectivity,
    ctx: EffectContext,
  ): Promise<void>;
  /**
   * The endpoint stops being the sandbox's gateway endpoint (the gateway moves, or it leaves:
   * called before {@link leave}): libnetwork's RevokeExternalConnectivity. An ensure.
   */
  revokeGatewayConnectivity?(
    network: DriverNetwork,
    endpoint: DriverEndpoint,
    ctx: EffectContext,
  ): Promise<void>;
}

/** A pool request to an IPAM driver (libnetwork's RequestPool). */
export interface IpamPoolRequest {
  addressSpace: string;
  pool?: string; // CIDR, empty = driver picks
  subPool?: string; // CIDR (ip range) inside `pool`
  options: Record<string, string>;
  v6: boolean;
}

/** A pool an IPAM driver handed out. */
export interface IpamPool {
  poolId: string;
  pool: string; // CIDR
  meta: Record<string, string>;
}

/** An address request (libnetwork's RequestAddress). */
export interface IpamAddressRequest {
  address?: string; // a specific IP (no prefix)
  /** libnetwork options, e.g. `RequestAddressType: com.docker.network.gateway`. */
  options: Record<string, string>;
}

/** An IPAM driver: the built-in `default`, or a remote plugin. Async for remote calls. */
export interface IpamDriver {
  readonly name: string;
  capabilities?(): Promise<{ requiresMACAddress: boolean; requiresRequestReplay: boolean }>;
  getDefaultAddressSpaces(): Promise<{ local: string; global: string }>;
  requestPool(request: IpamPoolRequest): Promise<IpamPool>;
  releasePool(poolId: string): Promise<void>;
  /** Returns a CIDR ("a.b.c.d/nn"). */
  requestAddress(poolId: string, request: IpamAddressRequest): Promise<string>;
  releaseAddress(poolId: string, address: string): Promise<void>;
}
