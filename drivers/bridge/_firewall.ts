/**
 * The bridge driver's firewall, written with nftables.
 *
 * ## Why nftables and not iptables
 * - **Atomic.** Every change is one `nft -f -` transaction: the kernel applies all of it or
 *   none of it. A crash (ours or the host's) can never leave half a network's rules behind,
 *   so "re-run the same ensure" is always a valid recovery.
 * - **Ownership is visible.** Everything lives in tables we own (default name `cnm`), and
 *   every rule we write carries a comment saying whose it is, so reconciliation never has to
 *   guess and never touches another tool's rules (Docker, firewalld, libvirt, …).
 * - **Idempotent by construction.** `add table|chain|set` succeed when the object exists;
 *   a whole table is deleted at once; a network's rules are swapped in one transaction.
 *
 * ## Layout and ownership marks
 * Table `inet cnm` (IPv4 and IPv6 share one table; `inet` nat needs kernel ≥ 5.2):
 * - set `cnm_bridges` (ifname): every bridge we firewall.
 * - maps `cnm_fwd_in` / `cnm_fwd_out` (ifname → verdict): bridge → `jump net-<id12>`.
 * - maps `cnm_nat4` / `cnm_nat6` (interval, address → verdict): subnet → `jump nat-<id12>`.
 * - chain `cnm-user`: the operator's chain (Docker's DOCKER-USER). Jumped to first; never
 *   flushed by us (only {@link Firewall.removeAll} deletes it, with the table).
 * - base chain `forward` (hook forward, priority filter, policy accept):
 *   `jump cnm-user` → `iifname vmap @cnm_fwd_in` → `oifname vmap @cnm_fwd_out` →
 *   accept established/related into our bridges → accept everything leaving our bridges →
 *   drop anything else entering our bridges (new connections from outside; port
 *   publishing will add its accepts before this).
 * - base chain `postrouting` (nat, priority srcnat): `ip[6] saddr vmap @cnm_nat4|6`.
 * - per network: chain `net-<id12>` (isolation, ICC-off, internal drops) and, when the
 *   network masquerades, `nat-<id12>`.
 *
 * Table `bridge cnm` (ICC off without br_netfilter, see below):
 * - maps `cnm_icc4` / `cnm_icc6` (interval): subnet → `jump icc-<id12>`;
 * - base chain `forward` (bridge family, port-to-port traffic): `ip[6] saddr vmap …`;
 * - per ICC-off network: chain `icc-<id12>` dropping `ip saddr S ip daddr S`.
 *
 * Ownership: the table name (option `table`) marks everything in it as cnm's; inside, base
 * rules carry the comment `cnm:base <fp>` and a network's rules `cnm:<owner>:<id12> <fp>`
 * (`cnm:<id12> <fp>` without an owner), where `<fp>` is a short hash of what the rules were
 * generated from and `<owner>` the id of the controller that made the network. Chain names
 * `net-`, `nat-`, `icc-` + the first 12 characters of the network id tie chains to networks
 * (nft 1.0.6's JSON does not show chain comments, so names and rule comments carry the mark).
 * Several controllers may share the tables (one kernel namespace): the base is the same for
 * all of them and written idempotently; a network's chains belong to the owner named in
 * their rules' comments ({@link Firewall.networkOwners}).
 *
 * ## Idempotence and crash safety
 * Every call first reads our tables (`nft -j list ruleset`) and compares what is there with
 * what it would write (objects, map elements, rule comments with their fingerprints). When
 * they match it writes nothing, so re-running yields a byte-identical ruleset, handles
 * included. Otherwise it writes one transaction that deletes whatever belongs to the network
 * (elements pointing at its chains, then the chains) and adds everything anew. Deleting a
 * chain needs every reference gone first; with verdict maps the only references are map
 * elements, which we delete in the same transaction. Base objects are created in their own
 * transaction before the network's (nft 1.0.6 rejects an interval-map element that jumps to
 * a chain created in the same batch after the map); a crash between the two leaves a base
 * without the network, which the next run completes.
 *
 * ## ICC off, bridged traffic and br_netfilter
 * Traffic between two ports of one bridge is switched, not routed: it reaches the `inet`
 * forward hook only through br_netfilter (`net.bridge.bridge-nf-call-iptables`, per network
 * namespace on modern kernels, but loading the module is a host-wide change). So ICC off is
 * enforced in the `bridge` family, whose forward hook sees port-to-port frames whatever
 * br_netfilter does. The natural match, `meta ibrname`, needs `nft_meta_bridge`, which not
 * every kernel has (it fails with EOPNOTSUPP on the 6.x test kernel), so the rule matches the
 * subnet instead: `ip saddr S ip daddr S drop`. Subnets of bridge networks never overlap,
 * so S names the network. The `inet` rule `iifname B oifname B drop` is kept as well; it is
 * what applies when br_netfilter is on (Docker parity).
 *
 * ## Limits
 * - IPv6 is handled like IPv4 (masquerade, ICC by subnet); ICC-off also blocks neighbour
 *   discovery between endpoints that use addresses of the subnet.
 * - Internal networks get no masquerade and no traffic across the bridge boundary; the host
 *   itself can still reach endpoints (as in Docker: the input path is not filtered).
 * - Calls on one {@link Firewall} are serialised; two processes writing the same table at
 *   once may make a transaction fail (reported as DriverError; a re-run converges).
 *
 * ```ts ignore
 * import { createFirewall } from "./_firewall.ts";
 * const fw = createFirewall({ exec: (argv, o) => runInHostNamespace(argv, o) });
 * await fw.ensureNetwork({
 *   id: "0123456789abcdef", bridge: "br-0123456789ab", subnets: ["172.18.0.0/16"],
 *   internal: false, icc: true, masquerade: true,
 * });
 * ```
 *
 * @module
 */

