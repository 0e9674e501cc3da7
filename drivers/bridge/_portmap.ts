/**
 * The nftables rules of port publishing (pure generation; `_firewall.ts` runs them).
 *
 * ## Base objects (in table `inet cnm`, created with the rest of the base)
 * - maps `cnm_dnat4` / `cnm_dnat6` (`addr . proto . port` → verdict) for bindings on one
 *   host address, `cnm_dnat4_any` / `cnm_dnat6_any` (`proto . port` → verdict) for
 *   `0.0.0.0` / `::`; each element jumps to the publishing endpoint's `pdnat-` chain. The
 *   allocator never lets a wildcard and a specific binding share a port, so lookups never
 *   overlap.
 * - set `cnm_lo4` (`addr . proto . port`): bindings on 127/8.
 * - chain `prerouting` (nat, dstnat): traffic arriving for a local address
 *   (`fib daddr type local`) is looked up in the maps — but never for 127/8, `::1` or from
 *   IPv6 link-local sources: a crafted packet "to 127.0.0.1" from the LAN is not DNATed
 *   and dies as a martian (moby#41872, #45610).
 * - chain `output` (nat, -100): the same for locally generated traffic, 127.0.0.1 included.
 * - chain `raw-prerouting` (filter, raw): drops packets for a loopback binding that do not
 *   come from `lo` (Docker's "DROP REMOTE LOOPBACK"), and anything for 127/8 arriving on our
 *   bridges, which have `route_localnet=1` (without this a container could reach the host's
 *   loopback services, CVE-2020-8558).
 * - `forward` gains `oifname @cnm_bridges ct status dnat accept` before its final drop:
 *   published traffic passes, direct access to a container from outside stays dropped.
 * - `postrouting` gains `oifname @cnm_bridges ip saddr 127.0.0.0/8 ct status dnat
 *   masquerade`: replies to a host process that used 127.0.0.1 must come back to an address
 *   the container can answer (the gateway).
 * Hairpin (a container, or the container itself, using the host's address) is masqueraded
 * by the network's own `nat-<id12>` chain (`oifname B ct status dnat masquerade`, see
 * `_firewall.ts`), which works whether or not br_netfilter sees bridged traffic.
 *
 * ## Per publishing endpoint
 * Chain `pdnat-<net12>-<ep12>`, one rule per mapping:
 * `[ip daddr H | meta nfproto ipv4] tcp dport 8080 dnat ip to 172.18.0.2:80`, with the
 * comment `cnm:<ep12> 0.0.0.0:8080->80/tcp`; the map elements jumping to it; the `cnm_lo4`
 * elements of its loopback bindings. Publishing writes all of it in one transaction
 * (`add chain` + `flush chain` + rules + `add element`, which nft accepts again unchanged),
 * so it needs no read of the ruleset; unpublishing adds then deletes each element (delete
 * everything whether or not it is there) and deletes the chain.
 *
 * @module
 */

import { InvalidArgumentError } from "../../src/errors.ts";
import { addressOf } from "../../src/ipam/cidr.ts";
import {
  describeMapping,
  familyOf,
  isUnspecified,
  type PortMapping,
  PortMappingSchema,
} from "../../src/ports/binding.ts";
import { formatIssues } from "../../src/journal/events.ts";
import { splitElement, type State } from "./_nft_state.ts";

/** One endpoint's mappings, as the firewall programs them. */
export interface PortPublication {
  /** Network id (hex, at least 12 characters). */
  networkId: string;
  /** Endpoint id (hex, at least 12 characters). */
  endpointId: string;
  /** The network's bridge. */
  bridge: string;
  /** The endpoint's addresses (CIDR or bare); a mapping of a family it lacks is skipped. */
  ipv4Address?: string;
  ipv6Address?: string;
  mappings: PortMapping[];
}

/** A set or map element: its key and, for maps, the chain it jumps to. */
export interface ElementRef {
  set: string;
  key: string;
  target?: string;
}

/** What our tables hold for one publishing endpoint. */
export interface PublishedRules {
  networkId: string; // 12 characters
  endpointId: string; // 12 characters
  chain: string;
  /** The mappings its rules program (read back from their comments). */
  mappings: PortMapping[];
  /** Map elements jumping to its chain, and `cnm_lo4` elements of its loopback bindings. */
  elements: ElementRef[];
}

