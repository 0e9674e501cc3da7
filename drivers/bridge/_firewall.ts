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
 * - **Idempotent by construction.** `add table|chain|set|element` succeed when the object
 *   exists unchanged; a whole table is deleted at once; a network's rules are swapped in one
 *   transaction.
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
 *   accept DNATed (published) traffic into our bridges → drop anything else entering them
 *   (new connections from outside: no direct access to a container).
 * - base chain `postrouting` (nat, priority srcnat): `ip[6] saddr vmap @cnm_nat4|6`, then
 *   the localhost masquerade of port publishing.
 * - per network: chain `net-<id12>` (isolation, ICC-off, internal drops) and, for networks
 *   that are not internal, `nat-<id12>` (masquerade leaving the bridge when enabled; hairpin
 *   masquerade of DNATed traffic coming back into it, always).
 * - port publishing (see `_portmap.ts`): base chains `prerouting`, `output` and
 *   `raw-prerouting`, maps `cnm_dnat4[_any]` / `cnm_dnat6[_any]`, set `cnm_lo4`, and per
 *   publishing endpoint a chain `pdnat-<net12>-<ep12>`.
 *
 * Table `bridge cnm` (ICC off without br_netfilter, see below):
 * - maps `cnm_icc4` / `cnm_icc6` (interval): subnet → `jump icc-<id12>`;
 * - base chain `forward` (bridge family, port-to-port traffic): `ip[6] saddr vmap …`;
 * - per ICC-off network: chain `icc-<id12>` dropping `ip saddr S ip daddr S`.
 *
 * Ownership: the table name (option `table`) marks everything in it as cnm's; inside, base
 * rules carry the comment `cnm:base <fp>`, a network's rules `cnm:<owner>:<id12> <fp>`
 * (`cnm:<id12> <fp>` without an owner; `<fp>`: a short hash of what the rules were generated
 * from; `<owner>`: the id of the controller that made the network) and a published port's
 * rule `cnm:<ep12> 0.0.0.0:8080->80/tcp`. Chain names `net-`, `nat-`, `icc-` + the first 12
 * characters of the network id, and `pdnat-<net12>-<ep12>`, tie chains to their networks
 * (nft 1.0.6's JSON does not show chain comments, so names and rule comments carry the mark).
 * Several controllers may share the tables (one kernel namespace): the base is the same for
 * all of them and written idempotently; a network's chains (its port chains too) belong to
 * the owner named in its rules' comments ({@link Firewall.networkOwners}).
 *
 * ## Idempotence and crash safety
 * Network and base calls first read our tables (`nft -j list ruleset`) and compare what is
 * there with what they would write (objects, map elements, rule comments with their
 * fingerprints). When they match they write nothing, so re-running yields a byte-identical
 * ruleset. Otherwise one transaction deletes whatever belongs to the network (elements
 * pointing at its chains, then the chains) and adds everything anew. Base objects are created
 * in their own transaction before the network's (nft 1.0.6 rejects an interval-map element
 * that jumps to a chain created in the same batch after the map); a crash between the two
 * leaves a base without the network, which the next run completes.
 *
 * Publishing is on the hot path of a join, so once this instance has checked the base it
 * writes one transaction without reading: replacing an endpoint's chain and adding its
 * elements is idempotent as written (see `_portmap.ts`). If that transaction fails (the base
 * is gone, a stale element of a dead endpoint holds the key, …) it reads the ruleset and
 * converges exactly: stale elements are removed, a port really published by another endpoint
 * is a {@link ConflictError}.
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
 * - With ICC off, containers of the network cannot reach each other's published ports
 *   through a host address either (the ICC drop comes first).
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
import { describeMapping, type PortMapping } from "../../src/ports/binding.ts";
import { parseState, splitElement, type State } from "./_nft_state.ts";
import {
  baseCommands,
  chainPattern,
  inventory,
  networkOfChain,
  networkPlan,
  type NetworkSpec,
  ownerOf,
  portRemovalCommands,
  removalCommands,
  sameInventory,
} from "./_network_rules.ts";
import {
  type ElementRef,
  elementsOf,
  portChainPattern,
  portInventory,
  type PortPublication,
  portSpec,
  publishCommands,
  type PublishedRules,
  unpublishCommands,
} from "./_portmap.ts";

