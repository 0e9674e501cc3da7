/**
 * Time travel: the whole CNM state (networks, endpoints, sandboxes, IPAM allocations, driver
 * configurations) as it was at a stream sequence or a time, computed purely from the journal with the same fold
 * the controller recovers with (`src/journal/fold.ts`). No kernel access, no driver calls.
 *
 * @module
 */

import type { RecordedEvent } from "./events.ts";
import { type DriverConfigInfo, driverConfigInfos } from "./driver_config.ts";
import { emptyFold, foldEvent, type FoldState, type FoldWarning, stateOf } from "./fold.ts";
import {
  type EndpointInfo,
  endpointInfo,
  type NetworkInfo,
  networkInfo,
  type SandboxInfo,
  sandboxInfo,
} from "../info.ts";
import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import { borrowConnection, type NatsTarget, readEvents } from "./watch.ts";
import { foldScan, scanStream, scanTime } from "./scan.ts";
import { loadCurrent } from "./current.ts";
import { resolvePoint } from "./points.ts";

export { resolvePoint } from "./points.ts";

/** A stream sequence (number) or a time (ISO-8601 string or Date). */
export type ReplayPoint = number | string | Date;

/** A pool a network holds, as decided when it was created. */
export interface IpamPoolState {
  networkId: string;
  network: string;
  /** IPAM driver name. */
  driver: string;
  family: "ipv4" | "ipv6";
  poolId: string;
  pool: string;
  subPool?: string;
  gateway?: string;
  auxAddresses: Record<string, string>;
}

/** An address an endpoint holds. */
export interface IpamAddressState {
  networkId: string;
  network: string;
  endpointId: string;
  endpoint: string;
  family: "ipv4" | "ipv6";
  address: string;
}

/** IPAM allocations, derived from network and endpoint contexts. */
export interface IpamState {
  pools: IpamPoolState[];
  addresses: IpamAddressState[];
}

export type { DriverConfigInfo } from "./driver_config.ts";

/** Who wrote an object (multi-host systems share one stream). */
export interface HostField {
  host: string;
}

/** The state as of one point of the stream. */
export interface ReplayState {
  /** Sequence of the last event folded (0 when none). */
  seq: number;
  /** Time of the last event folded, or null. */
  at: string | null;
  /** Number of events folded. */
  events: number;
  networks: (NetworkInfo & HostField)[];
  endpoints: (EndpointInfo & HostField)[];
  sandboxes: (SandboxInfo & HostField)[];
  ipam: IpamState;
  /**
   * Driver configurations journaled up to this point, per host and driver (a driver never
   * configured runs with its defaults and is not listed).
   */
  drivers: DriverConfigInfo[];
  /** Events that could not be applied (should be none in a healthy journal). */
  warnings: FoldWarning[];
}

/** Options of the state builders. */
export interface StateOptions {
  /** Also list deleted objects. Default false. */
  includeDeleted?: boolean;
}

/** An incremental replay: feed events in stream order until `apply` says stop. */
export interface Replayer {
  /** Folds one event; returns false (and folds nothing) once the event is past `until`. */
  apply(event: RecordedEvent): boolean;
  readonly fold: FoldState;
  /** The state folded so far. */
  state(options?: StateOptions): ReplayState;
}

/** Creates a {@link Replayer} that stops after sequence or time `until`. */
export function createReplayer(until?: ReplayPoint): Replayer {
  const fold = emptyFold();
  const untilSeq = typeof until === "number" ? until : Infinity;
  const untilTime = until === undefined || typeof until === "number"
    ? Infinity
    : new Date(until).getTime();
  if (Number.isNaN(untilTime)) throw new TypeError(`invalid time ${String(until)}`);
  let at: string | null = null;
  let events = 0;
  return {
    fold,
    apply(event) {
      if (event.seq > untilSeq) return false;
      if (untilTime !== Infinity && Date.parse(event.at) > untilTime) return false;
      foldEvent(fold, event);
      at = event.at;
      events++;
      return true;
    },
    state: (options) => stateOfFold(fold, at, events, options),
  };
}

/**
 * The pure core of {@link replay}: folds `events` (in stream order) up to `until`.
 *
 * @example
 * ```ts
 * import { replayEvents } from "./replay.ts";
 * import assert from "node:assert/strict";
 *
 * const state = replayEvents([]);
 * assert.deepEqual(state.networks, []);
 * ```
 */
export function replayEvents(
  events: Iterable<RecordedEvent>,
  until?: ReplayPoint,
  options?: StateOptions,
): ReplayState {
  const r = createReplayer(until);
  for (const e of events) if (!r.apply(e)) break;
  return r.state(options);
}

/** Builds the read model of a fold. */
export function stateOfFold(
  fold: FoldState,
  at: string | null,
  events: number,
  options: StateOptions = {},
): ReplayState {
  const networks: ReplayState["networks"] = [];
  const endpoints: ReplayState["endpoints"] = [];
  const sandboxes: ReplayState["sandboxes"] = [];
  // In order of creation, whether the fold came from the first event or from a snapshot.
  const live = [...fold.objects.values()].filter((o) =>
    options.includeDeleted || stateOf(o.snapshot) !== "deleted"
  ).sort((a, b) => a.firstSeq - b.firstSeq);
  for (const o of live) {
    const state = stateOf(o.snapshot);
    if (o.kind === "endpoint") {
      endpoints.push({
        ...endpointInfo(state, o.snapshot.context as EndpointContext),
        host: o.host,
      });
    } else if (o.kind === "network") {
      networks.push({ ...networkInfo(state, o.snapshot.context as NetworkContext), host: o.host });
    } else if (o.kind === "sandbox") {
      const c = o.snapshot.context as SandboxContext;
      sandboxes.push({
        ...sandboxInfo(state, c, [...o.members ?? []], sandboxDir(o.host, c)),
        host: o.host,
      });
    }
  }
  return {
    seq: fold.lastSeq,
    at,
    events,
    networks,
    endpoints,
    sandboxes,
    ipam: ipamOf(fold),
    drivers: driverConfigInfos(fold.drivers),
    warnings: fold.warnings,
  };
}

