/**
 * What the embedded resolver answers: a pure, in-memory projection of networks, endpoints
 * and sandboxes into names, indexed by network so that one join, leave or delete updates
 * it in place (no rebuild) and the next query sees it.
 *
 * Per joined endpoint on a network with embedded DNS, its sandbox registers, on that
 * network only: the sandbox name (also the PTR target, as `<name>.<network>`), the
 * endpoint's aliases and the sandbox's hostname — lowercased, deduplicated. A sandbox asking
 * sees the names of the networks it is joined to, and `<name>.<network>` for each of them
 * (libnetwork's dotted forms). Several holders of one name on a network all answer; the
 * caller shuffles. Nothing here does I/O; the controller feeds it from its actors, a pure
 * fold feeds it from the journal (`records_fold.ts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createDnsRecords } from "./records.ts";
 * const records = createDnsRecords();
 * records.setNetwork({ id: "n1", name: "front", driver: "bridge", internal: false });
 * records.setSandbox({ id: "s1", name: "web" });
 * records.setSandbox({ id: "s2", name: "db" });
 * records.setEndpoint({ id: "e1", networkId: "n1", sandboxId: "s1", state: "joined", ipv4Address: "172.18.0.2/16" });
 * records.setEndpoint({ id: "e2", networkId: "n1", sandboxId: "s2", state: "joined", ipv4Address: "172.18.0.3/16" });
 * assert.deepEqual(records.lookup("s1", "DB.front")?.ipv4, ["172.18.0.3"]);
 * assert.deepEqual(records.reverse("s2", "172.18.0.2"), "web.front");
 * ```
 *
 * @module
 */

import { addressOf } from "../ipam/cidr.ts";

/** A network as the projection needs it. */
export interface DnsNetwork {
  id: string;
  name: string;
  driver: string;
  internal: boolean;
  /** One of the networks made on first start (`none`, `host`, `bridge`). */
  predefined?: boolean;
}

/** A sandbox as the projection needs it. */
export interface DnsSandbox {
  id: string;
  name: string;
  hostname?: string;
}

/** An endpoint as the projection needs it. */
export interface DnsEndpoint {
  id: string;
  networkId: string;
  sandboxId: string | null;
  /** Endpoint state; only `joined` endpoints hold names and give their sandbox a scope. */
  state: string;
  /** CIDR (`172.18.0.2/16`) or a plain address. */
  ipv4Address?: string;
  ipv6Address?: string;
  /** Extra names on this endpoint's network (`createEndpoint` option `aliases`). */
  aliases?: readonly string[];
  /** Join priority (libnetwork's); a higher one is searched first. Default 0. */
  priority?: number;
}

/** The addresses a name has on the first of the asker's networks that knows it. */
export interface NameAnswer {
  /** Name of the network the answer comes from. */
  network: string;
  ipv4: string[];
  ipv6: string[];
}

/** What a sandbox sees: its networks with embedded DNS, in search order, and forwarding. */
export interface DnsScope {
  /** Network names, in the order names are looked up. */
  networks: string[];
  /** True when one of its networks is not internal: unknown names may be forwarded. */
  external: boolean;
}

/** The projection; every method is synchronous and cheap. */
export interface DnsRecords {
  /** Adds or replaces a network (re-indexes its endpoints if its name or kind changed). */
  setNetwork(network: DnsNetwork): void;
  /** Removes a network and the names its endpoints held there. */
  removeNetwork(id: string): void;
  /** Adds or replaces a sandbox (re-indexes its endpoints when its names change). */
  setSandbox(sandbox: DnsSandbox): void;
  /** Removes a sandbox: its names disappear from every network. */
  removeSandbox(id: string): void;
  /** Adds or replaces an endpoint (a join or leave outcome is just a new state). */
  setEndpoint(endpoint: DnsEndpoint): void;
  /** Removes an endpoint. */
  removeEndpoint(id: string): void;
  /** Replaces everything at once (a start-up load). */
  load(objects: {
    networks?: Iterable<DnsNetwork>;
    sandboxes?: Iterable<DnsSandbox>;
    endpoints?: Iterable<DnsEndpoint>;
  }): void;
  /** The addresses `name` has for sandbox `askerId`, or undefined when it is not a local name. */
  lookup(askerId: string, name: string): NameAnswer | undefined;
  /** The PTR target (`<sandbox>.<network>`) of `address` (normalised) for `askerId`, if local. */
  reverse(askerId: string, address: string): string | undefined;
  /** The asker's networks and whether it may forward. */
  scope(askerId: string): DnsScope;
  /** Bumped by every change. */
  readonly version: number;
}

