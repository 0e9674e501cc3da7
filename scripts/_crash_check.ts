/**
 * The crash test's judge: a model of what the killed child acknowledged, and the checks run
 * on a fresh controller after each kill — acknowledged commands reflected, the journal's view
 * against the kernel (its own `reconcile({ dryRun })` and an independent look through
 * `ip -j` and `nft -j`), unique addresses, nothing stuck, no leaked address or pool, and a
 * probe join that must work.
 *
 * @module
 */

import type { Controller, EndpointInfo, NetworkInfo, SandboxInfo } from "../mod.ts";
import { hostVethName } from "../drivers/bridge/mod.ts";
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
    }
  >;
  deletedNets: string[];
  deletedEps: { network: string; name: string }[];
}

/** An empty model. */
export function newModel(): Model {
  return { nets: new Map(), sbs: new Map(), eps: new Map(), deletedNets: [], deletedEps: [] };
}

const ipOf = (cidr?: string) => cidr?.split("/")[0];
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

// ------------------------------------------------------------------ kernel

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

interface IpAddrLink {
  ifname: string;
  address?: string;
  master?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}

/** `ip -n <ns> -d -j addr show`. */
export async function ipAddrs(ns: string): Promise<IpAddrLink[]> {
  return JSON.parse(await run("ip", ["-n", ns, "-d", "-j", "addr", "show"]) || "[]");
}

/** Default IPv4 routes' gateways in `ns`. */
export async function defaultGateways(ns: string): Promise<string[]> {
  const routes = JSON.parse(await run("ip", ["-n", ns, "-j", "route", "show"]) || "[]") as {
    dst: string;
    gateway?: string;
  }[];
  return routes.filter((r) => r.dst === "default").map((r) => r.gateway ?? "");
}

/** `nft -j list ruleset` inside `ns`, parsed. */
export async function nftRuleset(ns: string): Promise<Record<string, any>[]> {
  const out = await run("ip", ["netns", "exec", ns, "nft", "-j", "list", "ruleset"]);
  return (JSON.parse(out).nftables ?? []) as Record<string, any>[];
}

/** Our tables' chains and rules (`inet cnm`, `bridge cnm`), with handles stripped. */
export function cnmFirewall(ruleset: Record<string, any>[]): {
  chains: string[];
  rules: { chain: string; key: string }[];
} {
  const ours = (o: { family: string; table: string }) =>
    o.table === "cnm" && (o.family === "inet" || o.family === "bridge");
  const chains = ruleset.filter((x) => x.chain && ours(x.chain)).map((x) =>
    `${x.chain.family} ${x.chain.name}`
  );
  const rules = ruleset.filter((x) => x.rule && ours(x.rule)).map((x) => ({
    chain: `${x.rule.family} ${x.rule.chain}`,
    key: JSON.stringify([x.rule.expr, x.rule.comment ?? null]),
  }));
  return { chains: chains.sort(), rules };
}

/** Namespaces in /var/run/netns starting with `prefix`. */
export async function netnsWithPrefix(prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir("/var/run/netns")) {
    if (e.name.startsWith(prefix)) names.push(e.name);
  }
  return names.sort();
}

const base = (key: string) => key.slice(key.lastIndexOf("/") + 1);

/** Where the controller under test lives. */
export interface Site {
  /** Name of the throwaway host namespace. */
  hostNs: string;
  /** Name prefix of the sandboxes' namespaces (the host's name excluded). */
  namePrefix: string;
  /** The controller's `stateDir` (per-sandbox files), when they should be checked too. */
  stateDir?: string;
}

/** Problems found: divergences (state disagrees) and leaks (something left behind). */
export interface Verdict {
  divergences: string[];
  leaks: string[];
}

/**
 * Compares the controller's networks, endpoints and sandboxes with the kernel, without the
 * controller's help: namespaces, host links (bridges, veths and their masters), addresses
 * and default routes inside sandboxes, firewall chains and duplicated rules.
 */