/** Where a sandbox's files are: as journaled, else the controller's default state dir. */
export function sandboxDir(host: string, c: SandboxContext): string {
  return c.stateDir ?? `/var/lib/cnm/${host}/sandboxes/${c.id}`;
}

/** IPAM allocations held by live objects: each network's pools, each endpoint's addresses. */
function ipamOf(fold: FoldState): IpamState {
  const pools: IpamPoolState[] = [];
  const addresses: IpamAddressState[] = [];
  const names = new Map<string, string>();
  const ordered = [...fold.objects.values()].sort((a, b) => a.firstSeq - b.firstSeq);
  for (const o of ordered) {
    if (o.kind !== "network" || !holdsResources(stateOf(o.snapshot))) continue;
    const c = o.snapshot.context as NetworkContext;
    names.set(c.id, c.name);
    for (const family of ["ipv4", "ipv6"] as const) {
      for (const p of c.ipam?.[family] ?? []) {
        pools.push({
          networkId: c.id,
          network: c.name,
          driver: c.ipam!.driver,
          family,
          poolId: p.poolId,
          pool: p.pool,
          ...(p.subPool ? { subPool: p.subPool } : {}),
          ...(p.gateway ? { gateway: p.gateway } : {}),
          auxAddresses: { ...p.auxAddresses },
        });
      }
    }
  }
  for (const o of ordered) {
    if (o.kind !== "endpoint" || !holdsResources(stateOf(o.snapshot))) continue;
    const c = o.snapshot.context as EndpointContext;
    const base = {
      networkId: c.networkId,
      network: names.get(c.networkId) ?? c.networkId,
      endpointId: c.id,
      endpoint: c.name,
    };
    if (c.ipv4Address) addresses.push({ ...base, family: "ipv4", address: c.ipv4Address });
    if (c.ipv6Address) addresses.push({ ...base, family: "ipv6", address: c.ipv6Address });
  }
  return { pools, addresses };
}

/** Deleted and failed objects hold no pool or address (libnetwork releases them). */
function holdsResources(state: string): boolean {
  return state !== "deleted" && state !== "failed";
}

/** Options of {@link replay}. */
export interface ReplayOptions extends StateOptions {
  /** Connect options (own connection, closed at the end) or a connection to borrow. */
  nats: NatsTarget;
  /** Stream name. Default `CNM`. */
  stream?: string;
  /** Subject prefix. Default `cnm`. */
  prefix?: string;
  /** Last sequence (inclusive) or time to fold. Default: the end of the stream. */
  until?: ReplayPoint;
  /**
   * Decode, validate and fold every event, and report every event that does not apply.
   * Default false: objects whose last event is their `<kind>.deleted` (a final state) are
   * skipped without decoding their history, which is what makes time travel fast.
   */
  verify?: boolean;
  /** Called every 1024 events with (events read, events to read at most). */
  onProgress?: (read: number, total: number) => void;
  /**
   * Only these kinds are needed (`network ls` reads networks only); the others may be
   * missing from the result. Default: all. Only for the current state (no `until`).
   */
  kinds?: readonly string[];
  /** Use the snapshot for the current state. Default true (false scans the stream). */
  snapshot?: boolean;
}

/**
 * Reads the journal up to `until` and returns the state as it was then. The current state
 * (no `until`) comes from the snapshot plus the events after it; a point in the past is
 * folded from the stream, exactly.
 *
 * @throws {NotFoundError} when the stream does not exist.
 * @throws {NatsUnreachableError} when NATS cannot be reached.
 * @example
 * ```ts ignore
 * const then = await replay({ nats: { servers: "127.0.0.1:4222" }, until: "2025-01-01T12:00:00Z" });
 * console.table(then.endpoints);
 * ```
 */
export async function replay(options: ReplayOptions): Promise<ReplayState> {
  const { nc, release } = await borrowConnection(options.nats);
  try {
    const sel = { stream: options.stream, prefix: options.prefix };
    if (options.until === undefined && !options.verify && !options.includeDeleted) {
      const cur = await loadCurrent(nc, {
        ...sel,
        kinds: options.kinds,
        noSnapshot: options.snapshot === false,
        onProgress: options.onProgress,
      });
      return stateOfFold(cur.fold, cur.at, cur.events, options);
    }
    const untilSeq = await resolvePoint(nc, sel, options.until);
    if (untilSeq === 0) return createReplayer().state(options);
    if (options.verify) {
      const r = createReplayer(untilSeq);
      const read = readEvents(nc, { ...sel, until: untilSeq, onProgress: options.onProgress });
      for await (const e of read) if (!r.apply(e)) break;
      return r.state(options);
    }
    const scan = await scanStream(nc, { ...sel, until: untilSeq, onProgress: options.onProgress });
    return stateOfFold(foldScan(scan, options), scanTime(scan), scan.count, options);
  } finally {
    await release();
  }
}
