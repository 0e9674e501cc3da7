/**
 * The crash test's independent look at published ports: what the journal says (through the
 * fresh controller's read model) against `nft -j` and `ss` in the host namespace, without the
 * controller's help. Each ready sandbox publishes the union of its joined endpoints' ports on
 * exactly its gateway endpoint — fully or not at all: a `pdnat-<net12>-<ep12>` chain with one
 * DNAT rule per mapping to the gateway's address, the map elements jumping to it, the
 * `cnm_lo4` elements of loopback bindings, and a held host socket per mapping. Also: every
 * DNAT target is the address of a joined endpoint (never a dead one), no chain or element
 * without an owner, and no host port decided for two live endpoints.
 *
 * @module
 */

import type { Controller, EndpointInfo, PortInfo } from "../mod.ts";
import { nftRuleset, type Site } from "./_crash_probe.ts";
import type { Verdict } from "./_crash_model.ts";

const ipOf = (cidr?: string) => cidr?.split("/")[0];
const fam = (ip: string) => ip.includes(":") ? 6 : 4;
const any = (ip: string) => ip === "0.0.0.0" || ip === "::";
const hostPort = (ip: string, port: number) => fam(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
const describe = (m: PortInfo) =>
  `${hostPort(m.hostIp, m.hostPort)}->${m.containerPort}/${m.proto}`;

/** libnetwork's gateway choice among joined endpoints (non-internal, with a gateway, by name). */
export function gatewayOf(
  members: EndpointInfo[],
  network: (id: string) => { name: string; internal: boolean } | undefined,
): EndpointInfo | undefined {
  const rank = (
    e: EndpointInfo,
    gw: string | undefined,
  ) => [Number(network(e.networkId)?.internal ?? false), Number(!gw)];
  for (const family of ["gateway", "gatewayIPv6"] as const) {
    const sorted = [...members].sort((a, b) => {
      const [ia, ga] = rank(a, a[family]), [ib, gb] = rank(b, b[family]);
      return ia - ib || ga - gb ||
        (network(a.networkId)?.name ?? "").localeCompare(network(b.networkId)?.name ?? "");
    });
    const first = sorted[0];
    if (first?.[family] && !network(first.networkId)?.internal) return first;
  }
}

/** Keys of the map (or set) elements a mapping needs: `set key`. */
function elementsOf(m: PortInfo): string[] {
  const v6 = fam(m.hostIp) === 6;
  const set = `cnm_dnat${v6 ? 6 : 4}${any(m.hostIp) ? "_any" : ""}`;
  const key = any(m.hostIp)
    ? `${m.proto} . ${m.hostPort}`
    : `${m.hostIp} . ${m.proto} . ${m.hostPort}`;
  return [`${set} ${key}`, ...(!v6 && m.hostIp.startsWith("127.") ? [`cnm_lo4 ${key}`] : [])];
}

/** `proto local` of every socket listening (TCP) or bound (UDP) in a namespace. */
export async function heldSockets(ns: string): Promise<string[]> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", ns, "ss", "-Hlntu"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`ss in ${ns}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).map((l) => {
    const f = l.trim().split(/\s+/);
    return `${f[0]} ${f[4]}`;
  }).sort();
}