/** Names of the port maps and set. */
export const PORT_SETS = {
  dnat4: "cnm_dnat4",
  dnat4Any: "cnm_dnat4_any",
  dnat6: "cnm_dnat6",
  dnat6Any: "cnm_dnat6_any",
  lo4: "cnm_lo4",
} as const;

/** `pdnat-<net12>-<ep12>`. */
export const portChainPattern = /^pdnat-([0-9a-f]{12})-([0-9a-f]{12})$/;

/** A base chain: family, name, hook declaration and rules. */
export interface BaseChain {
  name: string;
  hook: string;
  rules: string[];
}

const v4Key = "ip daddr . meta l4proto . th dport";
const v6Key = "ip6 daddr . meta l4proto . th dport";
const anyKey = "meta l4proto . th dport";

/** The base chains port publishing adds to table `inet <table>`. */
export function portBaseChains(): BaseChain[] {
  const { dnat4, dnat4Any, dnat6, dnat6Any, lo4 } = PORT_SETS;
  const local = "fib daddr type local";
  const notLo6 = "ip6 daddr != ::1";
  return [
    {
      name: "prerouting",
      hook: "type nat hook prerouting priority dstnat; policy accept;",
      rules: [
        `${local} ip daddr != 127.0.0.0/8 ${v4Key} vmap @${dnat4}`,
        `${local} ip daddr != 127.0.0.0/8 ${anyKey} vmap @${dnat4Any}`,
        `${local} ${notLo6} ip6 saddr != fe80::/10 ${v6Key} vmap @${dnat6}`,
        `${local} ${notLo6} ip6 saddr != fe80::/10 ${anyKey} vmap @${dnat6Any}`,
      ],
    },
    {
      name: "output",
      hook: "type nat hook output priority -100; policy accept;",
      rules: [
        `${local} ${v4Key} vmap @${dnat4}`,
        `${local} meta nfproto ipv4 ${anyKey} vmap @${dnat4Any}`,
        `${local} ${notLo6} ${v6Key} vmap @${dnat6}`,
        `${local} ${notLo6} ${anyKey} vmap @${dnat6Any}`,
      ],
    },
    {
      name: "raw-prerouting",
      hook: "type filter hook prerouting priority raw; policy accept;",
      rules: [
        "iifname @cnm_bridges ip daddr 127.0.0.0/8 drop",
        `iifname != "lo" ${v4Key} @${lo4} drop`,
      ],
    },
  ];
}

/** The rule `forward` gets before its final drop: DNATed (published) traffic passes. */
export const PORT_FORWARD_RULE = "oifname @cnm_bridges ct status dnat accept";
/** The rule `postrouting` gets: host → 127.0.0.1:port leaves with the gateway's address. */
export const PORT_LOCALHOST_RULE = "oifname @cnm_bridges ip saddr 127.0.0.0/8 ct status dnat " +
  "masquerade";

/** `add map|set` commands of the port maps and set (idempotent). */
export function portBaseObjects(t: string): string[] {
  const { dnat4, dnat4Any, dnat6, dnat6Any, lo4 } = PORT_SETS;
  return [
    `add map ${t} ${dnat4} { type ipv4_addr . inet_proto . inet_service : verdict; }`,
    `add map ${t} ${dnat4Any} { type inet_proto . inet_service : verdict; }`,
    `add map ${t} ${dnat6} { type ipv6_addr . inet_proto . inet_service : verdict; }`,
    `add map ${t} ${dnat6Any} { type inet_proto . inet_service : verdict; }`,
    `add set ${t} ${lo4} { type ipv4_addr . inet_proto . inet_service; }`,
  ];
}

/** A validated publication. */
export interface PortSpec {
  net12: string;
  ep12: string;
  chain: string;
  bridge: string;
  /** The mappings programmed: those of a family the endpoint has an address of. */
  mappings: PortMapping[];
  ipv4?: string;
  ipv6?: string;
}

const hex12 = /^[0-9a-f]{12,}$/;

