/**
 * The controller: owns this host's networks, endpoints and sandboxes as XState actors,
 * journals every transition to JetStream before acting on it, and rebuilds itself from the
 * journal on start.
 *
 * This module only composes: the write path is the runtime (runtime.ts), start-up is
 * recovery.ts, and each kind's commands live in networks.ts, endpoints.ts and sandboxes.ts,
 * all plain functions over one shared context (context.ts).
 *
 * @module
 */

import type { Observable } from "rxjs";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import type { Driver, IpamDriver, ValidateNetworkOptions } from "../../drivers/driver.ts";
import type { PluginClientOptions } from "../../drivers/remote/mod.ts";
import { createFirewall } from "../../drivers/bridge/_firewall.ts";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { CnmEvent, RecordedEvent } from "../journal/events.ts";
import { openJournal } from "../journal/journal.ts";
import { guardedConnect, isAuthFailure, NatsAuthError } from "../journal/nats_errors.ts";
import {
  CnmError,
  errText,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from "../errors.ts";
import { type SnapshotWriter, startSnapshotWriter } from "../journal/snapshot_writer.ts";
import type { EndpointInfo, NetworkInfo, SandboxInfo } from "../info.ts";
import type { Kernel } from "../kernel/types.ts";
import { createKernel, type KernelOptions } from "../kernel/mod.ts";
import { createIpam } from "../ipam/mod.ts";
import { ownerId } from "../ids.ts";
import type { ControllerContext, PeerProgrammer } from "./context.ts";
import { effectEnv } from "./context.ts";
import type { ReconcileReport } from "./drift.ts";
import { applyJournaled, configureDriver, type ConfigureDriverResult } from "./driver_config.ts";
import { createDriverRegistry } from "./drivers.ts";
import { runEffect } from "./effects.ts";
import * as endpoints from "./endpoints.ts";
import type {
  CreateEndpointOptions,
  CreateNetworkOptions,
  CreateSandboxOptions,
  DeleteEndpointOptions,
} from "./inputs.ts";
import { acquireLease } from "./lease.ts";
import { releaseOnOutcome } from "./network_ipam.ts";
import * as networks from "./networks.ts";
import { findNetwork, networkContext } from "./objects.ts";
import { reconcile } from "./reconcile.ts";
import { recover, type RecoveryReport, watchConnection } from "./recovery.ts";
import { type CrashPoint, createRuntime, type Runtime } from "./runtime.ts";
import { createSandboxProgrammer } from "./sandbox_program.ts";
import { openClaims } from "./claims.ts";
import { applyRemote, checkGlobalOrder, releaseGlobalClaims } from "./global.ts";
import { createWorld } from "./world.ts";
import { createPeerProgrammer } from "./peers.ts";
import { networkPeers } from "./drift_overlay.ts";
import type { PeerState } from "../../drivers/overlay/mod.ts";
import { ensureGatewayBridge, sweepGatewayBridges } from "./gwbridge.ts";
import { createSandboxDns, type SandboxDns } from "./sandbox_dns.ts";
import { emptyFold, forkFold } from "../journal/fold.ts";
import * as sandboxes from "./sandboxes.ts";
import { createPortAllocator, readEphemeralPorts } from "../ports/mod.ts";
import { releasePortsOnOutcome } from "./endpoint_ports.ts";
import { createSandboxPorts } from "./sandbox_ports.ts";

export type { CrashPoint } from "./runtime.ts";
export type { ConfigureDriverResult } from "./driver_config.ts";
export type { RecoveryReport } from "./recovery.ts";

/** Options of {@link createController}. */
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

/**
 * Names that become subject tokens and KV keys: refused at the edge with the option named,
 * rather than as a raw NATS error (`invalid key: cnm.a b`). A host id may hold dots (a
 * machine's hostname does); the CLI's `--host` takes one token only.
 */
function checkNames(o: ControllerOptions): void {
  const bad = (what: string, value: string, rule: string) =>
    new InvalidArgumentError(
      `invalid controller options: ${what}: ${JSON.stringify(value)} is not ${rule}`,
    );
  const host = o.hostId ?? Deno.hostname();
  if (!/^[A-Za-z0-9]([A-Za-z0-9_-]|\.(?=[A-Za-z0-9]))*$/.test(host) || host.length > 128) {
    throw bad("hostId", host, 'letters, digits, "-", "_" and single inner dots (at most 128)');
  }
  if (o.stream !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_-]{0,56}$/.test(o.stream)) {
    throw bad("stream", o.stream, 'letters, digits, "-" and "_" (1 to 57)');
  }
  if (
    o.prefix !== undefined && (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(o.prefix) ||
      o.prefix.length > 64)
  ) {
    throw bad("prefix", o.prefix, 'subject tokens of letters, digits, "-" and "_" (at most 64)');
  }
}

