/**
 * The CNM view of the runtime's actor registry: lookups by id, id prefix or name, and the
 * relations between kinds (the endpoints of a network or of a sandbox) — from indexes kept
 * current by the runtime's change hook, so a command costs the same at 10 objects and at
 * 10,000. Also the reservations a command makes while it decides and holds until its intent
 * is in the registry, so locks are held only while deciding.
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type { Kind } from "../journal/events.ts";
import { ambiguousPrefix } from "../refs.ts";
import type { Rec, Runtime } from "./runtime.ts";

/** What an object is indexed under (names never change; an endpoint's sandbox does). */
interface Indexed {
  name: string;
  /** A failed create holds no name (libnetwork rolls it back): it is found by name only when
   * no live object has it. */
  failed: boolean;
  driver?: string;
  networkId?: string;
  sandboxId?: string | null;
  ifname?: string;
}

/** A name, a member or an interface name held by a command that has not appended yet. */
export interface Reservation {
  /** Gives it back (idempotent). */
  release(): void;
}

class MultiMap {
  #m = new Map<string, Set<string>>();
  add(key: string, id: string): void {
    let s = this.#m.get(key);
    if (!s) this.#m.set(key, s = new Set());
    s.add(id);
  }
  delete(key: string, id: string): void {
    const s = this.#m.get(key);
    if (!s) return;
    s.delete(id);
    if (!s.size) this.#m.delete(key);
  }
  get(key: string): ReadonlySet<string> {
    return this.#m.get(key) ?? EMPTY;
  }
}
const EMPTY: ReadonlySet<string> = new Set();

/** The indexes of one runtime. */
class ObjectIndex {
  readonly indexed = new Map<string, Indexed>();
  readonly names: Record<Kind, MultiMap> = {
    network: new MultiMap(),
    endpoint: new MultiMap(),
    sandbox: new MultiMap(),
  };
  /** Names of failed creates (they hold none; found only when no live object has the name). */
  readonly failedNames: Record<Kind, MultiMap> = {
    network: new MultiMap(),
    endpoint: new MultiMap(),
    sandbox: new MultiMap(),
  };
  readonly drivers = new MultiMap();
  readonly ofNetwork = new MultiMap();
  readonly ofSandbox = new MultiMap();
  /** `<networkId>/<name>` → endpoint ids. */
  readonly endpointNames = new MultiMap();
  /** Reserved by commands still deciding: names per kind, members per network/sandbox. */
  readonly reserved = {
    names: { network: new MultiMap(), endpoint: new MultiMap(), sandbox: new MultiMap() },
    ofNetwork: new MultiMap(),
    ofSandbox: new MultiMap(),
    endpointNames: new MultiMap(),
    ifnames: new MultiMap(),
  };
  readonly reservedNames = new Map<string, string>();

  constructor(readonly rt: Runtime) {
    for (const m of Object.values(rt.objects)) for (const rec of m.values()) this.update(rec);
    rt.onChange((rec, removed) => this.update(rec, removed));
  }

  update(rec: Rec, removed = false): void {
    const old = this.indexed.get(rec.id);
    const now = removed ? undefined : this.describe(rec);
    if (
      old && now && old.sandboxId === now.sandboxId && old.ifname === now.ifname &&
      old.failed === now.failed
    ) return;
    if (old) this.apply(rec.kind, rec.id, old, "delete");
    if (now) {
      this.apply(rec.kind, rec.id, now, "add");
      this.indexed.set(rec.id, now);
    } else this.indexed.delete(rec.id);
  }

  describe(rec: Rec): Indexed {
    const c = this.rt.context<Record<string, unknown>>(rec);
    const out: Indexed = { name: String(c.name ?? ""), failed: this.rt.state(rec) === "failed" };
    if (rec.kind === "network") out.driver = (c as unknown as NetworkContext).driver;
    if (rec.kind === "endpoint") {
      const e = c as unknown as EndpointContext;
      out.networkId = e.networkId;
      out.sandboxId = e.sandboxId;
      out.ifname = e.ifname;
    }
    return out;
  }

  apply(kind: Kind, id: string, x: Indexed, op: "add" | "delete"): void {
    (x.failed ? this.failedNames : this.names)[kind][op](x.name, id);
    if (x.driver !== undefined) this.drivers[op](x.driver, id);
    if (x.networkId !== undefined) {
      this.ofNetwork[op](x.networkId, id);
      // A failed create holds no name: the name is free for a retry.
      if (!x.failed) this.endpointNames[op](`${x.networkId}/${x.name}`, id);
    }
    if (x.sandboxId) this.ofSandbox[op](x.sandboxId, id);
  }

