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

import { CnmError, DriverError, InvalidArgumentError } from "../errors.ts";
import { AF_INET, formatIp, parseIp } from "./_addr.ts";
import type { Request } from "./_netlink.ts";
import {
  deleteTable,
  type Expr,
  HOOKS,
  newBaseChain,
  newRule,
  newTable,
  NF_NAT_RANGE_MAP_IPS,
  NF_NAT_RANGE_PROTO_SPECIFIED,
  NFPROTO_IPV4,
  NFT_CMP_EQ,
  NFT_META_L4PROTO,
  NFT_NAT_DNAT,
  NFT_NAT_SNAT,
  NFT_PAYLOAD_NETWORK_HEADER,
  NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_REG_1,
  NftSocket,
} from "./_nftnl.ts";

/** The hooks a `nat` chain may sit on. */
export type NatHook = "prerouting" | "input" | "output" | "postrouting";

/**
 * One rule: `[ip saddr A] [ip daddr A] <protocol> [sport|dport P] [counter] dnat|snat to
 * [addr][:port] [comment "…"]`. At most one port match (nft merges two into one load).
 */
export interface NatRule {
  saddr?: string;
  daddr?: string;
  protocol: "tcp" | "udp";
  sport?: number;
  dport?: number;
  counter?: boolean;
  nat: "dnat" | "snat";
  toAddr?: string;
  toPort?: number;
  comment?: string;
}

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

const PROTOCOLS = { tcp: 6, udp: 17 } as const;
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const EEXIST = 17;

function invalid(what: string, why: string): never {
  throw new InvalidArgumentError(`invalid NAT table: ${what}: ${why}`);
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    invalid(what, `bad name ${JSON.stringify(name)}`);
  }
  return name;
}

function v4(addr: unknown, what: string): Uint8Array {
  let ip;
  try {
    ip = parseIp(String(addr), what);
  } catch {
    invalid(what, `${JSON.stringify(addr)} is not an IPv4 address`);
  }
  if (typeof addr !== "string" || ip.family !== AF_INET) {
    invalid(what, `${JSON.stringify(addr)} is not an IPv4 address`);
  }
  return ip.bytes;
}

function be16(port: unknown, what: string): Uint8Array {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    invalid(what, `bad port ${port}`);
  }
  return new Uint8Array([port >> 8, port & 0xff]);
}

/** nft's expressions for one rule (see the module doc); throws InvalidArgumentError. */
export function ruleExprs(r: NatRule, where: string): Expr[] {
  const out: Expr[] = [];
  const match = (base: number, offset: number, len: number, data: Uint8Array) =>
    out.push(
      { type: "payload", dreg: NFT_REG_1, base, offset, len },
      { type: "cmp", sreg: NFT_REG_1, op: NFT_CMP_EQ, data },
    );
  if (r.saddr !== undefined) {
    match(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, v4(r.saddr, `${where} saddr`));
  }
  if (r.daddr !== undefined) {
    match(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, v4(r.daddr, `${where} daddr`));
  }
  const proto = PROTOCOLS[r.protocol];
  if (proto === undefined) {
    invalid(where, `protocol must be tcp or udp, not ${JSON.stringify(r.protocol)}`);
  }
  out.push(
    { type: "meta", key: NFT_META_L4PROTO, dreg: NFT_REG_1 },
    { type: "cmp", sreg: NFT_REG_1, op: NFT_CMP_EQ, data: new Uint8Array([proto]) },
  );
  if (r.sport !== undefined && r.dport !== undefined) {
    invalid(where, "at most one of sport and dport");
  }
  if (r.sport !== undefined) {
    match(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, be16(r.sport, `${where} sport`));
  }
  if (r.dport !== undefined) {
    match(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, be16(r.dport, `${where} dport`));
  }
  if (r.counter) out.push({ type: "counter" });
  if (r.nat !== "dnat" && r.nat !== "snat") {
    invalid(where, `nat must be dnat or snat, not ${JSON.stringify(r.nat)}`);
  }
  if (r.toAddr === undefined && r.toPort === undefined) invalid(where, "needs toAddr or toPort");
  let reg = NFT_REG_1;
  const nat: Expr = {
    type: "nat",
    nat: r.nat === "dnat" ? NFT_NAT_DNAT : NFT_NAT_SNAT,
    family: NFPROTO_IPV4,
  };
  if (r.toAddr !== undefined) {
    out.push({ type: "immediate", dreg: reg, data: v4(r.toAddr, `${where} toAddr`) });
    nat.regAddr = reg++;
  }
  if (r.toPort !== undefined) {
    out.push({ type: "immediate", dreg: reg, data: be16(r.toPort, `${where} toPort`) });
    nat.regProto = reg;
    nat.flags = NF_NAT_RANGE_PROTO_SPECIFIED; // (the kernel adds MAP_IPS when there is an address)
  }
  out.push(nat);
  if (r.comment !== undefined) {
    const bytes = typeof r.comment === "string" ? new TextEncoder().encode(r.comment) : undefined;
    if (!bytes || bytes.byteLength > 128 || bytes.includes(0)) invalid(where, "bad comment");
  }
  return out;
}

