/**
 * Start-up (DESIGN §5): fold the journal into actor snapshots without side effects, put the
 * journaled driver configurations in force, rebuild IPAM from the events, let stable actors go
 * live, re-run the effects left mid-transition with their effectIds, apply the `driverConfig`
 * option, create the predefined networks, then reconcile the kernel. Also the NATS reconnect
 * handling.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { RecordedEvent } from "../journal/events.ts";
import { type FoldedObject, type FoldWarning, stateOf } from "../journal/fold.ts";
import type { Current } from "../journal/current.ts";
import { TRANSIENT_STATES } from "../../actors/mod.ts";
import { isGlobal } from "./global.ts";
import { errText } from "../errors.ts";
import type { ControllerContext } from "./context.ts";
import type { ReconcileReport } from "./drift.ts";
import {
  applyStartConfig,
  configuredDrivers,
  type ConfigureDriverResult,
  loadJournaled,
} from "./driver_config.ts";
import { defaultIpamOf, restoreEndpoint, restoreNetwork } from "./network_ipam.ts";
import { ensurePredefined } from "./networks.ts";
import { endpointsOfNetwork, isLive, networkContext } from "./objects.ts";
import { reconcile } from "./reconcile.ts";
import { replayRemoteIpam } from "./remote_ipam.ts";
import { restorePorts } from "./endpoint_ports.ts";
import { sweepDeadClaims } from "./claims_sweep.ts";
import type { Rec } from "./runtime.ts";

/** Result of the start-up recovery. */
export interface RecoveryReport {
  /** The stream sequence recovered to (every event up to it is reflected). */
  events: number;
  /** Where the state came from: the snapshot plus the events after it, or the whole stream. */
  source: "snapshot" | "stream";
  /** The snapshot's watermark (0 without a snapshot). */
  snapshotSeq: number;
  /** Events read from the stream: after the snapshot, or all of them. */
  tail: number;
  /** Objects rebuilt (not deleted). */
  objects: number;
  /** Objects whose interrupted effect was run again. */
  resumed: string[];
  /** Events that could not be applied. */
  warnings: FoldWarning[];
  /** Milliseconds from connect to ready (the wait for another controller's lease included). */
  ms: number;
  /** Of `ms`, the milliseconds spent waiting for another controller's lease to lapse. */
  leaseWaitMs: number;
  /** Set when the lease was taken from a previous controller that provably died. */
  leaseTakeover?: string;
  /** What the start-up reconciliation found and repaired. */
  reconcile?: ReconcileReport;
  /** What the `driverConfig` option did, per driver (journaled only when it differed). */
  driverConfig: ConfigureDriverResult[];
  /** The embedded DNS listeners started again (sandbox ids that failed), and how long it took. */
  dns: { started: number; failed: string[]; ms: number };
  /**
   * Keys of cluster-wide claims given back because their holder is dead (claims_sweep.ts):
   * a controller died between a global object's durable delete and the release.
   */
  claimsReleased: string[];
}

interface Resumed {
  rec: Rec;
  /** The intent to send again (absent for `creating`: the actor carries its create intent). */
  intent?: RecordedEvent;
}

/**
 * Rebuilds the controller from `current` (the journal's fold: snapshot + tail, or the whole
 * stream); `started` is when connecting began.
 */
