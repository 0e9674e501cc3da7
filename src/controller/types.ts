/**
 * The controller's public types: {@link ControllerOptions} (what `createController` takes) and
 * {@link Controller} (the running controller's API). mod.ts re-exports both.
 *
 * @module
 */

import type { Observable } from "rxjs";
import type { ConnectionOptions } from "@nats-io/transport-node";
import type { Driver, IpamDriver, ValidateNetworkOptions } from "../../drivers/driver.ts";
import type { PluginClientOptions } from "../../drivers/remote/mod.ts";
import type { PeerState } from "../../drivers/overlay/mod.ts";
import type { CnmEvent, RecordedEvent } from "../journal/events.ts";
import type { SnapshotWriter } from "../journal/snapshot_writer.ts";
import type { EndpointInfo, NetworkInfo, SandboxInfo } from "../info.ts";
import type { Kernel } from "../kernel/types.ts";
import type { KernelOptions } from "../kernel/mod.ts";
import type { ReconcileReport } from "./drift.ts";
import type { ConfigureDriverResult } from "./driver_config.ts";
import type {
  CreateEndpointOptions,
  CreateNetworkOptions,
  CreateSandboxOptions,
  DeleteEndpointOptions,
} from "./inputs.ts";
import type { RecoveryReport } from "./recovery.ts";
import type { CrashPoint } from "./runtime.ts";

/** Options of `createController` (mod.ts). */
export interface ControllerOptions {
  /** NATS connect options (servers, user/pass, token, tls, … pass through). */
  nats: ConnectionOptions;
  /** JetStream stream name. Default `CNM`. */
  stream?: string;
  /** Subject prefix. Default `cnm`. */
  prefix?: string;
  /** This controller's host id. Default: the machine's hostname. */
  hostId?: string;
  /**
   * This host's VTEP address for overlay networks (the underlay IPv4 address other hosts
   * send VXLAN to). Default: the address of the interface holding the default route, in the
   * host namespace.
   */
  advertiseAddress?: string;
  /** Extra drivers (by name), added to the built-ins. */
  drivers?: Driver[];
  /** Extra IPAM drivers (by name), besides `default`. */
  ipamDrivers?: IpamDriver[];
  /**
   * Where remote plugins (Docker's protocol) are looked up, in order, on first use of an
   * unknown driver name. Default: Docker's (`/run/docker/plugins`, `/etc/docker/plugins`,
   * `/usr/lib/docker/plugins`).
   */
  pluginDirs?: string[];
  /**
   * Timeouts of plugin calls (retry on connection failure 30 s, per call 30 s): the defaults
   * of each plugin's driver configuration (`callTimeoutMs`, `retryTimeoutMs`).
   */
  pluginOptions?: PluginClientOptions;
  /**
   * Driver configuration (libnetwork's `OptionDriverConfig`) applied at start, by driver name,
   * e.g. `{ bridge: { mtu: 9000 } }`: merged into the configuration in force in the journal
   * like {@link Controller.configureDriver}, and journaled only when the result differs, so a
   * restart with the same options writes nothing. A bad entry fails the start (nothing of it is
   * journaled). Default: none (the journal's configuration, or the drivers' defaults).
   */
  driverConfig?: { [driver: string]: Record<string, unknown> };
  /** Kernel access: an implementation, or options for the built-in one. */
  kernel?: Kernel | KernelOptions;
  /** Prefix of kernel object names this controller owns (namespaces, …). Default `cnm-`. */
  namePrefix?: string;
  /** Create the predefined networks (`none`, `host`, `bridge`) on first start. Default true. */
  predefined?: boolean;
  /** Create the predefined `bridge` network (device `cnm0`, first default pool). Default true. */
  defaultBridge?: boolean;
  /** Directory for per-sandbox files (hosts, resolv.conf). Default `/var/lib/cnm/<hostId>`. */
  stateDir?: string;
  /**
   * The host's resolv.conf (sandboxes' files; the embedded DNS resolver's upstreams, dialled from
   * the host namespace; systemd-resolved's stub is followed). Default `/etc/resolv.conf`.
   */
  hostResolvConf?: string;
  /** Milliseconds the embedded DNS resolver waits for each upstream server. Default 4000. */
  dnsTimeoutMs?: number;
  /**
   * The embedded DNS resolver (127.0.0.11 in sandboxes on user-defined networks, answering
   * their endpoints' names and aliases). Default true; false leaves every sandbox the host's
   * resolvers, as on the predefined `bridge` (for a DNS service of one's own).
   */
  embeddedDns?: boolean;
  /** Milliseconds a command waits for its outcome to become durable. Default 30000. */
  commandTimeoutMs?: number;
  /** Milliseconds to wait for one PubAck. Default 4000. */
  publishTimeoutMs?: number;
  /**
   * Replicas of the stream and KV buckets this controller creates (1 for a single server, 3
   * for a JetStream cluster). Existing streams keep theirs. Default 1.
   */
  replicas?: number;
  /** Lifetime of the single-writer lease without a refresh. Default 10000. */
  leaseTtlMs?: number;
  /**
   * How long to wait for another controller's lease of this host to expire. Default ttl + 2 s.
   * A holder on this machine that provably died (its pid gone or reused) is not waited for.
   */
  leaseWaitMs?: number;
  /**
   * Where the controller says what it is doing at start that takes time or needs an
   * operator's attention (waiting for a lease, taking one over). Default: stderr (`cnm: …`).
   */
  log?: (line: string) => void;
  /** Reconcile the kernel with the journal on start (and record repairs). Default true. */
  reconcileOnStart?: boolean;
  /**
   * Snapshots (`<stream>_SNAPSHOT`): start from the snapshot plus the events after it, and
   * take part in writing it (one controller per stream writes; the others stand by).
   * `false` folds the whole stream at start and writes nothing. Default true.
   */
  snapshots?: boolean | { flushMs?: number };
  /** Told when the controller's NATS connection drops and comes back (for logs). */
  onConnectionStatus?: (status: "disconnect" | "reconnect") => void;
  /**
   * Fault-injection points, for crash tests: called synchronously after an intent is durable
   * (before its effect starts), after an effect finished (before its outcome is appended),
   * and after an outcome is durable (before the command resolves).
   */
  hooks?: { point?(point: CrashPoint, event: CnmEvent): void };
}