import { ConflictError, DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { cidrToString, parseCidr } from "../../src/ipam/cidr.ts";

/** What the firewall needs to know about one bridge network. */
export interface FirewallNetwork {
  /** Network id (hex, at least 12 characters); the first 12 name its chains. */
  id: string;
  /** Bridge device name (at most 15 characters). */
  bridge: string;
  /** The network's subnets as CIDRs, IPv4 and/or IPv6. */
  subnets: string[];
  /** No traffic in or out of the bridge except among its own endpoints. */
  internal: boolean;
  /** Inter-container communication on this bridge; `false` drops bridge → same bridge. */
  icc: boolean;
  /** Masquerade traffic from the subnets leaving through another interface. */
  masquerade: boolean;
  /** Owner id of the controller the network belongs to, written into the rule comments. */
  owner?: string;
}

/** Options of {@link createFirewall}. */
export interface FirewallOptions {
  /**
   * Runs a command (argv[0] is `nft`) in the namespace to firewall and returns its stdout;
   * rejects (with stderr in the message) when it exits non-zero.
   */
  exec: (argv: string[], options?: { stdin?: string }) => Promise<string>;
  /** Name of our `inet` and `bridge` tables. Default `"cnm"`. */
  table?: string;
}

/** The bridge driver's firewall; every method is idempotent and safe to re-run. */
export interface Firewall {
  /** Creates our tables, base chains, sets and the user chain; never flushes the user chain. */
  ensureBase(): Promise<void>;
  /** Makes the network's rules exactly match `net`; a no-op when they already do. */
  ensureNetwork(net: FirewallNetwork): Promise<void>;
  /** Removes everything of the network (full id or its first 12 characters), if present. */
  removeNetwork(id: string): Promise<void>;
  /** The 12-character ids of networks that have anything in our tables. */
  listNetworks(): Promise<string[]>;
  /**
   * The owner of each network with chains in our tables (12-character id → owner id), from
   * its rules' comments; `null` when no rule names one (rules of an older version).
   */
  networkOwners(): Promise<Record<string, string | null>>;
  /** Deletes our tables (and only ours), including the user chain. */
  removeAll(): Promise<void>;
}

/** Name of the chain operators put their own rules in. */
export const USER_CHAIN = "cnm-user";

const BASE_VERSION = "1";
const ifnamePattern = /^[A-Za-z0-9_.-]{1,15}$/;
const tablePattern = /^[A-Za-z0-9_-]{1,64}$/;
const idPattern = /^[0-9a-f]{12,}$/;
const chainPattern = /^(net|nat|icc)-([0-9a-f]{12})$/;
/** Our sets and maps keyed by interface name (the others are keyed by address). */
const nameKeyed = new Set(["cnm_bridges", "cnm_fwd_in", "cnm_fwd_out"]);
const quoteKey = (set: string, key: string) => nameKeyed.has(set) ? `"${key}"` : key;

type Family = "inet" | "bridge";

/** The parts of our tables that the logic looks at, read from `nft -j list ruleset`. */
interface TableState {
  chains: Set<string>;
  /** chain → comments of its rules, in order. */
  rules: Map<string, string[]>;
  /** set or map name → elements (`key` or `key => target`). */
  elements: Map<string, string[]>;
}

interface State {
  inet?: TableState;
  bridge?: TableState;
}

/**
 * Creates the nftables firewall of the bridge driver.
 *
 * @param options how to run `nft` and the name of our tables.
 * @throws {InvalidArgumentError} when the table name is not a plain identifier. The methods
 *   reject with {@link InvalidArgumentError} for a malformed network (before running nft),
 *   {@link ConflictError} when the bridge is firewalled for another network, and
 *   {@link DriverError} (nft's stderr in the message) when nft fails.
 * @example
 * ```ts ignore
 * const fw = createFirewall({ exec: runNft });
 * await fw.ensureBase();
 * console.log(await fw.listNetworks());
 * ```
 */
export function createFirewall(options: FirewallOptions): Firewall {
  const table = options.table ?? "cnm";
  if (!tablePattern.test(table)) throw new InvalidArgumentError(`invalid table name: ${table}`);
  const { exec } = options;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = queue.then(fn, fn);
    queue = next.catch(() => {});
    return next;
  };

  async function nft(what: string, argv: string[], stdin?: string): Promise<string> {
    try {
      return await exec(["nft", ...argv], stdin === undefined ? undefined : { stdin });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new DriverError(`firewall: ${what} failed: ${message}`, { cause: err });
    }
  }

  async function readState(): Promise<State> {
    const out = await nft("reading the ruleset", ["-j", "list", "ruleset"]);
    return parseState(out, table);
  }

  async function apply(what: string, commands: string[]): Promise<void> {
    if (commands.length > 0) await nft(what, ["-f", "-"], commands.join("\n") + "\n");
  }

  async function ensureBaseWith(state: State): Promise<State> {
    const base = await baseCommands(table);
    if (baseMatches(state, base.comment)) return state;
    await apply("creating the base ruleset", base.commands(state));
    return await readState();
  }

  return {
    ensureBase: () => serial(async () => void await ensureBaseWith(await readState())),
    ensureNetwork: (net) =>
      serial(async () => {
        const spec = validate(net);
        const state = await ensureBaseWith(await readState());
        const desired = await networkPlan(table, spec);
        const owner = ownerOf(state.inet, `cnm_fwd_in`, spec.bridge);
        if (owner !== undefined && owner !== spec.id12) {
          throw new ConflictError(
            `firewall: bridge ${spec.bridge} already belongs to network ${owner}`,
          );
        }
        if (sameInventory(inventory(state, spec.id12), desired.inventory)) return;
        await apply(`ensuring network ${spec.id12}`, [
          ...removalCommands(table, state, spec.id12),
          ...desired.commands,
        ]);
      }),
    removeNetwork: (id) =>
      serial(async () => {
        const id12 = id.slice(0, 12).toLowerCase();
        if (!/^[0-9a-f]{12}$/.test(id12)) {
          throw new InvalidArgumentError(`invalid network id: ${id}`);
        }
        await apply(`removing network ${id12}`, removalCommands(table, await readState(), id12));
      }),
    listNetworks: () =>
      serial(async () => {
        const state = await readState();
        const ids = new Set<string>();
        for (const t of [state.inet, state.bridge]) {
          for (const chain of t?.chains ?? []) {
            const m = chainPattern.exec(chain);
            if (m) ids.add(m[2]);
          }
          for (const elements of t?.elements.values() ?? []) {
            for (const e of elements) {
              const m = chainPattern.exec(e.split(" => ")[1] ?? "");
              if (m) ids.add(m[2]);
            }
          }
        }
        return [...ids].sort();
      }),
    networkOwners: () =>
      serial(async () => {
        const owners: Record<string, string | null> = {};
        const state = await readState();
        for (const t of [state.inet, state.bridge]) {
          for (const chain of t?.chains ?? []) {
            const id = chainPattern.exec(chain)?.[2];
            if (!id) continue;
            owners[id] ??= null;
            for (const c of t?.rules.get(chain) ?? []) {
              const owner = new RegExp(`^cnm:([a-z0-9]{1,16}):${id} `).exec(c)?.[1];
              if (owner) owners[id] = owner;
            }
          }
        }
        return owners;
      }),
    removeAll: () =>
      serial(() =>
        // `add` then `delete` in one transaction: deletes the table whether or not it exists.
        apply("removing all tables", [
          `add table inet ${table}`,
          `delete table inet ${table}`,
          `add table bridge ${table}`,
          `delete table bridge ${table}`,
        ])
      ),
  };
}

