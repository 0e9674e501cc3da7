/**
 * The crash test's independent look at overlay networks on every host: the hosts agree on
 * the global networks; no two live global networks share a VNI or a subnet, no two live
 * endpoints of one share an address (across hosts); each host's overlay namespaces
 * `<namePrefix>ov-<owner>-<nid12>` exist exactly for the networks with a local joined
 * endpoint, hold exactly a bridge and a VXLAN device per subnet (with its VNI) and a veth
 * per local endpoint, and exactly one permanent neighbour and one FDB entry per remote joined
 * endpoint (`ip -j`, `bridge -j fdb`; none for local or gone ones); and the gwbridge
 * endpoints exist exactly for the sandboxes whose joined networks are all global.
 *
 * Peers are programmed asynchronously (from the stream), so the kernel is read again until it
 * matches or the deadline passes.
 *
 * @module
 */

import type { Controller, EndpointInfo, NetworkInfo } from "../mod.ts";
import { ownerId } from "../src/ids.ts";
import { ipAddrs, netnsWithPrefix, overlayNsPrefix, run, type Site } from "./_crash_probe.ts";
import { ipOf, type Verdict } from "./_crash_model.ts";
import { GWBRIDGE_LABEL, vnisOf } from "./_crash_workload.ts";

/** One host of the lab with its controller. */
export interface OverlaySite extends Site {
  ctl: Controller;
  hostId: string;
  /** Its VTEP (underlay address). */
  vtep: string;
  stream: string;
}

/**
 * The sites of a lab's hosts, `hostIds[i]` on `hosts[i]` (their controllers come later):
 * each host's namespace, name prefix, state directory under `stateDir`, VTEP and stream.
 */
export function labSites(
  hosts: readonly { name: string; namePrefix: string; address: string }[],
  hostIds: readonly string[],
  stateDir: string,
  stream: string,
): (Omit<OverlaySite, "ctl"> & { stateDir: string })[] {
  return hosts.map((h, i) => ({
    hostNs: h.name,
    namePrefix: h.namePrefix,
    stateDir: `${stateDir}/${hostIds[i]}`,
    ignoreLinks: ["ul0"],
    hostId: hostIds[i],
    vtep: h.address,
    stream,
  }));
}

const hex6 = (vni: number) => vni.toString(16).padStart(6, "0");
/** libnetwork's MAC for an IPv4 address: `02:42:` + its octets. */
export const macOf = (ip: string) =>
  ["02", "42", ...ip.split(".").map((o) => Number(o).toString(16).padStart(2, "0"))].join(":");
const toInt = (ip: string) => ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
/** Whether two IPv4 CIDRs overlap. */
export function overlaps(a: string, b: string): boolean {
  const [x, lx] = a.split("/");
  const [y, ly] = b.split("/");
  const block = 2 ** (32 - Math.min(Number(lx ?? 32), Number(ly ?? 32)));
  return Math.floor(toInt(x) / block) === Math.floor(toInt(y) / block);
}
const inSubnet = (ip: string, cidr: string) => overlaps(`${ip}/32`, cidr);

/** Live global networks of a controller's view. */
export const globalNets = (cnm: Controller): NetworkInfo[] =>
  cnm.networks().filter((n) => n.scope === "global" && n.state !== "failed");
const joinedOn = (cnm: Controller, net: string): EndpointInfo[] =>
  cnm.endpoints({ network: net }).filter((e) => e.state === "joined");

