/**
 * A small NAT table of the `ip` family, programmed over nf_tables netlink from this process
 * (no `nft` run): base chains of type `nat` whose rules match an IPv4 source or destination,
 * a protocol and a port, count, and DNAT or SNAT to an address and/or a port — what the
 * embedded DNS resolver's per-sandbox table needs (`src/dns/dnat.ts`), and the shape of a
 * published port's DNAT. The socket is opened inside the namespace given by path (the
 * thread visits it with setns(), as `in_netns.ts`) and closed after each call, so nothing
 * keeps a namespace alive.
 *
 * {@link ensureNatTable} makes the table exactly `table` in one transaction: a new table when
 * there is none (`create table`: deletes nothing, so no RCU grace period to wait for), else
 * the whole table replaced (`add table; delete table; table …`), atomically — what
 * `nft -f` gives with the same script, message for message. A refused rule fails the whole
 * transaction: the table before stays as it was.
 *
 * @example
 * ```ts ignore
 * import { deleteNatTable, ensureNatTable, readNatTable } from "./nat_table.ts";
 * await ensureNatTable({
 *   name: "cnm-dns",
 *   chains: [{ name: "dns-dnat", hook: "output", priority: -100, rules: [
 *     { daddr: "127.0.0.11", protocol: "udp", dport: 53, counter: true, nat: "dnat",
 *       toAddr: "127.0.0.11", toPort: 40001, comment: "cnm-dns udp" },
 *   ] }],
 * }, "/var/run/netns/sb1");
 * console.log(await readNatTable("cnm-dns", "/var/run/netns/sb1"));
 * await deleteNatTable("cnm-dns", "/var/run/netns/sb1");
 * ```
 *
 * @module
 */

import { CnmError, DriverError } from "../errors.ts";
import type { Request } from "./_netlink.ts";
import { decodeRule, invalid, type NatRule, ruleExprs } from "./_nat_rule.ts";
import {
  deleteTable,
  HOOKS,
  newBaseChain,
  newRule,
  newTable,
  NFPROTO_IPV4,
  NftSocket,
} from "./_nftnl.ts";

export type { NatRule } from "./_nat_rule.ts";
export { decodeRule, ruleExprs } from "./_nat_rule.ts";

/** The hooks a `nat` chain may sit on. */
export type NatHook = "prerouting" | "input" | "output" | "postrouting";

/** A base chain `type nat hook <hook> priority <priority>; policy accept;` and its rules. */
export interface NatChain {
  name: string;
  hook: NatHook;
  priority: number;
  rules: NatRule[];
}

/** A table of the `ip` family. */
export interface NatTable {
  name: string;
  chains: NatChain[];
}

/** A rule as found: `rule` when it is one this module makes, else only its expressions. */
export interface NatRuleState {
  handle: number;
  rule?: NatRule;
  /** The rule's expression names (`payload`, `cmp`, …), to describe a foreign rule. */
  exprs: string[];
}

/** A chain as found (`hook` etc. absent for a regular chain; a number for an unknown hook). */
export interface NatChainState {
  name: string;
  type?: string;
  hook?: NatHook | number;
  priority?: number;
  rules: NatRuleState[];
}

/** A table as found. */
export interface NatTableState {
  name: string;
  chains: NatChainState[];
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const EEXIST = 17;

function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    invalid(what, `bad name ${JSON.stringify(name)}`);
  }
  return name;
}

/**
 * The messages of the transaction that makes `table`: `create` is nft's
 * `create table ip T; table ip T { … }` (fails as a whole if the table exists), `replace`
 * nft's `add table ip T; delete table ip T; table ip T { … }` (whatever the table holds).
 *
 * @throws {InvalidArgumentError} when `table` is malformed.
 */
export function natTableRequests(
  table: NatTable,
  mode: "create" | "replace",
  content: Request[] = tableContent(table),
): Request[] {
  const add = () => newTable(NFPROTO_IPV4, table.name, false);
  return mode === "create"
    ? [newTable(NFPROTO_IPV4, table.name, true), add(), ...content]
    : [add(), deleteTable(NFPROTO_IPV4, table.name), add(), ...content];
}

function tableContent(table: NatTable): Request[] {
  const name = checkName(table?.name, "table name");
  if (!Array.isArray(table.chains)) invalid(`table ${name}`, "chains must be a list");
  const out: Request[] = [];
  const seen = new Set<string>();
  for (const c of table.chains) {
    const chain = checkName(c?.name, `chain name in table ${name}`);
    if (seen.has(chain)) invalid(`chain ${chain}`, "listed twice");
    seen.add(chain);
    if (!(c.hook in HOOKS) || c.hook === ("forward" as NatHook)) {
      invalid(`chain ${chain}`, `hook must be prerouting, input, output or postrouting`);
    }
    if (!Number.isInteger(c.priority) || Math.abs(c.priority) > 0x7fffffff) {
      invalid(`chain ${chain}`, `bad priority ${c.priority}`);
    }
    out.push(
      newBaseChain(NFPROTO_IPV4, name, {
        name: chain,
        type: "nat",
        hook: HOOKS[c.hook],
        priority: c.priority,
      }),
    );
  }
  for (const c of table.chains) {
    if (!Array.isArray(c.rules)) invalid(`chain ${c.name}`, "rules must be a list");
    c.rules.forEach((r, i) => {
      const what = `rule ${i + 1} of chain ${c.name}`;
      out.push(
        newRule(
          NFPROTO_IPV4,
          { table: name, chain: c.name, what: `add ${what}` },
          ruleExprs(r, what),
          r.comment,
        ),
      );
    });
  }
  return out;
}

