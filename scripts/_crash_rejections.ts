/**
 * The crash test's judge of refusals: each expected refusal with what the model must say for
 * it to be right, or it is a divergence (a stale "has active endpoints", a freed address or
 * VNI still refused, …). With two hosts, a refusal may also be right because the other host
 * was changing that object at the time (its begun commands are known), because an object
 * left the model a moment before, or because a claim of a dead object still holds the value
 * (a create killed between its claims and its intent holds them for a minute).
 *
 * @module
 */

import { claimKey } from "../src/controller/claims.ts";
import type { EpModel, Model, NetModel, Stamped } from "./_crash_model.ts";
import type { Op } from "./_crash_workload.ts";

/** What a refusal is judged with besides the model. */
export interface RefusalContext {
  /** Lines of the other host(s) in this round: their begun commands justify races. */
  others: Stamped[];
  /** Claim keys held by dead objects when the round began or ended. */
  deadClaims: Set<string>;
  /** The journal's subject prefix (claim keys carry it). */
  prefix: string;
}

type Err = Stamped & { t: "err" };
type Check = (m: Model, l: Err, match: RegExpMatchArray, rc: RefusalContext) => string | undefined;

/** A moment: the parent stamps lines when it reads them, a little after they happened. */
const RACE_MS = 3000;

const ipOf = (cidr?: string) => cidr?.split("/")[0];
const nets = (m: Model, at: number): NetModel[] => [
  ...m.nets.values(),
  ...[...m.gone.values()].filter((g) => g.net && g.at >= at - RACE_MS).map((g) => g.net!),
];
const eps = (m: Model, at: number): EpModel[] => [
  ...m.eps.values(),
  ...[...m.gone.values()].filter((g) => g.ep && g.at >= at - RACE_MS).map((g) => g.ep!),
];
const netNamed = (m: Model, l: Err, name: string) =>
  nets(m, l.at).find((n) => n.name === name && (n.global || n.host === l.host));

/** Whether another host began a command matching `f` before (or about when) `l` was seen. */
const otherBegan = (rc: RefusalContext, l: Err, f: (op: Op) => boolean) =>
  rc.others.some((o) => o.t === "begin" && o.at <= l.at + 50 && f(o.op));
const touching = (name: string) => (op: Op) =>
  ("network" in op && op.network === name) ||
  ((op.op === "createNetwork" || op.op === "deleteNetwork") && op.name === name);
const otherCreatesGlobal = (op: Op) => op.op === "createNetwork" && op.driver === "overlay";

/** The network a command names, by name. */
const netOf = (op: Op) =>
  "network" in op
    ? op.network
    : op.op === "createNetwork" || op.op === "deleteNetwork"
    ? op.name
    : undefined;

/** A race with another host on that network: the error is right when it touched it. */
const race: Check = (m, l, _match, rc) => {
  const name = netOf(l.op);
  if (name === undefined) return `${l.message} for ${JSON.stringify(l.op)}`;
  const net = netNamed(m, l, name);
  if (net && !net.global) return `"${l.message}" for a local network ${name}`;
  if (!otherBegan(rc, l, touching(name))) {
    return `"${l.message}" on ${l.host} for ${JSON.stringify(l.op)}, which no other host touched`;
  }
};

