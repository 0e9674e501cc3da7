/**
 * The crash test's model of what the killed child acknowledged, and the check of a fresh
 * controller against it: acknowledged commands reflected (either outcome for the one in
 * flight), unique addresses, nothing stuck, no leaked address or pool.
 *
 * @module
 */

import type { Controller, NetworkInfo } from "../mod.ts";
import type { ChildLine, Op } from "./_crash_child.ts";

// ------------------------------------------------------------------ the model

/** What the child's acknowledgements say exists. */
export interface Model {
  nets: Map<string, { id: string; name: string; subnets: string[] }>;
  sbs: Map<string, { id: string; name: string; key: string }>;
  eps: Map<
    string,
    {
      id: string;
      name: string;
      networkId: string;
      ipv4Address?: string;
      ipv6Address?: string;
      sandboxId: string | null;
      /** `hostIp hostPort/proto` of its decided ports. */
      ports?: string[];
    }
  >;
  deletedNets: string[];
  deletedEps: { network: string; name: string }[];
}

/** An empty model. */
export function newModel(): Model {
  return { nets: new Map(), sbs: new Map(), eps: new Map(), deletedNets: [], deletedEps: [] };
}

export const ipOf = (cidr?: string) => cidr?.split("/")[0];
const portsOf = (ports?: { hostIp: string; hostPort: number; proto: string }[]) =>
  ports?.map((m) => `${m.hostIp} ${m.hostPort}/${m.proto}`);
/** Host ports the model's endpoints hold. */
const heldBy = (m: Model) => [...m.eps.values()].flatMap((e) => e.ports ?? []);
const netByName = (m: Model, name: string) => [...m.nets.values()].find((n) => n.name === name);
const sbByName = (m: Model, name: string) => [...m.sbs.values()].find((s) => s.name === name);
const epByName = (m: Model, network: string, name: string) => {
  const net = netByName(m, network);
  return net && [...m.eps.values()].find((e) => e.networkId === net.id && e.name === name);
};

function dropEndpoint(m: Model, id: string): void {
  const e = m.eps.get(id);
  if (!e) return;
  m.eps.delete(id);
  const net = m.nets.get(e.networkId);
  if (net) m.deletedEps.push({ network: net.name, name: e.name });
}

/** Expected rejections, with what the model must say for them to be right. */
const REJECTIONS: [RegExp, (m: Model, op: Op, match: RegExpMatchArray) => string | undefined][] = [
  [/^network (\S+) has active endpoints/, (m, op) => {
    const net = op.op === "deleteNetwork" ? netByName(m, op.name) : undefined;
    if (net && ![...m.eps.values()].some((e) => e.networkId === net.id)) {
      return `"has active endpoints" for ${op.op === "deleteNetwork" ? op.name : "?"}, ` +
        "which has no acknowledged endpoint (moby#17217)";
    }
  }],
  [/^Address already in use/, (m, op) => {
    if (op.op !== "createEndpoint") return "Address already in use outside createEndpoint";
    const net = netByName(m, op.network);
    const taken = net &&
      [...m.eps.values()].some((e) => e.networkId === net.id && ipOf(e.ipv4Address) === op.ipv4);
    // The gateway is the first address of an auto subnet (x.y.z.1) — never picked here.
    if (!taken) {
      return `"Address already in use" for ${op.ipv4} in ${op.network}, which no live ` +
        "endpoint holds (moby#26284)";
    }
  }],
  [/^endpoint with name (\S+) already exists in network (\S+)$/, (m, op) => {
    if (op.op !== "createEndpoint" || !epByName(m, op.network, op.name)) {
      return `stale "endpoint already exists" for ${JSON.stringify(op)} (moby#20398)`;
    }
  }],
  [/^network with name (\S+) already exists$/, (m, op) => {
    if (op.op !== "createNetwork" || !netByName(m, op.name)) {
      return `stale "network already exists" for ${JSON.stringify(op)}`;
    }
  }],
  [/^endpoint with name \S+ id \S+ has active containers$/, (m, op) => {
    const e = op.op === "deleteEndpoint" ? epByName(m, op.network, op.name) : undefined;
    if (!e?.sandboxId) return `"has active containers" for an endpoint not joined`;
  }],
  [/^Pool overlaps with other one on this address space$/, () => undefined],
  [/^Bind for (\S+):(\d+) failed: port is already allocated$/, (m, op, match) => {
    // The clashing address is the held one's (0.0.0.0 for a wildcard).
    if (!heldBy(m).some((p) => p.endsWith(` ${match[2]}/tcp`) || p.endsWith(` ${match[2]}/udp`))) {
      return `stale "port is already allocated" for ${match[2]} in ${JSON.stringify(op)}, ` +
        "which no acknowledged endpoint holds (moby#25981)";
    }
  }],
  [/^all ports are allocated$/, (m, op) => {
    const range = op.op === "createEndpoint" &&
      op.ports?.map((s) => /^(\d+)-(\d+):/.exec(s)).find(Boolean);
    if (!range) return `"all ports are allocated" for ${JSON.stringify(op)}`;
    const [lo, hi] = [Number(range[1]), Number(range[2])];
    const free = [];
    for (let p = lo; p <= hi; p++) {
      if (!heldBy(m).some((h) => Number(h.split(" ")[1].split("/")[0]) === p)) free.push(p);
    }
    if (free.length) return `"all ports are allocated" with ${free.join(",")} free`;
  }],
];