/** True for networks with embedded DNS: not `null`/`host`, not the default `bridge`. */
export function networkHasDns(n: DnsNetwork): boolean {
  if (n.driver === "null" || n.driver === "host") return false;
  return !(n.name === "bridge" && (n.predefined ?? n.driver === "bridge"));
}

/** Lowercases and strips one trailing dot. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/** The normalised address of a CIDR or address; undefined when absent or malformed. */
function plain(address: string | undefined): string | undefined {
  if (!address) return undefined;
  try {
    return addressOf(address);
  } catch {
    return undefined;
  }
}

/** One endpoint's registration on its network. */
interface Holder {
  endpointId: string;
  names: string[];
  ptr: string;
  ipv4?: string;
  ipv6?: string;
}

interface NetIndex {
  network: DnsNetwork;
  dns: boolean;
  /** Lowercased network name. */
  key: string;
  byName: Map<string, Holder[]>;
  byAddr: Map<string, Holder[]>;
}

interface AskerNet {
  index: NetIndex;
  priority: number;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function pull<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (!list) return;
  const i = list.indexOf(value);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) map.delete(key);
}

function addToSet<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (set) set.add(value);
  else map.set(key, new Set([value]));
}

function removeFromSet<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

/** Creates an empty projection. */
export function createDnsRecords(): DnsRecords {
  const networks = new Map<string, NetIndex>();
  const sandboxes = new Map<string, DnsSandbox>();
  const endpoints = new Map<string, DnsEndpoint>();
  const holders = new Map<string, { holder: Holder; index: NetIndex }>();
  const byNetwork = new Map<string, Set<string>>();
  const bySandbox = new Map<string, Set<string>>();
  const scopes = new Map<string, { nets: AskerNet[]; scope: DnsScope }>();
  let version = 0;

  const changed = () => {
    version++;
    scopes.clear();
  };

  const unindex = (endpointId: string) => {
    const h = holders.get(endpointId);
    if (!h) return;
    holders.delete(endpointId);
    for (const name of h.holder.names) pull(h.index.byName, name, h.holder);
    for (const a of [h.holder.ipv4, h.holder.ipv6]) if (a) pull(h.index.byAddr, a, h.holder);
  };

  const index = (endpointId: string) => {
    unindex(endpointId);
    const e = endpoints.get(endpointId);
    if (!e || e.state !== "joined" || !e.sandboxId) return;
    const net = networks.get(e.networkId);
    const sb = sandboxes.get(e.sandboxId);
    if (!net || !net.dns || !sb) return;
    const names = [...new Set([sb.name, ...(e.aliases ?? []), sb.hostname ?? ""])]
      .filter((n) => n !== "").map(normalizeName);
    const holder: Holder = {
      endpointId,
      names: [...new Set(names)],
      ptr: `${sb.name}.${net.network.name}`,
      ...(plain(e.ipv4Address) ? { ipv4: plain(e.ipv4Address) } : {}),
      ...(plain(e.ipv6Address) ? { ipv6: plain(e.ipv6Address) } : {}),
    };
    holders.set(endpointId, { holder, index: net });
    for (const name of holder.names) push(net.byName, name, holder);
    for (const a of [holder.ipv4, holder.ipv6]) if (a) push(net.byAddr, a, holder);
  };

  const reindexAll = (ids: Set<string> | undefined) => {
    for (const id of ids ?? []) index(id);
  };

  const askerNets = (askerId: string): { nets: AskerNet[]; scope: DnsScope } => {
    const cached = scopes.get(askerId);
    if (cached) return cached;
    const nets: AskerNet[] = [];
    let external = false;
    // A sandbox that is gone (or not known yet) sees nothing.
    const own = sandboxes.has(askerId) ? bySandbox.get(askerId) : undefined;
    for (const id of own ?? []) {
      const e = endpoints.get(id);
      const net = e && e.state === "joined" ? networks.get(e.networkId) : undefined;
      if (!e || !net) continue;
      if (!net.network.internal && net.network.driver !== "null") external = true;
      if (net.dns && !nets.some((n) => n.index === net)) {
        nets.push({ index: net, priority: e.priority ?? 0 });
      }
    }
    // libnetwork's endpoint order: join priority, then non-internal, then network name.
    nets.sort((a, b) =>
      b.priority - a.priority ||
      Number(a.index.network.internal) - Number(b.index.network.internal) ||
      a.index.network.name.localeCompare(b.index.network.name)
    );
    const result = { nets, scope: { networks: nets.map((n) => n.index.network.name), external } };
    scopes.set(askerId, result);
    return result;
  };

  const answerFrom = (index: NetIndex, list: Holder[]): NameAnswer => {
    const ipv4: string[] = [];
    const ipv6: string[] = [];
    for (const h of list) {
      if (h.ipv4 && !ipv4.includes(h.ipv4)) ipv4.push(h.ipv4);
      if (h.ipv6 && !ipv6.includes(h.ipv6)) ipv6.push(h.ipv6);
    }
    return { network: index.network.name, ipv4, ipv6 };
  };

  const records: DnsRecords = {
    get version() {
      return version;
    },
    setNetwork(network) {
      const old = networks.get(network.id);
      const dns = networkHasDns(network);
      const entry: NetIndex = old ?? {
        network,
        dns,
        key: network.name.toLowerCase(),
        byName: new Map(),
        byAddr: new Map(),
      };
      const renamed = old !== undefined &&
        (old.network.name !== network.name || old.dns !== dns);
      entry.network = { ...network };
      entry.dns = dns;
      entry.key = network.name.toLowerCase();
      networks.set(network.id, entry);
      if (!old || renamed) reindexAll(byNetwork.get(network.id));
      changed();
    },
    removeNetwork(id) {
      for (const e of byNetwork.get(id) ?? []) unindex(e);
      networks.delete(id);
      changed();
    },
    setSandbox(sandbox) {
      const old = sandboxes.get(sandbox.id);
      sandboxes.set(sandbox.id, { ...sandbox });
      if (!old || old.name !== sandbox.name || old.hostname !== sandbox.hostname) {
        reindexAll(bySandbox.get(sandbox.id));
      }
      changed();
    },
    removeSandbox(id) {
      sandboxes.delete(id);
      reindexAll(bySandbox.get(id));
      changed();
    },
    setEndpoint(endpoint) {
      const old = endpoints.get(endpoint.id);
      if (old) {
        removeFromSet(byNetwork, old.networkId, old.id);
        if (old.sandboxId) removeFromSet(bySandbox, old.sandboxId, old.id);
      }
      const copy = { ...endpoint, ...(endpoint.aliases ? { aliases: [...endpoint.aliases] } : {}) };
      endpoints.set(endpoint.id, copy);
      addToSet(byNetwork, endpoint.networkId, endpoint.id);
      if (endpoint.sandboxId) addToSet(bySandbox, endpoint.sandboxId, endpoint.id);
      index(endpoint.id);
      changed();
    },
    removeEndpoint(id) {
      const old = endpoints.get(id);
      if (!old) return;
      unindex(id);
      endpoints.delete(id);
      removeFromSet(byNetwork, old.networkId, id);
      if (old.sandboxId) removeFromSet(bySandbox, old.sandboxId, id);
      changed();
    },
    load(objects) {
      for (const id of [...endpoints.keys()]) records.removeEndpoint(id);
      networks.clear();
      sandboxes.clear();
      for (const n of objects.networks ?? []) records.setNetwork(n);
      for (const s of objects.sandboxes ?? []) records.setSandbox(s);
      for (const e of objects.endpoints ?? []) records.setEndpoint(e);
      changed();
    },
    lookup(askerId, name) {
      const { nets } = askerNets(askerId);
      if (nets.length === 0) return undefined;
      const q = normalizeName(name);
      // 1. the whole name on any of the asker's networks, in search order;
      for (const n of nets) {
        const list = n.index.byName.get(q);
        if (list?.length) return answerFrom(n.index, list);
      }
      // 2. `a.b.c` as `a.b` on network `c`, then `a` on network `b.c`.
      for (let dot = q.lastIndexOf("."); dot > 0; dot = q.lastIndexOf(".", dot - 1)) {
        const head = q.slice(0, dot);
        const netName = q.slice(dot + 1);
        const n = nets.find((x) => x.index.key === netName);
        const list = n?.index.byName.get(head);
        if (n && list?.length) return answerFrom(n.index, list);
      }
      return undefined;
    },
    reverse(askerId, address) {
      for (const n of askerNets(askerId).nets) {
        const list = n.index.byAddr.get(address);
        if (list?.length) return list[0].ptr;
      }
      return undefined;
    },
    scope(askerId) {
      return askerNets(askerId).scope;
    },
  };
  return records;
}