/** The hosts agree on the global networks (waits for the followers until `deadline`). */
async function agree(hosts: OverlaySite[], v: Verdict, deadline: number): Promise<void> {
  const view = (h: OverlaySite) =>
    globalNets(h.ctl).map((n) =>
      `${n.name} ${n.id.slice(0, 12)} ${n.state} ${n.ipam.config.map((c) => c.subnet)} vni ${
        vnisOf(n)
      }`
    ).sort().join("; ");
  for (;;) {
    const views = hosts.map(view);
    if (views.every((x) => x === views[0])) return;
    if (Date.now() > deadline) {
      for (const [i, h] of hosts.entries()) {
        v.divergences.push(`global networks seen by ${h.hostId}: ${views[i] || "none"}`);
      }
      v.divergences.push("the hosts disagree on the global networks");
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** No VNI, subnet or (per network, across hosts) address or MAC twice. */
function unique(hosts: OverlaySite[], v: Verdict): void {
  const nets = globalNets(hosts[0].ctl);
  const vnis = new Map<number, string>();
  const subnets: [string, string][] = [];
  for (const n of nets) {
    for (const vni of vnisOf(n)) {
      const other = vnis.get(vni);
      if (other) v.divergences.push(`VNI ${vni} of ${n.name} is also ${other}'s (VNI clash)`);
      vnis.set(vni, n.name);
    }
    for (const c of n.ipam.config.filter((c) => !c.subnet.includes(":"))) {
      const other = subnets.find(([s]) => overlaps(s, c.subnet));
      if (other) {
        v.divergences.push(`subnet ${c.subnet} of ${n.name} overlaps ${other[0]} of ${other[1]}`);
      }
      subnets.push([c.subnet, n.name]);
    }
    const owners = new Map<string, string>();
    for (const c of n.ipam.config) if (c.gateway) owners.set(c.gateway, "the gateway");
    for (const h of hosts) {
      for (const e of h.ctl.endpoints({ network: n.id }).filter((e) => e.state !== "failed")) {
        const ip = ipOf(e.ipv4Address);
        if (!ip) continue;
        const other = owners.get(ip);
        if (other) {
          v.divergences.push(
            `address ${ip} of ${e.name} on ${h.hostId} in ${n.name} is also ${other}'s (moby#27404)`,
          );
        }
        owners.set(ip, `${e.name} on ${h.hostId}`);
      }
    }
  }
}

/** gwbridge endpoints exactly for ready sandboxes whose joined networks are all global. */
function gwbridges(h: OverlaySite, v: Verdict): void {
  const cnm = h.ctl;
  const nets = new Map(cnm.networks().map((n) => [n.id, n]));
  const eps = cnm.endpoints();
  for (const s of cnm.sandboxes()) {
    const mine = eps.filter((e) => e.sandboxId === s.id && e.state === "joined");
    const gw = eps.filter((e) =>
      nets.get(e.networkId)?.labels[GWBRIDGE_LABEL] &&
      e.name === `gateway_${s.id.slice(0, 12)}`
    );
    const others = mine.filter((e) => !nets.get(e.networkId)?.labels[GWBRIDGE_LABEL]);
    const global = others.some((e) => nets.get(e.networkId)?.scope === "global");
    const gateway = others.some((e) => e.gateway && !nets.get(e.networkId)?.internal);
    const want = s.state === "ready" && global && !gateway;
    if (want && !(gw.length === 1 && gw[0].state === "joined")) {
      v.divergences.push(
        `${s.name} on ${h.hostId} (overlay only) has ${
          gw.map((e) => e.state).join(",") || "no"
        } gwbridge endpoint`,
      );
    }
    if (!want && gw.length) {
      v.leaks.push(`${s.name} on ${h.hostId} keeps a gwbridge endpoint (${gw[0].state})`);
    }
  }
  for (const e of eps) {
    const net = nets.get(e.networkId);
    if (net?.labels[GWBRIDGE_LABEL] && !cnm.sandboxes().some((s) => e.sandboxId === s.id)) {
      v.leaks.push(`gwbridge endpoint ${e.name} on ${h.hostId} without its sandbox`);
    }
  }
}

interface NsWant {
  links: Map<string, string>; // name → `kind vni master`
  neigh: Map<string, string[]>; // vxlan device → `ip mac`
  fdb: Map<string, string[]>; // vxlan device → `mac vtep`
}

/** What host `h`'s overlay namespaces must hold, from the controllers' views. */
function expected(h: OverlaySite, hosts: OverlaySite[]): Map<string, NsWant> {
  const out = new Map<string, NsWant>();
  const owner = ownerId(h.stream, h.hostId);
  for (const n of globalNets(h.ctl).filter((n) => n.state === "active")) {
    const local = joinedOn(h.ctl, n.id);
    if (!local.length) continue;
    const want: NsWant = { links: new Map(), neigh: new Map(), fdb: new Map() };
    const v4 = n.ipam.config.filter((c) => !c.subnet.includes(":"));
    const vnis = vnisOf(n);
    const id5 = n.id.slice(0, 5);
    const remote = hosts.filter((o) => o !== h).flatMap((o) =>
      joinedOn(o.ctl, n.id).map((e) => ({ e, vtep: o.vtep }))
    );
    for (const [i, c] of v4.entries()) {
      const br = `ov-${hex6(vnis[i])}-${id5}`;
      const vx = `vx-${hex6(vnis[i])}-${id5}`;
      want.links.set(br, "bridge");
      want.links.set(vx, `vxlan ${vnis[i]} ${br}`);
      for (const e of local) {
        if (inSubnet(ipOf(e.ipv4Address)!, c.subnet)) {
          want.links.set(`veth${e.id.slice(0, 11)}`, `veth - ${br}`);
        }
      }
      const here = remote.filter((r) => inSubnet(ipOf(r.e.ipv4Address)!, c.subnet));
      want.neigh.set(
        vx,
        here.map((r) => `${ipOf(r.e.ipv4Address)} ${macOf(ipOf(r.e.ipv4Address)!)}`).sort(),
      );
      want.fdb.set(vx, here.map((r) => `${macOf(ipOf(r.e.ipv4Address)!)} ${r.vtep}`).sort());
    }
    out.set(`${h.namePrefix}ov-${owner}-${n.id.slice(0, 12)}`, want);
  }
  return out;
}

/** Differences between host `h`'s overlay namespaces and `want` (empty when they match). */
async function overlayDiff(h: OverlaySite, want: Map<string, NsWant>): Promise<Verdict> {
  const v: Verdict = { divergences: [], leaks: [] };
  const at = ` on ${h.hostId}`;
  const have = await netnsWithPrefix(overlayNsPrefix(h));
  for (const ns of want.keys()) {
    if (!have.includes(ns)) v.divergences.push(`overlay namespace ${ns} missing${at}`);
  }
  for (const ns of have) {
    const w = want.get(ns);
    const links = (await ipAddrs(ns)).filter((l) => l.ifname !== "lo") as (
      Awaited<ReturnType<typeof ipAddrs>>[number] & {
        linkinfo?: { info_kind?: string; info_data?: { id?: number } };
      }
    )[];
    if (!w) {
      const vx = links.filter((l) => l.linkinfo?.info_kind === "vxlan")
        .map((l) => `${l.ifname} (VNI ${l.linkinfo?.info_data?.id})`);
      v.leaks.push(`overlay namespace ${ns} leaked${at}${vx.length ? `, holding ${vx}` : ""}`);
      continue;
    }
    for (const l of links) {
      const kind = l.linkinfo?.info_kind;
      const got = kind === "vxlan"
        ? `vxlan ${l.linkinfo?.info_data?.id} ${l.master}`
        : kind === "veth"
        ? `veth - ${l.master}`
        : kind ?? "?";
      const exp = w.links.get(l.ifname);
      if (!exp) v.leaks.push(`${l.ifname} (${got}) leaked in ${ns}${at}`);
      else if (exp !== got) {
        v.divergences.push(`${l.ifname} in ${ns}${at}: ${got}, expected ${exp}`);
      }
    }
    for (const [name, exp] of w.links) {
      if (!links.some((l) => l.ifname === name)) {
        v.divergences.push(`${name} (${exp}) missing in ${ns}${at}`);
      }
    }
    for (const [vx, expNeigh] of w.neigh) {
      if (!links.some((l) => l.ifname === vx)) continue;
      const neigh = (JSON.parse(
        await run("ip", ["-n", ns, "-j", "neigh", "show", "dev", vx]) ||
          "[]",
      ) as { dst: string; lladdr?: string; state?: string[] }[])
        .filter((n) => (n.state ?? []).includes("PERMANENT")).map((n) => `${n.dst} ${n.lladdr}`)
        .sort();
      const fdb = (JSON.parse(
        await run("bridge", ["-n", ns, "-j", "fdb", "show", "dev", vx]) ||
          "[]",
      ) as { mac: string; dst?: string }[])
        .filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`).sort();
      const cmp = (what: string, got: string[], exp: string[]) => {
        if (JSON.stringify(got) === JSON.stringify(exp)) return;
        const missing = exp.filter((x) => !got.includes(x));
        const extra = got.filter((x) => !exp.includes(x) || got.indexOf(x) !== got.lastIndexOf(x));
        v.divergences.push(
          `${what} on ${vx} in ${ns}${at}: ${missing.length ? `missing ${missing}` : ""}${
            missing.length && extra.length ? "; " : ""
          }${extra.length ? `stale or twice ${extra}` : ""}`,
        );
      };
      cmp("neighbours", neigh, expNeigh);
      cmp("FDB entries", fdb, w.fdb.get(vx) ?? []);
    }
  }
  return v;
}

/**
 * Checks the overlay on every host (see the module doc); waits for peers to converge until
 * `deadline` (ms since the epoch). Adds to `v`; returns when the kernels converged (ms
 * after `since`), or undefined when they did not.
 */
export async function compareOverlay(
  hosts: OverlaySite[],
  v: Verdict,
  since: number,
  deadline: number,
): Promise<number | undefined> {
  await agree(hosts, v, deadline);
  unique(hosts, v);
  for (const h of hosts) gwbridges(h, v);
  const wants = hosts.map((h) => expected(h, hosts));
  for (;;) {
    const diffs = await Promise.all(hosts.map((h, i) => overlayDiff(h, wants[i])));
    const bad = diffs.some((d) => d.divergences.length || d.leaks.length);
    if (!bad) return Date.now() - since;
    if (Date.now() > deadline) {
      for (const d of diffs) {
        v.divergences.push(...d.divergences.map((x) => `not converged: ${x}`));
        v.leaks.push(...d.leaks);
      }
      return undefined;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