/** Applies one child line to the model; returns a divergence, if the line contradicts it. */
export function apply(m: Model, line: ChildLine): string | undefined {
  if (line.t === "err") {
    for (const [re, check] of REJECTIONS) {
      const match = line.message.match(re);
      if (match) return check(m, line.op, match);
    }
    return `unexpected error for ${JSON.stringify(line.op)}: ${line.name}: ${line.message}`;
  }
  if (line.t !== "ack") return;
  const op = line.op;
  const r = (line.result ?? {}) as Record<string, any>;
  switch (op.op) {
    case "createNetwork":
      m.nets.set(r.id, { id: r.id, name: op.name, subnets: r.subnets });
      return;
    case "deleteNetwork": {
      const net = netByName(m, op.name);
      if (!net) return `acked delete of unknown network ${op.name}`;
      m.nets.delete(net.id);
      m.deletedNets.push(op.name);
      return;
    }
    case "createSandbox":
      m.sbs.set(r.id, { id: r.id, name: op.name, key: r.key });
      return;
    case "deleteSandbox": {
      const sb = sbByName(m, op.name);
      if (!sb) return `acked delete of unknown sandbox ${op.name}`;
      m.sbs.delete(sb.id);
      for (const e of [...m.eps.values()]) if (e.sandboxId === sb.id) dropEndpoint(m, e.id);
      return;
    }
    case "createEndpoint": {
      const dup = [...m.eps.values()].find((e) =>
        r.ipv4Address && ipOf(e.ipv4Address) === ipOf(r.ipv4Address) ||
        r.ipv6Address && ipOf(e.ipv6Address) === ipOf(r.ipv6Address)
      );
      m.eps.set(r.id, {
        id: r.id,
        name: op.name,
        networkId: r.networkId,
        ipv4Address: r.ipv4Address,
        ipv6Address: r.ipv6Address,
        sandboxId: null,
        ...(r.ports ? { ports: portsOf(r.ports) } : {}),
      });
      if (dup) {
        return `duplicate IP acknowledged: ${op.name} got ${r.ipv4Address ?? r.ipv6Address}, ` +
          `held by ${dup.name} (moby#27404)`;
      }
      return;
    }
    case "deleteEndpoint": {
      const e = epByName(m, op.network, op.name);
      if (!e) return `acked delete of unknown endpoint ${op.name}`;
      dropEndpoint(m, e.id);
      return;
    }
    case "join": {
      const e = epByName(m, op.network, op.name);
      if (!e) return `acked join of unknown endpoint ${op.name}`;
      e.sandboxId = r.sandboxId;
      return;
    }
    case "leave": {
      const e = epByName(m, op.network, op.name);
      if (!e) return `acked leave of unknown endpoint ${op.name}`;
      e.sandboxId = null;
      return;
    }
  }
}

/** The command in flight when the child died (begun, neither acked nor refused). */
export function inFlight(lines: ChildLine[]): Op | undefined {
  let last: ChildLine | undefined;
  for (const l of lines) if (l.t === "begin" || l.t === "ack" || l.t === "err") last = l;
  return last?.t === "begin" ? last.op : undefined;
}

/** Replaces the model with the controller's (checked) view. */
export function resync(m: Model, cnm: Controller): void {
  m.nets = new Map(
    userNetworks(cnm).map((n) => [n.id, {
      id: n.id,
      name: n.name,
      subnets: n.ipam.config.map((c) => c.subnet),
    }]),
  );
  m.sbs = new Map(cnm.sandboxes().map((s) => [s.id, { id: s.id, name: s.name, key: s.key }]));
  m.eps = new Map(
    cnm.endpoints().map((e) => [e.id, {
      id: e.id,
      name: e.name,
      networkId: e.networkId,
      ipv4Address: e.ipv4Address,
      ipv6Address: e.ipv6Address,
      sandboxId: e.sandboxId,
      ...(e.ports ? { ports: portsOf(e.ports) } : {}),
    }]),
  );
  m.deletedNets = m.deletedNets.filter((n) => !netByName(m, n)).slice(-6);
  m.deletedEps = m.deletedEps.filter((e) =>
    netByName(m, e.network) && !epByName(m, e.network, e.name)
  )
    .slice(-8);
}

/** Bridge networks (the predefined `none` and `host` are not the workload's). */
export function userNetworks(cnm: Controller): NetworkInfo[] {
  return cnm.networks().filter((n) => n.driver === "bridge");
}