/** A failure as a DriverError naming the namespace and what was done (typed errors pass). */
function wrap(err: unknown, what: string, netns: string | undefined): CnmError {
  if (err instanceof CnmError) return err;
  const where = netns === undefined ? "" : ` in ${netns}`;
  return new DriverError(`nf_tables${where}: ${what}: ${(err as Error).message}`, { cause: err });
}

/**
 * Makes the table `table` in `netns` (undefined: this thread's namespace) exactly as given,
 * in one transaction (see the module doc).
 *
 * @throws {InvalidArgumentError} when `table` is malformed (nothing is sent).
 * @throws {DriverError} when the kernel refuses it (the table before is left as it was) or
 *   the namespace cannot be entered.
 */
export async function ensureNatTable(table: NatTable, netns?: string): Promise<void> {
  const content = tableContent(table); // (validates before anything is sent)
  await withSocket(netns, `table ip ${table.name}`, async (sock) => {
    // Look first: a batch the kernel refuses (nft's `create table` when the table exists) is
    // rolled back after an RCU grace period, 8 ms here.
    if (!sock.hasTable(NFPROTO_IPV4, table.name)) {
      try {
        return await sock.commitAsync(natTableRequests(table, "create", content));
      } catch (err) {
        if ((err as { errno?: number }).errno !== EEXIST) throw err; // else: made meanwhile
      }
    }
    await sock.commitAsync(natTableRequests(table, "replace", content));
  });
}

/**
 * Deletes the table `name` (and its chains and rules) from `netns`, if it is there — nft's
 * `add table; delete table` in one transaction.
 *
 * @throws {DriverError} when the namespace cannot be entered or the kernel refuses.
 */
export async function deleteNatTable(name: string, netns?: string): Promise<void> {
  checkName(name, "table name");
  await withSocket(netns, `delete table ip ${name}`, async (sock) => {
    // (No table, no transaction: even an empty one costs the close a grace period.)
    if (!sock.hasTable(NFPROTO_IPV4, name)) return;
    await sock.commitAsync([newTable(NFPROTO_IPV4, name, false), deleteTable(NFPROTO_IPV4, name)]);
  });
}

/** Runs `fn` with a socket opened in `netns`, closed after; failures name `what` and `netns`. */
async function withSocket<T>(
  netns: string | undefined,
  what: string,
  fn: (sock: NftSocket) => Promise<T>,
): Promise<T> {
  let sock: NftSocket;
  try {
    sock = NftSocket.openIn(netns);
  } catch (err) {
    throw wrap(err, what, netns);
  }
  try {
    return await fn(sock);
  } catch (err) {
    throw wrap(err, what, netns);
  } finally {
    await sock.close();
  }
}

const HOOK_NAMES = new Map<number, NatHook>(
  Object.entries(HOOKS).filter(([k]) => k !== "forward").map(([k, v]) => [v, k as NatHook]),
);

/**
 * Reads the table `name` in `netns`: its chains and rules, each rule decoded back into a
 * {@link NatRule} when it is one this module makes; undefined when there is no such table.
 *
 * @throws {DriverError} when the namespace cannot be entered or the kernel refuses.
 */
export async function readNatTable(
  name: string,
  netns?: string,
): Promise<NatTableState | undefined> {
  checkName(name, "table name");
  return await withSocket(
    netns,
    `list table ip ${name}`,
    (sock) => Promise.resolve(read(sock, name)),
  );
}

function read(sock: NftSocket, name: string): NatTableState | undefined {
  if (!sock.hasTable(NFPROTO_IPV4, name)) return undefined;
  const chains: NatChainState[] = sock.chains(NFPROTO_IPV4, name).map((c) => {
    const s: NatChainState = { name: c.name, rules: [] };
    if (c.type !== undefined) s.type = c.type;
    if (c.hook !== undefined) s.hook = HOOK_NAMES.get(c.hook) ?? c.hook;
    if (c.priority !== undefined) s.priority = c.priority;
    return s;
  });
  const byName = new Map(chains.map((c) => [c.name, c]));
  for (const r of sock.rules(NFPROTO_IPV4, name)) {
    const exprs = r.exprs.map((e) => e.type === "other" ? e.name : e.type);
    const state: NatRuleState = { handle: r.handle, exprs };
    const rule = decodeRule(r.exprs);
    if (rule) {
      if (r.comment !== undefined) rule.comment = r.comment;
      state.rule = rule;
    }
    byName.get(r.chain)?.rules.push(state);
  }
  return { name, chains };
}