/** Compares published ports with what the journal says. Adds to `v`. */
export async function comparePorts(cnm: Controller, site: Site, v: Verdict): Promise<void> {
  const nets = new Map(cnm.networks().map((n) => [n.id, n]));
  const eps = cnm.endpoints();
  const joined = eps.filter((e) => e.state === "joined");
  const byId = new Map(eps.map((e) => [e.id, e]));

  // What should be published: chain → its mappings and DNAT targets.
  const want = new Map<string, { gw: EndpointInfo; mappings: PortInfo[] }>();
  for (const s of cnm.sandboxes().filter((s) => s.state === "ready")) {
    const members = joined.filter((e) => e.sandboxId === s.id);
    const gw = gatewayOf(members, (id) => nets.get(id));
    if (!gw) continue;
    const mappings = members.flatMap((e) => e.ports ?? [])
      .filter((m) => fam(m.hostIp) === 4 ? gw.ipv4Address : gw.ipv6Address);
    if (mappings.length) {
      want.set(`pdnat-${gw.networkId.slice(0, 12)}-${gw.id.slice(0, 12)}`, { gw, mappings });
    }
  }

  // What is published.
  const rs = await nftRuleset(site.hostNs);
  const ours = (o: { family: string; table: string }) => o.family === "inet" && o.table === "cnm";
  const chains = new Set(
    rs.filter((x) => x.chain && ours(x.chain) && /^pdnat-/.test(x.chain.name))
      .map((x) => x.chain.name as string),
  );
  const rules = new Map<string, { comment: string; to?: string }[]>();
  for (const x of rs.filter((x) => x.rule && ours(x.rule) && chains.has(x.rule.chain))) {
    const dnat = (x.rule.expr as Record<string, any>[]).find((e) => e.dnat)?.dnat;
    rules.set(x.rule.chain, [
      ...(rules.get(x.rule.chain) ?? []),
      { comment: x.rule.comment ?? "", ...(dnat ? { to: `${dnat.addr}` } : {}) },
    ]);
  }
  const elements = new Map<string, string | undefined>(); // `set key` → jump target
  for (const x of rs) {
    const o = x.map ?? x.set;
    if (!o || !ours(o) || !/^cnm_(dnat[46](_any)?|lo4)$/.test(o.name)) continue;
    for (const e of o.elem ?? []) {
      const [k, verdict] = Array.isArray(e) ? e : [e, undefined];
      const key = (k.concat ?? [k]).join(" . ");
      elements.set(`${o.name} ${key}`, verdict?.jump?.target);
    }
  }

  const live = new Set(joined.flatMap((e) => [ipOf(e.ipv4Address), ipOf(e.ipv6Address)]));
  for (const [chain, r] of rules) {
    for (const rule of r) {
      if (rule.to && !live.has(rule.to)) {
        v.divergences.push(`${chain}: DNAT to ${rule.to}, no joined endpoint's address`);
      }
    }
  }
  for (const chain of chains) {
    if (!want.has(chain)) {
      v.leaks.push(`port chain ${chain} leaked (${rules.get(chain)?.length ?? 0} rules)`);
    }
  }
  const wantElements = new Map<string, string>();
  for (const [chain, { gw, mappings }] of want) {
    if (!chains.has(chain)) {
      v.divergences.push(`${gw.name}: publishes nothing, should publish ${mappings.map(describe)}`);
      continue;
    }
    const have = (rules.get(chain) ?? []).map((r) => r.comment.replace(/^cnm:\S+ /, "")).sort();
    const expect = mappings.map(describe).sort();
    if (JSON.stringify(have) !== JSON.stringify(expect)) {
      v.divergences.push(`${chain}: rules ${have.join(",")}, expected ${expect.join(",")}`);
    }
    const targets = [ipOf(gw.ipv4Address), ipOf(gw.ipv6Address)];
    for (const r of rules.get(chain) ?? []) {
      if (r.to && !targets.includes(r.to)) {
        v.divergences.push(`${chain}: DNAT to ${r.to}, not to its gateway endpoint ${gw.name}`);
      }
    }
    for (const m of mappings) for (const k of elementsOf(m)) wantElements.set(k, chain);
  }
  for (const [k, chain] of wantElements) {
    if (!elements.has(k)) v.divergences.push(`element ${k} (of ${chain}) missing`);
    else if (!k.startsWith("cnm_lo4") && elements.get(k) !== chain) {
      v.divergences.push(`element ${k} jumps to ${elements.get(k)}, expected ${chain}`);
    }
  }
  for (const k of elements.keys()) {
    if (!wantElements.has(k)) v.leaks.push(`element ${k} leaked (no owner)`);
  }

  // Held host sockets: exactly the published mappings' (the host namespace runs nothing else
  // but the kernel's VXLAN sockets of overlay networks).
  const held = new Set((await heldSockets(site.hostNs)).filter((h) => !/^udp \S+:4789$/.test(h)));
  const wantHeld = new Set(
    [...want.values()].flatMap((w) =>
      w.mappings.map((m) => `${m.proto} ${hostPort(m.hostIp, m.hostPort)}`)
    ),
  );
  for (const h of wantHeld) if (!held.has(h)) v.divergences.push(`host port ${h} not held`);
  for (const h of held) {
    if (!wantHeld.has(h)) v.leaks.push(`host port ${h} held, nothing published`);
  }

  // No host port decided for two live endpoints (a wildcard takes its family's every address).
  const seen = new Map<string, { ip: string; ep: string }[]>();
  for (const e of eps) {
    if (e.state === "failed") continue;
    for (const m of e.ports ?? []) {
      const k = `${m.proto}/${fam(m.hostIp)}/${m.hostPort}`;
      const others = seen.get(k) ?? [];
      const clash = others.find((o) =>
        o.ep !== e.id && (o.ip === m.hostIp || any(o.ip) || any(m.hostIp))
      );
      if (clash) {
        v.divergences.push(
          `host port ${hostPort(m.hostIp, m.hostPort)}/${m.proto} decided for ${e.name} and ` +
            `${byId.get(clash.ep)?.name} (moby#25981)`,
        );
      }
      seen.set(k, [...others, { ip: m.hostIp, ep: e.id }]);
    }
  }
}