const isKernel = (k: unknown): k is Kernel =>
  typeof (k as Kernel | undefined)?.ensureNetns === "function";

/**
 * Connects to NATS, opens the journal, rebuilds every actor from it and returns a ready
 * controller.
 *
 * @throws {UnavailableError} when NATS is unreachable or JetStream is not enabled.
 */
export async function createController(options: ControllerOptions): Promise<Controller> {
  if (!options || typeof options !== "object" || !options.nats) {
    throw new InvalidArgumentError("invalid controller options: nats: required");
  }
  checkNames(options);
  const started = performance.now();
  let nc: NatsConnection;
  try {
    nc = await guardedConnect(() =>
      connect({
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: 5000,
        // Two stack traces per request (every append) cost more than the append's own work.
        noAsyncTraces: true,
        ...options.nats,
      })
    );
  } catch (err) {
    const at = String(options.nats.servers ?? "127.0.0.1:4222");
    if (isAuthFailure(err)) {
      throw new NatsAuthError(`NATS at ${at} refused the credentials: ${errText(err)}`, {
        cause: err,
      });
    }
    throw new UnavailableError(`cannot connect to NATS at ${at}: ${errText(err)}`, { cause: err });
  }
  try {
    return await start(nc, options, started);
  } catch (err) {
    await nc.close().catch(() => {});
    throw err;
  }
}