/** The messages that make `table` (after the table message(s) the caller puts first). */
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
  const what = `table ip ${table.name}`;
  let sock: NftSocket;
  try {
    sock = NftSocket.openIn(netns);
  } catch (err) {
    throw wrap(err, what, netns);
  }
  try {
    // Look first: a batch the kernel refuses (nft's `create table` when the table exists) is
    // rolled back after an RCU grace period, 8 ms here.
    if (!sock.hasTable(NFPROTO_IPV4, table.name)) {
      try {
        await sock.commitAsync(natTableRequests(table, "create", content));
        return;
      } catch (err) {
        if ((err as { errno?: number }).errno !== EEXIST) throw err; // else: made meanwhile
      }
    }
    await sock.commitAsync(natTableRequests(table, "replace", content));
  } catch (err) {
    throw wrap(err, what, netns);
  } finally {
    await sock.close();
  }
}

/**
 * Deletes the table `name` (and its chains and rules) from `netns`, if it is there — nft's
 * `add table; delete table` in one transaction; the send runs off the event loop.
 *
 * @throws {DriverError} when the namespace cannot be entered or the kernel refuses.
 */
export async function deleteNatTable(name: string, netns?: string): Promise<void> {
  checkName(name, "table name");
  const what = `delete table ip ${name}`;
  let sock: NftSocket;
  try {
    sock = NftSocket.openIn(netns);
  } catch (err) {
    throw wrap(err, what, netns);
  }
  try {
    // (No table, no transaction: even an empty one costs the close a grace period.)
    if (!sock.hasTable(NFPROTO_IPV4, name)) return;
    await sock.commitAsync([newTable(NFPROTO_IPV4, name, false), deleteTable(NFPROTO_IPV4, name)]);
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
  try {
    return await read(checkName(name, "table name"), netns);
  } catch (err) {
    throw wrap(err, `list table ip ${name}`, netns);
  }
}

async function read(name: string, netns: string | undefined): Promise<NatTableState | undefined> {
  const sock = NftSocket.openIn(netns);
  try {
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
  } finally {
    await sock.close();
  }
}

/** The inverse of {@link ruleExprs}: the rule, or undefined when `exprs` is not one of ours. */
export function decodeRule(exprs: Expr[]): NatRule | undefined {
  const regs = new Map<number, string | Uint8Array>();
  const m: Partial<NatRule> = {};
  for (const [i, e] of exprs.entries()) {
    if (e.type === "payload") {
      const field = e.base === NFT_PAYLOAD_NETWORK_HEADER && e.len === 4
        ? { 12: "saddr", 16: "daddr" }[e.offset]
        : e.base === NFT_PAYLOAD_TRANSPORT_HEADER && e.len === 2
        ? { 0: "sport", 2: "dport" }[e.offset]
        : undefined;
      if (!field) return undefined;
      regs.set(e.dreg, field);
    } else if (e.type === "meta") {
      if (e.key !== NFT_META_L4PROTO) return undefined;
      regs.set(e.dreg, "l4proto");
    } else if (e.type === "cmp") {
      const field = regs.get(e.sreg);
      if (e.op !== NFT_CMP_EQ || typeof field !== "string") return undefined;
      const d = e.data;
      if (field === "l4proto") {
        const p = Object.entries(PROTOCOLS).find(([, n]) => d.byteLength === 1 && n === d[0]);
        if (!p) return undefined;
        m.protocol = p[0] as NatRule["protocol"];
      } else if (field === "saddr" || field === "daddr") {
        if (d.byteLength !== 4) return undefined;
        m[field] = formatIp(d);
      } else {
        if (d.byteLength !== 2) return undefined;
        m[field as "sport" | "dport"] = (d[0] << 8) | d[1];
      }
    } else if (e.type === "counter") {
      m.counter = true;
    } else if (e.type === "immediate") {
      regs.set(e.dreg, e.data);
    } else if (e.type === "nat") {
      if (i !== exprs.length - 1 || e.family !== NFPROTO_IPV4 || !m.protocol) return undefined;
      if ((m.sport !== undefined || m.dport !== undefined) && !m.protocol) return undefined;
      m.nat = e.nat === NFT_NAT_DNAT ? "dnat" : e.nat === NFT_NAT_SNAT ? "snat" : undefined;
      const addr = e.regAddr === undefined ? undefined : regs.get(e.regAddr);
      const port = e.regProto === undefined ? undefined : regs.get(e.regProto);
      if (!m.nat || typeof addr === "string" || typeof port === "string") return undefined;
      if (addr) {
        if (addr.byteLength !== 4) return undefined;
        m.toAddr = formatIp(addr);
      }
      if (port) {
        if (port.byteLength !== 2) return undefined;
        m.toPort = (port[0] << 8) | port[1];
      }
      const flags = (addr ? NF_NAT_RANGE_MAP_IPS : 0) | (port ? NF_NAT_RANGE_PROTO_SPECIFIED : 0);
      if ((e.flags ?? 0) & ~flags || (port && !((e.flags ?? 0) & NF_NAT_RANGE_PROTO_SPECIFIED))) {
        return undefined; // (random, persistent, …: not ours)
      }
      if (!addr && !port) return undefined;
      return m as NatRule;
    } else return undefined;
  }
  return undefined; // no nat at the end
}