export async function recover(
  ctx: ControllerContext,
  started: number,
  current: Current,
): Promise<RecoveryReport> {
  const rt = ctx.runtime;
  const { hostId } = ctx.settings;
  // The world's fold: every host's objects (global networks are shared by all of them), from
  // the snapshot and the events after it (or the whole stream).
  const fold = current.fold;
  // The embedded resolver's names: exactly what the journal says, every host's.
  ctx.dns.feed.load(fold);
  const runsHere = (obj: FoldedObject) =>
    obj.host === hostId || (obj.kind === "network" && isGlobal(obj.snapshot.context));
  // Driver configurations first: IPAM's default pools and plugin timeouts come from them.
  for (const [objectId, reason] of loadJournaled(ctx, fold.drivers.values())) {
    fold.warnings.push({ seq: 0, objectId, type: "driver.configured", reason });
  }
  for (const name of configuredDrivers(ctx)) {
    if (!ctx.drivers.driver(name)) await ctx.drivers.resolve(name).catch(() => {});
  }
  // Plugins the journal's networks use are resolved before any effect runs again.
  for (const obj of fold.objects.values()) {
    if (obj.kind !== "network" || !runsHere(obj)) continue;
    const c = obj.snapshot.context as NetworkContext;
    if (stateOf(obj.snapshot) === "deleted") continue;
    await ctx.drivers.resolve(c.driver).catch(() => {});
    const ipamName = c.ipamRequest?.driver ?? c.ipam?.driver;
    if (ipamName && ipamName !== "default") await ctx.drivers.resolveIpam(ipamName).catch(() => {});
  }
  // Deleted objects too, when the whole stream was folded (old-style marks are judged by it).
  for (const id12 of current.known ?? []) rt.known.add(id12);
  const resumed: Resumed[] = [];
  let objects = 0;
  for (const obj of fold.objects.values()) {
    // Another host's local objects are not ours to run; global networks are everyone's.
    if (!runsHere(obj)) continue;
    rt.known.add(obj.id.slice(0, 12));
    const state = stateOf(obj.snapshot);
    if (state === "deleted") continue;
    objects++;
    // A global network another host is changing is mirrored, and resumed by that host.
    const writer = obj.intent?.host ?? obj.host;
    if (TRANSIENT_STATES.has(state) && writer !== hostId) {
      rt.adopt(obj.kind, obj.id, obj.snapshot, obj.lastSeq, true);
    } else if (state === "creating") {
      resumed.push({
        rec: rt.restore(obj.kind, obj.id, { intent: obj.createIntent ?? obj.intent! }, obj.lastSeq),
      });
    } else if (obj.intent && obj.before) {
      resumed.push({
        rec: rt.restore(obj.kind, obj.id, { snapshot: obj.before }, obj.lastSeq),
        intent: obj.intent,
      });
    } else {
      rt.restore(obj.kind, obj.id, { snapshot: obj.snapshot }, obj.lastSeq);
    }
  }
  rebuildIpam(ctx, fold.warnings);
  const claimsReleased = await sweepDeadClaims(ctx, (line) => console.error(`cnm: ${line}`));
  restorePorts(ctx.ports.allocator, fold, hostId, fold.warnings);
  await replayRemote(ctx, fold.warnings);
  // Global networks' drivers get their whole peer tables before any join runs again.
  await ctx.peers.syncAll();
  // Stable actors first; then interrupted effects, sandboxes and networks before endpoints
  // (a join needs its namespace), endpoint deletes before network deletes.
  for (const m of [rt.objects.sandbox, rt.objects.network, rt.objects.endpoint]) {
    for (const rec of m.values()) {
      if (!resumed.some((r) => r.rec === rec)) rec.actor.start();
    }
  }
  // Sandboxes answer names again before anything else runs (the old sockets died with us).
  const dnsStarted = performance.now();
  const dns = { ...await ctx.dns.restartAll(), ms: 0 };
  dns.ms = performance.now() - dnsStarted;
  // Published ports of ready sandboxes again (held sockets died with the old process), before
  // interrupted joins and leaves run again and before reconcile.
  await ctx.ports.republish(fold.warnings, new Set(resumed.map((r) => r.rec.id)));
  const order = (r: Resumed) => {
    const s = stateOf(r.rec.actor.getSnapshot?.() ?? { value: "creating" });
    if (r.rec.kind === "endpoint") return 2;
    if (r.intent && s !== "creating") return r.rec.kind === "sandbox" ? 3 : 4;
    return r.rec.kind === "sandbox" ? 0 : 1;
  };
  resumed.sort((a, b) => order(a) - order(b));
  for (const r of resumed) {
    await rt.locks.with([r.rec.id], async () => {
      const done = rt.waitOutcome(r.intent?.eventId ?? rt.pendingEventId(r.rec));
      r.rec.actor.start();
      if (r.intent) r.rec.actor.send(r.intent);
      await done.catch(() => {}); // failures are recorded as events; keep going
    });
  }
  const report: RecoveryReport = {
    events: fold.lastSeq,
    source: current.source,
    snapshotSeq: current.snapshotSeq,
    tail: current.tail,
    objects,
    resumed: resumed.map((r) => `${r.rec.kind} ${r.rec.id}`),
    warnings: fold.warnings,
    ms: performance.now() - started,
    driverConfig: [],
    leaseWaitMs: 0,
    dns,
    claimsReleased,
  };
  // Before the predefined networks: the `bridge` network is made under this configuration.
  report.driverConfig = await applyStartConfig(ctx, ctx.settings.driverConfig);
  if (ctx.settings.predefined) await ensurePredefined(ctx);
  if (ctx.settings.reconcileOnStart) {
    try {
      report.reconcile = await reconcile(ctx);
    } catch (err) {
      report.warnings.push({ seq: 0, objectId: "", type: "reconcile", reason: errText(err) });
    }
  }
  return report;
}