export async function compareKernel(cnm: Controller, site: Site, v: Verdict): Promise<void> {
  const nets = userNetworks(cnm).filter((n) => n.state === "active");
  const eps = cnm.endpoints();
  const sbs = cnm.sandboxes();
  const joined = eps.filter((e) => e.state === "joined");

  // Namespaces.
  const have = new Set(
    (await netnsWithPrefix(site.namePrefix)).filter((n) => n !== site.hostNs),
  );
  const want = new Set(sbs.map((s) => base(s.key)));
  for (const n of want) if (!have.has(n)) v.divergences.push(`namespace ${n} missing`);
  for (const n of have) if (!want.has(n)) v.leaks.push(`namespace ${n} leaked`);

  // Host links.
  const links = await ipAddrs(site.hostNs);
  const byName = new Map(links.map((l) => [l.ifname, l]));
  const wantLinks = new Map<string, string>();
  for (const n of nets) wantLinks.set(String(n.driverInfo.bridge), "bridge");
  const netById = new Map(nets.map((n) => [n.id, n]));
  for (const e of joined) wantLinks.set(hostVethName(e.id), "veth");
  for (const [name, kind] of wantLinks) {
    const l = byName.get(name);
    if (!l) v.divergences.push(`${kind} ${name} missing in the host namespace`);
    else if (l.linkinfo?.info_kind !== kind) {
      v.divergences.push(`${name} is a ${l.linkinfo?.info_kind}, not a ${kind}`);
    }
  }
  for (const l of links) {
    if (l.ifname !== "lo" && !wantLinks.has(l.ifname)) {
      v.leaks.push(
        `link ${l.ifname} (${l.linkinfo?.info_kind}, ${l.ifalias ?? "no alias"}) leaked`,
      );
    }
  }
  for (const n of nets) {
    const l = byName.get(String(n.driverInfo.bridge));
    for (const c of n.ipam.config) {
      const gw = `${c.gateway}/${c.subnet.split("/")[1]}`;
      if (l && c.gateway && !l.addr_info?.some((a) => `${a.local}/${a.prefixlen}` === gw)) {
        v.divergences.push(`bridge ${l.ifname} lacks gateway ${gw}`);
      }
    }
  }
  for (const e of joined) {
    const l = byName.get(hostVethName(e.id));
    const bridge = String(netById.get(e.networkId)?.driverInfo.bridge);
    if (l && l.master !== bridge) {
      v.divergences.push(`veth ${l.ifname} master ${l.master}, expected ${bridge}`);
    }
  }

  // Inside each sandbox: one interface per joined endpoint with its addresses, the default
  // route via a gateway of a joined endpoint.
  for (const s of sbs) {
    const ns = base(s.key);
    if (!have.has(ns)) continue;
    const mine = joined.filter((e) => e.sandboxId === s.id);
    const inside = (await ipAddrs(ns)).filter((l) => l.ifname !== "lo");
    const seen = new Set<string>();
    for (const e of mine) {
      const l = inside.find((x) => x.ifname === e.ifname);
      if (!l) {
        v.divergences.push(`${e.ifname} of endpoint ${e.name} missing in ${s.name}`);
        continue;
      }
      seen.add(l.ifname);
      if (e.macAddress && l.address !== e.macAddress) {
        v.divergences.push(`${e.ifname} in ${s.name}: MAC ${l.address}, expected ${e.macAddress}`);
      }
      const global = (l.addr_info ?? []).filter((a) => a.scope === "global")
        .map((a) => `${a.local}/${a.prefixlen}`).sort();
      const expected = [e.ipv4Address, e.ipv6Address].filter((a): a is string => !!a).sort();
      if (JSON.stringify(global) !== JSON.stringify(expected)) {
        v.divergences.push(
          `${e.ifname} in ${s.name}: addresses ${global.join(",") || "none"}, ` +
            `expected ${expected.join(",")}`,
        );
      }
    }
    for (const l of inside) {
      if (!seen.has(l.ifname)) v.leaks.push(`interface ${l.ifname} leaked in ${s.name}`);
    }
    const gws = await defaultGateways(ns);
    const candidates = mine.map((e) => ipOf(e.gateway)).filter(Boolean);
    if (candidates.length && !(gws.length === 1 && candidates.includes(gws[0]))) {
      v.divergences.push(
        `${s.name}: default route via ${gws.join(",") || "none"}, expected one of ${
          candidates.join(",")
        }`,
      );
    }
    if (!candidates.length && gws.length) {
      v.leaks.push(`${s.name}: default route via ${gws.join(",")} with no endpoint joined`);
    }
  }

  // Per-sandbox files: a directory per sandbox; its hosts file names the joined addresses.
  if (site.stateDir) {
    const dirs: string[] = [];
    try {
      for await (const d of Deno.readDir(`${site.stateDir}/sandboxes`)) dirs.push(d.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    for (const s of sbs) {
      if (!dirs.includes(s.id)) {
        v.divergences.push(`files of sandbox ${s.name} missing`);
        continue;
      }
      const hosts = await Deno.readTextFile(s.hostsPath).catch(() => "");
      const listed = hosts.split("\n").map((l) => l.split(/\s+/)[0])
        .filter((a) => /^(172|10|192|fd)/.test(a)).sort();
      const want = joined.filter((e) => e.sandboxId === s.id)
        .flatMap((e) => [ipOf(e.ipv4Address), ipOf(e.ipv6Address)])
        .filter((a): a is string => !!a).sort();
      if (JSON.stringify(listed) !== JSON.stringify(want)) {
        v.divergences.push(
          `hosts of ${s.name} lists ${listed.join(",")}, expected ${want.join(",")}`,
        );
      }
    }
    for (const d of dirs) {
      if (!sbs.some((s) => s.id === d)) v.leaks.push(`files of sandbox ${d.slice(0, 12)} leaked`);
    }
  }

  // Firewall: a net- and a nat- chain per active bridge network, nothing else, no rule twice;
  // set and map elements only for active networks' bridges and subnets.
  const ruleset = await nftRuleset(site.hostNs);
  const elems = (name: string) =>
    ruleset.flatMap((x) => {
      const o = x.set ?? x.map;
      if (!o || o.table !== "cnm" || o.name !== name) return [];
      return (o.elem ?? []).map((e: unknown) => {
        const k = Array.isArray(e) ? e[0] : e;
        return typeof k === "string" ? k : `${k.prefix.addr}/${k.prefix.len}`;
      }) as string[];
    }).sort();
  const bridges = nets.map((n) => String(n.driverInfo.bridge)).sort();
  const subnets = (v6: boolean) =>
    nets.filter((n) => !n.internal).flatMap((n) => n.ipam.config.map((c) => c.subnet))
      .filter((c) => c.includes(":") === v6).sort();
  for (
    const [set, want] of [
      ["cnm_bridges", bridges],
      ["cnm_fwd_in", bridges],
      ["cnm_fwd_out", bridges],
      ["cnm_nat4", subnets(false)],
      ["cnm_nat6", subnets(true)],
    ] as [string, string[]][]
  ) {
    const got = elems(set);
    for (const w of want) if (!got.includes(w)) v.divergences.push(`${set} lacks ${w}`);
    for (const g of got) if (!want.includes(g)) v.leaks.push(`${set} element ${g} leaked`);
  }
  const fw = cnmFirewall(ruleset);
  const wantChains = new Set<string>();
  for (const n of nets) {
    wantChains.add(`inet net-${n.id.slice(0, 12)}`);
    if (!n.internal) wantChains.add(`inet nat-${n.id.slice(0, 12)}`);
  }
  const perNet = fw.chains.filter((c) => /\s(net|nat|icc)-[0-9a-f]{12}$/.test(c));
  for (const c of wantChains) {
    if (!perNet.includes(c)) v.divergences.push(`firewall chain ${c} missing`);
  }
  for (const c of perNet) {
    if (!wantChains.has(c) && !c.startsWith("bridge icc-")) {
      v.leaks.push(`firewall chain ${c} leaked`);
    }
  }
  const seenRules = new Set<string>();
  for (const r of fw.rules) {
    const k = `${r.chain} ${r.key}`;
    if (seenRules.has(k)) v.leaks.push(`firewall rule duplicated in ${r.chain}: ${r.key}`);
    seenRules.add(k);
  }
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

// ------------------------------------------------------------------ probes

/** The first default pool (172.17–31.0.0/16) no live network overlaps. */
export function expectedPool(nets: NetworkInfo[]): string | undefined {
  const used = nets.flatMap((n) => n.ipam.config.map((c) => c.subnet))
    .filter((s) => s.startsWith("172."));
  for (let b = 17; b <= 31; b++) {
    const cand = `172.${b}.0.0/16`;
    if (!used.some((s) => s.split(".")[1] === String(b))) return cand;
  }
}

/** Lowest free host address of an IPv4 subnet given the taken ones (first-free IPAM). */
export function expectedAddress(subnet: string, taken: Set<string>): string | undefined {
  const [addr, len] = subnet.split("/");
  const n = addr.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(len));
  for (let i = 1; i < size - 1; i++) {
    const v = n + i;
    const s = [24, 16, 8, 0].map((sh) => Math.floor(v / 2 ** sh) % 256).join(".");
    if (!taken.has(s)) return s;
  }
}

/**
 * A new network (auto subnet: the first free pool), a sandbox and an endpoint on an existing
 * network (auto address: the first free one), join (the interface and address appear),
 * leave (they go), then delete it all. A wrong pool or address means IPAM leaked.
 */
export async function probe(cnm: Controller, tag: string, v: Verdict): Promise<void> {
  const nets = userNetworks(cnm).filter((n) => n.state === "active");
  let net: NetworkInfo | undefined;
  let sb: SandboxInfo | undefined;
  let ep: EndpointInfo | undefined;
  try {
    const pool = expectedPool(nets);
    net = await cnm.createNetwork({ name: `probe${tag}` });
    if (pool && net.ipam.config[0]?.subnet !== pool) {
      v.leaks.push(`IPAM: probe network got ${net.ipam.config[0]?.subnet}, first free is ${pool}`);
    }
    const target = nets.find((n) => n.ipam.config.some((c) => !c.subnet.includes(":"))) ?? net;
    const v4 = target.ipam.config.find((c) => !c.subnet.includes(":"))!;
    const taken = new Set(
      cnm.endpoints({ network: target.id }).map((e) => ipOf(e.ipv4Address) ?? ""),
    );
    if (v4.gateway) taken.add(v4.gateway);
    const want = expectedAddress(v4.subnet, taken);
    sb = await cnm.createSandbox({ name: `probe${tag}` });
    ep = await cnm.createEndpoint(target.id, { name: `probe${tag}` });
    if (ipOf(ep.ipv4Address) !== want) {
      v.leaks.push(
        `IPAM: probe endpoint on ${target.name} got ${ep.ipv4Address}, first free is ${want}`,
      );
    }
    const joined = await cnm.join(ep.id, sb.id);
    const inside = await ipAddrs(base(sb.key));
    const l = inside.find((x) => x.ifname === joined.ifname);
    if (!l?.addr_info?.some((a) => a.local === ipOf(ep!.ipv4Address))) {
      v.divergences.push(`probe: ${joined.ifname} with ${ep.ipv4Address} not in ${sb.name}`);
    }
    await cnm.leave(ep.id, sb.id);
    if ((await ipAddrs(base(sb.key))).some((x) => x.ifname === joined.ifname)) {
      v.divergences.push(`probe: ${joined.ifname} still in ${sb.name} after leave`);
    }
    await cnm.deleteEndpoint(ep.id);
    ep = undefined;
    await cnm.deleteSandbox(sb.id);
    sb = undefined;
    await cnm.deleteNetwork(net.id);
    net = undefined;
  } catch (err) {
    v.divergences.push(`probe failed: ${(err as Error).name}: ${(err as Error).message}`);
    // Best effort, so one failure does not cascade into the next rounds.
    if (ep) await cnm.deleteEndpoint(ep.id, { force: true }).catch(() => {});
    if (sb) await cnm.deleteSandbox(sb.id).catch(() => {});
    if (net) await cnm.deleteNetwork(net.id).catch(() => {});
  }
}

/** Deletes the given old objects: sandboxes (with their endpoints), endpoints, networks. */
export async function cleanupOld(cnm: Controller, old: Set<string>): Promise<string[]> {
  const errors: string[] = [];
  const attempt = async (f: () => Promise<void>) => {
    try {
      await f();
    } catch (err) {
      errors.push(`cleanup: ${(err as Error).name}: ${(err as Error).message}`);
    }
  };
  for (const s of cnm.sandboxes()) if (old.has(s.id)) await attempt(() => cnm.deleteSandbox(s.id));
  for (const e of cnm.endpoints()) {
    if (old.has(e.id)) await attempt(() => cnm.deleteEndpoint(e.id, { force: true }));
  }
  for (const n of userNetworks(cnm)) {
    if (old.has(n.id) && !cnm.endpoints({ network: n.id }).length) {
      await attempt(() => cnm.deleteNetwork(n.id));
    }
  }
  return errors;
}
