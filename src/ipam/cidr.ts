/**
 * IPv4/IPv6 addresses and CIDR subnets as bigints: parsing, formatting, containment,
 * overlap and normalisation. Pure; shared by IPAM, the bridge driver and the controller.
 *
 * ```ts
 * import { addressOf, cidrContains, normalizeCidr } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(normalizeCidr("10.0.0.5/24"), "10.0.0.0/24");
 * assert.deepEqual(addressOf("10.0.0.2/24"), "10.0.0.2");
 * assert.deepEqual(cidrContains("fd00::/64", "fd00::1"), true);
 * ```
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";

/** Address family: 4 or 6. */
export type IpFamily = 4 | 6;

/** A parsed IP address. */
export interface Ip {
  /** 4 or 6. */
  readonly family: IpFamily;
  /** The address as an unsigned integer (32 or 128 bits). */
  readonly value: bigint;
}

/** A parsed CIDR: the address as written, its prefix and the subnet it names. */
export interface Cidr {
  /** 4 or 6. */
  readonly family: IpFamily;
  /** The address part as written (may have host bits set, e.g. 10.0.0.5 in 10.0.0.5/24). */
  readonly address: bigint;
  /** Prefix length, 0..32 or 0..128. */
  readonly prefix: number;
  /** First address of the subnet (host bits cleared). */
  readonly network: bigint;
  /** Last address of the subnet (host bits set). */
  readonly last: bigint;
}

/**
 * Number of bits of an address of the family.
 *
 * @example
 * ```ts
 * import { bitsOf } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(bitsOf(6), 128);
 * ```
 */
export function bitsOf(family: IpFamily): 32 | 128 {
  return family === 4 ? 32 : 128;
}

const decimalOctet = /^(0|[1-9][0-9]{0,2})$/;
const hexGroup = /^[0-9a-fA-F]{1,4}$/;

function parseV4(s: string): bigint | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // Leading zeros are refused, as Go's netip does: "010" is octal to some tools.
    if (!decimalOctet.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseV6Groups(part: string): number[] | undefined {
  if (part === "") return [];
  const pieces = part.split(":");
  const groups: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i];
    if (i === pieces.length - 1 && piece.includes(".")) {
      const v4 = parseV4(piece);
      if (v4 === undefined) return undefined;
      groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
    } else if (hexGroup.test(piece)) {
      groups.push(parseInt(piece, 16));
    } else {
      return undefined;
    }
  }
  return groups;
}