/** Keeps the runtime told whether NATS is connected (a reconnect settles uncertain intents). */
export function watchConnection(
  nc: NatsConnection,
  ctx: ControllerContext,
  onStatus?: (status: "disconnect" | "reconnect") => void,
): void {
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") ctx.runtime.setConnected(false);
      if (s.type === "reconnect") ctx.runtime.setConnected(true);
      if (s.type === "disconnect" || s.type === "reconnect") onStatus?.(s.type);
    }
  })().catch(() => {});
}

/** IPAM state from the journal, before anything else runs (libnetwork's replay). */
function rebuildIpam(ctx: ControllerContext, warnings: FoldWarning[]): void {
  const rt = ctx.runtime;
  const restore = (id: string, f: () => void) => {
    try {
      f();
    } catch (err) {
      warnings.push({ seq: 0, objectId: id, type: "ipam", reason: errText(err) });
    }
  };
  for (const r of rt.objects.network.values()) {
    const facts = defaultIpamOf(rt.context<NetworkContext>(r));
    if (isLive(rt, r) && facts) restore(r.id, () => restoreNetwork(ctx.ipam, facts));
  }
  for (const r of rt.objects.endpoint.values()) {
    const c = rt.context<EndpointContext>(r);
    const facts = defaultIpamOf(networkContext(rt, c.networkId));
    if (isLive(rt, r) && facts) restore(r.id, () => restoreEndpoint(ctx.ipam, facts, c));
  }
  // Other hosts' endpoints on global networks hold addresses of those networks' pools.
  for (const o of ctx.world.live("endpoint")) {
    if (o.host === ctx.settings.hostId) continue;
    const c = o.snapshot.context as EndpointContext;
    const net = networkContext(rt, c.networkId);
    const facts = defaultIpamOf(net);
    if (isGlobal(net) && facts) restore(o.id, () => restoreEndpoint(ctx.ipam, facts, c));
  }
}

/** Tells `RequiresRequestReplay` IPAM plugins again what is in use (see remote_ipam.ts). */
async function replayRemote(ctx: ControllerContext, warnings: FoldWarning[]): Promise<void> {
  const rt = ctx.runtime;
  const networks = [...rt.objects.network.values()]
    .filter((r) => isLive(rt, r))
    .map((r) => rt.context<NetworkContext>(r));
  for (const [name, ipam] of ctx.drivers.ipamDrivers()) {
    const failures = await replayRemoteIpam(
      ipam,
      networks.filter((c) => c.ipam?.driver === name),
      (networkId) => endpointsOfNetwork(rt, networkId).map((r) => rt.context(r)),
    );
    for (const [objectId, reason] of failures) {
      warnings.push({ seq: 0, objectId, type: "ipam.replay", reason });
    }
  }
}