/** A running controller. See mod.ts for the API contract. */
export interface Controller {
  readonly hostId: string;
  /**
   * The owner id in every ownership mark this controller writes (8 hex digits of a hash of
   * stream and host id; README "Ownership marks").
   */
  readonly ownerId: string;
  readonly stream: string;
  readonly prefix: string;
  /** What the start-up recovery found and did. */
  readonly recovery: RecoveryReport;
  /**
   * Creates a network. `how.unknownOptions: "accept"` keeps options in the driver's namespace
   * that it does not know, as dockerd does (the Docker API socket); the default refuses them.
   */
  createNetwork(options: CreateNetworkOptions, how?: ValidateNetworkOptions): Promise<NetworkInfo>;
  deleteNetwork(idOrName: string): Promise<void>;
  createSandbox(options: CreateSandboxOptions): Promise<SandboxInfo>;
  deleteSandbox(idOrName: string): Promise<void>;
  createEndpoint(network: string, options: CreateEndpointOptions): Promise<EndpointInfo>;
  deleteEndpoint(endpointId: string, options?: DeleteEndpointOptions): Promise<void>;
  join(endpointId: string, sandbox: string): Promise<EndpointInfo>;
  leave(endpointId: string, sandbox: string): Promise<void>;
  /**
   * Configures a driver (driver.Config): merges `options` into its configuration in force (a
   * key set to `null` returns to its default), journals the result as `driver.configured` and
   * applies it before the next command that uses the driver. `{}` changes nothing and reports
   * the configuration in force.
   *
   * @throws {NotFoundError} `unknown driver "X"`.
   * @throws {InvalidArgumentError} an unknown key or a bad value, naming the key; nothing is journaled.
   */
  configureDriver(name: string, options: Record<string, unknown>): Promise<ConfigureDriverResult>;
  network(idOrName: string): NetworkInfo | undefined;
  networks(): NetworkInfo[];
  endpoint(id: string): EndpointInfo | undefined;
  endpoints(filter?: { network?: string }): EndpointInfo[];
  sandbox(idOrName: string): SandboxInfo | undefined;
  sandboxes(): SandboxInfo[];
  /**
   * Compares the journal's view with the kernel. With `dryRun` it only reports; otherwise it
   * repairs each difference and records it as a `<kind>.reconciled` event.
   */
  reconcile(options?: { dryRun?: boolean }): Promise<ReconcileReport>;
  /**
   * For a global (overlay) network: the neighbour and FDB entries this host programmed for
   * its remote endpoints, against the peer table learned from the stream. Undefined for
   * networks whose driver programs no peers.
   *
   * @throws {NotFoundError} `network X not found`.
   */
  networkPeers(idOrName: string): Promise<PeerState | undefined>;
  /** Every event this controller appends, after it is durable. */
  readonly events$: Observable<RecordedEvent>;
  /**
   * This controller's snapshot writer (undefined with `snapshots: false`): whether it holds
   * the stream's writer lease, and `sync()` to wait until the snapshot covers the stream.
   */
  readonly snapshots?: Pick<SnapshotWriter, "writing" | "sync" | "stats">;
  /** Stops the actors and the connection; leaves the kernel as it is. */
  close(): Promise<void>;
}