  recs(kind: Kind, ids: Iterable<string>): Rec[] {
    const out: Rec[] = [];
    for (const id of ids) {
      const r = this.rt.objects[kind].get(id);
      if (r) out.push(r);
    }
    return out;
  }
}

const indexes = new WeakMap<Runtime, ObjectIndex>();

function indexOf(rt: Runtime): ObjectIndex {
  let ix = indexes.get(rt);
  if (!ix) indexes.set(rt, ix = new ObjectIndex(rt));
  return ix;
}

/** Starts indexing `rt` now (otherwise on first lookup; both are correct). */
export function indexObjects(rt: Runtime): void {
  indexOf(rt);
}

/**
 * An object by id, name (networks, sandboxes) or unique id prefix.
 *
 * @throws {InvalidArgumentError} when `ref` is an id prefix several objects share: the
 *   message names them.
 */
function find(rt: Runtime, kind: Kind, ref: string, byName: boolean): Rec | undefined {
  const m = rt.objects[kind];
  const byId = m.get(ref);
  if (byId) return byId;
  if (byName) {
    const ix = indexOf(rt);
    const named = ix.recs(kind, ix.names[kind].get(ref));
    if (named.length) return named[0];
    // Else the latest failed create of that name (its history, its error).
    const failed = ix.recs(kind, ix.failedNames[kind].get(ref));
    const created = (r: Rec) => rt.context<{ createdAt: string }>(r).createdAt;
    if (failed.length) return failed.sort((a, b) => created(b).localeCompare(created(a)))[0];
  }
  // An id prefix: hex only, so a name never scans.
  if (!/^[0-9a-f]+$/.test(ref)) return undefined;
  const hits: Rec[] = [];
  for (const [id, r] of m) if (id.startsWith(ref)) hits.push(r);
  if (hits.length > 1) {
    throw ambiguousPrefix(
      ref,
      hits.map((r) => ({
        kind,
        id: r.id,
        name: String(rt.context<{ name?: string }>(r).name ?? ""),
      })),
    );
  }
  return hits[0];
}

/** A network by id, name or unique id prefix. @throws {InvalidArgumentError} when ambiguous. */
export function findNetwork(rt: Runtime, ref: string): Rec | undefined {
  return find(rt, "network", ref, true);
}

/** A sandbox by id, name or unique id prefix. @throws {InvalidArgumentError} when ambiguous. */
export function findSandbox(rt: Runtime, ref: string): Rec | undefined {
  return find(rt, "sandbox", ref, true);
}

/** An endpoint by id or unique id prefix. @throws {InvalidArgumentError} when ambiguous. */
export function findEndpoint(rt: Runtime, ref: string): Rec | undefined {
  return find(rt, "endpoint", ref, false);
}

/** Live networks and sandboxes holding `name` (or reserved for it by a deciding command). */
export function namedCount(rt: Runtime, kind: "network" | "sandbox", name: string): number {
  const ix = indexOf(rt);
  return ix.names[kind].get(name).size + ix.reserved.names[kind].get(name).size;
}

/** The network or sandbox holding `name`, if one is registered. */
export function namedObject(rt: Runtime, kind: "network" | "sandbox", name: string) {
  return indexOf(rt).recs(kind, indexOf(rt).names[kind].get(name))[0];
}

/** Every network or sandbox holding `name` (a failed create holds none). */
export function namedObjects(rt: Runtime, kind: "network" | "sandbox", name: string): Rec[] {
  return indexOf(rt).recs(kind, indexOf(rt).names[kind].get(name));
}

/** The endpoints of a network holding `name` (a failed create holds none). */
export function endpointsNamed(rt: Runtime, networkId: string, name: string): Rec[] {
  return indexOf(rt).recs("endpoint", indexOf(rt).endpointNames.get(`${networkId}/${name}`));
}

/** Networks of a driver. */
export function networksOfDriver(rt: Runtime, driver: string): Rec[] {
  return indexOf(rt).recs("network", indexOf(rt).drivers.get(driver));
}

/** The endpoints of a network. */
export function endpointsOfNetwork(rt: Runtime, networkId: string): Rec[] {
  return indexOf(rt).recs("endpoint", indexOf(rt).ofNetwork.get(networkId));
}

