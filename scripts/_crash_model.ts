/**
 * The crash test's model of what the controllers acknowledged — the killed child's and the
 * surviving host's, merged in time order. A controller is checked against it in
 * _crash_compare.ts; refusals are judged in _crash_rejections.ts.
 *
 * @module
 */

import type { Controller } from "../mod.ts";
import type { ChildLine } from "./_crash_child.ts";
import { type Op, userEndpoints, userNetworks, vnisOf } from "./_crash_workload.ts";

/** A network the model holds: a global one is every host's, a local one its host's. */
export interface NetModel {
  id: string;
  name: string;
  subnets: string[];
  global: boolean;
  vnis: number[];
  /** The host of a local network. */
  host?: string;
}

/** An endpoint the model holds. */
export interface EpModel {
  id: string;
  name: string;
  networkId: string;
  host: string;
  ipv4Address?: string;
  ipv6Address?: string;
  sandboxId: string | null;
  /** `hostIp hostPort/proto` of its decided ports. */
  ports?: string[];
}

/** What the acknowledgements say exists. */
export interface Model {
  nets: Map<string, NetModel>;
  sbs: Map<string, { id: string; name: string; key: string; host: string }>;
  eps: Map<string, EpModel>;
  deletedNets: string[];
  deletedEps: { network: string; name: string }[];
  /**
   * Objects that left the model, with when (ms since the epoch): a refusal from another
   * host may race their delete for a moment.
   */
  gone: Map<string, { at: number; net?: NetModel; ep?: EpModel }>;
  /**
   * Addresses acknowledged on one host while the model has them on another host's endpoint:
   * judged once the round's lines are all in (see {@link settleDuplicates}), as that
   * endpoint may have been deleted a moment before (the parent sees lines a little late).
   */
  duplicates: { newer: EpModel; older: EpModel; at: number }[];
}

/** A child or survivor line, stamped with its host and when the parent saw it. */
export type Stamped = ChildLine & { at: number; host: string };

/** An empty model. */
export function newModel(): Model {
  return {
    nets: new Map(),
    sbs: new Map(),
    eps: new Map(),
    deletedNets: [],
    deletedEps: [],
    gone: new Map(),
    duplicates: [],
  };
}

export const ipOf = (cidr?: string) => cidr?.split("/")[0];
export const portsOf = (ports?: { hostIp: string; hostPort: number; proto: string }[]) =>
  ports?.map((m) => `${m.hostIp} ${m.hostPort}/${m.proto}`);
/** Host ports the model's endpoints hold. */
export const heldBy = (m: Model) => [...m.eps.values()].flatMap((e) => e.ports ?? []);
/** The network of that name a command on `host` means (global, or that host's). */
export const netByName = (m: Model, name: string, host?: string) =>
  [...m.nets.values()].find((n) =>
    n.name === name && (n.global || host === undefined || n.host === host)
  );
export const sbByName = (m: Model, name: string, host: string) =>
  [...m.sbs.values()].find((s) => s.name === name && s.host === host);
export const epByName = (m: Model, network: string, name: string, host: string) => {
  const net = netByName(m, network, host);
  return net &&
    [...m.eps.values()].find((e) => e.networkId === net.id && e.name === name && e.host === host);
};

function dropEndpoint(m: Model, id: string, at: number): void {
  const e = m.eps.get(id);
  if (!e) return;
  m.eps.delete(id);
  m.gone.set(id, { at, ep: e });
  const net = m.nets.get(e.networkId);
  if (net) m.deletedEps.push({ network: net.name, name: e.name });
}

/**
 * Applies one acknowledgement to the model; returns a divergence, if it contradicts the
 * model. Lines of every host are applied in the order the parent saw them (refusals are
 * judged against the model by _crash_rejections.ts).
 */
export function apply(m: Model, line: Stamped): string | undefined {
  if (line.t !== "ack") return;
  const op = line.op;
  const h = line.host;
  const r = (line.result ?? {}) as Record<string, any>;
  switch (op.op) {
    case "createNetwork": {
      const global = r.scope === "global";
      m.nets.set(r.id, {
        id: r.id,
        name: op.name,
        subnets: r.subnets,
        global,
        vnis: r.vnis ?? [],
        ...(global ? {} : { host: h }),
      });
      return;
    }
    case "deleteNetwork": {
      const net = netByName(m, op.name, h);
      if (!net) return `acked delete of unknown network ${op.name} on ${h}`;
      m.nets.delete(net.id);
      m.gone.set(net.id, { at: line.at, net });
      m.deletedNets.push(op.name);
      return;
    }
    case "createSandbox":
      m.sbs.set(r.id, { id: r.id, name: op.name, key: r.key, host: h });
      return;
    case "deleteSandbox": {
      const sb = sbByName(m, op.name, h);
      if (!sb) return `acked delete of unknown sandbox ${op.name} on ${h}`;
      m.sbs.delete(sb.id);
      for (const e of [...m.eps.values()]) {
        if (e.sandboxId === sb.id) dropEndpoint(m, e.id, line.at);
      }
      return;
    }
    case "createEndpoint": {
      const dup = [...m.eps.values()].find((e) =>
        e.networkId === r.networkId && (
          r.ipv4Address && ipOf(e.ipv4Address) === ipOf(r.ipv4Address) ||
          r.ipv6Address && ipOf(e.ipv6Address) === ipOf(r.ipv6Address)
        )
      );
      const ep: EpModel = {
        id: r.id,
        name: op.name,
        networkId: r.networkId,
        host: h,
        ipv4Address: r.ipv4Address,
        ipv6Address: r.ipv6Address,
        sandboxId: null,
        ...(r.ports ? { ports: portsOf(r.ports) } : {}),
      };
      m.eps.set(r.id, ep);
      if (dup && dup.host !== h) m.duplicates.push({ newer: ep, older: dup, at: line.at });
      else if (dup) {
        return `duplicate IP acknowledged: ${op.name} on ${h} got ${
          r.ipv4Address ?? r.ipv6Address
        }, held by ${dup.name} on ${dup.host} (moby#27404)`;
      }
      return;
    }
    case "deleteEndpoint": {
      const e = epByName(m, op.network, op.name, h);
      if (!e) return `acked delete of unknown endpoint ${op.name} on ${h}`;
      dropEndpoint(m, e.id, line.at);
      return;
    }
    case "join": {
      const e = epByName(m, op.network, op.name, h);
      if (!e) return `acked join of unknown endpoint ${op.name} on ${h}`;
      e.sandboxId = r.sandboxId;
      return;
    }
    case "leave": {
      const e = epByName(m, op.network, op.name, h);
      if (!e) return `acked leave of unknown endpoint ${op.name} on ${h}`;
      e.sandboxId = null;
      return;
    }
  }
}

