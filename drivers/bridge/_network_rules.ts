/**
 * The nftables rules of the base and of one bridge network (pure generation and comparison;
 * `_firewall.ts` runs them). The layout is described in `_firewall.ts`; port publishing's
 * share of the base comes from `_portmap.ts`.
 *
 * @module
 */

import { type Family, splitElement, type State, type TableState } from "./_nft_state.ts";
import {
  type BaseChain,
  PORT_FORWARD_RULE,
  PORT_LOCALHOST_RULE,
  portBaseChains,
  portBaseObjects,
  portChainPattern,
  portInventory,
} from "./_portmap.ts";

/** Name of the chain operators put their own rules in. */
export const USER_CHAIN = "cnm-user";

/** Bumped whenever the base rules change (it is part of their fingerprint). */
const BASE_VERSION = "2";

/** `net-`, `nat-`, `icc-` + a network's first 12 characters. */
export const chainPattern = /^(net|nat|icc)-([0-9a-f]{12})$/;
/** Our sets and maps keyed by interface name (the others are keyed by address). */
const nameKeyed = new Set(["cnm_bridges", "cnm_fwd_in", "cnm_fwd_out"]);
const quoteKey = (set: string, key: string) => nameKeyed.has(set) ? `"${key}"` : key;

/** A validated network. */
export interface NetworkSpec {
  id12: string;
  bridge: string;
  v4: string[];
  v6: string[];
  internal: boolean;
  icc: boolean;
  masquerade: boolean;
  /** The owning controller's id, in the rule comments (`cnm:<owner>:<id12> <fp>`). */
  owner?: string;
}

async function fingerprint(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest).slice(0, 4)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** The base chains of both tables, with their rules. */
function baseChains(): { fam: Family; chain: BaseChain }[] {
  const inet = (chain: BaseChain) => ({ fam: "inet" as const, chain });
  return [
    inet({
      name: "forward",
      hook: "type filter hook forward priority filter; policy accept;",
      rules: [
        `jump ${USER_CHAIN}`,
        "iifname vmap @cnm_fwd_in",
        "oifname vmap @cnm_fwd_out",
        "oifname @cnm_bridges ct state established,related accept",
        "iifname @cnm_bridges accept",
        PORT_FORWARD_RULE,
        "oifname @cnm_bridges drop",
      ],
    }),
    inet({
      name: "postrouting",
      hook: "type nat hook postrouting priority srcnat; policy accept;",
      rules: ["ip saddr vmap @cnm_nat4", "ip6 saddr vmap @cnm_nat6", PORT_LOCALHOST_RULE],
    }),
    ...portBaseChains().map(inet),
    {
      fam: "bridge",
      chain: {
        name: "forward",
        hook: "type filter hook forward priority filter; policy accept;",
        rules: ["ip saddr vmap @cnm_icc4", "ip6 saddr vmap @cnm_icc6"],
      },
    },
  ];
}

/** The base: its fingerprint comment and the commands (re)creating it over `state`. */
export async function baseCommands(table: string) {
  const chains = baseChains();
  const comment = `cnm:base ${await fingerprint(
    JSON.stringify([BASE_VERSION, chains.map((c) => [c.fam, c.chain])]),
  )}`;
  const t = `inet ${table}`, b = `bridge ${table}`;
  const c = `comment "${comment}"`;
  const commands = (state: State) => [
    `add table ${t}`,
    `add chain ${t} ${USER_CHAIN}`,
    `add set ${t} cnm_bridges { type ifname; }`,
    `add map ${t} cnm_fwd_in { type ifname : verdict; }`,
    `add map ${t} cnm_fwd_out { type ifname : verdict; }`,
    `add map ${t} cnm_nat4 { type ipv4_addr : verdict; flags interval; }`,
    `add map ${t} cnm_nat6 { type ipv6_addr : verdict; flags interval; }`,
    ...portBaseObjects(t),
    `add table ${b}`,
    `add map ${b} cnm_icc4 { type ipv4_addr : verdict; flags interval; }`,
    `add map ${b} cnm_icc6 { type ipv6_addr : verdict; flags interval; }`,
    // Only our base chains are flushed (when they exist); the user chain never is.
    ...chains.flatMap(({ fam, chain }) => [
      `add chain ${fam} ${table} ${chain.name} { ${chain.hook} }`,
      ...(state[fam]?.chains.has(chain.name) ? [`flush chain ${fam} ${table} ${chain.name}`] : []),
      ...chain.rules.map((r) => `add rule ${fam} ${table} ${chain.name} ${r} ${c}`),
    ]),
  ];
  const matches = (state: State) =>
    state.inet?.chains.has(USER_CHAIN) === true &&
    ["cnm_bridges", "cnm_fwd_in", "cnm_fwd_out", "cnm_nat4", "cnm_nat6"]
      .every((s) => state.inet?.elements.has(s)) &&
    ["cnm_icc4", "cnm_icc6"].every((s) => state.bridge?.elements.has(s)) &&
    chains.every(({ fam, chain }) => {
      const rules = state[fam]?.rules.get(chain.name);
      return rules?.length === chain.rules.length && rules.every((r) => r === comment);
    });
  return { comment, commands, matches };
}

