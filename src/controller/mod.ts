/**
 * The controller: owns this host's networks, endpoints and sandboxes as XState actors,
 * journals every transition to JetStream before acting on it, and rebuilds itself from the
 * journal on start.
 *
 * Write path (DESIGN §3): validate → check the actor can take the intent (pure) → append
 * the intent (expect.lastSubjectSequence, msgID) → send it to the actor, whose transient
 * state runs the driver effect → append the outcome → the actor applies it → resolve.
 *
 * @module
 */

import { type AnyActorRef, createActor, fromCallback, type Subscription } from "xstate";
import { Subject } from "rxjs";
import type { Observable } from "rxjs";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import type { Driver, IpamDriver } from "../../drivers/driver.ts";
import {
  createPluginResolver,
  type PluginClientOptions,
  type PluginResolver,
} from "../../drivers/remote/mod.ts";
import { builtinDrivers, NO_IPAM_DRIVERS, SINGLETON_DRIVERS } from "../../drivers/mod.ts";
import { BridgeOptions } from "../../drivers/bridge/mod.ts";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type { EffectInput } from "../../actors/_common.ts";
import { type CnmEvent, EVENT_VERSION, type Kind, type RecordedEvent } from "../journal/events.ts";
import {
  CnmError,
  ConflictError,
  errText,
  ForbiddenError,
  fromErrorRecord,
  InvalidArgumentError,
  NotFoundError,
  toErrorRecord,
  UnavailableError,
} from "../errors.ts";
import { type Journal, openJournal } from "../journal/journal.ts";
import { foldAll, type FoldWarning, stateOf } from "../journal/fold.ts";
import { MACHINES, outcomeTarget, TRANSIENT_STATES, verbOf } from "../../actors/mod.ts";
import {
  ensureJoined,
  ensureNetwork,
  type Outcome,
  runEffect,
  type SandboxChange,
} from "./effects.ts";
import { type Finding, inspectDrift, type ReconcileReport, repairDrift } from "./reconcile.ts";
import { createFirewall, type Firewall } from "../../drivers/bridge/_firewall.ts";
import {
  CreateEndpointInput,
  type CreateEndpointOptions,
  CreateNetworkInput,
  type CreateNetworkOptions,
  CreateSandboxInput,
  type CreateSandboxOptions,
  DeleteEndpointInput,
  type DeleteEndpointOptions,
  parseInput,
  parseRef,
} from "./inputs.ts";
import {
  type EndpointInfo,
  endpointInfo,
  type NetworkInfo,
  networkInfo,
  type SandboxInfo,
  sandboxInfo,
} from "../info.ts";
import { newEventId, newObjectId, shortId } from "../ids.ts";
import { KeyedMutex } from "./locks.ts";
import { acquireLease, type Lease } from "./lease.ts";
import type { Kernel } from "../kernel/types.ts";
import { createKernel, type KernelOptions } from "../kernel/mod.ts";
import { createIpam, type Ipam } from "../ipam/mod.ts";
import { replayRemoteIpam } from "./remote_ipam.ts";
import {
  allocateEndpoint,
  allocateNetwork,
  type NetworkIpam,
  randomMac,
  releaseEndpoint,
  releaseNetwork,
  restoreEndpoint,
  restoreNetwork,
} from "./network_ipam.ts";
import {
  chooseGateway,
  hostResolvConf,
  hostsFile,
  programRoutes,
  resolvConf,
  type SandboxMember,
  writeIfChanged,
} from "./sandbox_config.ts";

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
   * Fault-injection points, for crash tests: called synchronously after an intent is durable
   * (before its effect starts), after an effect finished (before its outcome is appended),
   * and after an outcome is durable (before the command resolves).
   */
  hooks?: { point?(point: CrashPoint, event: CnmEvent): void };
}

/** Where {@link ControllerOptions.hooks} are called. */
export type CrashPoint = "intent-appended" | "effect-done" | "outcome-appended";

/** Result of the start-up recovery. */
export interface RecoveryReport {
  /** Events read from the journal. */
  events: number;
  /** Objects rebuilt (not deleted). */
  objects: number;
  /** Objects whose interrupted effect was run again. */
  resumed: string[];
  /** Events that could not be applied. */
  warnings: FoldWarning[];
  /** Milliseconds from connect to ready. */
  ms: number;
  /** What the start-up reconciliation found and repaired. */
  reconcile?: ReconcileReport;
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
  /** Stops the actors and the connection; leaves the kernel as it is. */
  close(): Promise<void>;
}

interface Rec {
  kind: Kind;
  id: string;
  actor: AnyActorRef;
  lastSeq: number;
  sub?: Subscription;
}

interface Waiter {
  resolve(outcome: CnmEvent): void;
  reject(err: Error): void;
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
    const journal = await openJournal(nc, {
      stream: options.stream,
      prefix: options.prefix,
      publishTimeoutMs: options.publishTimeoutMs,
    });
    const kernel = isKernel(options.kernel)
      ? options.kernel
      : await createKernel(options.kernel as KernelOptions | undefined);
    const holder: { ctl?: ControllerImpl } = {};
    const lease = await acquireLease(nc, {
      stream: journal.stream,
      prefix: journal.prefix,
      hostId: options.hostId ?? Deno.hostname(),
      ttlMs: options.leaseTtlMs,
      waitMs: options.leaseWaitMs,
      onLost: (reason) => holder.ctl?.fence(reason),
    }).catch(async (err) => {
      if (!isKernel(options.kernel)) await kernel.close().catch(() => {});
      throw err;
    });
    const ctl = new ControllerImpl(nc, journal, kernel, options, !isKernel(options.kernel), lease);
    holder.ctl = ctl;
    try {
      await ctl.start(started);
    } catch (err) {
      await ctl.close().catch(() => {});
      throw err;
    }
    return ctl;
  } catch (err) {
    await nc.close().catch(() => {});
    throw err;
  }
}

class ControllerImpl implements Controller {
  readonly hostId: string;
  readonly stream: string;
  readonly prefix: string;
  recovery!: RecoveryReport;
  readonly #events = new Subject<RecordedEvent>();
  readonly events$: Observable<RecordedEvent> = this.#events.asObservable();
  readonly #nc: NatsConnection;
  readonly #journal: Journal;
  readonly #kernel: Kernel;
  readonly #ownsKernel: boolean;
  readonly #drivers: Map<string, Driver>;
  readonly #ipamDrivers = new Map<string, IpamDriver>();
  readonly #plugins: PluginResolver;
  readonly #namePrefix: string;
  readonly #timeout: number;
  readonly #predefined: boolean;
  readonly #defaultBridge: boolean;
  readonly #stateDir: string;
  readonly #ipam: Ipam;
  readonly #reconcileOnStart: boolean;
  readonly #hook: (point: CrashPoint, event: CnmEvent) => void;
  readonly #hostNamespace?: string;
  #hostNetworks: string[] = [];
  /** Join facts decided by a driver whose outcome is not applied yet (sandbox programming). */
  readonly #pendingJoins = new Map<string, Record<string, unknown>>();
  readonly #locks = new KeyedMutex();
  readonly #objects = { network: new Map<string, Rec>(), endpoint: new Map(), sandbox: new Map() };
  readonly #waiters = new Map<string, Waiter>();
  #connected = true;
  #closed = false;
  #fenced?: string;
  readonly #lease: Lease;
  /** Intents whose append timed out: maybe stored. Settled before the object is used again. */
  readonly #uncertain = new Map<string, { kind: Kind; intent: CnmEvent }>();