interface Spec {
  id12: string;
  bridge: string;
  v4: string[];
  v6: string[];
  internal: boolean;
  icc: boolean;
  masquerade: boolean;
  owner?: string;
}

function validate(net: FirewallNetwork): Spec {
  const id = String(net.id ?? "").toLowerCase();
  if (!idPattern.test(id)) throw new InvalidArgumentError(`invalid network id: ${net.id}`);
  if (!ifnamePattern.test(net.bridge ?? "")) {
    throw new InvalidArgumentError(`invalid bridge name: ${net.bridge}`);
  }
  const v4: string[] = [], v6: string[] = [];
  for (const s of net.subnets ?? []) {
    const cidr = parseCidr(s);
    (cidr.family === 4 ? v4 : v6).push(cidrToString(cidr));
  }
  return {
    id12: id.slice(0, 12),
    bridge: net.bridge,
    v4: [...new Set(v4)].sort(),
    v6: [...new Set(v6)].sort(),
    internal: Boolean(net.internal),
    icc: Boolean(net.icc),
    masquerade: Boolean(net.masquerade),
    ...(net.owner !== undefined ? { owner: checkOwner(net.owner) } : {}),
  };
}

function checkOwner(owner: string): string {
  if (!/^[a-z0-9]{1,16}$/.test(owner)) throw new InvalidArgumentError(`invalid owner: ${owner}`);
  return owner;
}