async function start(
  nc: NatsConnection,
  options: ControllerOptions,
  started: number,
): Promise<Controller> {
  const hostId = options.hostId ?? Deno.hostname();
  const journal = await openJournal(nc, {
    stream: options.stream,
    prefix: options.prefix,
    publishTimeoutMs: options.publishTimeoutMs,
    ...(options.replicas ? { replicas: options.replicas } : {}),
  });
  const ownsKernel = !isKernel(options.kernel);
  const kernel = isKernel(options.kernel)
    ? options.kernel
    : await createKernel(options.kernel as KernelOptions | undefined);
  const fence: { runtime?: Runtime } = {};
  const lease = await acquireLease(nc, {
    stream: journal.stream,
    prefix: journal.prefix,
    hostId,
    ttlMs: options.leaseTtlMs,
    waitMs: options.leaseWaitMs,
    onLost: (reason) => fence.runtime?.fence(reason),
    ...(options.replicas ? { replicas: options.replicas } : {}),
    log: options.log ?? ((line) => console.error(`cnm: ${line}`)),
  }).catch(async (err) => {
    if (ownsKernel) await kernel.close().catch(() => {});
    throw err;
  });
  // deno-lint-ignore prefer-const
  let ctx: ControllerContext;
  const drivers = createDriverRegistry({
    ...options,
    builtin: {
      overlay: {
        owner: ownerId(journal.stream, hostId),
        ...(options.advertiseAddress ? { advertiseAddress: options.advertiseAddress } : {}),
      },
    },
    onResolve: (driver) => {
      const reason = applyJournaled(ctx, driver);
      if (reason) console.error(`cnm: ${reason}`);
    },
  });
  const runtime = createRuntime({
    journal,
    hostId,
    commandTimeoutMs: options.commandTimeoutMs ?? 30_000,
    hook: options.hooks?.point,
    runEffect: async (kind, state, context, effectId, intentSeq) => {
      await checkGlobalOrder(ctx, kind, state, context, intentSeq);
      return await runEffect(effectEnv(ctx), kind, state, context, effectId);
    },
    onOutcome: (kind, context, outcome) => {
      releaseOnOutcome(ctx.ipam, kind, context, outcome, (id) => networkContext(runtime, id));
      releaseGlobalClaims(ctx, kind, context, outcome);
      releasePortsOnOutcome(ctx.ports.allocator, kind, context, outcome);
      if (kind === "endpoint") ctx.sandboxes.settled((context as EndpointContext).id);
    },
  });
  fence.runtime = runtime;
  const claims = await openClaims(nc, {
    stream: journal.stream,
    hostId,
    ...(options.replicas ? { replicas: options.replicas } : {}),
  });
  const stateDir = options.stateDir ?? `/var/lib/cnm/${hostId}`;
  const owner = ownerId(journal.stream, hostId);
  // Host ports cnm chooses come from the host namespace's ephemeral range, as Docker's do
  // (Docker's 49153-65535 when it cannot be read).
  const ephemeral = await readEphemeralPorts(kernel);
  ctx = {
    runtime,
    kernel,
    ipam: createIpam({ hostNetworks: () => ctx.hostNetworks }),
    hostNetworks: [],
    drivers,
    driverConfigs: new Map(),
    sandboxes: createSandboxProgrammer({
      runtime,
      kernel,
      stateDir,
      // A join fails when its ports cannot be published; after a leave, reconcile repairs.
      afterRoutes: (id, members, change) => ctx.ports.sync(id, members, { strict: !!change.add }),
      dns: () => ctx.dns,
    }),
    dns: undefined as unknown as SandboxDns,
    firewall: createFirewall({ exec: (argv, o) => kernel.exec(argv, o) }),
    ports: createSandboxPorts(() => ctx, createPortAllocator(ephemeral)),
    claims,
    peers: undefined as unknown as PeerProgrammer,
    world: createWorld({
      journal,
      hostId,
      fold: emptyFold(),
      onRemote: (change) => applyRemote(ctx, change),
    }),
    settings: {
      hostId,
      owner,
      namePrefix: options.namePrefix ?? "cnm-",
      stateDir,
      hostResolvConf: options.hostResolvConf ?? "/etc/resolv.conf",
      embeddedDns: options.embeddedDns ?? true,
      predefined: options.predefined ?? true,
      defaultBridge: options.defaultBridge ?? true,
      reconcileOnStart: options.reconcileOnStart ?? true,
      ...(options.driverConfig ? { driverConfig: options.driverConfig } : {}),
      ...(ownsKernel && (options.kernel as KernelOptions | undefined)?.hostNamespace
        ? { hostNamespace: (options.kernel as KernelOptions).hostNamespace }
        : {}),
    },
  };
  ctx.peers = createPeerProgrammer(ctx);
  ctx.dns = createSandboxDns(ctx, { timeoutMs: options.dnsTimeoutMs, log: options.log });
  watchConnection(nc, ctx, options.onConnectionStatus);

  let closed = false;
  let snapshots: SnapshotWriter | undefined;
  const controller: Controller & { recovery: RecoveryReport } = {
    hostId,
    ownerId: owner,
    stream: journal.stream,
    prefix: journal.prefix,
    recovery: undefined as unknown as RecoveryReport,
    events$: runtime.events$,
    get snapshots() {
      return snapshots;
    },
    createNetwork: (o, how) => networks.createNetwork(ctx, o, false, how),
    deleteNetwork: (ref) => networks.deleteNetwork(ctx, ref),
    network: (ref) => networks.network(ctx, ref),
    networks: () => networks.networks(ctx),
    createSandbox: (o) => sandboxes.createSandbox(ctx, o),
    deleteSandbox: (ref) => sandboxes.deleteSandbox(ctx, ref),
    sandbox: (ref) => sandboxes.sandbox(ctx, ref),
    sandboxes: () => sandboxes.sandboxes(ctx),
    createEndpoint: (net, o) => endpoints.createEndpoint(ctx, net, o),
    // A sandbox whose networks are all global gets (or loses) the gateway bridge after a
    // join, a leave, and a forced delete of a joined endpoint (a leave too).
    deleteEndpoint: async (id, o) => {
      const sandboxId = endpoints.endpoint(ctx, id)?.sandboxId;
      await endpoints.deleteEndpoint(ctx, id, o);
      if (sandboxId) await ensureGatewayBridge(ctx, sandboxId);
    },
    join: async (id, sb) => {
      const ep = await endpoints.join(ctx, id, sb);
      if (ep.sandboxId) await ensureGatewayBridge(ctx, ep.sandboxId);
      return ctx.runtime.objects.endpoint.has(ep.id) ? endpoints.endpoint(ctx, ep.id)! : ep;
    },
    leave: async (id, sb) => {
      const sandboxId = sandboxes.sandbox(ctx, sb)?.id;
      await endpoints.leave(ctx, id, sb);
      if (sandboxId) await ensureGatewayBridge(ctx, sandboxId);
    },
    configureDriver: (name, o) => configureDriver(ctx, name, o),
    endpoint: (id) => endpoints.endpoint(ctx, id),
    endpoints: (filter) => endpoints.endpoints(ctx, filter),
    reconcile: (o) => reconcile(ctx, o),
    async networkPeers(ref) {
      const rec = findNetwork(ctx.runtime, ref);
      if (!rec) throw new NotFoundError(`network ${ref} not found`);
      return await networkPeers(ctx, ctx.runtime.context(rec));
    },
    async close() {
      if (closed) return;
      closed = true;
      ctx.peers.close();
      ctx.world.close();
      // Claims given back by the last deletes are released before the connection goes.
      await claims.close();
      runtime.close();
      const errors: unknown[] = [];
      // The listeners stop answering; their DNAT tables stay, like the rest of the kernel.
      await ctx.dns.close().catch((e) => errors.push(e));
      await snapshots?.close().catch((e) => errors.push(e));
      journal.close();
      if (ownsKernel) await kernel.close().catch((e) => errors.push(e));
      await lease.release().catch((e) => errors.push(e));
      drivers.close();
      await nc.close().catch((e) => errors.push(e));
      if (errors.length) throw new AggregateError(errors, "errors while closing the controller");
    },
  };
  try {
    const current = await journal.current({ noSnapshot: options.snapshots === false });
    // Every host's objects, from here on followed live; recovery starts from this fold.
    ctx.world.useFold(current.fold);
    controller.recovery = {
      ...await recover(ctx, started, current),
      leaseWaitMs: lease.waitedMs,
      ...(lease.tookOver ? { leaseTakeover: lease.tookOver } : {}),
    };
    if (options.snapshots !== false) {
      // The writer folds on its own copy: the world's fold is the world's.
      snapshots = await startSnapshotWriter(nc, { ...current, fold: forkFold(current.fold) }, {
        stream: journal.stream,
        prefix: journal.prefix,
        hostId,
        leaseTtlMs: options.leaseTtlMs,
        ...(options.replicas ? { replicas: options.replicas } : {}),
        ...(typeof options.snapshots === "object" ? options.snapshots : {}),
      });
      const writer = snapshots;
      runtime.onAppended((e) => writer.offer(e));
      // The snapshot an actor reached after its latest event: the writer need not fold it.
      runtime.onChange((rec, removed) => {
        if (!removed) writer.offerSnapshot(rec.lastSeq, rec.id, rec.actor.getSnapshot());
      });
    }
    // From here on, other hosts' events reach this host's view as they are appended.
    ctx.peers.start();
    ctx.world.start();
    await sweepGatewayBridges(ctx);
  } catch (err) {
    await controller.close().catch(() => {});
    throw err;
  }
  return controller;
}

export { CnmError };