  constructor(
    nc: NatsConnection,
    journal: Journal,
    kernel: Kernel,
    options: ControllerOptions,
    ownsKernel: boolean,
    lease: Lease,
  ) {
    this.#lease = lease;
    this.#nc = nc;
    this.#journal = journal;
    this.#kernel = kernel;
    this.#ownsKernel = ownsKernel;
    this.hostId = options.hostId ?? Deno.hostname();
    this.stream = journal.stream;
    this.prefix = journal.prefix;
    this.#namePrefix = options.namePrefix ?? "cnm-";
    this.#timeout = options.commandTimeoutMs ?? 30_000;
    this.#predefined = options.predefined ?? true;
    this.#defaultBridge = options.defaultBridge ?? true;
    this.#reconcileOnStart = options.reconcileOnStart ?? true;
    this.#hook = options.hooks?.point ?? (() => {});
    this.#hostNamespace = isKernel(options.kernel)
      ? undefined
      : (options.kernel as KernelOptions | undefined)?.hostNamespace;
    this.#stateDir = options.stateDir ?? `/var/lib/cnm/${this.hostId}`;
    this.#ipam = createIpam({ hostNetworks: () => this.#hostNetworks });
    this.#drivers = builtinDrivers();
    for (const d of options.drivers ?? []) this.#drivers.set(d.name, d);
    for (const d of options.ipamDrivers ?? []) this.#ipamDrivers.set(d.name, d);
    this.#plugins = createPluginResolver({
      ...(options.pluginDirs ? { pluginDirs: options.pluginDirs } : {}),
      ...(options.pluginOptions ?? {}),
    });
    this.#watchConnection();
  }

  // ---------------------------------------------------------------- start-up

  /** A driver by name: built-in, given, or a plugin discovered on first use. */
  async #driverFor(name: string): Promise<Driver> {
    const known = this.#drivers.get(name);
    if (known) return known;
    const plugin = await this.#plugins.driver(name);
    if (!plugin) throw new NotFoundError(`unknown driver "${name}"`);
    this.#drivers.set(name, plugin);
    return plugin;
  }

  /** A non-default IPAM driver by name: given, or a plugin discovered on first use. */
  async #ipamFor(name: string): Promise<IpamDriver> {
    const known = this.#ipamDrivers.get(name);
    if (known) return known;
    const plugin = await this.#plugins.ipam(name);
    if (!plugin) throw new NotFoundError(`unknown IPAM driver "${name}"`);
    this.#ipamDrivers.set(name, plugin);
    return plugin;
  }

  async start(started: number): Promise<void> {
    const fold = await foldAll(this.#journal.read(), undefined);
    // Plugins the journal's networks use are resolved before any effect runs again.
    for (const obj of fold.objects.values()) {
      if (obj.kind !== "network" || obj.host !== this.hostId) continue;
      const c = obj.snapshot.context as NetworkContext;
      if (stateOf(obj.snapshot) === "deleted") continue;
      await this.#driverFor(c.driver).catch(() => {});
      const ipamName = c.ipamRequest?.driver ?? c.ipam?.driver;
      if (ipamName && ipamName !== "default") await this.#ipamFor(ipamName).catch(() => {});
    }
    const resumed: { rec: Rec; intent?: RecordedEvent }[] = [];
    let objects = 0;
    for (const obj of fold.objects.values()) {
      if (obj.host !== this.hostId) continue; // another host's objects are not ours to run
      const state = stateOf(obj.snapshot);
      if (state === "deleted") continue;
      objects++;
      const machine = this.#provided(obj.kind);
      let actor: AnyActorRef;
      if (state === "creating") {
        actor = createActor(machine, { input: { event: obj.createIntent } });
        resumed.push({ rec: this.#register(obj.kind, obj.id, actor, obj.lastSeq) });
      } else if (obj.intent && obj.before) {
        actor = createActor(machine, {
          snapshot: MACHINES[obj.kind].getPersistedSnapshot(obj.before),
        });
        resumed.push({
          rec: this.#register(obj.kind, obj.id, actor, obj.lastSeq),
          intent: obj.intent,
        });
      } else {
        actor = createActor(machine, {
          snapshot: MACHINES[obj.kind].getPersistedSnapshot(obj.snapshot),
        });
        this.#register(obj.kind, obj.id, actor, obj.lastSeq);
      }
    }
    this.#rebuildIpam(fold.warnings);
    await this.#replayRemoteIpam(fold.warnings);
    // Stable actors first; then interrupted effects, sandboxes and networks before endpoints
    // (a join needs its namespace), endpoint deletes before network deletes.
    for (const rec of this.#allRecs()) {
      if (!resumed.some((r) => r.rec === rec)) rec.actor.start();
    }
    const order = (r: { rec: Rec; intent?: RecordedEvent }) => {
      const s = stateOf(r.rec.actor.getSnapshot?.() ?? { value: "creating" });
      if (r.rec.kind === "endpoint") return 2;
      if (r.intent && s !== "creating") return r.rec.kind === "sandbox" ? 3 : 4;
      return r.rec.kind === "sandbox" ? 0 : 1;
    };
    resumed.sort((a, b) => order(a) - order(b));
    for (const r of resumed) {
      await this.#locks.with([r.rec.id], async () => {
        const done = this.#waitOutcome(r.intent?.eventId ?? this.#pendingEventId(r.rec));
        r.rec.actor.start();
        if (r.intent) r.rec.actor.send(r.intent);
        await done.catch(() => {}); // failures are recorded as events; keep going
      });
    }
    this.recovery = {
      events: fold.lastSeq,
      objects,
      resumed: resumed.map((r) => `${r.rec.kind} ${r.rec.id}`),
      warnings: fold.warnings,
      ms: performance.now() - started,
    };
    if (this.#predefined) await this.#ensurePredefined();
    if (this.#reconcileOnStart) {
      try {
        this.recovery.reconcile = await this.reconcile();
      } catch (err) {
        this.recovery.warnings.push({
          seq: 0,
          objectId: "",
          type: "reconcile",
          reason: errText(err),
        });
      }
    }
  }

  // ---------------------------------------------------------------- reconcile

  #firewall?: Firewall;

  async reconcile(options: { dryRun?: boolean } = {}): Promise<ReconcileReport> {
    this.#assertOpen();
    const started = performance.now();
    const dryRun = options.dryRun ?? false;
    return await this.#locks.with(["reconcile"], async () => {
      const view = <C>(m: Map<string, Rec>) =>
        [...m.values()].map((r) => ({ state: this.#state(r), c: this.#ctx<C>(r) }));
      const networks = view<NetworkContext>(this.#objects.network);
      this.#firewall ??= createFirewall({ exec: (argv, o) => this.#kernel.exec(argv, o) });
      const fw = this.#firewall;
      const findings = await inspectDrift({
        kernel: this.#kernel,
        namePrefix: this.#namePrefix,
        hostNamespace: this.#hostNamespace,
        networks,
        endpoints: view<EndpointContext>(this.#objects.endpoint),
        sandboxes: view<SandboxContext>(this.#objects.sandbox),
        firewallNetworks: async () =>
          networks.some((n) => n.c.driver === "bridge") ? await fw.listNetworks() : undefined,
      });
      const report: ReconcileReport = { dryRun, findings: [], ms: 0 };
      if (dryRun) {
        report.findings = findings.map((f) => ({ ...f, repaired: false }));
      } else {
        const env = this.#effectEnv();
        report.findings = await repairDrift(findings, {
          kernel: this.#kernel,
          firewall: fw,
          withObject: (kind, id, f) =>
            this.#locks.with([id], async () => {
              const rec = this.#objects[kind].get(id);
              if (rec) await f(this.#ctx(rec));
            }),
          joinedTo: (sandboxId) =>
            this.#endpointsOf((e) => e.sandboxId === sandboxId)
              .filter((r) => this.#state(r) === "joined")
              .map((r) => this.#ctx<EndpointContext>(r)),
          ensureNetwork: (c) => ensureNetwork(env, c, newEventId()),
          ensureJoined: (c) => ensureJoined(env, c, newEventId()),
          record: (kind, objectId, group, error) =>
            this.#recordReconciled(kind, objectId, group, error === undefined, error),
        });
      }
      report.ms = performance.now() - started;
      return report;
    });
  }

  async #recordReconciled(
    kind: Finding["kind"],
    objectId: string,
    findings: Finding[],
    repaired: boolean,
    error: unknown,
  ): Promise<void> {
    const data = {
      findings: findings.map(({ kind: _k, objectId: _o, ...f }) => f),
      repaired,
      ...(error ? { error: toErrorRecord(error) } : {}),
    };
    if (kind === "host") {
      const last = await this.#journal.last("host", this.hostId);
      const event = this.#event("host", this.hostId, "host.reconciled", "active", "active", data);
      const { seq } = await this.#journal.append(event, last?.seq ?? 0);
      this.#emit(event, seq);
      return;
    }
    const rec = this.#objects[kind].get(objectId);
    if (!rec) return;
    const state = this.#state(rec);
    const event = this.#event(kind, objectId, `${kind}.reconciled`, state, state, data);
    const { seq } = await this.#journal.append(event, rec.lastSeq);
    rec.lastSeq = seq;
    rec.actor.send(event);
    this.#emit(event, seq);
  }

  /** IPAM state from the journal, before anything else runs (libnetwork's replay). */
  #rebuildIpam(warnings: FoldWarning[]): void {
    const live = (r: Rec) => !["failed", "deleted"].includes(this.#state(r));
    const restore = (id: string, f: () => void) => {
      try {
        f();
      } catch (err) {
        warnings.push({ seq: 0, objectId: id, type: "ipam", reason: errText(err) });
      }
    };
    for (const r of this.#objects.network.values()) {
      const c = this.#ctx<NetworkContext>(r);
      if (live(r) && c.ipam?.driver === "default") {
        restore(r.id, () => restoreNetwork(this.#ipam, c.ipam as NetworkIpam));
      }
    }
    for (const r of this.#objects.endpoint.values()) {
      const c = this.#ctx<EndpointContext>(r);
      const facts = this.#networkIpam(c.networkId);
      if (live(r) && facts?.driver === "default") {
        restore(r.id, () => restoreEndpoint(this.#ipam, facts, c));
      }
    }
  }

  /** Tells `RequiresRequestReplay` IPAM plugins again what is in use (see remote_ipam.ts). */
  async #replayRemoteIpam(warnings: FoldWarning[]): Promise<void> {
    const networks = [...this.#objects.network.values()]
      .filter((r) => !["failed", "deleted"].includes(this.#state(r)))
      .map((r) => this.#ctx<NetworkContext>(r));
    for (const [name, ipam] of this.#ipamDrivers) {
      const failures = await replayRemoteIpam(
        ipam,
        networks.filter((c) => c.ipam?.driver === name),
        (networkId) => this.#endpointsOf((e) => e.networkId === networkId).map((r) => this.#ctx(r)),
      );
      for (const [objectId, reason] of failures) {
        warnings.push({ seq: 0, objectId, type: "ipam.replay", reason });
      }
    }
  }

  #networkIpam(networkId: string): NetworkIpam | undefined {
    const net = this.#objects.network.get(networkId);
    return net ? this.#ctx<NetworkContext>(net).ipam as NetworkIpam | undefined : undefined;
  }

  /** The network's IPAM facts when the built-in IPAM manages them. */
  #defaultIpam(c: NetworkContext | undefined): NetworkIpam | undefined {
    return c?.ipam?.driver === "default" ? c.ipam as NetworkIpam : undefined;
  }

  /** Releases what a failed create or a finished delete no longer holds. */
  #afterOutcome(kind: Kind, context: unknown, outcome: CnmEvent): void {
    const t = outcome.type;
    if (kind === "network" && (t === "network.deleted" || t === "network.create.failed")) {
      releaseNetwork(this.#ipam, this.#defaultIpam(context as NetworkContext));
    }
    if (kind === "endpoint" && (t === "endpoint.deleted" || t === "endpoint.create.failed")) {
      const c = context as EndpointContext;
      const net = this.#objects.network.get(c.networkId);
      releaseEndpoint(this.#ipam, this.#defaultIpam(net && this.#ctx<NetworkContext>(net)), c);
    }
    if (kind === "endpoint") this.#pendingJoins.delete((context as EndpointContext).id);
  }

  #pendingEventId(rec: Rec): string {
    // A fresh actor in `creating` carries its create intent as `pending`.
    return (rec.actor.getSnapshot().context as { pending?: { eventId: string } }).pending
      ?.eventId ?? "";
  }

  async #ensurePredefined(): Promise<void> {
    for (const [name, driver] of [["none", "null"], ["host", "host"]]) {
      const exists = [...this.#objects.network.values()].some((r) => {
        const c = this.#ctx<NetworkContext>(r);
        return c.driver === driver;
      });
      if (!exists) await this.#createNetwork({ name, driver }, true);
    }
    const hasDefault = [...this.#objects.network.values()].some((r) =>
      this.#ctx<NetworkContext>(r).options[BridgeOptions.defaultBridge] === "true"
    );
    if (this.#defaultBridge && !hasDefault) {
      await this.#createNetwork({
        name: "bridge",
        driver: "bridge",
        options: { [BridgeOptions.name]: "cnm0", [BridgeOptions.defaultBridge]: "true" },
      }, true);
    }
  }

  #watchConnection(): void {
    (async () => {
      for await (const s of this.#nc.status()) {
        if (s.type === "disconnect") this.#connected = false;
        if (s.type === "reconnect") {
          this.#connected = true;
          this.#settleAllUncertain();
        }
      }
    })().catch(() => {});
  }

  // ---------------------------------------------------------------- actors

  #provided(kind: Kind) {
    const effect = fromCallback<CnmEvent, EffectInput<unknown>>(({ input, sendBack }) => {
      let cancelled = false;
      this.#runEffect(kind, input, () => cancelled).then((outcome) => {
        if (outcome && !cancelled) sendBack(outcome);
      });
      return () => (cancelled = true);
    });
    return MACHINES[kind].provide({ actors: { effect } });
  }

  #register(kind: Kind, id: string, actor: AnyActorRef, lastSeq: number): Rec {
    const rec: Rec = { kind, id, actor, lastSeq };
    this.#objects[kind].set(id, rec);
    rec.sub = actor.subscribe((snap: { value: unknown }) => {
      if (stateOf(snap) === "deleted") {
        this.#objects[kind].delete(id);
        rec.sub?.unsubscribe();
      }
    });
    return rec;
  }

  *#allRecs(): Generator<Rec> {
    yield* this.#objects.sandbox.values();
    yield* this.#objects.network.values();
    yield* this.#objects.endpoint.values();
  }

  #ctx<C>(rec: Rec): C {
    return rec.actor.getSnapshot().context as C;
  }

  #state(rec: Rec): string {
    return stateOf(rec.actor.getSnapshot());
  }

  /** Runs a transient state's driver effect and journals its outcome; returns the outcome. */
  async #runEffect(
    kind: Kind,
    input: EffectInput<unknown>,
    cancelled: () => boolean,
  ): Promise<CnmEvent | undefined> {
    const ctx = input.context as { id: string; pending?: { eventId: string; effectId: string } };
    const pending = ctx.pending!;
    const started = performance.now();
    let outcome: Outcome;
    try {
      outcome = await runEffect(
        this.#effectEnv(),
        kind,
        input.state,
        input.context,
        pending.effectId,
      );
    } catch (err) {
      outcome = {
        type: `${kind}.${verbOf(input.state)}.failed`,
        data: { error: toErrorRecord(err) },
      };
    }
    outcome.data.elapsedMs = Math.round((performance.now() - started) * 1000) / 1000;
    const event = this.#event(
      kind,
      ctx.id,
      outcome.type,
      input.state,
      outcomeTarget(outcome.type, input.state, (input.context as { resume?: string }).resume),
      outcome.data,
      {
        effectId: pending.effectId,
        cause: pending.eventId,
      },
    );
    const rec = this.#objects[kind].get(ctx.id);
    if (!rec) return undefined;
    this.#hook("effect-done", event);
    // The outcome must be durable before the actor applies it: retry until it is.
    for (let attempt = 0; !this.#closed && !cancelled(); attempt++) {
      try {
        const { seq } = await this.#journal.append(event, rec.lastSeq);
        rec.lastSeq = seq;
        this.#emit(event, seq);
        this.#hook("outcome-appended", event);
        this.#afterOutcome(kind, input.context, event);
        this.#settle(pending.eventId, event);
        return event;
      } catch (err) {
        if (err instanceof ConflictError) {
          this.#fail(pending.eventId, err);
          return undefined;
        }
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
    this.#fail(
      pending.eventId,
      new UnavailableError("controller closed before the outcome was journaled"),
    );
    return undefined;
  }

  #effectEnv() {
    return {
      kernel: this.#kernel,
      prefix: this.#namePrefix,
      driver: (name: string) => this.#drivers.get(name),
      ipamDriver: (name: string) => this.#ipamDrivers.get(name),
      networkContext: (id: string) => {
        const r = this.#objects.network.get(id);
        return r ? this.#ctx<NetworkContext>(r) : undefined;
      },
      sandboxContext: (id: string) => {
        const r = this.#objects.sandbox.get(id);
        return r ? this.#ctx<SandboxContext>(r) : undefined;
      },
      sandboxChanged: (sandboxId: string, change: SandboxChange) =>
        this.#locks.with(
          [`sandbox-config:${sandboxId}`],
          () => this.#programSandbox(sandboxId, change),
        ),
      sandboxDir: (id: string) => `${this.#stateDir}/sandboxes/${id}`,
    };
  }

  /**
   * Recomputes a sandbox's default routes and files from its members: endpoints joined or
   * joining it (with the driver's join facts), less the one leaving.
   */
  async #programSandbox(sandboxId: string, change: SandboxChange): Promise<void> {
    const sbRec = this.#objects.sandbox.get(sandboxId);
    if (!sbRec) return;
    const sb = this.#ctx<SandboxContext>(sbRec);
    if (change.add) this.#pendingJoins.set(change.add.endpointId, change.add.facts);
    const members: SandboxMember[] = [];
    for (const r of this.#endpointsOf((e) => e.sandboxId === sandboxId)) {
      const e = this.#ctx<EndpointContext>(r);
      const state = this.#state(r);
      if (e.id === change.remove || state === "leaving" || state === "deleting") continue;
      const facts = this.#pendingJoins.get(e.id) ?? (state === "joined" ? e.joinFacts : undefined);
      if (!facts || !e.ifname) continue;
      const net = this.#objects.network.get(e.networkId);
      const nc = net ? this.#ctx<NetworkContext>(net) : undefined;
      members.push({
        endpointId: e.id,
        ifname: e.ifname,
        networkName: nc?.name ?? e.networkId,
        internal: nc?.internal ?? false,
        ...(e.ipv4Address ? { ipv4Address: e.ipv4Address } : {}),
        ...(e.ipv6Address ? { ipv6Address: e.ipv6Address } : {}),
        ...(typeof facts.gateway === "string" ? { gateway: facts.gateway } : {}),
        ...(typeof facts.gatewayIPv6 === "string" ? { gatewayIPv6: facts.gatewayIPv6 } : {}),
      });
    }
    // A leave that does not change the gateway choice leaves the routes alone (the removed
    // device took its own routes with it); joins and repairs always program them.
    const routes = JSON.stringify(
      [chooseGateway(members, "ipv4"), chooseGateway(members, "ipv6")].map((m) =>
        m && [m.ifname, m.gateway, m.gatewayIPv6]
      ),
    ) + members.some((m) => m.ipv6Address);
    const unchanged = change.remove !== undefined && this.#routesOf.get(sandboxId) === routes;
    if (!unchanged && await this.#kernel.netnsExists(sb.key)) {
      await programRoutes(this.#kernel, sb.key, members);
      this.#routesOf.set(sandboxId, routes);
    }
    // resolv.conf does not depend on the members: written when the sandbox is made.
    await this.#writeSandboxFiles(sb, members, !change.add && !change.remove);
  }

  /** The gateway choice last programmed into each sandbox (skip unchanged). */
  readonly #routesOf = new Map<string, string>();

  async #writeSandboxFiles(
    sb: SandboxContext,
    members: SandboxMember[],
    withResolvConf: boolean,
  ): Promise<void> {
    const dir = `${this.#stateDir}/sandboxes/${sb.id}`;
    const opts = { name: sb.name, ...(sb.config ?? {}) };
    if (withResolvConf) {
      await Deno.mkdir(dir, { recursive: true });
      await writeIfChanged(`${dir}/resolv.conf`, resolvConf(opts, await hostResolvConf()));
    }
    await writeIfChanged(`${dir}/hosts`, hostsFile(opts, members)).catch(async (err) => {
      if (withResolvConf || !(err instanceof Deno.errors.NotFound)) throw err;
      await this.#writeSandboxFiles(sb, members, true); // the directory went missing: remake it
    });
  }

  #event(
    kind: Kind | "host",
    objectId: string,
    type: string,
    from: string | null,
    to: string,
    data: Record<string, unknown>,
    extra: { effectId?: string; cause?: string } = {},
  ): CnmEvent {
    return {
      v: EVENT_VERSION,
      eventId: newEventId(),
      kind,
      objectId,
      type,
      from,
      to,
      at: new Date().toISOString(),
      host: this.hostId,
      data,
      ...(extra.effectId ? { effectId: extra.effectId } : {}),
      ...(extra.cause ? { cause: extra.cause } : {}),
    };
  }

  /** The intent that creates a new object: `from` null, a fresh effectId. */
  #createIntent(kind: Kind, id: string, data: Record<string, unknown>): CnmEvent {
    return this.#event(kind, id, `${kind}.create.requested`, null, "creating", data, {
      effectId: newEventId(),
    });
  }

  /** An intent for an existing object: `from` its current state, a fresh effectId. */
  #intent(rec: Rec, type: string, to: string, data: Record<string, unknown>): CnmEvent {
    return this.#event(rec.kind, rec.id, type, this.#state(rec), to, data, {
      effectId: newEventId(),
    });
  }

  #emit(event: CnmEvent, seq: number): void {
    this.#events.next({ ...event, seq });
  }

  #waitOutcome(eventId: string): Promise<CnmEvent> {
    return new Promise<CnmEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(eventId);
        reject(
          new UnavailableError(
            `timed out after ${this.#timeout} ms waiting for the outcome of ${eventId}; ` +
              "it completes when the journal and the driver answer",
          ),
        );
      }, this.#timeout);
      this.#waiters.set(eventId, {
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  }

  #settle(eventId: string, outcome: CnmEvent): void {
    const w = this.#waiters.get(eventId);
    this.#waiters.delete(eventId);
    w?.resolve(outcome);
  }

  #fail(eventId: string, err: Error): void {
    const w = this.#waiters.get(eventId);
    this.#waiters.delete(eventId);
    w?.reject(err);
  }

  /**
   * Appends an intent for `rec` (or a new object) and hands it to the actor. Returns a
   * promise of the outcome: it resolves once the outcome is durable and rejects with the
   * recorded error for `*.failed` outcomes. Locks that only guard the decision may be
   * released as soon as this returns; the effect runs on.
   */
  async #begin(
    kind: Kind,
    rec: Rec | undefined,
    intent: CnmEvent,
    register?: () => AnyActorRef,
  ): Promise<{ done: Promise<CnmEvent> }> {
    this.#assertOpen();
    if (!this.#connected) {
      throw new UnavailableError("journal unavailable: the NATS connection is down (reconnecting)");
    }
    if (rec && !rec.actor.getSnapshot().can(intent)) {
      throw new ConflictError(
        `${kind} ${intent.objectId} cannot take ${intent.type} in state ${this.#state(rec)}`,
      );
    }
    await this.#settleUncertain(intent.objectId);
    let seq: number;
    try {
      ({ seq } = await this.#journal.append(intent, rec?.lastSeq ?? 0));
    } catch (err) {
      // A timeout may still have stored it: remember, and settle before the object is used.
      if (err instanceof UnavailableError) this.#uncertain.set(intent.objectId, { kind, intent });
      // Someone else wrote this object: take the journal's view.
      if (err instanceof ConflictError && rec) await this.#reload(kind, rec.id).catch(() => {});
      throw err;
    }
    this.#emit(intent, seq);
    this.#hook("intent-appended", intent);
    const done = this.#waitOutcome(intent.eventId);
    if (rec) {
      rec.lastSeq = seq;
      rec.actor.send(intent);
    } else {
      const actor = register!();
      this.#register(kind, intent.objectId, actor, seq);
      actor.start();
    }
    const checked = done.then((outcome) => {
      if (outcome.type.endsWith(".failed")) {
        throw fromErrorRecord((outcome.data as { error: ReturnType<typeof toErrorRecord> }).error);
      }
      return outcome;
    });
    checked.catch(() => {}); // awaited by the caller; never an unhandled rejection
    return { done: checked };
  }

  /** {@link #begin}, then waits for the outcome. */
  async #decide(
    kind: Kind,
    rec: Rec | undefined,
    intent: CnmEvent,
    register?: () => AnyActorRef,
  ): Promise<CnmEvent> {
    return await (await this.#begin(kind, rec, intent, register)).done;
  }

  /**
   * Settles an intent whose append timed out. If the journal has it, it is closed with a
   * `*.failed` outcome ("abandoned"), so the history says what happened and nothing runs it
   * later; the object is then reloaded from the journal.
   */
  async #settleUncertain(objectId: string): Promise<void> {
    const u = this.#uncertain.get(objectId);
    if (!u) return;
    await this.#locks.with([`uncertain:${objectId}`], async () => {
      if (!this.#uncertain.has(objectId)) return;
      const last = await this.#journal.last(u.kind, objectId);
      if (last?.eventId === u.intent.eventId) {
        const rec = this.#objects[u.kind].get(objectId);
        const to = rec ? this.#state(rec) : "failed";
        const outcome = this.#event(
          u.kind,
          objectId,
          u.intent.type.replace(/\.requested$/, ".failed"),
          u.intent.to,
          to,
          {
            error: {
              name: "UnavailableError",
              code: "UNAVAILABLE",
              message:
                "abandoned: the journal did not acknowledge the intent in time; nothing was changed",
            },
          },
          { effectId: u.intent.effectId, cause: u.intent.eventId },
        );
        const { seq } = await this.#journal.append(outcome, last.seq);
        this.#emit(outcome, seq);
        this.#uncertain.delete(objectId);
        await this.#reload(u.kind, objectId);
      } else {
        this.#uncertain.delete(objectId);
      }
    });
  }

  #settleAllUncertain(): void {
    for (const id of [...this.#uncertain.keys()]) {
      this.#settleUncertain(id).catch(() => {/* retried on next use or reconnect */});
    }
  }

  /** Rebuilds one object's actor from its events in the journal. */
  async #reload(kind: Kind, id: string): Promise<void> {
    const events: RecordedEvent[] = [];
    for await (const e of this.#journal.read({ subject: `${this.prefix}.${kind}.${id}` })) {
      events.push(e);
    }
    const fold = await foldAll(events);
    const obj = fold.objects.get(id);
    const old = this.#objects[kind].get(id);
    if (old) {
      old.sub?.unsubscribe();
      old.actor.stop();
      this.#objects[kind].delete(id);
    }
    if (!obj || stateOf(obj.snapshot) === "deleted") return;
    const machine = this.#provided(kind);
    if (TRANSIENT_STATES.has(stateOf(obj.snapshot)) && obj.intent) {
      // Another writer left it mid-effect; run it like recovery does.
      const actor = stateOf(obj.snapshot) === "creating"
        ? createActor(machine, { input: { event: obj.createIntent } })
        : createActor(machine, { snapshot: MACHINES[kind].getPersistedSnapshot(obj.before) });
      this.#register(kind, id, actor, obj.lastSeq);
      actor.start();
      if (stateOf(obj.snapshot) !== "creating") actor.send(obj.intent);
      return;
    }
    const actor = createActor(machine, {
      snapshot: MACHINES[kind].getPersistedSnapshot(obj.snapshot),
    });
    this.#register(kind, id, actor, obj.lastSeq);
    actor.start();
  }

  #assertOpen(): void {
    if (this.#closed) throw new UnavailableError("controller is closed");
    if (this.#fenced) throw new ConflictError(`controller stopped writing: ${this.#fenced}`);
  }

  /** Stops all writes: another controller owns this host now. */
  fence(reason: string): void {
    this.#fenced = reason;
    console.error(`cnm: ${reason}; this controller no longer writes`);
  }

  // ---------------------------------------------------------------- lookups

  #findNetwork(ref: string): Rec | undefined {
    const m = this.#objects.network;
    const byId = m.get(ref);
    if (byId) return byId;
    const live = [...m.values()];
    return live.find((r) => this.#ctx<NetworkContext>(r).name === ref) ??
      unique(live.filter((r) => r.id.startsWith(ref)));
  }

  #findSandbox(ref: string): Rec | undefined {
    const m = this.#objects.sandbox;
    const byId = m.get(ref);
    if (byId) return byId;
    const live = [...m.values()];
    return live.find((r) => this.#ctx<SandboxContext>(r).name === ref) ??
      unique(live.filter((r) => r.id.startsWith(ref)));
  }

  #findEndpoint(ref: string): Rec | undefined {
    const m = this.#objects.endpoint;
    return m.get(ref) ?? unique([...m.values()].filter((r) => r.id.startsWith(ref)));
  }

  #endpointsOf(filter: (c: EndpointContext) => boolean): Rec[] {
    return [...this.#objects.endpoint.values()].filter((r) =>
      filter(this.#ctx<EndpointContext>(r))
    );
  }

  // ---------------------------------------------------------------- networks

  createNetwork(options: CreateNetworkOptions): Promise<NetworkInfo> {
    return this.#createNetwork(options, false);
  }

  async #createNetwork(options: CreateNetworkOptions, predefined: boolean): Promise<NetworkInfo> {
    this.#assertOpen();
    const input = parseInput(CreateNetworkInput, options, "network options");
    if (input.name === "") throw new InvalidArgumentError("invalid name: name is empty");
    const driver = await this.#driverFor(input.driver);
    const ipamDriver = input.ipam?.driver ?? "default";
    if (ipamDriver !== "default") await this.#ipamFor(ipamDriver);
    const id = newObjectId();
    return await this.#locks.with(["network-names", id], async () => {
      const live = [...this.#objects.network.values()];
      if (live.some((r) => this.#ctx<NetworkContext>(r).name === input.name)) {
        throw new ConflictError(`network with name ${input.name} already exists`);
      }
      if (SINGLETON_DRIVERS.has(driver.name)) {
        if (live.some((r) => this.#ctx<NetworkContext>(r).driver === driver.name)) {
          throw new ForbiddenError(`only one instance of "${driver.name}" network is allowed`);
        }
      }
      const caps = driver.capabilities();
      driver.validateNetwork?.({
        id,
        internal: input.internal,
        enableIPv6: input.enableIPv6,
        options: input.options,
        labels: input.labels,
        ipv4: [],
        ipv6: [],
        facts: {},
      });
      let ipam: NetworkIpam | undefined;
      const remoteIpam = ipamDriver !== "default" ? input.ipam : undefined;
      if (!NO_IPAM_DRIVERS.has(driver.name) && !remoteIpam) {
        this.#hostNetworks = (await this.#kernel.listRoutes())
          .map((r) => r.dst).filter((d) => d !== "default" && d.includes("/"));
        ipam = allocateNetwork(this.#ipam, input);
      }
      const data = {
        name: input.name,
        driver: driver.name,
        scope: caps.dataScope,
        internal: input.internal,
        enableIPv6: input.enableIPv6,
        labels: input.labels,
        options: input.options,
        ...(ipam ? { ipam } : {}),
        ...(remoteIpam ? { ipamRequest: remoteIpam } : {}),
        ...(predefined ? { predefined: true } : {}),
      };
      const intent = this.#createIntent("network", id, data);
      try {
        await this.#decide(
          "network",
          undefined,
          intent,
          () => createActor(this.#provided("network"), { input: { event: intent } }),
        );
      } catch (err) {
        // Not journaled: give the pools back. (A journaled failure released them already.)
        if (!this.#objects.network.has(id)) releaseNetwork(this.#ipam, ipam);
        throw err;
      }
      return this.network(id)!;
    });
  }

  async deleteNetwork(idOrName: string): Promise<void> {
    this.#assertOpen();
    const ref = parseRef(idOrName, "network");
    const found = this.#findNetwork(ref);
    if (!found) throw new NotFoundError(`network ${ref} not found`);
    await this.#locks.with([found.id], async () => {
      const rec = this.#objects.network.get(found.id);
      if (!rec) throw new NotFoundError(`network ${ref} not found`);
      const c = this.#ctx<NetworkContext>(rec);
      if (SINGLETON_DRIVERS.has(c.driver)) {
        throw new ForbiddenError(`network of type "${c.driver}" cannot be deleted`);
      }
      if (c.predefined) {
        throw new ForbiddenError(`${c.name} is a pre-defined network and cannot be removed`);
      }
      const eps = this.#endpointsOf((e) => e.networkId === rec.id);
      if (eps.length) {
        const list = eps.map((r) => {
          const e = this.#ctx<EndpointContext>(r);
          return `name:${JSON.stringify(e.name)} id:${JSON.stringify(shortId(e.id))}`;
        }).join(", ");
        throw new ForbiddenError(`network ${c.name} has active endpoints (${list})`);
      }
      const intent = this.#intent(rec, "network.delete.requested", "deleting", {});
      await this.#decide("network", rec, intent);
    });
  }

  network(idOrName: string): NetworkInfo | undefined {
    const rec = typeof idOrName === "string" ? this.#findNetwork(idOrName) : undefined;
    return rec ? networkInfo(this.#state(rec), this.#ctx(rec)) : undefined;
  }

  networks(): NetworkInfo[] {
    return [...this.#objects.network.values()].map((r) =>
      networkInfo(this.#state(r), this.#ctx(r))
    );
  }

  // ---------------------------------------------------------------- sandboxes

  async createSandbox(options: CreateSandboxOptions): Promise<SandboxInfo> {
    this.#assertOpen();
    const input = parseInput(CreateSandboxInput, options, "sandbox options");
    if (input.name === "") throw new InvalidArgumentError("invalid name: name is empty");
    const id = newObjectId();
    return await this.#locks.with(["sandbox-names", id], async () => {
      const other = [...this.#objects.sandbox.values()].find((r) =>
        this.#ctx<SandboxContext>(r).name === input.name
      );
      if (other) {
        throw new ForbiddenError(
          `container ${input.name} is already present in sandbox ${other.id}`,
        );
      }
      const owned = input.key === undefined;
      const key = input.key ?? `/var/run/netns/${this.#namePrefix}${shortId(id)}`;
      const config = {
        ...(input.hostname ? { hostname: input.hostname } : {}),
        ...(input.dns ? { dns: input.dns } : {}),
        ...(input.dnsSearch ? { dnsSearch: input.dnsSearch } : {}),
        ...(input.extraHosts ? { extraHosts: input.extraHosts } : {}),
      };
      const data = {
        name: input.name,
        key,
        owned,
        labels: input.labels,
        ...(Object.keys(config).length ? { config } : {}),
      };
      const intent = this.#createIntent("sandbox", id, data);
      await this.#decide(
        "sandbox",
        undefined,
        intent,
        () => createActor(this.#provided("sandbox"), { input: { event: intent } }),
      );
      return this.sandbox(id)!;
    });
  }

  async deleteSandbox(idOrName: string): Promise<void> {
    this.#assertOpen();
    const ref = parseRef(idOrName, "sandbox");
    const found = this.#findSandbox(ref);
    if (!found) throw new NotFoundError(`sandbox ${ref} not found`);
    // libnetwork: deleting a sandbox leaves and deletes each of its endpoints.
    for (let round = 0; round < 3; round++) {
      const eps = this.#endpointsOf((e) => e.sandboxId === found.id);
      if (!eps.length) break;
      for (const ep of eps) {
        if (this.#state(ep) === "joined") await this.leave(ep.id, found.id);
        if (this.#objects.endpoint.has(ep.id)) await this.deleteEndpoint(ep.id, { force: true });
      }
    }
    await this.#locks.with([found.id], async () => {
      const rec = this.#objects.sandbox.get(found.id);
      if (!rec) throw new NotFoundError(`sandbox ${ref} not found`);
      if (this.#endpointsOf((e) => e.sandboxId === rec.id).length) {
        throw new ConflictError(`sandbox ${ref} gained endpoints while being deleted`);
      }
      const intent = this.#intent(rec, "sandbox.delete.requested", "deleting", {});
      await this.#decide("sandbox", rec, intent);
    });
  }

  sandbox(idOrName: string): SandboxInfo | undefined {
    const rec = typeof idOrName === "string" ? this.#findSandbox(idOrName) : undefined;
    return rec ? this.#sandboxInfo(rec) : undefined;
  }

  sandboxes(): SandboxInfo[] {
    return [...this.#objects.sandbox.values()].map((r) => this.#sandboxInfo(r));
  }

  #sandboxInfo(rec: Rec): SandboxInfo {
    const eps = this.#endpointsOf((e) => e.sandboxId === rec.id).map((r) => r.id);
    return sandboxInfo(
      this.#state(rec),
      this.#ctx(rec),
      eps,
      `${this.#stateDir}/sandboxes/${rec.id}`,
    );
  }

  // ---------------------------------------------------------------- endpoints

  async createEndpoint(network: string, options: CreateEndpointOptions): Promise<EndpointInfo> {
    this.#assertOpen();
    const ref = parseRef(network, "network");
    const input = parseInput(CreateEndpointInput, options, "endpoint options");
    if (input.name === "") throw new InvalidArgumentError("invalid name: name is empty");
    const found = this.#findNetwork(ref);
    if (!found) throw new NotFoundError(`network ${ref} not found`);
    const id = newObjectId();
    let intent!: CnmEvent;
    const unlockEndpoint = await this.#locks.lock(id);
    try {
      // Hold the network only while deciding, so a concurrent delete sees this endpoint.
      const unlockNetwork = await this.#locks.lock(found.id);
      let done: Promise<CnmEvent>;
      let addresses: { ipv4Address?: string; ipv6Address?: string } = {};
      let netIpam: NetworkIpam | undefined;
      try {
        const net = this.#objects.network.get(found.id);
        if (!net) throw new NotFoundError(`network ${ref} not found`);
        const nc = this.#ctx<NetworkContext>(net);
        if (this.#state(net) !== "active") {
          throw new ForbiddenError(`network ${nc.name} is not active (state ${this.#state(net)})`);
        }
        if (this.#endpointsOf((e) => e.networkId === net.id && e.name === input.name).length) {
          throw new ForbiddenError(
            `endpoint with name ${input.name} already exists in network ${nc.name}`,
          );
        }
        netIpam = this.#defaultIpam(nc);
        addresses = netIpam
          ? allocateEndpoint(this.#ipam, netIpam, {
            ipv4Address: input.ipv4Address,
            ipv6Address: input.ipv6Address,
          })
          : {};
        const data = {
          networkId: net.id,
          name: input.name,
          labels: input.labels,
          options: input.options,
          // With a remote IPAM the request travels as asked; the plugin answers in the effect.
          ...(netIpam ? addresses : {
            ...(input.ipv4Address ? { ipv4Address: input.ipv4Address } : {}),
            ...(input.ipv6Address ? { ipv6Address: input.ipv6Address } : {}),
          }),
          ...(input.macAddress
            ? { macAddress: input.macAddress.toLowerCase() }
            : nc.ipam || nc.ipamRequest
            ? { macAddress: randomMac() }
            : {}),
        };
        intent = this.#createIntent("endpoint", id, data);
        ({ done } = await this.#begin(
          "endpoint",
          undefined,
          intent,
          () => createActor(this.#provided("endpoint"), { input: { event: intent } }),
        ));
      } catch (err) {
        // Not journaled: give the addresses back.
        if (!this.#objects.endpoint.has(id)) releaseEndpoint(this.#ipam, netIpam, addresses);
        throw err;
      } finally {
        unlockNetwork();
      }
      await done;
    } finally {
      unlockEndpoint();
    }
    return this.endpoint(id)!;
  }

  async deleteEndpoint(endpointId: string, options: DeleteEndpointOptions = {}): Promise<void> {
    this.#assertOpen();
    const ref = parseRef(endpointId, "endpoint");
    const { force } = parseInput(DeleteEndpointInput, options ?? {}, "delete options");
    const found = this.#findEndpoint(ref);
    if (!found) throw new NotFoundError(`endpoint ${ref} not found`);
    await this.#locks.with([found.id], async () => {
      const rec = this.#objects.endpoint.get(found.id);
      if (!rec) throw new NotFoundError(`endpoint ${ref} not found`);
      const c = this.#ctx<EndpointContext>(rec);
      const state = this.#state(rec);
      if (state === "joined" && !force) {
        throw new ForbiddenError(`endpoint with name ${c.name} id ${c.id} has active containers`);
      }
      this.#assertNotBusy(rec, state);
      const intent = this.#intent(rec, "endpoint.delete.requested", "deleting", {
        force,
      });
      await this.#decide("endpoint", rec, intent);
    });
  }

  async join(endpointId: string, sandbox: string): Promise<EndpointInfo> {
    this.#assertOpen();
    const ref = parseRef(endpointId, "endpoint");
    const sbRef = parseRef(sandbox, "sandbox");
    const ep = this.#findEndpoint(ref);
    if (!ep) throw new NotFoundError(`endpoint ${ref} not found`);
    const sb = this.#findSandbox(sbRef);
    if (!sb) throw new NotFoundError(`sandbox ${sbRef} not found`);
    const releaseEndpoint = await this.#locks.lock(ep.id);
    try {
      // The sandbox is held only while deciding (the interface name is decided here).
      const releaseSandbox = await this.#locks.lock(sb.id);
      let done: Promise<CnmEvent>;
      try {
        const rec = this.#objects.endpoint.get(ep.id);
        if (!rec) throw new NotFoundError(`endpoint ${ref} not found`);
        const sbRec = this.#objects.sandbox.get(sb.id);
        if (!sbRec) throw new NotFoundError(`sandbox ${sbRef} not found`);
        const c = this.#ctx<EndpointContext>(rec);
        const state = this.#state(rec);
        if (c.sandboxId) {
          throw new ForbiddenError("another container is attached to the same network endpoint");
        }
        this.#assertNotBusy(rec, state);
        if (this.#state(sbRec) !== "ready") {
          throw new ForbiddenError(`sandbox ${sbRef} is not ready (state ${this.#state(sbRec)})`);
        }
        const intent = this.#intent(rec, "endpoint.join.requested", "joining", {
          sandboxId: sbRec.id,
          ifname: this.#nextIfname(sbRec.id, rec.id),
        });
        ({ done } = await this.#begin("endpoint", rec, intent));
      } finally {
        releaseSandbox();
      }
      await done;
    } finally {
      releaseEndpoint();
    }
    return this.endpoint(ep.id)!;
  }

  /** Lowest free `<prefix><n>` among the sandbox's interfaces (libnetwork: `eth0`, `eth1`, …). */
  #nextIfname(sandboxId: string, endpointId: string): string {
    const ep = this.#ctx<EndpointContext>(this.#objects.endpoint.get(endpointId)!);
    const net = this.#objects.network.get(ep.networkId);
    const prefix = (net &&
      this.#ctx<NetworkContext>(net).options["com.docker.network.container_iface_prefix"]) ||
      "eth";
    const used = new Set(
      this.#endpointsOf((e) => e.sandboxId === sandboxId).map((r) =>
        this.#ctx<EndpointContext>(r).ifname
      ),
    );
    for (let i = 0;; i++) if (!used.has(`${prefix}${i}`)) return `${prefix}${i}`;
  }

  async leave(endpointId: string, sandbox: string): Promise<void> {
    this.#assertOpen();
    const ref = parseRef(endpointId, "endpoint");
    const sbRef = parseRef(sandbox, "sandbox");
    const ep = this.#findEndpoint(ref);
    if (!ep) throw new NotFoundError(`endpoint ${ref} not found`);
    const sb = this.#findSandbox(sbRef);
    if (!sb) throw new NotFoundError(`sandbox ${sbRef} not found`);
    await this.#locks.with([ep.id, sb.id], async () => {
      const rec = this.#objects.endpoint.get(ep.id);
      if (!rec) throw new NotFoundError(`endpoint ${ref} not found`);
      const c = this.#ctx<EndpointContext>(rec);
      const state = this.#state(rec);
      if (!c.sandboxId) throw new ForbiddenError("cannot leave endpoint with no attached sandbox");
      if (c.sandboxId !== sb.id) {
        throw new ForbiddenError(
          `unexpected sandbox ID in leave request. Expected ${c.sandboxId}. Got ${sb.id}`,
        );
      }
      this.#assertNotBusy(rec, state);
      const intent = this.#intent(rec, "endpoint.leave.requested", "leaving", {
        sandboxId: sb.id,
      });
      await this.#decide("endpoint", rec, intent);
    });
  }

  #assertNotBusy(rec: Rec, state: string): void {
    if (TRANSIENT_STATES.has(state)) {
      throw new ConflictError(
        `${rec.kind} ${rec.id} is busy (state ${state}); its pending operation completes first`,
      );
    }
  }

  endpoint(id: string): EndpointInfo | undefined {
    const rec = typeof id === "string" ? this.#findEndpoint(id) : undefined;
    return rec ? endpointInfo(this.#state(rec), this.#ctx(rec)) : undefined;
  }

  endpoints(filter: { network?: string } = {}): EndpointInfo[] {
    let recs = [...this.#objects.endpoint.values()];
    if (filter.network !== undefined) {
      const net = this.#findNetwork(filter.network);
      if (!net) return [];
      recs = recs.filter((r) => this.#ctx<EndpointContext>(r).networkId === net.id);
    }
    return recs.map((r) => endpointInfo(this.#state(r), this.#ctx(r)));
  }

  // ---------------------------------------------------------------- close

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const rec of this.#allRecs()) {
      rec.sub?.unsubscribe();
      rec.actor.stop();
    }
    for (const [id, w] of this.#waiters) {
      this.#waiters.delete(id);
      w.reject(new UnavailableError("controller closed"));
    }
    this.#events.complete();
    const errors: unknown[] = [];
    if (this.#ownsKernel) await this.#kernel.close().catch((e) => errors.push(e));
    await this.#lease.release().catch((e) => errors.push(e));
    this.#plugins.close();
    await this.#nc.close().catch((e) => errors.push(e));
    if (errors.length) throw new AggregateError(errors, "errors while closing the controller");
  }
}

function unique(recs: Rec[]): Rec | undefined {
  return recs.length === 1 ? recs[0] : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { CnmError };
