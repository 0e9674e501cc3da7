/**
 * The embedded resolver's records as a projection of the journal: loaded from the world's
 * fold at start (every host's networks, sandboxes and endpoints — so names of endpoints on
 * other hosts' overlay networks resolve too), then kept current from every durable event.
 *
 * Two feeds, one projection: this host's events arrive on the runtime's `events$` the moment
 * their append is acknowledged — before the actor applies them and before the command that
 * wrote them resolves, so a name resolves as soon as its `endpoint.joined` is durable and is
 * gone as soon as its `endpoint.leave.requested` is (state `leaving` holds no names) — and
 * every host's events arrive on the world's `changes$`, in stream order, a little later. Each
 * object's newest sequence wins: an event already applied from one feed is skipped when the
 * other brings it, and the world's snapshot (authoritative, in stream order) replaces the
 * mirror's when it is at least as new.
 *
 * @module
 */

import type { Observable, Subscription } from "rxjs";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import { MACHINES } from "../../actors/mod.ts";
import type { Kind, RecordedEvent } from "../journal/events.ts";
import { type FoldState, initialSnapshot, nextSnapshot, stateOf } from "../journal/fold.ts";
import type { DnsEndpoint, DnsNetwork, DnsRecords, DnsSandbox } from "../dns/records.ts";
import { dnsEndpointOf, dnsNetworkOf, dnsSandboxOf } from "../dns/records_fold.ts";
import type { WorldChange } from "./world.ts";

// deno-lint-ignore no-explicit-any
type Snapshot = any;

/** One object as the records last saw it. */
interface Mirrored {
  kind: Kind;
  snapshot: Snapshot;
  lastSeq: number;
  /** The aliases of its create intent (endpoints whose context predates `aliases`). */
  aliases?: unknown;
}

/** Options of {@link createDnsFeed}. */
export interface DnsFeedOptions {
  records: DnsRecords;
  /** This host's durable events (the runtime's `events$`). */
  own$: Observable<RecordedEvent>;
  /** Every host's events, folded (the world's `changes$`). */
  world$: Observable<WorldChange>;
}

/** The feed. */
export interface DnsFeed {
  /** Replaces the records with the objects of `fold` (recovery's, every host's). */
  load(fold: FoldState): void;
  /** Objects mirrored (for tests). */
  readonly size: number;
  close(): void;
}

const KINDS = new Set<string>(["network", "sandbox", "endpoint"]);

/** Creates the feed; it follows both sources from now on (call `load` once folded). */
export function createDnsFeed(options: DnsFeedOptions): DnsFeed {
  const { records } = options;
  const mirror = new Map<string, Mirrored>();

  const project = (id: string, m: Mirrored) => {
    const state = stateOf(m.snapshot);
    const gone = state === "deleted";
    const c = m.snapshot.context;
    switch (m.kind) {
      case "network":
        if (gone) records.removeNetwork(id);
        else records.setNetwork(dnsNetworkOf(c as NetworkContext));
        break;
      case "sandbox":
        if (gone) records.removeSandbox(id);
        else records.setSandbox(dnsSandboxOf(c as SandboxContext));
        break;
      case "endpoint":
        if (gone) records.removeEndpoint(id);
        else records.setEndpoint(dnsEndpointOf(state, c as EndpointContext, m.aliases));
        break;
    }
  };

  /** This host's event, applied at once to the mirrored snapshot. */
  const own = (e: RecordedEvent) => {
    if (!KINDS.has(e.kind)) return;
    const machine = MACHINES[e.kind as Kind];
    const m = mirror.get(e.objectId);
    if (m && e.seq <= m.lastSeq) return;
    let next: Mirrored;
    if (!m) {
      if (e.type !== `${e.kind}.create.requested`) return; // the world brings it
      next = {
        kind: e.kind as Kind,
        snapshot: initialSnapshot(machine, { event: e }),
        lastSeq: e.seq,
        aliases: (e.data as { aliases?: unknown }).aliases,
      };
    } else {
      // Out of step (a write of another host not folded yet): the world's snapshot follows.
      if (!m.snapshot.can(e)) return;
      next = { ...m, snapshot: nextSnapshot(machine, m.snapshot, e), lastSeq: e.seq };
    }
    mirror.set(e.objectId, next);
    project(e.objectId, next);
  };

  /** Any host's event, folded by the world. */
  const world = (change: WorldChange) => {
    const obj = change.object;
    if (!obj || !KINDS.has(obj.kind)) return;
    const m = mirror.get(obj.id);
    if (m && m.lastSeq >= obj.lastSeq) return;
    const next: Mirrored = {
      kind: obj.kind,
      snapshot: obj.snapshot,
      lastSeq: obj.lastSeq,
      aliases: (obj.snapshot.context as { aliases?: string[] }).aliases ??
        obj.createIntent?.data.aliases,
    };
    mirror.set(obj.id, next);
    project(obj.id, next);
  };

  const subs: Subscription[] = [
    options.own$.subscribe({ next: own, error: () => {} }),
    options.world$.subscribe({ next: world, error: () => {} }),
  ];

  return {
    get size() {
      return mirror.size;
    },
    load(fold) {
      mirror.clear();
      const networks: DnsNetwork[] = [];
      const sandboxes: DnsSandbox[] = [];
      const endpoints: DnsEndpoint[] = [];
      for (const obj of fold.objects.values()) {
        if (!KINDS.has(obj.kind)) continue;
        mirror.set(obj.id, {
          kind: obj.kind,
          snapshot: obj.snapshot,
          lastSeq: obj.lastSeq,
          aliases: (obj.snapshot.context as { aliases?: string[] }).aliases ??
            obj.createIntent?.data.aliases,
        });
        const state = stateOf(obj.snapshot);
        if (state === "deleted") continue;
        const c = obj.snapshot.context;
        if (obj.kind === "network") networks.push(dnsNetworkOf(c as NetworkContext));
        else if (obj.kind === "sandbox") sandboxes.push(dnsSandboxOf(c as SandboxContext));
        else {
          endpoints.push(
            dnsEndpointOf(
              state,
              c as EndpointContext,
              (obj.snapshot.context as { aliases?: string[] }).aliases ??
                obj.createIntent?.data.aliases,
            ),
          );
        }
      }
      records.load({ networks, sandboxes, endpoints });
    },
    close() {
      for (const s of subs) s.unsubscribe();
    },
  };
}