/** How long a delete may lag behind an acknowledged address on another host. */
const DUPLICATE_RACE_MS = 1000;

/**
 * Judges the cross-host duplicates of a round (see {@link Model.duplicates}): right only when
 * the older endpoint left the model at most a moment after, or when the command in flight at
 * the kill may have deleted it (`uncertain`: endpoint ids; its restart ran meanwhile).
 */
export function settleDuplicates(m: Model, uncertain: Set<string>): string[] {
  const out: string[] = [];
  for (const { newer, older, at } of m.duplicates.splice(0)) {
    const gone = m.gone.get(older.id);
    if (uncertain.has(older.id) || (gone && gone.at <= at + DUPLICATE_RACE_MS)) continue;
    out.push(
      `duplicate IP acknowledged: ${newer.name} on ${newer.host} got ${
        newer.ipv4Address ?? newer.ipv6Address
      }, held by ${older.name} on ${older.host} (moby#27404)`,
    );
  }
  return out;
}

/** Endpoints the command in flight on `host` may have deleted (at its restart). */
export function mayDelete(m: Model, flight: Op | undefined, host: string): Set<string> {
  const out = new Set<string>();
  if (flight?.op === "deleteEndpoint") {
    const e = epByName(m, flight.network, flight.name, host);
    if (e) out.add(e.id);
  }
  if (flight?.op === "deleteSandbox") {
    const sb = sbByName(m, flight.name, host);
    for (const e of m.eps.values()) if (sb && e.sandboxId === sb.id) out.add(e.id);
  }
  return out;
}

/** The command in flight when the child died (begun, neither acked nor refused). */
export function inFlight(lines: ChildLine[]): Op | undefined {
  let last: ChildLine | undefined;
  for (const l of lines) if (l.t === "begin" || l.t === "ack" || l.t === "err") last = l;
  return last?.t === "begin" ? last.op : undefined;
}

/**
 * Replaces what the model holds of `host` (its sandboxes, endpoints, local networks) and the
 * global networks with the controller's (checked) view.
 */
export function resync(m: Model, cnm: Controller, host = cnm.hostId): void {
  const nets = userNetworks(cnm).filter((n) => n.state !== "failed");
  for (const [id, n] of m.nets) if (n.global || n.host === host) m.nets.delete(id);
  for (const n of nets) {
    const global = n.scope === "global";
    m.nets.set(n.id, {
      id: n.id,
      name: n.name,
      subnets: n.ipam.config.map((c) => c.subnet),
      global,
      vnis: vnisOf(n),
      ...(global ? {} : { host }),
    });
  }
  for (const [id, s] of m.sbs) if (s.host === host) m.sbs.delete(id);
  for (const s of cnm.sandboxes()) {
    m.sbs.set(s.id, { id: s.id, name: s.name, key: s.key, host });
  }
  for (const [id, e] of m.eps) if (e.host === host) m.eps.delete(id);
  for (const e of userEndpoints(cnm).filter((e) => e.state !== "failed")) {
    m.eps.set(e.id, {
      id: e.id,
      name: e.name,
      networkId: e.networkId,
      host,
      ipv4Address: e.ipv4Address,
      ipv6Address: e.ipv6Address,
      sandboxId: e.sandboxId,
      ...(e.ports ? { ports: portsOf(e.ports) } : {}),
    });
  }
  m.deletedNets = m.deletedNets.filter((n) => !netByName(m, n)).slice(-6);
  m.deletedEps = m.deletedEps.filter((e) =>
    netByName(m, e.network) &&
    ![...m.eps.values()].some((x) =>
      x.name === e.name && m.nets.get(x.networkId)?.name === e.network
    )
  ).slice(-8);
  const old = Date.now() - 30_000;
  for (const [id, g] of m.gone) if (g.at < old) m.gone.delete(id);
}

/** Problems found: divergences (state disagrees) and leaks (something left behind). */
export interface Verdict {
  divergences: string[];
  leaks: string[];
}