/** The commands adding a network, and the inventory they produce (see {@link inventory}). */
export async function networkPlan(table: string, spec: NetworkSpec) {
  const { id12, bridge: br } = spec;
  const net: string[] = [`iifname "${br}" oifname @cnm_bridges oifname != "${br}" drop`];
  if (!spec.icc) net.push(`iifname "${br}" oifname "${br}" drop`);
  if (spec.internal) {
    net.push(`iifname "${br}" oifname != "${br}" drop`, `oifname "${br}" iifname != "${br}" drop`);
  }
  const nat: string[] = [];
  if (!spec.internal) {
    if (spec.masquerade) {
      for (const s of spec.v4) nat.push(`ip saddr ${s} oifname != "${br}" masquerade`);
      for (const s of spec.v6) nat.push(`ip6 saddr ${s} oifname != "${br}" masquerade`);
    }
    // Hairpin: a container reaching a published port (its own too) through a host address
    // comes back into the bridge DNATed; masqueraded, the reply returns through the host
    // whether or not br_netfilter shows bridged traffic to conntrack.
    nat.push(`oifname "${br}" ct status dnat masquerade`);
  }
  const icc: string[] = [];
  if (!spec.icc) {
    for (const s of spec.v4) icc.push(`ip saddr ${s} ip daddr ${s} drop`);
    for (const s of spec.v6) icc.push(`ip6 saddr ${s} ip6 daddr ${s} drop`);
  }
  const mark = spec.owner ? `${spec.owner}:${id12}` : id12;
  const comment = `cnm:${mark} ${await fingerprint(JSON.stringify([net, nat, icc]))}`;
  const t = `inet ${table}`, b = `bridge ${table}`;
  const c = `comment "${comment}"`;
  const commands: string[] = [`add chain ${t} net-${id12}`];
  const inv: string[] = [`chain inet net-${id12}`];
  for (const r of net) commands.push(`add rule ${t} net-${id12} ${r} ${c}`);
  inv.push(...net.map(() => `rule inet net-${id12} ${comment}`));
  if (nat.length > 0) {
    commands.push(`add chain ${t} nat-${id12}`);
    inv.push(`chain inet nat-${id12}`);
    for (const r of nat) commands.push(`add rule ${t} nat-${id12} ${r} ${c}`);
    inv.push(...nat.map(() => `rule inet nat-${id12} ${comment}`));
  }
  if (icc.length > 0) {
    commands.push(`add chain ${b} icc-${id12}`);
    inv.push(`chain bridge icc-${id12}`);
    for (const r of icc) commands.push(`add rule ${b} icc-${id12} ${r} ${c}`);
    inv.push(...icc.map(() => `rule bridge icc-${id12} ${comment}`));
  }
  const element = (fam: Family, set: string, key: string, target?: string) => {
    const k = quoteKey(set, key);
    commands.push(
      `add element ${fam} ${table} ${set} { ${k}${target ? ` : jump ${target}` : ""} }`,
    );
    inv.push(`elem ${fam} ${set} ${key}${target ? ` => ${target}` : ""}`);
  };
  element("inet", "cnm_bridges", br);
  element("inet", "cnm_fwd_in", br, `net-${id12}`);
  element("inet", "cnm_fwd_out", br, `net-${id12}`);
  if (nat.length > 0) {
    for (const s of spec.v4) element("inet", "cnm_nat4", s, `nat-${id12}`);
    for (const s of spec.v6) element("inet", "cnm_nat6", s, `nat-${id12}`);
  }
  if (icc.length > 0) {
    for (const s of spec.v4) element("bridge", "cnm_icc4", s, `icc-${id12}`);
    for (const s of spec.v6) element("bridge", "cnm_icc6", s, `icc-${id12}`);
  }
  return { commands, inventory: inv };
}