/** The endpoints joined to (or joining, or leaving) a sandbox. */
export function endpointsOfSandbox(rt: Runtime, sandboxId: string): Rec[] {
  return indexOf(rt).recs("endpoint", indexOf(rt).ofSandbox.get(sandboxId));
}

/** Endpoints of a network with this name (registered, or reserved by a deciding command). */
export function endpointNameCount(rt: Runtime, networkId: string, name: string): number {
  const ix = indexOf(rt);
  const key = `${networkId}/${name}`;
  return ix.endpointNames.get(key).size + ix.reserved.endpointNames.get(key).size;
}

/** Endpoints being created on a network whose intent is not appended yet: `[id, name]`. */
export function pendingEndpoints(rt: Runtime, networkId: string): [string, string][] {
  const ix = indexOf(rt);
  return [...ix.reserved.ofNetwork.get(networkId)].map((id) => [id, ix.reservedNames.get(id)!]);
}

/** Joins to a sandbox whose intent is not appended yet (endpoint ids). */
export function pendingJoins(rt: Runtime, sandboxId: string): ReadonlySet<string> {
  return indexOf(rt).reserved.ofSandbox.get(sandboxId);
}

/** Interface names in use in a sandbox (joined endpoints and joins still deciding). */
export function ifnamesOf(rt: Runtime, sandboxId: string): Set<string> {
  const ix = indexOf(rt);
  const used = new Set(ix.reserved.ifnames.get(sandboxId));
  for (const r of endpointsOfSandbox(rt, sandboxId)) {
    const n = rt.context<EndpointContext>(r).ifname;
    if (n) used.add(n);
  }
  return used;
}

/** What a command reserves while it decides (see {@link reserve}). */
export interface ReserveRequest {
  kind: Kind;
  id: string;
  name?: string;
  /** An endpoint being created in this network. */
  networkId?: string;
  /** An endpoint joining this sandbox as `ifname`. */
  sandboxId?: string;
  ifname?: string;
}

/**
 * Reserves a name, a network membership or an interface name for a command that decided
 * under a lock and releases the lock before its intent is appended: other commands see the
 * reservation as if the object were registered. Release once the intent is appended (the
 * registry then holds it) or refused.
 */
export function reserve(rt: Runtime, r: ReserveRequest): Reservation {
  const ix = indexOf(rt);
  const ops: (() => void)[] = [];
  const hold = (m: MultiMap, key: string, value = r.id) => {
    m.add(key, value);
    ops.push(() => m.delete(key, value));
  };
  if (r.name !== undefined && r.kind !== "endpoint") hold(ix.reserved.names[r.kind], r.name);
  if (r.networkId !== undefined) {
    hold(ix.reserved.ofNetwork, r.networkId);
    hold(ix.reserved.endpointNames, `${r.networkId}/${r.name ?? ""}`);
    ix.reservedNames.set(r.id, r.name ?? "");
    ops.push(() => ix.reservedNames.delete(r.id));
  }
  if (r.sandboxId !== undefined) {
    hold(ix.reserved.ofSandbox, r.sandboxId);
    if (r.ifname) hold(ix.reserved.ifnames, r.sandboxId, r.ifname);
  }
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      for (const op of ops) op();
    },
  };
}

/**
 * Whether an object holds its name: everything but a failed create (libnetwork rolls a
 * failed create back, so its name is free again).
 */
export function holdsName(rt: Runtime, rec: Rec): boolean {
  return rt.state(rec) !== "failed";
}

/**
 * Endpoints whose context passes `filter`: a scan, for rare paths (reconcile, peers); the
 * commands use the indexes above.
 */
export function endpointsOf(rt: Runtime, filter: (c: EndpointContext) => boolean): Rec[] {
  return [...rt.objects.endpoint.values()].filter((r) => filter(rt.context<EndpointContext>(r)));
}

/** The context of a live network, by id. */
export function networkContext(rt: Runtime, id: string): NetworkContext | undefined {
  const r = rt.objects.network.get(id);
  return r ? rt.context<NetworkContext>(r) : undefined;
}

/** The context of a live sandbox, by id. */
export function sandboxContext(rt: Runtime, id: string): SandboxContext | undefined {
  const r = rt.objects.sandbox.get(id);
  return r ? rt.context<SandboxContext>(r) : undefined;
}

/** True unless the object failed or is gone: it holds names, pools and addresses. */
export function isLive(rt: Runtime, rec: Rec): boolean {
  return !["failed", "deleted"].includes(rt.state(rec));
}