/** Problems found: divergences (state disagrees) and leaks (something left behind). */
export interface Verdict {
  divergences: string[];
  leaks: string[];
}

// ------------------------------------------------------------------ after a kill

const STABLE = new Set(["active", "ready", "created", "joined"]);

/**
 * Checks a fresh controller against the model of acknowledged commands, allowing either
 * outcome for the one command in flight when the child died. Adds to `v`.
 */
export function compareModel(
  cnm: Controller,
  m: Model,
  flight: Op | undefined,
  v: Verdict,
): void {
  const nets = userNetworks(cnm);
  const sbs = cnm.sandboxes();
  const eps = cnm.endpoints();
  const flightNet = flight && "network" in flight ? flight.network : undefined;
  const touchesNet = (name: string) =>
    (flight?.op === "createNetwork" || flight?.op === "deleteNetwork") && flight.name === name;
  const touchesSb = (name: string) =>
    (flight?.op === "createSandbox" || flight?.op === "deleteSandbox") && flight.name === name;
  const sbDeleting = flight?.op === "deleteSandbox"
    ? [...m.sbs.values()].find((s) => s.name === flight.name)?.id
    : undefined;
  const netName = (id: string) => m.nets.get(id)?.name ?? nets.find((n) => n.id === id)?.name ?? id;
  const touchesEp = (e: { name: string; networkId: string; sandboxId: string | null }) =>
    (flight && "network" in flight && flightNet === netName(e.networkId) &&
      flight.name === e.name) || (sbDeleting !== undefined && e.sandboxId === sbDeleting);

  for (const x of [...nets, ...sbs, ...eps] as { name: string; state: string }[]) {
    if (!STABLE.has(x.state)) {
      v.divergences.push(`${x.name} is ${x.state} after recovery (stuck)`);
    }
  }

  for (const n of nets) {
    const want = m.nets.get(n.id);
    if (!want) {
      if (!(flight?.op === "createNetwork" && flight.name === n.name)) {
        v.divergences.push(`network ${n.name} exists but was never acknowledged`);
      }
      continue;
    }
    const subnets = n.ipam.config.map((c) => c.subnet);
    if (JSON.stringify(subnets) !== JSON.stringify(want.subnets)) {
      v.divergences.push(`network ${n.name}: subnets ${subnets}, acknowledged ${want.subnets}`);
    }
  }
  for (const want of m.nets.values()) {
    if (!nets.some((n) => n.id === want.id) && !touchesNet(want.name)) {
      v.divergences.push(`acknowledged network ${want.name} is gone`);
    }
  }
  for (const s of sbs) {
    if (!m.sbs.has(s.id) && !(flight?.op === "createSandbox" && flight.name === s.name)) {
      v.divergences.push(`sandbox ${s.name} exists but was never acknowledged`);
    }
  }
  for (const want of m.sbs.values()) {
    if (!sbs.some((s) => s.id === want.id) && !touchesSb(want.name)) {
      v.divergences.push(`acknowledged sandbox ${want.name} is gone`);
    }
  }
  for (const e of eps) {
    const want = m.eps.get(e.id);
    if (!want) {
      if (!(flight?.op === "createEndpoint" && touchesEp(e))) {
        v.divergences.push(`endpoint ${e.name} exists but was never acknowledged`);
      }
      continue;
    }
    if (e.ipv4Address !== want.ipv4Address || e.ipv6Address !== want.ipv6Address) {
      v.divergences.push(
        `endpoint ${e.name}: ${e.ipv4Address}/${e.ipv6Address}, acknowledged ${want.ipv4Address}/${want.ipv6Address}`,
      );
    }
    if (JSON.stringify(portsOf(e.ports)) !== JSON.stringify(want.ports)) {
      v.divergences.push(
        `endpoint ${e.name}: ports ${
          portsOf(e.ports)
        }, acknowledged ${want.ports} (decided again?)`,
      );
    }
    if (e.sandboxId !== want.sandboxId && !touchesEp(want)) {
      v.divergences.push(
        `endpoint ${e.name}: sandbox ${e.sandboxId}, acknowledged ${want.sandboxId}`,
      );
    }
  }
  for (const want of m.eps.values()) {
    if (!eps.some((e) => e.id === want.id) && !touchesEp(want)) {
      v.divergences.push(`acknowledged endpoint ${want.name} is gone`);
    }
  }

  // No address on two live endpoints, none equal to a gateway.
  const owners = new Map<string, string>();
  for (const n of nets) {
    for (const c of n.ipam.config) if (c.gateway) owners.set(c.gateway, `gateway of ${n.name}`);
  }
  for (const e of eps) {
    for (const a of [ipOf(e.ipv4Address), ipOf(e.ipv6Address)]) {
      if (!a) continue;
      const other = owners.get(a);
      if (other) v.divergences.push(`address ${a} of ${e.name} is also the ${other} (moby#27404)`);
      owners.set(a, `address of endpoint ${e.name}`);
    }
  }
}
