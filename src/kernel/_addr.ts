/**
 * Parsing and formatting of the values kernel access takes as strings: IPv4/IPv6 addresses,
 * CIDRs, MAC addresses and interface names. Bad input becomes an InvalidArgumentError
 * before anything is sent to the kernel.
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";

export const AF_INET = 2;
export const AF_INET6 = 10;

/** A parsed IP address: family and raw bytes (network order). */
export interface Ip {
  family: typeof AF_INET | typeof AF_INET6;
  bytes: Uint8Array;
}

/** A parsed CIDR: address and prefix length. */
export interface Cidr extends Ip {
  prefix: number;
}

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseV6(s: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === "") return [];
    const out: number[] = [];
    const parts = h.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseV4(p);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Parses an IPv4 or IPv6 address; throws InvalidArgumentError when malformed. */
export function parseIp(s: string, what = "address"): Ip {
  const v4 = parseV4(s);
  if (v4) return { family: AF_INET, bytes: v4 };
  const v6 = s.includes(":") ? parseV6(s) : undefined;
  if (v6) return { family: AF_INET6, bytes: v6 };
  throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(s)}: not an IP address`);
}

/** Parses `addr/prefix`; throws InvalidArgumentError when malformed. */
export function parseCidr(s: string, what = "address"): Cidr {
  const slash = s.indexOf("/");
  if (slash < 0) {
    throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(s)}: expected CIDR`);
  }
  let ip: Ip;
  try {
    ip = parseIp(s.slice(0, slash), what);
  } catch {
    throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(s)}: not an IP address`);
  }
  const p = s.slice(slash + 1);
  const max = ip.family === AF_INET ? 32 : 128;
  if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
    throw new InvalidArgumentError(`invalid ${what} ${JSON.stringify(s)}: bad prefix length`);
  }
  return { ...ip, prefix: Number(p) };
}

/** Formats raw address bytes the way iproute2 prints them (RFC 5952 for IPv6). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.byteLength === 4) return Array.from(bytes).join(".");
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((bytes[i] << 8) | bytes[i + 1]);
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** Zeroes the host bits of `c` (the network address of a CIDR). */
export function networkOf(c: Cidr): Uint8Array {
  const out = new Uint8Array(c.bytes);
  for (let bit = c.prefix; bit < out.byteLength * 8; bit++) {
    out[bit >> 3] &= ~(0x80 >> (bit & 7));
  }
  return out;
}

/** The IPv4 broadcast address of `c`, or undefined for /31, /32 and IPv6. */
export function broadcastOf(c: Cidr): Uint8Array | undefined {
  if (c.family !== AF_INET || c.prefix >= 31) return undefined;
  const out = new Uint8Array(c.bytes);
  for (let bit = c.prefix; bit < 32; bit++) out[bit >> 3] |= 0x80 >> (bit & 7);
  return out;
}

/** Parses `aa:bb:cc:dd:ee:ff`; throws InvalidArgumentError when malformed. */
export function parseMac(s: string): Uint8Array {
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(s)) {
    throw new InvalidArgumentError(`invalid MAC address ${JSON.stringify(s)}`);
  }
  return new Uint8Array(s.split(":").map((h) => parseInt(h, 16)));
}

/** Formats a link-layer address as lower-case colon-separated hex. */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** Checks a Linux interface name (1-15 bytes, no '/', ':' or whitespace). */
export function checkIfName(name: string, what = "interface name"): string {
  if (
    typeof name !== "string" || name.length === 0 || new TextEncoder().encode(name).length > 15 ||
    /[\s/:]/.test(name) || name === "." || name === ".."
  ) {
    throw new InvalidArgumentError(
      `invalid ${what} ${JSON.stringify(name)}: must be 1-15 bytes without '/', ':' or spaces`,
    );
  }
  return name;
}

/** Checks an MTU value (68..65535). */
export function checkMtu(mtu: number, what: string): number {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
    throw new InvalidArgumentError(`invalid MTU ${mtu} for ${what}: must be 68-65535`);
  }
  return mtu;
}