export { USER_CHAIN } from "./_network_rules.ts";
export type { PortPublication, PublishedRules } from "./_portmap.ts";

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

/** What {@link Firewall.unpublishPorts} needs: the endpoint, and its mappings if known. */
export type PortUnpublication = Pick<PortPublication, "networkId" | "endpointId"> & {
  mappings?: PortMapping[];
};

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
  /**
   * Makes the endpoint's published ports exactly `pub.mappings` — those of a family it has an
   * address of, which it returns — in one transaction.
   */
  publishPorts(pub: PortPublication): Promise<PortMapping[]>;
  /** Removes every port rule of the endpoint, if present. */
  unpublishPorts(pub: PortUnpublication): Promise<void>;
  /** What our tables hold for each publishing endpoint. */
  listPorts(): Promise<PublishedRules[]>;
}

const tablePattern = /^[A-Za-z0-9_-]{1,64}$/;
const idPattern = /^[0-9a-f]{12,}$/;
const refKey = (r: ElementRef) => `${r.set} ${r.key}`;
const anyFamily = { ipv4Address: "0.0.0.0", ipv6Address: "::" };

/**
 * Creates the nftables firewall of the bridge driver.
 *
 * @param options how to run `nft` and the name of our tables.
 * @throws {InvalidArgumentError} when the table name is not a plain identifier. The methods
 *   reject with {@link InvalidArgumentError} for a malformed network or publication (before
 *   running nft), {@link ConflictError} when the bridge is firewalled for another network or
 *   a port is published by another endpoint, and {@link DriverError} (nft's stderr in the
 *   message) when nft fails.
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
  const t = `inet ${table}`;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = queue.then(fn, fn);
    queue = next.catch(() => {});
    return next;
  };
  /** Whether this instance has seen a current base (then publishing skips reading). */
  let baseChecked = false;
  /** endpoint (12) → the network (12) and elements this instance last published for it. */
  const published = new Map<string, { net12: string; refs: ElementRef[] }>();

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
    if (base.matches(state)) {
      baseChecked = true;
      return state;
    }
    await apply("creating the base ruleset", base.commands(state));
    baseChecked = true;
    return await readState();
  }

  /** Publishing from the ruleset as it is: stale elements go, live ones of others conflict. */
  async function publishExactly(s: ReturnType<typeof portSpec>, want: ElementRef[]) {
    const state = await ensureBaseWith(await readState());
    const inv = portInventory(state);
    const wanted = new Set(want.map(refKey));
    const drop = (inv.get(s.ep12)?.elements ?? []).filter((r) => !wanted.has(refKey(r)));
    for (const r of want) {
      if (!r.target) continue;
      for (const e of state.inet?.elements.get(r.set) ?? []) {
        const { key, target } = splitElement(e);
        if (key !== r.key || target === r.target) continue;
        const other = inv.get(portChainPattern.exec(target ?? "")?.[2] ?? "");
        const m = other?.mappings.find((m) =>
          elementsOf(m, other.chain).some((o) => refKey(o) === refKey(r))
        );
        if (other && m) {
          throw new ConflictError(
            `firewall: ${describeMapping(m)} is already published by endpoint ${other.endpointId}`,
          );
        }
        drop.push({ set: r.set, key, ...(target ? { target } : {}) });
      }
    }
    await apply(`publishing ports of endpoint ${s.ep12}`, publishCommands(t, s, drop));
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
        const state = await readState();
        await apply(`removing network ${id12}`, [
          ...removalCommands(table, state, id12),
          ...portRemovalCommands(table, state, id12),
        ]);
        for (const [ep12, p] of published) if (p.net12 === id12) published.delete(ep12);
      }),
    listNetworks: () =>
      serial(async () => {
        const state = await readState();
        const ids = new Set<string>();
        for (const tb of [state.inet, state.bridge]) {
          for (const chain of tb?.chains ?? []) {
            const id = networkOfChain(chain);
            if (id) ids.add(id);
          }
          for (const elements of tb?.elements.values() ?? []) {
            for (const e of elements) {
              const id = networkOfChain(splitElement(e).target ?? "");
              if (id) ids.add(id);
            }
          }
        }
        return [...ids].sort();
      }),
    networkOwners: () =>
      serial(async () => {
        const owners: Record<string, string | null> = {};
        const state = await readState();
        for (const tb of [state.inet, state.bridge]) {
          for (const chain of tb?.chains ?? []) {
            const id = networkOfChain(chain);
            if (!id) continue;
            owners[id] ??= null;
            if (!chainPattern.test(chain)) continue; // port chains: their network's owner
            for (const c of tb?.rules.get(chain) ?? []) {
              const owner = new RegExp(`^cnm:([a-z0-9]{1,16}):${id} `).exec(c)?.[1];
              if (owner) owners[id] = owner;
            }
          }
        }
        return owners;
      }),
    removeAll: () =>
      serial(async () => {
        // `add` then `delete` in one transaction: deletes the table whether or not it exists.
        await apply("removing all tables", [
          `add table inet ${table}`,
          `delete table inet ${table}`,
          `add table bridge ${table}`,
          `delete table bridge ${table}`,
        ]);
        baseChecked = false;
        published.clear();
      }),
    publishPorts: (pub) =>
      serial(async () => {
        const s = portSpec(pub);
        const want = s.mappings.flatMap((m) => elementsOf(m, s.chain));
        const wanted = new Set(want.map(refKey));
        const remember = () => published.set(s.ep12, { net12: s.net12, refs: want });
        if (baseChecked) {
          const stale = (published.get(s.ep12)?.refs ?? []).filter((r) => !wanted.has(refKey(r)));
          try {
            await apply(`publishing ports of endpoint ${s.ep12}`, publishCommands(t, s, stale));
            remember();
            return s.mappings;
          } catch { /* read the ruleset and converge exactly */ }
        }
        await publishExactly(s, want);
        remember();
        return s.mappings;
      }),
    unpublishPorts: (pub) =>
      serial(async () => {
        const s = portSpec({ ...pub, bridge: "x", mappings: [] });
        // Every given mapping (whatever the endpoint's families) names elements to forget.
        const given = pub.mappings &&
          portSpec({ ...pub, bridge: "x", mappings: pub.mappings, ...anyFamily })
            .mappings.flatMap((m) => elementsOf(m, s.chain));
        const cached = published.get(s.ep12)?.refs;
        if (baseChecked && (given || cached)) {
          const refs = new Map([...(cached ?? []), ...(given ?? [])].map((r) => [refKey(r), r]));
          try {
            await apply(
              `unpublishing ports of endpoint ${s.ep12}`,
              unpublishCommands(t, s.chain, [...refs.values()]),
            );
            published.delete(s.ep12);
            return;
          } catch { /* read the ruleset and remove exactly what is there */ }
        }
        const mine = portInventory(await readState()).get(s.ep12);
        if (mine) {
          await apply(`unpublishing ports of endpoint ${s.ep12}`, [
            ...mine.elements.map((e) => `delete element ${t} ${e.set} { ${e.key} }`),
            `flush chain ${t} ${mine.chain}`,
            `delete chain ${t} ${mine.chain}`,
          ]);
        }
        published.delete(s.ep12);
      }),
    listPorts: () => serial(async () => [...portInventory(await readState()).values()]),
  };
}

function validate(net: FirewallNetwork): NetworkSpec {
  const id = String(net.id ?? "").toLowerCase();
  if (!idPattern.test(id)) throw new InvalidArgumentError(`invalid network id: ${net.id}`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(net.bridge ?? "")) {
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