function parseV6(s: string): bigint | undefined {
  if (s.length < 2 || s.length > 45) return undefined;
  const gap = s.indexOf("::");
  let head: number[] | undefined;
  let tail: number[] | undefined = [];
  if (gap === -1) {
    head = parseV6Groups(s);
    if (!head || head.length !== 8) return undefined;
  } else {
    if (s.indexOf("::", gap + 1) !== -1) return undefined;
    const headText = s.slice(0, gap);
    if (headText.includes(".")) return undefined; // an embedded IPv4 must come last
    head = parseV6Groups(headText);
    tail = parseV6Groups(s.slice(gap + 2));
    if (!head || !tail || head.length + tail.length > 7) return undefined;
  }
  const groups = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

function tryParseIp(s: string): Ip | undefined {
  if (s.includes(":")) {
    const value = parseV6(s);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseV4(s);
  return value === undefined ? undefined : { family: 4, value };
}

function tryParseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf("/");
  if (slash === -1) return undefined;
  const ip = tryParseIp(s.slice(0, slash));
  const prefixText = s.slice(slash + 1);
  if (!ip || !decimalOctet.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const bits = bitsOf(ip.family);
  if (prefix > bits) return undefined;
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  const network = ip.value & ~hostMask;
  return { family: ip.family, address: ip.value, prefix, network, last: network | hostMask };
}

/**
 * Parses an IP address without a prefix (`10.0.0.2`, `fd00::1`, `::ffff:1.2.3.4`).
 *
 * @throws {InvalidArgumentError} `invalid IP address: X` when malformed.
 * @example
 * ```ts
 * import { parseIp } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseIp("10.0.0.1"), { family: 4, value: 0x0a000001n });
 * ```
 */
export function parseIp(s: string): Ip {
  const ip = tryParseIp(s);
  if (!ip) throw new InvalidArgumentError(`invalid IP address: ${s}`);
  return ip;
}

/**
 * Parses a CIDR (`172.18.0.0/16`, `10.0.0.5/24`, `fd00::/64`). Host bits may be set;
 * {@link Cidr.network} has them cleared.
 *
 * @throws {InvalidArgumentError} `invalid CIDR address: X` when malformed.
 * @example
 * ```ts
 * import { parseCidr } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseCidr("10.0.0.5/24").network, 0x0a000000n);
 * ```
 */
export function parseCidr(s: string): Cidr {
  const cidr = tryParseCidr(s);
  if (!cidr) throw new InvalidArgumentError(`invalid CIDR address: ${s}`);
  return cidr;
}

function v6ToString(value: bigint): string {
  if (value >> 32n === 0xffffn) return `::ffff:${v4ToString(value & 0xffffffffn)}`;
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the first longest run of two or more zero groups.
  let bestStart = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

function v4ToString(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join(".");
}

/**
 * Formats an IP address in canonical form (RFC 5952 for IPv6).
 *
 * @example
 * ```ts
 * import { ipToString } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(ipToString({ family: 6, value: (0xfd00n << 112n) | 1n }), "fd00::1");
 * ```
 */
export function ipToString(ip: Ip): string {
  return ip.family === 4 ? v4ToString(ip.value) : v6ToString(ip.value);
}

/**
 * Formats a CIDR's subnet (host bits cleared): `network/prefix`.
 *
 * @example
 * ```ts
 * import { cidrToString, parseCidr } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(cidrToString(parseCidr("10.1.2.3/8")), "10.0.0.0/8");
 * ```
 */
export function cidrToString(cidr: Cidr): string {
  return `${ipToString({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`;
}

/**
 * Normalises a CIDR to its subnet: `10.0.0.5/24` → `10.0.0.0/24`, `FD00:0::/64` → `fd00::/64`.
 *
 * @throws {InvalidArgumentError} when malformed.
 * @example
 * ```ts
 * import { normalizeCidr } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(normalizeCidr("10.0.0.5/24"), "10.0.0.0/24");
 * ```
 */
export function normalizeCidr(s: string): string {
  return cidrToString(parseCidr(s));
}

/**
 * Normalises an IP address: `FD00:0::1` → `fd00::1`.
 *
 * @throws {InvalidArgumentError} when malformed.
 * @example
 * ```ts
 * import { normalizeIp } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(normalizeIp("FD00:0:0::1"), "fd00::1");
 * ```
 */
export function normalizeIp(s: string): string {
  return ipToString(parseIp(s));
}

/**
 * The address part of `address/prefix`, normalised; a bare address is returned normalised.
 *
 * @throws {InvalidArgumentError} when malformed.
 * @example
 * ```ts
 * import { addressOf } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(addressOf("10.0.0.2/24"), "10.0.0.2");
 * ```
 */
export function addressOf(s: string): string {
  if (!s.includes("/")) return normalizeIp(s);
  const cidr = parseCidr(s);
  return ipToString({ family: cidr.family, value: cidr.address });
}

/**
 * The prefix length of a CIDR.
 *
 * @throws {InvalidArgumentError} when malformed.
 * @example
 * ```ts
 * import { prefixOf } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(prefixOf("10.0.0.2/24"), 24);
 * ```
 */
export function prefixOf(s: string): number {
  return parseCidr(s).prefix;
}

/**
 * Whether `s` is a well-formed IPv6 address or CIDR. Never throws: malformed input is `false`.
 *
 * @example
 * ```ts
 * import { isIPv6 } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(isIPv6("fd00::/64"), true);
 * assert.deepEqual(isIPv6("10.0.0.1"), false);
 * ```
 */
export function isIPv6(s: string): boolean {
  const parsed = s.includes("/") ? tryParseCidr(s) : tryParseIp(s);
  return parsed?.family === 6;
}

/**
 * Whether the subnet of `cidr` contains `ip` (bare or with a prefix, which is ignored).
 * Different families never contain each other.
 *
 * @throws {InvalidArgumentError} when either is malformed.
 * @example
 * ```ts
 * import { cidrContains } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(cidrContains("172.18.0.0/16", "172.18.3.4"), true);
 * ```
 */
export function cidrContains(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  const a = ip.includes("/") ? parseCidr(ip) : parseIp(ip);
  const value = "address" in a ? a.address : a.value;
  return c.family === a.family && c.network <= value && value <= c.last;
}

/**
 * Whether two subnets share at least one address. Different families never overlap.
 *
 * @throws {InvalidArgumentError} when either is malformed.
 * @example
 * ```ts
 * import { cidrsOverlap } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(cidrsOverlap("172.20.0.0/14", "172.21.0.0/16"), true);
 * ```
 */
export function cidrsOverlap(a: string, b: string): boolean {
  return parsedOverlap(parseCidr(a), parseCidr(b));
}

/**
 * {@link cidrsOverlap} on parsed values.
 *
 * @example
 * ```ts
 * import { parseCidr, parsedOverlap } from "./cidr.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parsedOverlap(parseCidr("10.0.0.0/8"), parseCidr("11.0.0.0/8")), false);
 * ```
 */
export function parsedOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.network <= b.last && b.network <= a.last;
}
