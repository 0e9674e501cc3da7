/**
 * Peers from the stream: every host's `endpoint.joined` outcome on a global network records
 * where the endpoint lives (`{ ip, mac, vtep }` in its facts); this module folds those into a
 * peer table per network and hands it to the network's driver (overlay: one neighbour and one
 * FDB entry per remote endpoint). What libnetwork spreads by gossip arrives here in stream
 * order about a millisecond after it is durable, and a restart rebuilds the whole table from
 * the stream before anything is programmed.
 *
 * One delivery of events is coalesced into one call per network and kind of change.
 *
 * @module
 */

import type { Subscription } from "rxjs";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { Driver, Peer } from "../../drivers/driver.ts";
import { stateOf } from "../journal/fold.ts";
import { errText } from "../errors.ts";
import type { ControllerContext, PeerProgrammer } from "./context.ts";
import { driverNetwork } from "./effects.ts";
import { isGlobal } from "./global.ts";
import { networkContext } from "./objects.ts";
import type { WorldChange } from "./world.ts";

/** The peer record of a joined endpoint's facts, if it has one. */
export function peerOf(facts: Record<string, unknown> | undefined): Peer | undefined {
  const { ip, mac, vtep } = (facts ?? {}) as Record<string, unknown>;
  return typeof ip === "string" && typeof mac === "string" && typeof vtep === "string"
    ? { ip, mac, vtep }
    : undefined;
}

/**
 * The remote peers of every global network, from the world's fold. This host's own endpoints
 * are left out by host id, not by VTEP: one joined under an earlier advertise address (the
 * option changed, or the host restarted with another `--advertise-addr`) is still local, and
 * programming it as a remote peer would send its traffic out to an address nobody serves.
 */
export function peerTables(ctx: ControllerContext): Map<string, Map<string, Peer>> {
  const out = new Map<string, Map<string, Peer>>();
  for (const o of ctx.world.fold.objects.values()) {
    if (o.kind !== "endpoint" || stateOf(o.snapshot) !== "joined") continue;
    if (o.host === ctx.settings.hostId) continue;
    const c = o.snapshot.context as EndpointContext;
    const peer = peerOf(c.joinFacts);
    if (!peer) continue;
    if (!out.has(c.networkId)) out.set(c.networkId, new Map());
    out.get(c.networkId)!.set(o.id, peer);
  }
  return out;
}

/** Creates the programmer. */
export function createPeerProgrammer(ctx: ControllerContext): PeerProgrammer {
  /** Endpoints whose peer record was handed over: id → network and record. */
  const known = new Map<string, { networkId: string; peer: Peer }>();
  const adds = new Map<string, Peer[]>();
  const removes = new Map<string, Peer[]>();
  let pending: Promise<void> = Promise.resolve();
  let scheduled = false;
  let sub: Subscription | undefined;
  const peerCtx = () => ({ kernel: ctx.kernel, prefix: ctx.settings.namePrefix });

  const target = (networkId: string): { driver: Driver; net: NetworkContext } | undefined => {
    const net = networkContext(ctx.runtime, networkId);
    const driver = net && isGlobal(net) ? ctx.drivers.driver(net.driver) : undefined;
    return driver && net && (driver.setPeers || driver.addPeers) ? { driver, net } : undefined;
  };

  const run = (what: string, f: () => Promise<unknown>) =>
    f().catch((err) => console.error(`cnm: programming peers (${what}): ${errText(err)}`));

  function flush(): void {
    scheduled = false;
    const a = new Map(adds);
    const r = new Map(removes);
    adds.clear();
    removes.clear();
    pending = pending.then(async () => {
      for (const [networkId, peers] of r) {
        const t = target(networkId);
        if (t?.driver.removePeers) {
          await run("remove", () => t.driver.removePeers!(driverNetwork(t.net), peers, peerCtx()));
        }
      }
      for (const [networkId, peers] of a) {
        const t = target(networkId);
        if (t?.driver.addPeers) {
          await run("add", () => t.driver.addPeers!(driverNetwork(t.net), peers, peerCtx()));
        }
      }
    });
  }

  const queue = (m: Map<string, Peer[]>, networkId: string, peer: Peer) => {
    m.set(networkId, [...(m.get(networkId) ?? []), peer]);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(flush);
    }
  };

  function onChange({ event, object }: WorldChange): void {
    if (!object || object.kind !== "endpoint" || object.host === ctx.settings.hostId) return;
    const c = object.snapshot.context as EndpointContext;
    if (event.type === "endpoint.joined") {
      const peer = peerOf(c.joinFacts);
      if (!peer || !target(c.networkId)) return;
      known.set(object.id, { networkId: c.networkId, peer });
      queue(adds, c.networkId, peer);
    } else if (event.type === "endpoint.left" || event.type === "endpoint.deleted") {
      const was = known.get(object.id);
      if (!was) return;
      known.delete(object.id);
      queue(removes, was.networkId, was.peer);
    }
  }

  return {
    async syncAll() {
      const tables = peerTables(ctx);
      for (const [networkId, table] of tables) {
        for (const [id, peer] of table) known.set(id, { networkId, peer });
      }
      for (const rec of ctx.runtime.objects.network.values()) {
        const t = target(rec.id);
        if (!t?.driver.setPeers) continue;
        const peers = [...(tables.get(rec.id)?.values() ?? [])];
        await run("set", () => t.driver.setPeers!(driverNetwork(t.net), peers, peerCtx()));
      }
    },
    start() {
      sub ??= ctx.world.changes$.subscribe(onChange);
    },
    flushed: () => pending,
    close() {
      sub?.unsubscribe();
    },
  };
}
