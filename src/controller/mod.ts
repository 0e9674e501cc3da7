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
import type { Driver, IpamDriver } from "../../drivers/driver.ts";
import type { PluginClientOptions } from "../../drivers/remote/mod.ts";
import { createFirewall } from "../../drivers/bridge/_firewall.ts";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { CnmEvent, RecordedEvent } from "../journal/events.ts";
import { openJournal } from "../journal/journal.ts";
import { type SnapshotWriter, startSnapshotWriter } from "../journal/snapshot_writer.ts";
import { CnmError, errText, InvalidArgumentError, UnavailableError } from "../errors.ts";
import type { EndpointInfo, NetworkInfo, SandboxInfo } from "../info.ts";
import type { Kernel } from "../kernel/types.ts";
import { createKernel, type KernelOptions } from "../kernel/mod.ts";
import { createIpam } from "../ipam/mod.ts";
import type { ControllerContext } from "./context.ts";
import { effectEnv } from "./context.ts";
import type { ReconcileReport } from "./drift.ts";
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
import { networkContext } from "./objects.ts";
import { reconcile } from "./reconcile.ts";
import { recover, type RecoveryReport, watchConnection } from "./recovery.ts";
import { type CrashPoint, createRuntime, type Runtime } from "./runtime.ts";
import { createSandboxProgrammer } from "./sandbox_program.ts";
import * as sandboxes from "./sandboxes.ts";

export type { CrashPoint } from "./runtime.ts";
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
  /** Timeouts of plugin calls (retry on connection failure 30 s, per call 30 s). */
  pluginOptions?: PluginClientOptions;
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
  /** Milliseconds a command waits for its outcome to become durable. Default 30000. */
  commandTimeoutMs?: number;
  /** Milliseconds to wait for one PubAck. Default 4000. */
  publishTimeoutMs?: number;
  /** Lifetime of the single-writer lease without a refresh. Default 10000. */
  leaseTtlMs?: number;
  /** How long to wait for another controller's lease of this host to expire. Default ttl + 2 s. */
  leaseWaitMs?: number;
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
  readonly stream: string;
  readonly prefix: string;
  /** What the start-up recovery found and did. */
  readonly recovery: RecoveryReport;
  createNetwork(options: CreateNetworkOptions): Promise<NetworkInfo>;
  deleteNetwork(idOrName: string): Promise<void>;
  createSandbox(options: CreateSandboxOptions): Promise<SandboxInfo>;
  deleteSandbox(idOrName: string): Promise<void>;
  createEndpoint(network: string, options: CreateEndpointOptions): Promise<EndpointInfo>;
  deleteEndpoint(endpointId: string, options?: DeleteEndpointOptions): Promise<void>;
  join(endpointId: string, sandbox: string): Promise<EndpointInfo>;
  leave(endpointId: string, sandbox: string): Promise<void>;
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
  const started = performance.now();
  let nc: NatsConnection;
  try {
    nc = await connect({
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      timeout: 5000,
      // Two stack traces per request (every append) cost more than the append's own work.
      noAsyncTraces: true,
      ...options.nats,
    });
  } catch (err) {
    throw new UnavailableError(
      `cannot connect to NATS at ${String(options.nats.servers ?? "127.0.0.1:4222")}: ${
        errText(err)
      }`,
      { cause: err },
    );
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
  }).catch(async (err) => {
    if (ownsKernel) await kernel.close().catch(() => {});
    throw err;
  });
  const drivers = createDriverRegistry(options);
  // deno-lint-ignore prefer-const
  let ctx: ControllerContext;
  const runtime = createRuntime({
    journal,
    hostId,
    commandTimeoutMs: options.commandTimeoutMs ?? 30_000,
    hook: options.hooks?.point,
    runEffect: (kind, state, context, effectId) =>
      runEffect(effectEnv(ctx), kind, state, context, effectId),
    onOutcome: (kind, context, outcome) => {
      releaseOnOutcome(ctx.ipam, kind, context, outcome, (id) => networkContext(runtime, id));
      if (kind === "endpoint") ctx.sandboxes.settled((context as EndpointContext).id);
    },
  });
  fence.runtime = runtime;
  const stateDir = options.stateDir ?? `/var/lib/cnm/${hostId}`;
  ctx = {
    runtime,
    kernel,
    ipam: createIpam({ hostNetworks: () => ctx.hostNetworks }),
    hostNetworks: [],
    drivers,
    sandboxes: createSandboxProgrammer({ runtime, kernel, stateDir }),
    firewall: createFirewall({ exec: (argv, o) => kernel.exec(argv, o) }),
    settings: {
      hostId,
      namePrefix: options.namePrefix ?? "cnm-",
      stateDir,
      predefined: options.predefined ?? true,
      defaultBridge: options.defaultBridge ?? true,
      reconcileOnStart: options.reconcileOnStart ?? true,
      ...(ownsKernel && (options.kernel as KernelOptions | undefined)?.hostNamespace
        ? { hostNamespace: (options.kernel as KernelOptions).hostNamespace }
        : {}),
    },
  };
  watchConnection(nc, ctx, options.onConnectionStatus);

  let closed = false;
  let snapshots: SnapshotWriter | undefined;
  const controller: Controller & { recovery: RecoveryReport } = {
    hostId,
    stream: journal.stream,
    prefix: journal.prefix,
    recovery: undefined as unknown as RecoveryReport,
    events$: runtime.events$,
    get snapshots() {
      return snapshots;
    },
    createNetwork: (o) => networks.createNetwork(ctx, o),
    deleteNetwork: (ref) => networks.deleteNetwork(ctx, ref),
    network: (ref) => networks.network(ctx, ref),
    networks: () => networks.networks(ctx),
    createSandbox: (o) => sandboxes.createSandbox(ctx, o),
    deleteSandbox: (ref) => sandboxes.deleteSandbox(ctx, ref),
    sandbox: (ref) => sandboxes.sandbox(ctx, ref),
    sandboxes: () => sandboxes.sandboxes(ctx),
    createEndpoint: (net, o) => endpoints.createEndpoint(ctx, net, o),
    deleteEndpoint: (id, o) => endpoints.deleteEndpoint(ctx, id, o),
    join: (id, sb) => endpoints.join(ctx, id, sb),
    leave: (id, sb) => endpoints.leave(ctx, id, sb),
    endpoint: (id) => endpoints.endpoint(ctx, id),
    endpoints: (filter) => endpoints.endpoints(ctx, filter),
    reconcile: (o) => reconcile(ctx, o),
    async close() {
      if (closed) return;
      closed = true;
      runtime.close();
      const errors: unknown[] = [];
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
    controller.recovery = await recover(ctx, started, current);
    if (options.snapshots !== false) {
      snapshots = await startSnapshotWriter(nc, current, {
        stream: journal.stream,
        prefix: journal.prefix,
        hostId,
        leaseTtlMs: options.leaseTtlMs,
        ...(typeof options.snapshots === "object" ? options.snapshots : {}),
      });
      const writer = snapshots;
      runtime.onAppended((e) => writer.offer(e));
      // The snapshot an actor reached after its latest event: the writer need not fold it.
      runtime.onChange((rec, removed) => {
        if (!removed) writer.offerSnapshot(rec.lastSeq, rec.id, rec.actor.getSnapshot());
      });
    }
  } catch (err) {
    await controller.close().catch(() => {});
    throw err;
  }
  return controller;
}

export { CnmError };