/**
 * Validates a publication and keeps the mappings it can program.
 *
 * @throws {InvalidArgumentError} naming the malformed field.
 */
export function portSpec(p: PortPublication): PortSpec {
  const net = String(p.networkId ?? "").toLowerCase();
  const ep = String(p.endpointId ?? "").toLowerCase();
  if (!hex12.test(net)) throw new InvalidArgumentError(`invalid network id: ${p.networkId}`);
  if (!hex12.test(ep)) throw new InvalidArgumentError(`invalid endpoint id: ${p.endpointId}`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(p.bridge ?? "")) {
    throw new InvalidArgumentError(`invalid bridge name: ${p.bridge}`);
  }
  const ipv4 = p.ipv4Address ? addressOf(p.ipv4Address) : undefined;
  const ipv6 = p.ipv6Address ? addressOf(p.ipv6Address) : undefined;
  if (ipv4 && familyOf(ipv4) !== 4) throw new InvalidArgumentError(`invalid ipv4Address: ${ipv4}`);
  if (ipv6 && familyOf(ipv6) !== 6) throw new InvalidArgumentError(`invalid ipv6Address: ${ipv6}`);
  const seen = new Set<string>();
  const mappings: PortMapping[] = [];
  for (const [i, raw] of (p.mappings ?? []).entries()) {
    const r = PortMappingSchema.safeParse(raw);
    if (!r.success) {
      throw new InvalidArgumentError(`invalid port mapping ${i}: ${formatIssues(r.error)}`);
    }
    const m = { ...r.data, hostIp: addressOf(r.data.hostIp) };
    if (!(familyOf(m.hostIp) === 4 ? ipv4 : ipv6)) continue;
    const key = `${m.proto} ${m.hostIp} ${m.hostPort}`;
    if (seen.has(key)) {
      throw new InvalidArgumentError(`invalid port mappings: ${describeMapping(m)} twice`);
    }
    seen.add(key);
    mappings.push(m);
  }
  return {
    net12: net.slice(0, 12),
    ep12: ep.slice(0, 12),
    chain: `pdnat-${net.slice(0, 12)}-${ep.slice(0, 12)}`,
    bridge: p.bridge,
    mappings,
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
  };
}

const isLoopback4 = (ip: string) => ip.startsWith("127.");

/** The elements a mapping needs, jumping to `chain`. */
export function elementsOf(m: PortMapping, chain: string): ElementRef[] {
  const v6 = familyOf(m.hostIp) === 6;
  const any = isUnspecified(m.hostIp);
  const set = v6
    ? (any ? PORT_SETS.dnat6Any : PORT_SETS.dnat6)
    : (any ? PORT_SETS.dnat4Any : PORT_SETS.dnat4);
  const key = any ? `${m.proto} . ${m.hostPort}` : `${m.hostIp} . ${m.proto} . ${m.hostPort}`;
  const out: ElementRef[] = [{ set, key, target: chain }];
  if (!v6 && isLoopback4(m.hostIp)) out.push({ set: PORT_SETS.lo4, key });
  return out;
}

/** The DNAT rule of one mapping (without its comment). */
function dnatRule(s: PortSpec, m: PortMapping): string {
  const v6 = familyOf(m.hostIp) === 6;
  const match = isUnspecified(m.hostIp)
    ? `meta nfproto ${v6 ? "ipv6" : "ipv4"}`
    : `${v6 ? "ip6" : "ip"} daddr ${m.hostIp}`;
  const to = v6 ? `ip6 to [${s.ipv6}]:${m.containerPort}` : `ip to ${s.ipv4}:${m.containerPort}`;
  return `${match} ${m.proto} dport ${m.hostPort} dnat ${to}`;
}

/** The rule comment naming a mapping: `cnm:<ep12> 0.0.0.0:8080->80/tcp`. */
export function mappingComment(ep12: string, m: PortMapping): string {
  return `cnm:${ep12} ${describeMapping(m)}`;
}

const commentPattern = /^cnm:([0-9a-f]{12}) (\[?([0-9a-f.:]+)\]?:(\d+)->(\d+)\/(tcp|udp))$/;