const REJECTIONS: [RegExp, Check][] = [
  [/^network (\S+) has active endpoints(?: \((.*)\))?/, (m, l, match, rc) => {
    const op = l.op;
    const net = op.op === "deleteNetwork" ? netNamed(m, l, op.name) : undefined;
    if (!net) return;
    const listed = [...(match[2] ?? "").matchAll(/id:"([0-9a-f]{12})"/g)].map((x) => x[1]);
    const known = (id12: string) =>
      eps(m, l.at).some((e) => e.networkId === net.id && e.id.startsWith(id12));
    if (!listed.length && !eps(m, l.at).some((e) => e.networkId === net.id)) {
      return `"has active endpoints" for ${net.name}, which has no acknowledged endpoint ` +
        "(moby#17217)";
    }
    const stale = listed.filter((id) => !known(id));
    // An endpoint another host was creating on it (not acknowledged yet) is real too.
    const creating = net.global &&
      otherBegan(rc, l, (o) => o.op === "createEndpoint" && o.network === net.name);
    if (stale.length && !creating) {
      return `"has active endpoints" for ${net.name} naming ${stale.join(",")}, which no ` +
        "acknowledged endpoint is (moby#17217)";
    }
  }],
  [/^Address already in use/, (m, l, _match, rc) => {
    const op = l.op;
    if (op.op !== "createEndpoint") return "Address already in use outside createEndpoint";
    const net = netNamed(m, l, op.network);
    const taken = net &&
      eps(m, l.at).some((e) => e.networkId === net.id && ipOf(e.ipv4Address) === op.ipv4);
    const claimed = net?.global && op.ipv4 &&
      (rc.deadClaims.has(claimKey.address(rc.prefix, net.id, op.ipv4)) ||
        otherBegan(rc, l, (o) => o.op === "createEndpoint" && o.network === op.network));
    // The gateway is the first address of an auto subnet (x.y.z.1) — never picked here.
    if (!taken && !claimed) {
      return `"Address already in use" for ${op.ipv4} in ${op.network}, which no live ` +
        "endpoint holds (moby#26284)";
    }
  }],
  [/^endpoint with name (\S+) already exists in network (\S+)$/, (m, l) => {
    const op = l.op;
    const net = op.op === "createEndpoint" ? netNamed(m, l, op.network) : undefined;
    const held = net &&
      eps(m, l.at).some((e) =>
        e.networkId === net.id && e.host === l.host && op.op === "createEndpoint" &&
        e.name === op.name
      );
    if (!held) return `stale "endpoint already exists" for ${JSON.stringify(op)} (moby#20398)`;
  }],
  [/^network with name (\S+) already exists$/, (m, l, _match, rc) => {
    const op = l.op;
    if (op.op !== "createNetwork") return `"network already exists" for ${JSON.stringify(op)}`;
    const held = nets(m, l.at).some((n) => n.name === op.name);
    const claimed = op.driver === "overlay" &&
      (rc.deadClaims.has(claimKey.networkName(rc.prefix, op.name)) ||
        otherBegan(rc, l, (o) => o.op === "createNetwork" && o.name === op.name));
    if (!held && !claimed) return `stale "network already exists" for ${JSON.stringify(op)}`;
  }],
  [/^endpoint with name \S+ id \S+ has active containers$/, (m, l) => {
    const op = l.op;
    const e = op.op === "deleteEndpoint"
      ? eps(m, l.at).find((e) =>
        e.host === l.host && e.name === op.name && m.nets.get(e.networkId)?.name === op.network
      )
      : undefined;
    if (!e?.sandboxId) return `"has active containers" for an endpoint not joined`;
  }],
  [/^Pool overlaps with other one on this address space$/, (m, l, _match, rc) => {
    const op = l.op;
    // Bridge pools overlap the host's own routes and each other in ways not modelled here.
    if (op.op !== "createNetwork" || op.driver !== "overlay") return;
    if (!op.subnet) return `"Pool overlaps" for an automatic subnet: ${JSON.stringify(op)}`;
    const held = nets(m, l.at).some((n) => n.subnets.includes(op.subnet!));
    const claimed = rc.deadClaims.has(claimKey.subnet(rc.prefix, op.subnet)) ||
      otherBegan(rc, l, otherCreatesGlobal);
    if (!held && !claimed) {
      return `"Pool overlaps" on ${l.host} for ${op.subnet} (${op.name}), which no live global ` +
        "network holds (a leaked pool or claim?)";
    }
  }],
  [/^could not assign vxlan id (\d+) to pool \S*: vxlan id \d+ is in use$/, (m, l, match, rc) => {
    const vni = Number(match[1]);
    const held = nets(m, l.at).some((n) => n.vnis.includes(vni));
    const claimed = rc.deadClaims.has(claimKey.vni(rc.prefix, vni)) ||
      otherBegan(rc, l, otherCreatesGlobal);
    if (!held && !claimed) {
      return `"vxlan id ${vni} is in use", which no live global network holds (a leaked claim?)`;
    }
  }],
  [/^Bind for (\S+):(\d+) failed: port is already allocated$/, (m, l, match) => {
    // The clashing address is the held one's (0.0.0.0 for a wildcard).
    const held = eps(m, l.at).filter((e) => e.host === l.host).flatMap((e) => e.ports ?? []);
    if (!held.some((p) => p.endsWith(` ${match[2]}/tcp`) || p.endsWith(` ${match[2]}/udp`))) {
      return `stale "port is already allocated" for ${match[2]} in ${JSON.stringify(l.op)}, ` +
        "which no acknowledged endpoint holds (moby#25981)";
    }
  }],
  [/^all ports are allocated$/, (m, l) => {
    const op = l.op;
    const range = op.op === "createEndpoint" &&
      op.ports?.map((s) => /^(\d+)-(\d+):/.exec(s)).find(Boolean);
    if (!range) return `"all ports are allocated" for ${JSON.stringify(op)}`;
    const [lo, hi] = [Number(range[1]), Number(range[2])];
    const held = [...m.eps.values()].filter((e) => e.host === l.host).flatMap((e) => e.ports ?? []);
    const free = [];
    for (let p = lo; p <= hi; p++) {
      if (!held.some((h) => Number(h.split(" ")[1].split("/")[0]) === p)) free.push(p);
    }
    if (free.length) return `"all ports are allocated" with ${free.join(",")} free`;
  }],
  // Another host changing a global network at the same moment (or dead mid-change: its
  // network is busy until that host restarts and finishes the change).
  [/^network \S+ is busy \(state \w+ on another host\)/, race],
  [/^another writer changed network \S+/, race],
  [/^network \S+ is not active \(state \w+\)$/, race],
  [/^network \S+ not found$/, (m, l, match, rc) => {
    const name = netOf(l.op);
    if (name && netNamed(m, l, name)?.global === false) return race(m, l, match, rc);
    if (name && !m.nets.has(netNamed(m, l, name)?.id ?? "")) return; // gone, or never made
    return race(m, l, match, rc);
  }],
];

/** Judges a refusal; returns a divergence when it was wrong. */
export function judgeRefusal(m: Model, l: Err, rc: RefusalContext): string | undefined {
  for (const [re, check] of REJECTIONS) {
    const match = l.message.match(re);
    if (match) return check(m, l, match, rc);
  }
  return `unexpected error on ${l.host} for ${JSON.stringify(l.op)}: ${l.name}: ${l.message}`;
}
