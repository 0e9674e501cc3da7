/**
 * The crash test's independent look at the kernel: the journal's view (through the fresh
 * controller) against what `ip -j` and `nft -j` report — namespaces, host links, addresses
 * and default routes inside sandboxes, firewall chains.
 *
 * @module
 */

import type { Controller } from "../mod.ts";
import { hostVethName } from "../drivers/bridge/mod.ts";
import { ipOf, type Verdict } from "./_crash_model.ts";
import { comparePorts } from "./_crash_ports.ts";
import {
  base,
  cnmFirewall,
  defaultGateways,
  ipAddrs,
  netnsWithPrefix,
  nftRuleset,
  overlayNsPrefix,
  type Site,
} from "./_crash_probe.ts";

/**
 * Compares the controller's networks, endpoints and sandboxes with the kernel, without the
 * controller's help: namespaces, host links (bridges, veths and their masters), addresses
 * and default routes inside sandboxes, firewall chains and duplicated rules.
 */
export async function compareKernel(cnm: Controller, site: Site, v: Verdict): Promise<void> {
  // Bridge networks (the gwbridge too): overlay networks live in their own namespaces
  // (_crash_overlay.ts).
  const nets = cnm.networks().filter((n) => n.driver === "bridge" && n.state === "active");
  const eps = cnm.endpoints();
  const sbs = cnm.sandboxes();
  const joined = eps.filter((e) => e.state === "joined");
  const netById = new Map(nets.map((n) => [n.id, n]));
  const onBridge = joined.filter((e) => netById.has(e.networkId));

  // Namespaces.
  const have = new Set(
    (await netnsWithPrefix(site.namePrefix)).filter((n) =>
      n !== site.hostNs && !n.startsWith(overlayNsPrefix(site))
    ),
  );
  const want = new Set(sbs.map((s) => base(s.key)));
  for (const n of want) if (!have.has(n)) v.divergences.push(`namespace ${n} missing`);
  for (const n of have) if (!want.has(n)) v.leaks.push(`namespace ${n} leaked`);

  // Host links.
  const links = await ipAddrs(site.hostNs);
  const byName = new Map(links.map((l) => [l.ifname, l]));
  const wantLinks = new Map<string, string>();
  for (const n of nets) wantLinks.set(String(n.driverInfo.bridge), "bridge");
  for (const e of onBridge) wantLinks.set(hostVethName(e.id), "veth");
  for (const [name, kind] of wantLinks) {
    const l = byName.get(name);
    if (!l) v.divergences.push(`${kind} ${name} missing in the host namespace`);
    else if (l.linkinfo?.info_kind !== kind) {
      v.divergences.push(`${name} is a ${l.linkinfo?.info_kind}, not a ${kind}`);
    }
  }
  for (const l of links) {
    if (l.ifname !== "lo" && !wantLinks.has(l.ifname) && !site.ignoreLinks?.includes(l.ifname)) {
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
  for (const e of onBridge) {
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

  // Published ports: on exactly each sandbox's gateway endpoint, fully or not at all.
  await comparePorts(cnm, site, v);
}