/** Parses {@link mappingComment}. */
export function parseMappingComment(c: string): { ep12: string; mapping: PortMapping } | undefined {
  const m = commentPattern.exec(c);
  if (!m) return undefined;
  return {
    ep12: m[1],
    mapping: {
      hostIp: m[3],
      hostPort: Number(m[4]),
      containerPort: Number(m[5]),
      proto: m[6] as "tcp" | "udp",
    },
  };
}

/** `add element` / `delete element` commands. */
export function elementCommands(t: string, refs: ElementRef[], op: "add" | "delete"): string[] {
  return refs.map((r) =>
    `${op} element ${t} ${r.set} { ${r.key}${
      op === "add" && r.target ? ` : jump ${r.target}` : ""
    } }`
  );
}

/** Adds then deletes each element: removes it whether or not it exists (nft 1.0.6 has no `destroy`). */
export function forgetCommands(t: string, refs: ElementRef[]): string[] {
  return refs.flatMap((r) => [
    ...elementCommands(t, [r], "add"),
    ...elementCommands(t, [r], "delete"),
  ]);
}

/** Everything publishing `s` writes, given elements to drop first (stale keys of `s`). */
export function publishCommands(t: string, s: PortSpec, stale: ElementRef[] = []): string[] {
  const rules = s.mappings.map((m) =>
    `add rule ${t} ${s.chain} ${dnatRule(s, m)} comment "${mappingComment(s.ep12, m)}"`
  );
  return [
    `add chain ${t} ${s.chain}`,
    `flush chain ${t} ${s.chain}`,
    ...rules,
    ...forgetCommands(t, stale),
    ...elementCommands(t, s.mappings.flatMap((m) => elementsOf(m, s.chain)), "add"),
  ];
}

/** Removes `s`'s chain and the given elements whether or not they exist. */
export function unpublishCommands(t: string, chain: string, refs: ElementRef[]): string[] {
  return [
    `add chain ${t} ${chain}`,
    ...forgetCommands(t, refs),
    `flush chain ${t} ${chain}`,
    `delete chain ${t} ${chain}`,
  ];
}

/** Everything our `inet` table holds for publishing endpoints, by endpoint (12 characters). */
export function portInventory(state: State): Map<string, PublishedRules> {
  const out = new Map<string, PublishedRules>();
  const t = state.inet;
  if (!t) return out;
  for (const chain of t.chains) {
    const m = portChainPattern.exec(chain);
    if (!m) continue;
    const comments = t.rules.get(chain) ?? [];
    out.set(m[2], {
      networkId: m[1],
      endpointId: m[2],
      chain,
      mappings: comments.map((c) => parseMappingComment(c)?.mapping)
        .filter((x): x is PortMapping => x !== undefined),
      elements: [],
    });
  }
  const byChain = new Map([...out.values()].map((p) => [p.chain, p]));
  for (const [set, elements] of t.elements) {
    for (const e of elements) {
      const { key, target } = splitElement(e);
      const owner = target !== undefined ? byChain.get(target) : undefined;
      if (owner) owner.elements.push({ set, key, target });
    }
  }
  // Loopback elements belong to the endpoint whose rules program that binding.
  for (const key of t.elements.get(PORT_SETS.lo4) ?? []) {
    for (const p of out.values()) {
      const keys = p.mappings.flatMap((m) => elementsOf(m, p.chain));
      if (keys.some((r) => r.set === PORT_SETS.lo4 && r.key === key)) {
        p.elements.push({ set: PORT_SETS.lo4, key });
      }
    }
  }
  return out;
}

/** Map and set elements of our port objects that belong to no endpoint's chain. */
export function strayPortElements(state: State): ElementRef[] {
  const t = state.inet;
  if (!t) return [];
  const owned = new Set<string>();
  for (const p of portInventory(state).values()) {
    for (const e of p.elements) owned.add(`${e.set} ${e.key}`);
  }
  const out: ElementRef[] = [];
  for (const set of Object.values(PORT_SETS)) {
    for (const e of t.elements.get(set) ?? []) {
      const { key, target } = splitElement(e);
      if (!owned.has(`${set} ${key}`)) out.push({ set, key, ...(target ? { target } : {}) });
    }
  }
  return out;
}
