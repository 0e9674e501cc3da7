/**
 * The nf_tables expressions a NAT rule is made of — payload, meta, cmp, counter, immediate,
 * nat — as nft encodes them (libnftnl's `src/expr/*.c`: attribute numbers from
 * include/uapi/linux/netfilter/nf_tables.h, every number big-endian, register data the
 * packet's own bytes), their decoding from a rule dump, and a rule's comment (libnftnl's
 * userdata TLV). Pure; `_nftnl.ts` puts them into messages.
 *
 * @module
 */

import { attrBytes, attrString, type MessageBuilder, parseAttrs } from "./_netlink.ts";

/** Marks a nested attribute (nft sets it on every nest). */
export const NLA_F_NESTED = 0x8000;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_DATA_VALUE = 1;
const NFTNL_UDATA_RULE_COMMENT = 0;

/** The first register as nft numbers them (the 16-byte NFT_REG_1; then 2, 3, 4). */
export const NFT_REG_1 = 1;
/** Payload bases. */
export const NFT_PAYLOAD_NETWORK_HEADER = 1;
export const NFT_PAYLOAD_TRANSPORT_HEADER = 2;
/** The meta key `l4proto`. */
export const NFT_META_L4PROTO = 16;
export const NFT_CMP_EQ = 0;
export const NFT_NAT_SNAT = 0;
export const NFT_NAT_DNAT = 1;
export const NF_NAT_RANGE_MAP_IPS = 1;
export const NF_NAT_RANGE_PROTO_SPECIFIED = 2;

/** One expression of a rule, as nft encodes it (the kinds a NAT rule needs, else `other`). */
export type Expr =
  | { type: "payload"; dreg: number; base: number; offset: number; len: number }
  | { type: "meta"; key: number; dreg: number }
  | { type: "cmp"; sreg: number; op: number; data: Uint8Array }
  | { type: "counter" }
  | { type: "immediate"; dreg: number; data: Uint8Array }
  | {
    type: "nat";
    nat: number;
    family: number;
    regAddr?: number;
    regProto?: number;
    flags?: number;
  }
  | { type: "other"; name: string };

/** Appends `e` to a rule's NFTA_RULE_EXPRESSIONS as one NFTA_LIST_ELEM. */
export function encodeExpr(b: MessageBuilder, e: Expr): void {
  if (e.type === "other") throw new Error(`nf_tables: cannot encode expression ${e.name}`);
  b.begin(NFTA_LIST_ELEM | NLA_F_NESTED).attrStr(NFTA_EXPR_NAME, e.type)
    .begin(NFTA_EXPR_DATA | NLA_F_NESTED);
  const value = (type: number, data: Uint8Array) =>
    b.begin(type | NLA_F_NESTED).attr(NFTA_DATA_VALUE, data).end();
  switch (e.type) {
    case "payload": // NFTA_PAYLOAD_DREG, _BASE, _OFFSET, _LEN
      b.attrBe32(1, e.dreg).attrBe32(2, e.base).attrBe32(3, e.offset).attrBe32(4, e.len);
      break;
    case "meta": // NFTA_META_KEY, then NFTA_META_DREG (nft's order)
      b.attrBe32(2, e.key).attrBe32(1, e.dreg);
      break;
    case "cmp": // NFTA_CMP_SREG, _OP, _DATA { NFTA_DATA_VALUE }
      b.attrBe32(1, e.sreg).attrBe32(2, e.op);
      value(3, e.data);
      break;
    case "counter": // no attributes: the kernel starts it at zero
      break;
    case "immediate": // NFTA_IMMEDIATE_DREG, _DATA { NFTA_DATA_VALUE }
      b.attrBe32(1, e.dreg);
      value(2, e.data);
      break;
    case "nat": // NFTA_NAT_TYPE, _FAMILY, _REG_ADDR_MIN, _REG_PROTO_MIN, _FLAGS
      b.attrBe32(1, e.nat).attrBe32(2, e.family);
      if (e.regAddr !== undefined) b.attrBe32(3, e.regAddr);
      if (e.regProto !== undefined) b.attrBe32(5, e.regProto);
      if (e.flags) b.attrBe32(7, e.flags);
      break;
  }
  b.end().end();
}

const be32 = (v: DataView | undefined) => v && v.byteLength >= 4 ? v.getUint32(0, false) : 0;
const copy = (v: DataView | undefined) => new Uint8Array(attrBytes(v) ?? []);

/** Decodes one NFTA_LIST_ELEM of a rule dump. */
export function decodeExpr(elem: DataView): Expr {
  const a = parseAttrs(elem, 0);
  const name = attrString(a.get(NFTA_EXPR_NAME)) ?? "";
  const d = parseAttrs(a.get(NFTA_EXPR_DATA) ?? new DataView(new ArrayBuffer(0)), 0);
  const value = (type: number) => {
    const nest = d.get(type);
    return copy(nest && parseAttrs(nest, 0).get(NFTA_DATA_VALUE));
  };
  switch (name) {
    case "payload":
      return {
        type: "payload",
        dreg: be32(d.get(1)),
        base: be32(d.get(2)),
        offset: be32(d.get(3)),
        len: be32(d.get(4)),
      };
    case "meta":
      return d.has(1) ? { type: "meta", key: be32(d.get(2)), dreg: be32(d.get(1)) } : other(name);
    case "cmp":
      return { type: "cmp", sreg: be32(d.get(1)), op: be32(d.get(2)), data: value(3) };
    case "counter":
      return { type: "counter" };
    case "immediate":
      return d.has(2) ? { type: "immediate", dreg: be32(d.get(1)), data: value(2) } : other(name);
    case "nat": {
      const e: Expr = { type: "nat", nat: be32(d.get(1)), family: be32(d.get(2)) };
      // The kernel reports a range's max register too; it equals min in the rules we make.
      if (d.has(3)) e.regAddr = be32(d.get(3));
      if (d.has(5)) e.regProto = be32(d.get(5));
      if (d.has(7)) e.flags = be32(d.get(7));
      if (
        (d.has(4) && be32(d.get(4)) !== e.regAddr) || (d.has(6) && be32(d.get(6)) !== e.regProto)
      ) {
        return other("nat (a range)");
      }
      return e;
    }
    default:
      return other(name);
  }
}

const other = (name: string): Expr => ({ type: "other", name });

/** The comment in a rule's userdata (libnftnl's TLVs), if any. */
export function decodeComment(v: DataView | undefined): string | undefined {
  const bytes = attrBytes(v);
  for (let off = 0; bytes && off + 2 <= bytes.byteLength;) {
    const [type, len] = [bytes[off], bytes[off + 1]];
    if (type === NFTNL_UDATA_RULE_COMMENT && off + 2 + len <= bytes.byteLength) {
      const text = bytes.subarray(off + 2, off + 2 + len);
      const nul = text.indexOf(0);
      return new TextDecoder().decode(nul >= 0 ? text.subarray(0, nul) : text);
    }
    off += 2 + len;
  }
  return undefined;
}

/** A rule's comment as libnftnl's userdata TLV: type, length (1 byte each), the text and a NUL. */
export function encodeComment(comment: string): Uint8Array {
  const text = new TextEncoder().encode(comment);
  const tlv = new Uint8Array(text.byteLength + 3);
  tlv.set([NFTNL_UDATA_RULE_COMMENT, text.byteLength + 1]);
  tlv.set(text, 2);
  return tlv;
}
