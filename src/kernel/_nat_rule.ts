/**
 * One NAT rule of `nat_table.ts` as nf_tables expressions, the way nft 1.0.6 compiles the same
 * rule (`ip daddr A` = payload @ network header + 16, then cmp; `udp dport P` = meta l4proto,
 * cmp, payload @ transport header + 2, cmp; `dnat to A:P` = immediates, then nat), and back: a
 * dumped rule is decoded only when it is exactly such a rule. Pure.
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";
import { AF_INET, formatIp, parseIp } from "./_addr.ts";
import {
  type Expr,
  NF_NAT_RANGE_MAP_IPS,
  NF_NAT_RANGE_PROTO_SPECIFIED,
  NFT_CMP_EQ,
  NFT_META_L4PROTO,
  NFT_NAT_DNAT,
  NFT_NAT_SNAT,
  NFT_PAYLOAD_NETWORK_HEADER,
  NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_REG_1,
} from "./_nft_expr.ts";

/** NFPROTO_IPV4: the `ip` family. */
const NFPROTO_IPV4 = 2;

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

const PROTOCOLS = { tcp: 6, udp: 17 } as const;

/** Throws the InvalidArgumentError of a malformed table. */
export function invalid(what: string, why: string): never {
  throw new InvalidArgumentError(`invalid NAT table: ${what}: ${why}`);
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