/**
 * Everything in our tables that belongs to the network itself, as comparable strings: its
 * chains, their rules' comments, map elements jumping to its chains, and its bridges in
 * `cnm_bridges` (the keys of its `cnm_fwd_in` elements). Port chains are not included:
 * rewriting a network leaves its endpoints' published ports alone.
 */
export function inventory(state: State, id12: string): string[] {
  const inv: string[] = [];
  const bridges = new Set<string>();
  for (const fam of ["inet", "bridge"] as const) {
    const t = state[fam];
    if (!t) continue;
    for (const kind of ["net", "nat", "icc"]) {
      const chain = `${kind}-${id12}`;
      if (!t.chains.has(chain)) continue;
      inv.push(`chain ${fam} ${chain}`);
      for (const comment of t.rules.get(chain) ?? []) inv.push(`rule ${fam} ${chain} ${comment}`);
    }
    for (const [set, elements] of t.elements) {
      for (const e of elements) {
        const { key, target } = splitElement(e);
        if (target === undefined || chainPattern.exec(target)?.[2] !== id12) continue;
        inv.push(`elem ${fam} ${set} ${e}`);
        if (fam === "inet" && set === "cnm_fwd_in") bridges.add(key);
      }
    }
  }
  for (const br of bridges) {
    if (state.inet?.elements.get("cnm_bridges")?.includes(br)) {
      inv.push(`elem inet cnm_bridges ${br}`);
    }
  }
  return inv;
}

/** Same items, in any order. */
export function sameInventory(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
}

/** Commands deleting everything {@link inventory} finds: elements first, then chains. */
export function removalCommands(table: string, state: State, id12: string): string[] {
  const commands: string[] = [];
  const chains: string[] = [];
  for (const item of inventory(state, id12)) {
    const [what, fam, name] = item.split(" ", 3);
    const rest = item.slice(what.length + fam.length + name.length + 3);
    if (what === "elem") {
      const { key } = splitElement(rest);
      commands.push(`delete element ${fam} ${table} ${name} { ${quoteKey(name, key)} }`);
    } else if (what === "chain") {
      chains.push(`flush chain ${fam} ${table} ${name}`, `delete chain ${fam} ${table} ${name}`);
    }
  }
  return [...commands, ...chains];
}

/** Commands deleting the port chains of the network's endpoints and their elements. */
export function portRemovalCommands(table: string, state: State, net12: string): string[] {
  const t = `inet ${table}`;
  const elements: string[] = [];
  const chains: string[] = [];
  for (const p of portInventory(state).values()) {
    if (p.networkId !== net12) continue;
    for (const e of p.elements) elements.push(`delete element ${t} ${e.set} { ${e.key} }`);
    chains.push(`flush chain ${t} ${p.chain}`, `delete chain ${t} ${p.chain}`);
  }
  return [...new Set(elements), ...chains];
}

/** The network (12 characters) a chain of ours belongs to, if any. */
export function networkOfChain(chain: string): string | undefined {
  return chainPattern.exec(chain)?.[2] ?? portChainPattern.exec(chain)?.[1];
}

/** The network a `set` element with key `key` jumps to, if any. */
export function ownerOf(t: TableState | undefined, set: string, key: string): string | undefined {
  for (const e of t?.elements.get(set) ?? []) {
    const { key: k, target } = splitElement(e);
    if (k === key) return chainPattern.exec(target ?? "")?.[2] ?? target;
  }
  return undefined;
}