async function fingerprint(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest).slice(0, 4)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

async function baseCommands(table: string) {
  const inetRules = [
    `jump ${USER_CHAIN}`,
    "iifname vmap @cnm_fwd_in",
    "oifname vmap @cnm_fwd_out",
    "oifname @cnm_bridges ct state established,related accept",
    "iifname @cnm_bridges accept",
    "oifname @cnm_bridges drop",
  ];
  const natRules = ["ip saddr vmap @cnm_nat4", "ip6 saddr vmap @cnm_nat6"];
  const bridgeRules = ["ip saddr vmap @cnm_icc4", "ip6 saddr vmap @cnm_icc6"];
  const comment = `cnm:base ${await fingerprint(
    [BASE_VERSION, ...inetRules, ...natRules, ...bridgeRules].join("\n"),
  )}`;
  const t = `inet ${table}`, b = `bridge ${table}`;
  const c = `comment "${comment}"`;
  const commands = (state: State) => [
    `add table ${t}`,
    `add chain ${t} ${USER_CHAIN}`,
    `add chain ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `add set ${t} cnm_bridges { type ifname; }`,
    `add map ${t} cnm_fwd_in { type ifname : verdict; }`,
    `add map ${t} cnm_fwd_out { type ifname : verdict; }`,
    `add map ${t} cnm_nat4 { type ipv4_addr : verdict; flags interval; }`,
    `add map ${t} cnm_nat6 { type ipv6_addr : verdict; flags interval; }`,
    `add table ${b}`,
    `add chain ${b} forward { type filter hook forward priority filter; policy accept; }`,
    `add map ${b} cnm_icc4 { type ipv4_addr : verdict; flags interval; }`,
    `add map ${b} cnm_icc6 { type ipv6_addr : verdict; flags interval; }`,
    // Only our base chains are flushed (when they exist); the user chain never is.
    ...(state.inet?.chains.has("forward") ? [`flush chain ${t} forward`] : []),
    ...(state.inet?.chains.has("postrouting") ? [`flush chain ${t} postrouting`] : []),
    ...(state.bridge?.chains.has("forward") ? [`flush chain ${b} forward`] : []),
    ...inetRules.map((r) => `add rule ${t} forward ${r} ${c}`),
    ...natRules.map((r) => `add rule ${t} postrouting ${r} ${c}`),
    ...bridgeRules.map((r) => `add rule ${b} forward ${r} ${c}`),
  ];
  return { comment, commands, counts: [inetRules.length, natRules.length, bridgeRules.length] };
}

function baseMatches(state: State, comment: string): boolean {
  const all = (rules: string[] | undefined, n: number) =>
    rules !== undefined && rules.length === n && rules.every((r) => r === comment);
  const inet = state.inet, bridge = state.bridge;
  return inet !== undefined && bridge !== undefined &&
    inet.chains.has(USER_CHAIN) &&
    ["cnm_bridges", "cnm_fwd_in", "cnm_fwd_out", "cnm_nat4", "cnm_nat6"]
      .every((s) => inet.elements.has(s)) &&
    ["cnm_icc4", "cnm_icc6"].every((s) => bridge.elements.has(s)) &&
    all(inet.rules.get("forward"), 6) && all(inet.rules.get("postrouting"), 2) &&
    all(bridge.rules.get("forward"), 2);
}

/** The commands adding a network, and the inventory they produce (see {@link inventory}). */
async function networkPlan(table: string, spec: Spec) {
  const { id12, bridge: br } = spec;
  const net: string[] = [`iifname "${br}" oifname @cnm_bridges oifname != "${br}" drop`];
  if (!spec.icc) net.push(`iifname "${br}" oifname "${br}" drop`);
  if (spec.internal) {
    net.push(`iifname "${br}" oifname != "${br}" drop`, `oifname "${br}" iifname != "${br}" drop`);
  }
  const nat: string[] = [];
  if (spec.masquerade && !spec.internal) {
    for (const s of spec.v4) nat.push(`ip saddr ${s} oifname != "${br}" masquerade`);
    for (const s of spec.v6) nat.push(`ip6 saddr ${s} oifname != "${br}" masquerade`);
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
 * Everything in our tables that belongs to the network, as comparable strings: its chains,
 * their rules' comments, map elements jumping to its chains, and its bridges in
 * `cnm_bridges` (the keys of its `cnm_fwd_in` elements).
 */
function inventory(state: State, id12: string): string[] {
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
        const [key, target] = e.split(" => ");
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

function sameInventory(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
}

/** Commands deleting everything {@link inventory} finds: elements first, then chains. */
function removalCommands(table: string, state: State, id12: string): string[] {
  const commands: string[] = [];
  const chains: string[] = [];
  for (const item of inventory(state, id12)) {
    const [what, fam, name, ...rest] = item.split(" ");
    if (what === "elem") {
      commands.push(`delete element ${fam} ${table} ${name} { ${quoteKey(name, rest[0])} }`);
    } else if (what === "chain") {
      chains.push(`flush chain ${fam} ${table} ${name}`, `delete chain ${fam} ${table} ${name}`);
    }
  }
  return [...commands, ...chains];
}

function ownerOf(t: TableState | undefined, set: string, key: string): string | undefined {
  for (const e of t?.elements.get(set) ?? []) {
    const [k, target] = e.split(" => ");
    if (k === key) return chainPattern.exec(target ?? "")?.[2] ?? target;
  }
  return undefined;
}

// deno-lint-ignore no-explicit-any
type Json = any;

function parseState(out: string, table: string): State {
  let doc: Json;
  try {
    doc = JSON.parse(out);
  } catch (err) {
    throw new DriverError(`firewall: cannot parse nft -j output: ${String(err)}`, { cause: err });
  }
  const state: State = {};
  const get = (fam: unknown, name: unknown): TableState | undefined => {
    if (name !== table || (fam !== "inet" && fam !== "bridge")) return undefined;
    return state[fam] ??= { chains: new Set(), rules: new Map(), elements: new Map() };
  };
  for (const item of doc?.nftables ?? []) {
    if (item.table) get(item.table.family, item.table.name);
    if (item.chain) get(item.chain.family, item.chain.table)?.chains.add(item.chain.name);
    if (item.rule) {
      const t = get(item.rule.family, item.rule.table);
      if (t) {
        const list = t.rules.get(item.rule.chain) ?? [];
        list.push(String(item.rule.comment ?? ""));
        t.rules.set(item.rule.chain, list);
      }
    }
    for (const kind of ["set", "map"]) {
      const s = item[kind];
      const t = s && get(s.family, s.table);
      if (!t) continue;
      const elements: string[] = [];
      const byName = s.type === "ifname";
      for (const e of s.elem ?? []) {
        if (Array.isArray(e)) {
          const target = e[1]?.jump?.target ?? e[1]?.goto?.target ?? "";
          elements.push(`${elementKey(e[0], byName)} => ${target}`);
        } else elements.push(elementKey(e, byName));
      }
      t.elements.set(s.name, elements);
    }
  }
  return state;
}

/** An element's key as we write it: a name, an address, `addr/len` or `from-to`. */
function elementKey(key: Json, byName: boolean): string {
  if (key && typeof key === "object" && "elem" in key) return elementKey(key.elem.val, byName);
  if (typeof key === "string") {
    if (byName) return key;
    const cidr = parseCidr(`${key}/${key.includes(":") ? 128 : 32}`);
    return cidrToString(cidr);
  }
  if (key?.prefix) return cidrToString(parseCidr(`${key.prefix.addr}/${key.prefix.len}`));
  if (Array.isArray(key?.range)) return `${key.range[0]}-${key.range[1]}`;
  return JSON.stringify(key);
}
