/**
 * What the firewall reads back from nftables: our tables' chains, the comments of their
 * rules and the elements of their sets and maps, parsed from `nft -j list ruleset` into
 * comparable strings. Pure parsing; running nft is `_firewall.ts`'s job.
 *
 * Element strings: a key as we write it (`"br-0123"` names unquoted, `172.18.0.0/16`,
 * `tcp . 8080`, `127.0.0.1 . udp . 53`), and for maps ` => <jump target>`.
 *
 * @module
 */

import { DriverError } from "../../src/errors.ts";
import { cidrToString, ipToString, parseCidr, parseIp } from "../../src/ipam/cidr.ts";

/** The parts of one of our tables that the logic looks at. */
export interface TableState {
  chains: Set<string>;
  /** chain → comments of its rules, in order. */
  rules: Map<string, string[]>;
  /** set or map name → elements (`key` or `key => target`). */
  elements: Map<string, string[]>;
}

/** Our two tables (`inet` and `bridge`, same name), as far as they exist. */
export interface State {
  inet?: TableState;
  bridge?: TableState;
}

/** A table family we use. */
export type Family = "inet" | "bridge";

// deno-lint-ignore no-explicit-any
type Json = any;

/**
 * Parses `nft -j list ruleset` output, keeping only the tables named `table`.
 *
 * @throws {DriverError} when the output is not JSON.
 */
export function parseState(out: string, table: string): State {
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

/** An element's key as we write it: a name, an address, `addr/len`, `from-to`, `a . b`. */
export function elementKey(key: Json, byName: boolean): string {
  if (key && typeof key === "object" && "elem" in key) return elementKey(key.elem.val, byName);
  if (Array.isArray(key?.concat)) {
    return key.concat.map((part: Json) => {
      if (typeof part === "number") return String(part);
      if (typeof part === "string" && !/[.:]/.test(part)) return part; // tcp, udp, names
      if (typeof part === "string") return ipToString(parseIp(part)); // a plain address
      return elementKey(part, false);
    }).join(" . ");
  }
  if (typeof key === "string") {
    if (byName) return key;
    const cidr = parseCidr(`${key}/${key.includes(":") ? 128 : 32}`);
    return cidrToString(cidr);
  }
  if (typeof key === "number") return String(key);
  if (key?.prefix) return cidrToString(parseCidr(`${key.prefix.addr}/${key.prefix.len}`));
  if (Array.isArray(key?.range)) return `${key.range[0]}-${key.range[1]}`;
  return JSON.stringify(key);
}

/** Splits an element string into its key and (for maps) its jump target. */
export function splitElement(e: string): { key: string; target?: string } {
  const i = e.indexOf(" => ");
  return i < 0 ? { key: e } : { key: e.slice(0, i), target: e.slice(i + 4) };
}
