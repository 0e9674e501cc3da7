/**
 * The controller: owns this host's networks, endpoints and sandboxes as XState actors,
 * journals every transition to JetStream before acting on it, and rebuilds itself from the
 * journal on start.
 *
 * This module only composes: the write path is the runtime (runtime.ts), start-up is
 * recovery.ts, and each kind's commands live in networks.ts, endpoints.ts and sandboxes.ts,
 * all plain functions over one shared context (context.ts). The options and the Controller
 * interface are in types.ts (re-exported here).
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createFirewall } from "../../drivers/bridge/_firewall.ts";
import type { EndpointContext } from "../../actors/endpoint.ts";
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
import type { Kernel } from "../kernel/types.ts";
import { createKernel, type KernelOptions } from "../kernel/mod.ts";
import { createIpam } from "../ipam/mod.ts";
import { ownerId } from "../ids.ts";
import type { ControllerContext, PeerProgrammer } from "./context.ts";
import { effectEnv } from "./context.ts";
import { applyJournaled, configureDriver } from "./driver_config.ts";
import { createDriverRegistry } from "./drivers.ts";
import { runEffect } from "./effects.ts";
import * as endpoints from "./endpoints.ts";
import { checkControllerNames } from "./inputs.ts";
import { acquireLease } from "./lease.ts";
import { releaseOnOutcome } from "./network_ipam.ts";
import * as networks from "./networks.ts";
import { findNetwork, networkContext } from "./objects.ts";
import { reconcile } from "./reconcile.ts";
import { recover, type RecoveryReport, watchConnection } from "./recovery.ts";
import { createRuntime, type Runtime } from "./runtime.ts";
import { createSandboxProgrammer } from "./sandbox_program.ts";
import { openClaims } from "./claims.ts";
import { applyRemote, checkGlobalOrder, releaseGlobalClaims } from "./global.ts";
import { createWorld } from "./world.ts";
import { createPeerProgrammer } from "./peers.ts";
import { networkPeers } from "./drift_overlay.ts";
import { sweepGatewayBridges } from "./gwbridge.ts";
import * as membership from "./membership.ts";
import { createSandboxDns, type SandboxDns } from "./sandbox_dns.ts";
import { emptyFold, forkFold } from "../journal/fold.ts";
import * as sandboxes from "./sandboxes.ts";
import { createPortAllocator, readEphemeralPorts } from "../ports/mod.ts";
import { releasePortsOnOutcome } from "./endpoint_ports.ts";
import { createSandboxPorts } from "./sandbox_ports.ts";
import type { Controller, ControllerOptions } from "./types.ts";

export type { CrashPoint } from "./runtime.ts";
export type { ConfigureDriverResult } from "./driver_config.ts";
export type { RecoveryReport } from "./recovery.ts";
export type { Controller, ControllerOptions } from "./types.ts";

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
  checkControllerNames(options);
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
    // Each followed by the gateway bridge the sandbox then needs (membership.ts).
    deleteEndpoint: (id, o) => membership.deleteEndpoint(ctx, id, o),
    join: (id, sb) => membership.join(ctx, id, sb),
    leave: (id, sb) => membership.leave(ctx, id, sb),
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
